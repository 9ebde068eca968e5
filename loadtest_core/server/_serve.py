"""The control plane process: one engine, a ``grpc.aio`` server, optionally HTTP, a ticker.

The gRPC server is the asyncio one: its throughput matches ``grpc.server``
with a thread pool on the loopback benchmark, with fewer and smaller latency
spikes (docs/performance.md). Calls run inline on the event loop over a
MemoryStore and on the loop's worker threads over SQLite or PostgreSQL, whose
calls block. ``--db`` picks the store: ``:memory:``, a ``postgresql://`` (or
``postgres://``) DSN, or else a SQLite file; psycopg is imported only for a DSN.

Both ports are bound before either is announced, and never shared
(``grpc.so_reuseport`` off): a port in use ends ``serve`` with one line and
exit code 2 before anything listens. gRPC also serves the standard health
service and server reflection; HTTP the status page and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import socket
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from loadtest_core import (
    Engine,
    MemoryStore,
    Policies,
    SqliteStore,
    StoreError,
    StoreUnavailable,
    TokenAuth,
    __version__,
)
from loadtest_core._store import Store
from loadtest_core.grpc import GrpcLimits, add_aio_servicers
from loadtest_core.grpc._servicers import service_names
from loadtest_core.server._metrics import Observer
from loadtest_core.server._ports import AddressError, bind, describe, grpc_target, probe
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
    ready_keeps_jobs: bool = False
    upload_limit: int | None = None


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def _say(text: str) -> None:
    """A line for the person who started ``serve`` (stderr; stdout stays JSON)."""
    print(text, file=sys.stderr, flush=True)


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


GRPC_OPTIONS = (("grpc.so_reuseport", 0),)
"""No port sharing: a second server on a taken port must fail, not split its connections."""


def observe(engine: Engine, handler: BatchedLogHandler | None) -> Observer:
    """Metrics for ``engine`` and, with ``handler``, a JSON line per status change."""
    observer = Observer(engine, None if handler is None else handler.write_line)
    observer.attach()
    return observer


def aio_server(
    engine: Engine,
    auth: TokenAuth,
    handler: BatchedLogHandler | None = None,
    limits: GrpcLimits | None = None,
    observer: Observer | None = None,
) -> grpc.aio.Server:
    """The gRPC server of ``serve`` (also what benchmarks/grpc_stop.py measures).

    With ``handler``, each RPC's line goes straight into its buffer; ``limits``
    become the server's options, enforced by the gRPC core; with ``observer``,
    each RPC is counted and timed.
    """
    limits = GrpcLimits() if limits is None else limits
    server = grpc.aio.server(
        options=[*limits.options(), *GRPC_OPTIONS], maximum_concurrent_rpcs=limits.max_rpcs
    )
    sink = None if handler is None else handler.write_line
    on_rpc = None if observer is None else observer.on_rpc
    add_aio_servicers(server, engine, auth, rpc_log=sink, limits=limits, on_rpc=on_rpc)
    return server


def add_health_and_reflection(server: grpc.aio.Server) -> Any:
    """The standard health service (SERVING for every service) and server reflection."""
    checker = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    names = service_names()
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    return checker, names


async def _set_health(checker: Any, names: list[str], serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *names):
        await checker.set(name, status)


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(db: str) -> Store:
    """The store ``--db`` names; ``StoreUnavailable`` says in one line why it cannot be used."""
    if db == ":memory:":
        return MemoryStore()
    if db.startswith(POSTGRES_SCHEMES):
        return _open_postgres(db)
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


def _open_postgres(dsn: str) -> Store:
    try:
        from loadtest_core._postgres import PostgresStore
    except ImportError as exc:
        raise StoreUnavailable(
            "a postgresql:// --db needs the postgres extra: "
            f"pip install 'loadtest-core[postgres]' ({exc})"
        ) from None
    try:
        return PostgresStore(dsn)
    except StoreError as exc:
        raise StoreUnavailable(
            f"--db {db_shown(dsn)}: cannot open the PostgreSQL store ({exc.message})"
        ) from None


def db_shown(db: str) -> str:
    """``--db`` as it may be printed: a DSN without its password."""
    if not db.startswith(POSTGRES_SCHEMES):
        return db
    parts = urllib.parse.urlsplit(db)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = urllib.parse.urlencode(
        [
            (k, "***" if k == "password" else v)
            for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        ]
    )
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def _http_server(app: Any, sock: socket.socket, limits: Any, tls: TlsFiles | None) -> Any:
    """Run ``app`` with the hardened uvicorn on the already bound ``sock``: (server, thread)."""
    import uvicorn

    from loadtest_core.http import uvicorn_config

    host, port = sock.getsockname()[:2]
    config = uvicorn_config(
        app,
        host=host,
        port=port,
        limits=limits,
        ssl_certfile=None if tls is None else tls.cert_path,
        ssl_keyfile=None if tls is None else tls.key_path,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="loadtest-core-http", daemon=True
    )
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.02)
    if not server.started:
        raise OSError(f"cannot serve HTTP on {sock.getsockname()}")
    return server, thread


def _error(message: str) -> int:
    _say(f"loadtest-core serve: error: {message}")
    _emit("error", message=message)
    return 2


def policies_of(options: Options) -> Policies:
    """The engine's policies from serve's flags (the rest keep their defaults)."""
    extra: dict[str, Any] = {}
    if options.upload_limit is not None:
        extra["upload_limit"] = options.upload_limit
    return Policies(
        lost_after=options.lost_after,
        lost_expiry=options.lost_expiry,
        ready_keeps_jobs=options.ready_keeps_jobs,
        **extra,
    )


def serve(options: Options) -> int:
    http_sock = None
    if options.http is not None:
        try:
            import uvicorn  # noqa: F401

            from loadtest_core.server._web import web_app  # noqa: F401
        except ImportError as exc:
            _emit("http_disabled", reason=f"the http extra is not installed ({exc})")
        else:
            try:
                http_sock = bind(*options.http, "--http")
            except AddressError as exc:
                return _error(str(exc))
    try:
        store = open_store(options.db)
    except StoreUnavailable as exc:
        if http_sock is not None:
            http_sock.close()
        print(f"loadtest-core serve: {exc.message}", file=sys.stderr)
        return 2
    handler = log_to(sys.stderr.fileno())
    auth = TokenAuth(options.user_tokens, options.agent_tokens, insecure=options.insecure)
    engine = Engine(store, policies=policies_of(options))
    try:
        code = asyncio.run(_serve(options, engine, auth, handler, http_sock))
    finally:
        if http_sock is not None:
            http_sock.close()
        store.close()
        handler.drain()
    if code == 0:
        _emit("stopped")
    return code


async def _serve(
    options: Options,
    engine: Engine,
    auth: TokenAuth,
    handler: BatchedLogHandler,
    http_sock: socket.socket | None,
) -> int:
    done = asyncio.Event()  # a signal during startup stops serve as soon as it is up
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, done.set)
    observer = observe(engine, handler)
    server = aio_server(engine, auth, handler, options.grpc_limits, observer)
    checker, names = add_health_and_reflection(server)
    host, port = options.grpc
    try:
        probe(host, port, "--grpc")  # says why, where gRPC would only log a C-core line
    except AddressError as exc:
        return _error(str(exc))
    try:
        target = grpc_target(host, port)
        if options.tls is None:
            bound = server.add_insecure_port(target)
        else:
            creds = grpc.ssl_server_credentials([(options.tls.key, options.tls.cert)])
            bound = server.add_secure_port(target, creds)
    except RuntimeError:
        bound = 0
    if bound == 0:
        return _error(f"--grpc {describe(host, port)}: gRPC cannot listen there")
    await server.start()
    await _set_health(checker, names, serving=True)
    http = None
    if http_sock is not None:  # bound already; started once gRPC has started, as before
        from loadtest_core.http import HttpLimits
        from loadtest_core.server._web import web_app

        edge = HttpLimits(**options.http_limits)
        app = web_app(engine, auth, observer, handler.write_line, max_body=edge.max_body)
        http = _http_server(app, http_sock, edge, options.tls)
    tls = options.tls is not None
    _emit("grpc_listening", address=_shown(host, bound), db=db_shown(options.db), tls=tls)
    where = f"gRPC{' (TLS)' if tls else ''} on {describe(host, bound)}"
    if http is not None:
        http_port = http_sock.getsockname()[1] if http_sock is not None else 0
        assert options.http is not None
        http_host = options.http[0]
        _emit("http_listening", address=_shown(http_host, http_port), tls=tls)
        url = f"{'https' if tls else 'http'}://{_url_host(http_host)}:{http_port}"
        where += f", HTTP on {url}/ (status page {url}/ui/, metrics {url}/metrics)"
    ticker = Ticker(engine, options.lost_after / 4)
    ticker.start()
    _say(
        f"loadtest-core {__version__} serving {where}; data in {db_shown(options.db)}. "
        f"Stop with Ctrl-C or: kill {os.getpid()}"
    )
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), DRAIN_EVERY)
        handler.drain()
    _emit("stopping")
    await _set_health(checker, names, serving=False)
    if http is not None:
        http[0].should_exit = True
        await asyncio.to_thread(http[1].join, options.grace)
    await server.stop(options.grace)
    ticker.stopped.set()
    await asyncio.to_thread(ticker.join)
    return 0


def _shown(host: str, port: int) -> str:
    """The machine-readable address: ``host:port``, ``0.0.0.0:port`` for every interface."""
    if host == "":
        return f"0.0.0.0:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _url_host(host: str) -> str:
    if host == "":
        return "localhost"
    return f"[{host}]" if ":" in host else host
