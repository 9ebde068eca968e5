"""Hostile HTTP clients against a real ``serve``: every refusal is the envelope, limits hold."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.attacks import (
    HEALTHZ,
    MALFORMED,
    Serve,
    answer,
    exchange,
    flood,
    huge_header,
    huge_url,
    serve,
    slowloris_body,
    slowloris_headers,
    stop_request,
)

LIMITS = (
    "--http-header-timeout",
    "1",
    "--http-body-timeout",
    "1",
    "--http-keep-alive",
    "1",
    "--http-max-connections",
    "32",
    "--http-max-header-bytes",
    "8192",
    "--http-max-headers",
    "20",
)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    with serve(tmp_path_factory.mktemp("http-edge"), *LIMITS) as s:
        yield s


def refused(raw: bytes, status: int, code: str) -> None:
    got, body, headers = answer(raw)
    assert (got, body) == (status, {"data": None, "errors": [body["errors"][0]]} if body else None)
    assert body is not None and body["errors"][0]["code"] == code and body["errors"][0]["message"]
    assert headers["content-type"] == "application/json"


def healthy(port: int) -> bool:
    status, body, _ = answer(asyncio.run(exchange(port, HEALTHZ)))
    return status == 200 and body == {"status": "ok"}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_http_gets_400_in_the_envelope(edge: Serve, name: str) -> None:
    """Malformed HTTP is answered 400 INVALID_REQUEST in the envelope, never a plain-text page."""
    refused(asyncio.run(exchange(edge.http_port, MALFORMED[name])), 400, "INVALID_REQUEST")


def test_five_thousand_digit_plan_is_400(edge: Serve) -> None:
    """A JSON integer past the interpreter's digit limit is 400 INVALID_REQUEST, not a 500."""
    raw = asyncio.run(exchange(edge.http_port, stop_request(b'{"plans": [' + b"7" * 5000 + b"]}")))
    refused(raw, 400, "INVALID_REQUEST")
    assert "Traceback" not in edge.log()


def test_slowloris_headers_are_cut_at_the_header_timeout(edge: Serve) -> None:
    """Header bytes trickled get 408 at the header timeout; /healthz answers meanwhile."""

    async def attack() -> tuple[list[bytes], float, bool]:
        t0 = time.monotonic()
        task = asyncio.ensure_future(slowloris_headers(edge.http_port, 20, 6.0, 0.2))
        await asyncio.sleep(0.5)
        ok = answer(await exchange(edge.http_port, HEALTHZ))[0] == 200
        answers = await task
        return answers, time.monotonic() - t0, ok

    answers, took, ok = asyncio.run(attack())
    assert ok and took < 4.0
    for raw in answers:
        refused(raw, 408, "REQUEST_TIMEOUT")


def test_slowloris_bodies_are_cut_at_the_body_timeout(edge: Serve) -> None:
    """Authorised requests trickling their body get 408 after the body timeout."""
    t0 = time.monotonic()
    answers = asyncio.run(slowloris_body(edge.http_port, 5, 6.0, 0.2))
    assert time.monotonic() - t0 < 4.0
    for raw in answers:
        refused(raw, 408, "REQUEST_TIMEOUT")


def test_huge_header_is_refused_once_past_the_cap(edge: Serve) -> None:
    """A never-ending header gets 431 and the connection is closed within a few reads of the cap."""
    before = edge.rss_kib()
    sent, raw = huge_header(edge.http_port, 64 << 20)
    refused(raw, 431, "REQUEST_TOO_LARGE")
    assert sent < 16 << 20
    assert edge.rss_kib() - before < 32 << 10
    assert healthy(edge.http_port)


def test_huge_url_is_refused_once_past_the_cap(edge: Serve) -> None:
    """A never-ending URL gets 414 and the connection is closed."""
    sent, raw = huge_url(edge.http_port, 64 << 20)
    refused(raw, 414, "REQUEST_TOO_LARGE")
    assert sent < 16 << 20


def test_too_many_header_fields_is_431(edge: Serve) -> None:
    """A request with more header fields than allowed is 431 in the envelope."""
    request = b"GET /healthz HTTP/1.1\r\n" + b"X-A: 1\r\n" * 30 + b"\r\n"
    refused(asyncio.run(exchange(edge.http_port, request)), 431, "REQUEST_TOO_LARGE")


def test_headers_over_the_byte_cap_in_one_packet_are_431(edge: Serve) -> None:
    """Headers that arrive complete but over the byte cap are 431 too."""
    request = b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    refused(asyncio.run(exchange(edge.http_port, request)), 431, "REQUEST_TOO_LARGE")


def test_connection_flood_evicts_waiting_connections(edge: Serve) -> None:
    """Past the connection cap the oldest half-sent requests are closed and new clients served."""

    async def attack() -> tuple[tuple[int, int], int, int]:
        task = asyncio.ensure_future(flood(edge.http_port, 100, 0.8))
        await asyncio.sleep(0.5)
        status = answer(await exchange(edge.http_port, HEALTHZ))[0]
        files = edge.open_files()
        return await task, status, files

    (opened, closed), status, files = asyncio.run(attack())
    assert opened == 100 and closed >= 100 - 32
    assert status == 200
    assert files < 64 + 32  # the listeners, gRPC and the store, plus at most the cap


def test_unauthenticated_large_body_is_401_and_not_read(edge: Serve) -> None:
    """A tokenless request declaring a large body gets 401 and the connection is closed."""
    head = stop_request(b"x" * 1000, token="nope")[:-1000].replace(
        b"Content-Length: 1000", b"Content-Length: 10000000"
    )
    refused(asyncio.run(exchange(edge.http_port, head, wait=3)), 401, "UNAUTHORIZED")


def test_idle_keep_alive_connection_is_closed(edge: Serve) -> None:
    """A keep-alive connection that sends nothing after its answer is closed after the idle time."""

    async def idle() -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.http_port)
        writer.write(HEALTHZ.replace(b"Connection: close\r\n", b""))
        first = await reader.readuntil(b'"ok"}')
        t0 = time.monotonic()
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return first + rest, time.monotonic() - t0

    raw, took = asyncio.run(idle())
    assert answer(raw)[0] == 200 and 0.5 < took < 3


def test_edge_keeps_serving_after_every_attack(edge: Serve) -> None:
    """After the attacks above, a legitimate stop request is still answered normally."""
    status, body, _ = answer(asyncio.run(exchange(edge.http_port, stop_request([1]))))
    assert status == 200 and body == {
        "data": None,
        "errors": [{"code": "NOT_FOUND", "message": "plan 1 has no tests", "planId": 1}],
    }
    assert "Traceback" not in edge.log()


def test_refusals_are_logged_as_json_lines(edge: Serve, tmp_path: Path) -> None:
    """Each refusal at the edge leaves one JSON line with its status on stderr."""
    asyncio.run(exchange(edge.http_port, MALFORMED["bad request line"]))
    deadline = time.monotonic() + 5
    while '"status": 400' not in edge.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert '{"http": "refused", "status": 400, "code": "INVALID_REQUEST"' in edge.log()
