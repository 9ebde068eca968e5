"""The status page over HTTP against a real serve: sign-in, CSRF, filters, history, Stop."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from loadtest_core._auth import principal_of
from loadtest_core.client import channel
from tests.client.conftest import Claim, World
from tests.serving import AGENT, USER, serving


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with serving(tmp_path_factory.mktemp("page"), "--lost-after", "600") as served:
        user, agent = channel(served.grpc, USER), channel(served.grpc, AGENT)
        try:
            yield World(served, user, agent)
        finally:
            user.close()
            agent.close()


@pytest.fixture
def base(world: World) -> str:
    return f"http://{world.served.http}"


@contextmanager
def _signed_in(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as client:
        reply = client.post("/ui/login", data={"token": USER, "next": "/ui/"})
        assert reply.status_code == 303
        yield client


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match is not None
    return match.group(1)


def test_the_page_asks_for_the_token_and_sets_a_strict_cookie(base: str) -> None:
    """Without a session the page sends to the sign-in form; a user token sets the cookie."""
    with httpx.Client(base_url=base, timeout=10) as client:
        first = client.get("/ui/?status=RUNNING")
        assert first.status_code == 303
        assert first.headers["location"] == "/ui/login?next=%2Fui%2F%3Fstatus%3DRUNNING"
        form = client.get(first.headers["location"])
        assert form.status_code == 200 and 'name="token"' in form.text
        assert 'name="next" value="/ui/?status=RUNNING"' in form.text
        wrong = client.post("/ui/login", data={"token": AGENT, "next": "/ui/"})
        assert wrong.status_code == 401 and "not a user token" in wrong.text
        ok = client.post("/ui/login", data={"token": USER, "next": "/ui/?status=RUNNING"})
        assert ok.status_code == 303 and ok.headers["location"] == "/ui/?status=RUNNING"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
        assert USER not in cookie
        assert client.get("/ui/").status_code == 200


def test_a_bearer_header_works_without_a_cookie(base: str) -> None:
    """Scripts can read the page with Authorization: Bearer; a wrong one is sent to sign in."""
    assert httpx.get(f"{base}/ui/", headers={"authorization": f"Bearer {USER}"}).status_code == 200
    assert httpx.get(f"{base}/ui/", headers={"authorization": "Bearer x"}).status_code == 303


def test_sign_in_never_redirects_off_the_page(base: str) -> None:
    """A next= pointing elsewhere is replaced by /ui/."""
    for target in ("https://evil.example/", "//evil.example/ui/", "/metrics"):
        reply = httpx.post(f"{base}/ui/login", data={"token": USER, "next": target})
        assert reply.headers["location"] == "/ui/"


def test_security_headers(base: str) -> None:
    """Pages forbid framing and inline script, and are not cached."""
    reply = httpx.get(f"{base}/ui/", headers={"authorization": f"Bearer {USER}"})
    assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
    assert "script-src 'self'" in reply.headers["content-security-policy"]
    assert reply.headers["x-frame-options"] == "DENY"
    assert reply.headers["cache-control"] == "no-store"
    assert "<script>" not in reply.text and "style=" not in reply.text


def test_list_filters_by_status_and_tag(world: World, base: str) -> None:
    """The table lists tests with status, agent and age; filters narrow it; chips count."""
    running = world.running("page-running", team="alpha")
    created = world.create(world.register(), "page-created", team="alpha")
    other = world.create(world.register(), "page-other", team="beta")
    with _signed_in(base) as client:
        page = client.get("/ui/", params={"tag": "team=alpha"}).text
        assert running in page and created in page and other not in page
        row = re.search(rf'<tr data-test="{running}">(.*?)</tr>', page, re.S)
        assert row is not None and "s-RUNNING" in row.group(1) and "agent" in row.group(1)
        only = client.get("/ui/", params={"tag": "team=alpha", "status": "CREATED"}).text
        assert created in only and running not in only
        active = client.get("/ui/", params={"status": "active"}).text
        assert running in active and created not in active
        assert 'data-status="RUNNING"' in page
        bad = client.get("/ui/", params={"tag": "nokey"}).text
        assert "a tag filter is KEY=VALUE" in bad


def test_partial_refresh_returns_the_live_part(world: World, base: str) -> None:
    """X-Partial answers just the table; without a session it is a bare 401."""
    test_id = world.running("partial")
    with _signed_in(base) as client:
        part = client.get("/ui/", headers={"x-partial": "1"})
        assert part.status_code == 200 and test_id in part.text
        assert "<html" not in part.text
    assert httpx.get(f"{base}/ui/", headers={"x-partial": "1"}).status_code == 401


def test_detail_shows_history_and_the_stop_operation(world: World, base: str) -> None:
    """A test's page lists its events newest first, and its stop operation once asked."""
    test_id = world.running("history")
    world.claim(test_id, Claim.PREPARING)  # stale: shown as rejected
    with _signed_in(base) as client:
        page = client.get(f"/ui/tests/{test_id}").text
        assert "History (3 events, newest first)" in page
        events = re.findall(r"<td><code>([a-z_A-Z]+)</code></td>", page)
        assert events == ["claim_PREPARING", "claim_RUNNING", "create"]
        assert 'class="rejected"' in page
        assert "Stop operation" not in page
        stop = client.post(
            f"/ui/tests/{test_id}/stop",
            data={"csrf": _csrf(page), "next": f"/ui/tests/{test_id}"},
        )
        assert stop.status_code == 303
        assert stop.headers["location"] == f"/ui/tests/{test_id}?msg=stopped"
        after = client.get(stop.headers["location"]).text
        assert "Stop requested." in after and "s-STOPPING" in after
        assert "Stop operation" in after and "pending: waiting for the agent" in after
        assert f"<dt>Asked by</dt><dd>{principal_of(USER.encode())}</dd>" in after
        world.claim(test_id, Claim.STOPPED)
        done = client.get(f"/ui/tests/{test_id}").text
        assert "done: STOPPED" in done and 'class="stop-form"' not in done
    assert (
        httpx.get(
            f"{base}/ui/tests/test-nope", headers={"authorization": f"Bearer {USER}"}
        ).status_code
        == 404
    )


def test_stop_needs_the_csrf_token_and_the_same_origin(world: World, base: str) -> None:
    """A POST without the form's token, or from another site, is refused and stops nothing."""
    test_id = world.running("csrf")
    with _signed_in(base) as client:
        token = _csrf(client.get("/ui/").text)
        forged = client.post(f"/ui/tests/{test_id}/stop", data={"csrf": "0" * 32})
        assert forged.status_code == 403
        cross = client.post(
            f"/ui/tests/{test_id}/stop",
            data={"csrf": token},
            headers={"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
        )
        assert cross.status_code == 403
        null = client.post(
            f"/ui/tests/{test_id}/stop", data={"csrf": token}, headers={"origin": "null"}
        )
        assert null.status_code == 403
        page = client.get(f"/ui/tests/{test_id}").text
        assert "s-RUNNING" in page
        proxied = client.post(  # a TLS proxy in front: the browser's origin is https
            f"/ui/tests/{test_id}/stop",
            data={"csrf": token, "next": "/ui/"},
            headers={"origin": f"https://{base.removeprefix('http://')}"},
        )
        assert proxied.headers["location"] == "/ui/?msg=stopped"
        again = client.post(f"/ui/tests/{test_id}/stop", data={"csrf": token, "next": "/ui/"})
        assert again.headers["location"] == "/ui/?msg=stopped"
        twice = client.post(f"/ui/tests/{test_id}/stop", data={"csrf": token, "next": "/ui/"})
        assert twice.headers["location"] == "/ui/?msg=stopped"  # STOPPING: the same operation
        world.claim(test_id, Claim.STOPPED)
        late = client.post(f"/ui/tests/{test_id}/stop", data={"csrf": token, "next": "/ui/"})
        assert late.headers["location"] == "/ui/?msg=not-running"


def test_logout_clears_the_cookie(base: str) -> None:
    """Signing out removes the session: the next page is the form again."""
    with _signed_in(base) as client:
        assert client.get("/ui/").status_code == 200
        out = client.post("/ui/logout")
        assert out.status_code == 303
        assert client.get("/ui/").status_code == 303


def test_an_open_server_needs_no_sign_in(tmp_path: Path) -> None:
    """With --insecure-no-auth the page shows tests at once and has no sign-out."""
    with serving(tmp_path, "--insecure-no-auth", tokens=False) as served:
        page = httpx.get(f"http://{served.http}/ui/", timeout=10)
        assert page.status_code == 200 and "Sign out" not in page.text
        assert (
            httpx.get(f"http://{served.http}/", follow_redirects=False)
            .headers["location"]
            .endswith("/ui/")
        )


def test_over_https_the_cookie_is_secure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With serve --tls-cert the page is HTTPS and its session cookie is marked Secure."""
    from loadtest_core.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["cert"]) == 0
    capsys.readouterr()
    tls = ("--tls-cert", "loadtest-core-cert.pem", "--tls-key", "loadtest-core-key.pem")
    with serving(tmp_path, *tls) as served:
        port = served.http.rsplit(":", 1)[1] if served.http else ""
        with httpx.Client(
            base_url=f"https://localhost:{port}",
            verify=ssl.create_default_context(cafile="loadtest-core-cert.pem"),
            timeout=10,
        ) as client:
            reply = client.post("/ui/login", data={"token": USER, "next": "/ui/"})
            assert reply.status_code == 303
            assert "Secure" in reply.headers["set-cookie"]
