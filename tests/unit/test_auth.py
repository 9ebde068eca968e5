"""Browser sessions and shared-token detection of ``TokenAuth``."""

from __future__ import annotations

from loadtest_core import TokenAuth
from loadtest_core._auth import principal_of


def test_a_session_is_made_from_a_user_token_only() -> None:
    """A user token gets a session value that holds no token; agent and unknown tokens get none."""
    auth = TokenAuth(["user-secret"], ["agent-secret"])
    value = auth.session(b"user-secret", 2000)
    assert value is not None and value.startswith("2000.")
    assert "user-secret" not in value
    assert auth.session(b"agent-secret", 2000) is None
    assert auth.session(b"nope", 2000) is None
    assert auth.session(None, 2000) is None


def test_a_session_is_valid_until_it_expires_and_names_its_token() -> None:
    """session_principal is the token's principal before the expiry and None from then on."""
    auth = TokenAuth(["u", "v"], [])
    value = auth.session(b"v", 2000)
    assert auth.session_principal(value, 1999.5) == principal_of(b"v")
    assert auth.session_principal(value, 2000) is None


def test_a_tampered_or_foreign_session_is_refused() -> None:
    """A changed expiry or MAC, garbage, or a session of a token no longer configured is refused."""
    value = TokenAuth(["u"], []).session(b"u", 2000)
    assert value is not None
    expires, mac = value.split(".")
    auth = TokenAuth(["u"], [])
    assert auth.session_principal(f"3000.{mac}", 0) is None
    flipped = mac[:-1] + ("1" if mac[-1] == "0" else "0")
    assert auth.session_principal(f"{expires}.{flipped}", 0) is None
    for garbage in ("", "2000", ".", "x.y", "2000." + "a" * 300, None):
        assert auth.session_principal(garbage, 0) is None
    assert TokenAuth(["other"], []).session_principal(value, 0) is None


def test_shared_tokens_are_detected() -> None:
    """A token given for both roles is reported; distinct tokens are not."""
    assert TokenAuth(["a", "b"], ["b"]).has_shared_tokens()
    assert not TokenAuth(["a"], ["b"]).has_shared_tokens()
    assert not TokenAuth([], [], insecure=True).has_shared_tokens()
