"""Hostile clients against a real ``loadtest-core serve`` on loopback, each bounded in time.

The test suite runs them briefly; ``benchmarks/hostile.py`` runs them longer
and measures memory, ``/healthz`` and a legitimate client meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USER, AGENT = "hostile-user", "hostile-agent"
STOP_PATH = "/yandex.cloud.loadtesting.api.v1.TestService/Stop"


@dataclass
class Serve:
    """A running ``serve`` process: its addresses, pid and the file its stderr goes to."""

    proc: subprocess.Popen[str]
    grpc: str
    http: str
    stderr: Path

    @property
    def http_port(self) -> int:
        return int(self.http.rsplit(":", 1)[1])

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


@contextlib.contextmanager
def serve(
    tmp: Path, *flags: str, db: str | None = None, nofile: int | None = None
) -> Iterator[Serve]:
    """Start ``serve`` on ephemeral loopback ports; SIGTERM it (then SIGKILL) at the end.

    ``nofile`` caps the process's open files (as a small machine's default 1,024 would).
    """

    stderr = tmp / f"serve-{time.monotonic_ns()}.err"
    with stderr.open("w") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "loadtest_core.cli",
                "serve",
                "--db",
                db if db is not None else ":memory:",
                "--grpc",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--user-token",
                USER,
                "--agent-token",
                AGENT,
                *flags,
            ],
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    if nofile is not None:
        # not preexec_fn: it forces a fork of this process, whose gRPC threads' fork
        # handlers then run in the child before exec (an epoll_wait EBADF abort, seen in CI)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (nofile, nofile))
    try:
        seen: dict[str, str] = {}
        assert proc.stdout is not None
        while "grpc" not in seen or "http" not in seen:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"serve exited early: {stderr.read_text()[-2000:]}")
            event = json.loads(line)
            if event["event"] == "grpc_listening":
                seen["grpc"] = event["address"]
            if event["event"] == "http_listening":
                seen["http"] = event["address"]
        yield Serve(proc, seen["grpc"], seen["http"], stderr)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


# --- raw HTTP ---------------------------------------------------------------------


async def exchange(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it (or ``wait``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        out = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(wait):
                while chunk := await reader.read(65536):
                    out += chunk
        return out
    finally:
        writer.close()


def answer(raw: bytes) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
    """Status, JSON body (None if not JSON) and headers of a raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    try:
        return status, json.loads(body), headers
    except ValueError:
        return status, None, headers


def stop_request(plans: list[int] | bytes, *, token: str = USER, keep_alive: bool = False) -> bytes:
    body = plans if isinstance(plans, bytes) else json.dumps({"plans": plans}).encode()
    connection = "" if keep_alive else "Connection: close\r\n"
    return (
        f"POST /stop/execution HTTP/1.1\r\nHost: loadtest\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{connection}\r\n"
    ).encode() + body


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: loadtest\r\nConnection: close\r\n\r\n"

MALFORMED: dict[str, bytes] = {
    "bad request line": b"BAD\r\n\r\n",
    "not HTTP": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32 + b"\r\n\r\n",
    "NUL in a header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "non-numeric Content-Length": b"POST /stop/execution HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 12a\r\n\r\n",
    "Content-Length with chunked": b"POST /stop/execution HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
    "two Content-Lengths": b"POST /stop/execution HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "bad chunk size": b"POST /stop/execution HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "space before colon": b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",
}


async def slowloris_headers(
    port: int, connections: int, seconds: float, every: float
) -> list[bytes]:
    """Connections that start a request and send one header byte every ``every`` seconds.

    Returns what each connection got back before the server closed it (or ``seconds`` ran out).
    """

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        out = b""
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    async with asyncio.timeout(every):
                        chunk = await reader.read(65536)
                    out += chunk
                    if not chunk:
                        return out
                except TimeoutError:
                    writer.write(b"a")
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
        return out

    return list(await asyncio.gather(*(one() for _ in range(connections))))


async def slowloris_body(port: int, connections: int, seconds: float, every: float) -> list[bytes]:
    """Authorised POSTs declaring a 1,000-byte body and sending a byte every ``every`` seconds."""

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        out = b""
        try:
            writer.write(stop_request(b"x" * 1000)[:-1000])
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    async with asyncio.timeout(every):
                        chunk = await reader.read(65536)
                    out += chunk
                    if not chunk:
                        return out
                except TimeoutError:
                    writer.write(b" ")
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
        return out

    return list(await asyncio.gather(*(one() for _ in range(connections))))


def stream_until_closed(port: int, head: bytes, filler: bytes, limit: int) -> tuple[int, bytes]:
    """Send ``head`` then ``filler`` (up to ``limit`` bytes) while reading, until answered.

    Returns the bytes sent and the server's answer. Reads and writes are
    interleaved (select), as a client must to see an answer sent mid-upload.
    """
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    pending, sent, got = head, 0, b""
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            want_write = [sock] if sent < limit and not got else []
            readable, writable, _ = select.select([sock], want_write, [], 1.0)
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
            if writable:
                n = sock.send(pending)
                sent += n
                pending = pending[n:] or filler
    except OSError:
        pass
    finally:
        sock.close()
    return sent, got


def huge_header(port: int, size: int) -> tuple[int, bytes]:
    """One header value of up to ``size`` bytes, never finished."""
    return stream_until_closed(
        port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ", b"a" * 65536, size
    )


def huge_url(port: int, size: int) -> tuple[int, bytes]:
    """A request line whose URL grows to ``size`` bytes, never finished."""
    return stream_until_closed(port, b"GET /", b"a" * 65536, size)


async def flood(port: int, connections: int, hold: float) -> tuple[int, int]:
    """Open ``connections`` half-sent requests and hold them; (opened, closed by the server)."""
    writers: list[asyncio.StreamWriter] = []
    readers: list[asyncio.StreamReader] = []
    for _ in range(connections):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            break
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        readers.append(reader)
        writers.append(writer)
    await asyncio.sleep(hold)
    closed = 0
    for reader in readers:
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(0.01):
                await reader.read(65536)
        if reader.at_eof():
            closed += 1
    for writer in writers:
        writer.close()
    return len(writers), closed


async def timed_exchange(port: int, data: bytes) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    raw = await exchange(port, data, wait=30)
    return time.perf_counter() - t0, raw


# --- raw gRPC ---------------------------------------------------------------------


def raw_call(channel: Any, path: str, payload: bytes, token: str | None) -> tuple[Any, str]:
    """A unary call with raw bytes; (status code, details)."""
    import grpc

    call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    metadata = () if token is None else (("authorization", f"Bearer {token}"),)
    try:
        call(payload, metadata=metadata, timeout=10)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


UNDECODABLE = [b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x08" + b"\xff" * 11, b"\x12\x05abc"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]
