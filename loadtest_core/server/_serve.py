"""The control plane process: one engine, a ``grpc.aio`` server, optionally HTTP, a ticker.

The gRPC server is the asyncio one: its throughput matches ``grpc.server``
with a thread pool on the loopback benchmark, with fewer and smaller latency
spikes (docs/performance.md). Calls run inline on the event loop over a
MemoryStore and on the loop's worker threads over SQLite, whose commits block.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from loadtest_core import (
    Engine,
    MemoryStore,
    Policies,
    SqliteStore,
    StoreError,
    StoreUnavailable,
    TokenAuth,
)
from loadtest_core._store import Store
from loadtest_core.grpc import GrpcLimits, add_aio_servicers
from loadtest_core.server._tls import TlsFiles

log = logging.getLogger("loadtest_core.server")


@dataclass(frozen=True)
class Options:
    grpc: tuple[str, int]
    http: tuple[str, int] | None
    db: str
    user_tokens: list[str]
    agent_tokens: list[str]
    insecure: bool
    lost_after: float
    lost_expiry: float | None
    grace: float
    tls: TlsFiles | None = None
    grpc_limits: GrpcLimits = field(default_factory=GrpcLimits)
    http_limits: dict[str, Any] = field(default_factory=dict)
    """``HttpLimits`` fields; a dict so that serve runs without the http extra."""


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Ticker(threading.Thread):
    """Fires the engine's deadlines at least four times per ``lost_after``."""

    def __init__(self, engine: Engine, interval: float) -> None:
        super().__init__(name="loadtest-core-ticker", daemon=True)
        self.engine, self.interval = engine, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.engine.tick()
            except Exception:  # a failing store must not kill the ticker
                log.exception("tick failed")


class BatchedLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines to a file descriptor through a 64 KiB buffer, written out by ``drain``.

    A plain StreamHandler on stderr makes one write system call per RPC line;
    ``serve`` drains every ``DRAIN_EVERY`` seconds and at shutdown instead.
    """

    def __init__(self, fd: int) -> None:
        raw = io.FileIO(fd, "w", closefd=False)
        stream = io.TextIOWrapper(
            io.BufferedWriter(raw, 1 << 16), encoding="utf-8", errors="backslashreplace"
        )
        super().__init__(stream)

    def flush(self) -> None:
        """Called after every record by ``emit``: deliberately nothing (see ``drain``)."""

    def write_line(self, line: str) -> None:
        """One line straight into the buffer: the RPC log's path, with no ``LogRecord``."""
        with self.lock:  # type: ignore[union-attr]
            self.stream.write(line + "\n")

    def drain(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self.stream.flush()

    def close(self) -> None:
        self.drain()
        super().close()


DRAIN_EVERY = 0.2


def log_to(fd: int) -> BatchedLogHandler:
    """Send every ``loadtest_core`` log line (one JSON line per RPC) to ``fd``, batched."""
    handler = BatchedLogHandler(fd)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    return handler


def aio_server(
    engine: Engine,
    auth: TokenAuth,
    handler: BatchedLogHandler | None = None,
    limits: GrpcLimits | None = None,
) -> grpc.aio.Server:
    """The gRPC server of ``serve`` (also what benchmarks/grpc_stop.py measures).

    With ``handler``, each RPC's line goes straight into its buffer; ``limits``
    become the server's options, enforced by the gRPC core.
    """
    limits = GrpcLimits() if limits is None else limits
    server = grpc.aio.server(options=limits.options(), maximum_concurrent_rpcs=limits.max_rpcs)
    sink = None if handler is None else handler.write_line
    add_aio_servicers(server, engine, auth, rpc_log=sink, limits=limits)
    return server


def open_store(db: str) -> Store:
    """The store ``--db`` names; ``StoreUnavailable`` says in one line why it cannot be used."""
    if db == ":memory:":
        return MemoryStore()
    path = Path(db)
    parent = path.parent
    if path.is_dir():
        raise StoreUnavailable(f"--db {db}: is a directory, not a database file")
    if not parent.is_dir():
        raise StoreUnavailable(f"--db {db}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreUnavailable(f"--db {db}: the directory {parent} is not writable")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreUnavailable(f"--db {db}: the file is not readable and writable")
    try:
        store = SqliteStore(db)
        store.probe()
    except (StoreError, OSError) as exc:
        reason = str(exc).rsplit(": ", 1)[-1]
        raise StoreUnavailable(f"--db {db}: cannot use it as a database ({reason})") from None
    return store


def _http_server(
    engine: Engine,
    auth: TokenAuth,
    host: str,
    port: int,
    limits: dict[str, Any],
    tls: TlsFiles | None = None,
) -> Any:
    try:
        import uvicorn

        from loadtest_core.http import HttpLimits, create_app, uvicorn_config
    except ImportError as exc:
        _emit("http_disabled", reason=f"the http extra is not installed ({exc})")
        return None
    edge = HttpLimits(**limits)
    app = create_app(engine, auth, max_body=edge.max_body)
    config = uvicorn_config(
        app,
        host=host,
        port=port,
        limits=edge,
        ssl_certfile=None if tls is None else tls.cert_path,
        ssl_keyfile=None if tls is None else tls.key_path,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="loadtest-core-http", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.02)
    if not server.started:
        raise OSError(f"cannot serve HTTP on {host}:{port}")
    bound = server.servers[0].sockets[0].getsockname()
    _emit("http_listening", address=f"{bound[0]}:{bound[1]}", tls=tls is not None)
    return server, thread


def serve(options: Options) -> int:
    try:
        store = open_store(options.db)
    except StoreUnavailable as exc:
        print(f"loadtest-core serve: {exc.message}", file=sys.stderr)
        return 2
    handler = log_to(sys.stderr.fileno())
    auth = TokenAuth(options.user_tokens, options.agent_tokens, insecure=options.insecure)
    engine = Engine(
        store, policies=Policies(lost_after=options.lost_after, lost_expiry=options.lost_expiry)
    )
    try:
        code = asyncio.run(_serve(options, engine, auth, handler))
    finally:
        store.close()
        handler.drain()
    if code == 0:
        _emit("stopped")
    return code


async def _serve(
    options: Options, engine: Engine, auth: TokenAuth, handler: BatchedLogHandler
) -> int:
    server = aio_server(engine, auth, handler, options.grpc_limits)
    host, port = options.grpc
    try:
        if options.tls is None:
            bound = server.add_insecure_port(f"{host}:{port}")
        else:
            creds = grpc.ssl_server_credentials([(options.tls.key, options.tls.cert)])
            bound = server.add_secure_port(f"{host}:{port}", creds)
    except RuntimeError:
        bound = 0
    if bound == 0:
        _emit("error", message=f"cannot bind gRPC on {host}:{port}")
        return 1
    await server.start()
    _emit("grpc_listening", address=f"{host}:{bound}", db=options.db, tls=options.tls is not None)
    http = (
        None
        if options.http is None
        else _http_server(engine, auth, *options.http, options.http_limits, options.tls)
    )
    ticker = Ticker(engine, options.lost_after / 4)
    ticker.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, done.set)
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), DRAIN_EVERY)
        handler.drain()
    _emit("stopping")
    if http is not None:
        http[0].should_exit = True
        await asyncio.to_thread(http[1].join, options.grace)
    await server.stop(options.grace)
    ticker.stopped.set()
    await asyncio.to_thread(ticker.join)
    return 0
