"""Bearer tokens, checked in constant time, shared by every adapter.

A token is compared with every configured token of both roles using
``hmac.compare_digest`` on SHA-256 digests, so the time taken depends neither
on how much of a token matched, nor on its length, nor on which role it has.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable

from loadtest_core._errors import InvalidArgument, PermissionDenied, Unauthenticated

__all__ = ["Role", "TokenAuth", "bearer_token", "principal_of"]

MAX_HEADER = 8192


class Role(enum.Enum):
    USER = "user"
    AGENT = "agent"


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def bearer_token(header: str | bytes | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None if absent/malformed."""
    if header is None:
        return None
    raw = header if isinstance(header, bytes) else header.encode("utf-8", "surrogateescape")
    if len(raw) > MAX_HEADER:
        return None
    scheme, _, token = raw.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    return token or None


def principal_of(token: bytes | None) -> str:
    """A stable, non-secret name for whoever holds a token (``created_by`` of tests and stops)."""
    if not token:
        return "anonymous"
    return _principal(_digest(token))


def _session_mac(digest: bytes, expires: int) -> str:
    return hmac.new(digest, f"loadtest-core session {expires}".encode(), hashlib.sha256).hexdigest()


def _principal(digest: bytes) -> str:
    return "token:" + digest.hex()[:12]


class TokenAuth:
    """User and agent tokens; ``insecure=True`` (no tokens) lets everyone in as both."""

    def __init__(
        self,
        user_tokens: Iterable[str] = (),
        agent_tokens: Iterable[str] = (),
        *,
        insecure: bool = False,
    ) -> None:
        self._tokens: list[tuple[bytes, Role]] = []
        for role, tokens in ((Role.USER, user_tokens), (Role.AGENT, agent_tokens)):
            for token in tokens:
                if not token or token != token.strip() or not token.isprintable():
                    raise InvalidArgument(
                        f"{role.value} token: must be printable, non-empty, unpadded",
                        field="token",
                    )
                self._tokens.append((_digest(token.encode()), role))
        if not self._tokens and not insecure:
            raise InvalidArgument(
                "no tokens configured: give --user-token/--agent-token or --insecure-no-auth",
                field="token",
            )
        self.insecure = insecure and not self._tokens

    def role_of(self, token: bytes | None) -> Role | None:
        """The role a token grants, or None; the comparison touches every configured token."""
        if token is None:
            return None
        return self._role_of_digest(_digest(token))

    def _role_of_digest(self, digest: bytes) -> Role | None:
        found: Role | None = None
        for candidate, role in self._tokens:
            if hmac.compare_digest(candidate, digest) and found is None:
                found = role
        return found

    def has_shared_tokens(self) -> bool:
        """Whether one token was given for both roles (it then acts as a user token only)."""
        users = {d for d, r in self._tokens if r is Role.USER}
        return any(d in users for d, r in self._tokens if r is Role.AGENT)

    def session(self, token: bytes | None, expires: int) -> str | None:
        """A browser session value for a user token, valid until ``expires`` (epoch seconds).

        It is ``<expires>.<HMAC-SHA256 keyed by the token's digest>``: it holds no
        token, stops working when the token is removed from the configuration,
        and cannot be extended by its holder. None when the token is not a
        user token.
        """
        if token is None:
            return None
        digest = _digest(token)
        if self._role_of_digest(digest) is not Role.USER:
            return None
        return f"{expires}.{_session_mac(digest, expires)}"

    def session_principal(self, value: str | None, now: float) -> str | None:
        """The principal of the user token an unexpired ``session`` value was made from, or None.

        It is the token's own ``principal_of``, so a stop from the page names the
        same caller as one made with the token over gRPC.
        """
        if not value or len(value) > 200:
            return None
        expires, _, mac = value.partition(".")
        if not expires.isdigit() or int(expires) <= now:
            return None
        found: bytes | None = None
        for digest, role in self._tokens:
            if role is Role.USER:
                expected = _session_mac(digest, int(expires))
                if hmac.compare_digest(expected, mac) and found is None:
                    found = digest
        return None if found is None else _principal(found)

    def require(self, header: str | bytes | None, role: Role) -> None:
        """Raise Unauthenticated (missing/wrong) or PermissionDenied (other role)."""
        self.authenticate(header, role)

    def authenticate(self, header: str | bytes | None, role: Role) -> str:
        """``require``, then the caller's ``principal_of``; the token is hashed once for both."""
        token = bearer_token(header)
        if self.insecure:
            return principal_of(token)
        if token is None:
            raise Unauthenticated("missing or invalid bearer token")
        digest = _digest(token)
        granted = self._role_of_digest(digest)
        if granted is None:
            raise Unauthenticated("missing or invalid bearer token")
        if granted is not role:
            raise PermissionDenied(f"a {granted.value} token cannot call {role.value} methods")
        return _principal(digest)
