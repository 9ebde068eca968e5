"""Servers for the loopback benchmarks, run in a child process so clients don't share its GIL."""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.connection import Connection
from typing import Any

USER, AGENT = "bench-user", "bench-agent"


def _prepare(engine: Any, tests: int, plans: bool) -> list[str]:
    from loadtest_core import Status

    ids = []
    for i in range(tests):
        details = {"tags": [{"key": "plan_id", "value": str(i + 1)}]} if plans else {}
        test = engine.create(
            {"configurations": [{"agent_selector": {"agent_id": "a"}}], "details": details}
        )
        engine.next_job("a")
        engine.claim(test.id, "a", Status.RUNNING)
        ids.append(test.id)
    return ids


def _child(kind: str, tests: int, conn: Connection) -> None:
    import threading

    from loadtest_core import Engine, MemoryStore, TokenAuth

    engine = Engine(MemoryStore(keep_log=False))
    auth = TokenAuth([USER], [AGENT])
    ids = _prepare(engine, tests, plans=kind == "http")
    if kind == "grpc":
        from concurrent import futures

        import grpc

        from loadtest_core.grpc import add_servicers

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        add_servicers(server, engine, auth)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        conn.send((port, ids))
        conn.recv()
        server.stop(None)
        return
    import uvicorn

    from loadtest_core.http import create_app

    config = uvicorn.Config(
        create_app(engine, auth),
        host="127.0.0.1",
        port=0,
        log_level="error",
        lifespan="off",
        access_log=False,
    )
    userver = uvicorn.Server(config)
    thread = threading.Thread(target=userver.run, daemon=True)
    thread.start()
    while not userver.started:
        threading.Event().wait(0.01)
    conn.send((userver.servers[0].sockets[0].getsockname()[1], ids))
    conn.recv()
    userver.should_exit = True
    thread.join(5)


class ServerProcess:
    def __init__(self, kind: str, tests: int) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(kind, tests, child), daemon=True)
        self._proc.start()
        self.port, self.ids = self._conn.recv()

    def close(self) -> None:
        self._conn.send("stop")
        self._proc.join(10)
