"""The control plane process: one engine, a gRPC server, optionally HTTP, a ticker."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc

from loadtest_core import Engine, MemoryStore, Policies, SqliteStore, TokenAuth
from loadtest_core._store import Store
from loadtest_core.grpc import add_servicers

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


def _http_server(engine: Engine, auth: TokenAuth, host: str, port: int) -> Any:
    try:
        import uvicorn

        from loadtest_core.http import create_app
    except ImportError as exc:
        _emit("http_disabled", reason=f"the http extra is not installed ({exc})")
        return None
    config = uvicorn.Config(
        create_app(engine, auth), host=host, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="loadtest-core-http", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.02)
    if not server.started:
        raise OSError(f"cannot serve HTTP on {host}:{port}")
    bound = server.servers[0].sockets[0].getsockname()
    _emit("http_listening", address=f"{bound[0]}:{bound[1]}")
    return server, thread


def serve(options: Options) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    store: Store = MemoryStore() if options.db == ":memory:" else SqliteStore(options.db)
    auth = TokenAuth(options.user_tokens, options.agent_tokens, insecure=options.insecure)
    engine = Engine(
        store, policies=Policies(lost_after=options.lost_after, lost_expiry=options.lost_expiry)
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    add_servicers(server, engine, auth)
    host, port = options.grpc
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        _emit("error", message=f"cannot bind gRPC on {host}:{port}")
        return 1
    server.start()
    _emit("grpc_listening", address=f"{host}:{bound}", db=options.db)
    http = None if options.http is None else _http_server(engine, auth, *options.http)
    ticker = Ticker(engine, options.lost_after / 4)
    ticker.start()
    done = threading.Event()

    def shutdown(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    done.wait()
    _emit("stopping")
    if http is not None:
        http[0].should_exit = True
        http[1].join(options.grace)
    server.stop(options.grace).wait()
    ticker.stopped.set()
    ticker.join()
    store.close()
    _emit("stopped")
    return 0
