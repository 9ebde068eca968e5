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

    if kind == "grpc-floor":
        _floor_child(tests, conn)
        return
    engine = Engine(MemoryStore(keep_log=False))
    auth = TokenAuth([USER], [AGENT])
    ids = _prepare(engine, tests, plans=kind.startswith("http"))
    if kind in ("grpc", "grpc-bare", "grpc-sync"):
        _grpc_child(kind, engine, auth, ids, conn)
        return
    from loadtest_core.http import create_app

    app = create_app(engine, auth)
    if kind in ("http-hypercorn", "http-granian"):
        _asyncio_http_child(kind, app, ids, conn)
        return
    import uvicorn

    if kind == "http":  # serve's: uvicorn with the hardened httptools protocol and its limits
        from loadtest_core.http import HttpLimits, uvicorn_config

        config = uvicorn_config(app, host="127.0.0.1", port=0, limits=HttpLimits())
    else:  # "http-uvicorn": uvicorn as serve ran it before the limits (httptools, no limits)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="error", lifespan="off", access_log=False
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
    conn.send(None)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _asyncio_http_child(kind: str, app: Any, ids: list[str], conn: Connection) -> None:
    """Hypercorn or granian (embedded) on the child's event loop, for the side-by-side table.

    Neither is a dependency: ``pip install hypercorn granian`` to measure them.
    """
    import asyncio
    import logging

    logging.disable(logging.WARNING)
    port = _free_port()

    async def main() -> None:
        stop = asyncio.Event()
        if kind == "http-hypercorn":
            from hypercorn.asyncio import serve
            from hypercorn.config import Config

            config = Config()
            config.bind = [f"127.0.0.1:{port}"]
            config.accesslog = None
            task = asyncio.ensure_future(serve(app, config, shutdown_trigger=stop.wait))
        else:
            from granian.constants import Interfaces
            from granian.server.embed import Server

            server = Server(app, address="127.0.0.1", port=port, interface=Interfaces.ASGINL)
            task = asyncio.ensure_future(server.serve())
        for _ in range(500):  # until it accepts connections
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.01)
        conn.send((port, ids))
        while not conn.poll():
            await asyncio.sleep(0.1)
        conn.recv()
        if kind == "http-hypercorn":
            stop.set()
        else:
            server.stop()  # type: ignore[no-untyped-call]
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    conn.send(None)


def _grpc_child(kind: str, engine: Any, auth: Any, ids: list[str], conn: Connection) -> None:
    """``serve``'s aio server with its log and metrics ("grpc"), the same without metrics
    and status lines ("grpc-bare": the server before them), or the threaded one ("grpc-sync").
    """
    import asyncio
    import tempfile

    from loadtest_core.server._serve import DRAIN_EVERY, aio_server, log_to, observe

    with tempfile.TemporaryFile() as sink:
        handler = log_to(sink.fileno())
        if kind == "grpc-sync":
            from concurrent import futures

            import grpc

            from loadtest_core.grpc import add_servicers

            server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
            add_servicers(server, engine, auth, rpc_log=handler.write_line)
            port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            conn.send((port, ids))
            conn.recv()
            server.stop(None)
        else:

            async def main() -> None:
                observer = observe(engine, handler) if kind == "grpc" else None
                server = aio_server(engine, auth, handler, observer=observer)
                port = server.add_insecure_port("127.0.0.1:0")
                await server.start()
                conn.send((port, ids))
                while not conn.poll():
                    await asyncio.sleep(DRAIN_EVERY)
                    handler.drain()
                conn.recv()
                await server.stop(None)

            asyncio.run(main())
        handler.drain()
        conn.send(_count_lines(sink))


def _floor_child(tests: int, conn: Connection) -> None:
    """The floor: a ``grpc.aio`` server answering Stop with constant bytes.

    No auth, no parsing, no engine, no log: what Python gRPC alone costs a
    Stop round trip on this machine, measured beside ``serve``'s server.
    """
    import asyncio

    import grpc
    from yandex.cloud.operation import operation_pb2

    reply = operation_pb2.Operation(
        id="op-floor", description="Stop test", created_by="token:floor", done=False
    ).SerializeToString()

    async def stop(request: bytes, context: Any) -> bytes:
        return reply

    handler = grpc.method_handlers_generic_handler(
        "yandex.cloud.loadtesting.api.v1.TestService",
        {"Stop": grpc.unary_unary_rpc_method_handler(stop)},
    )

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        conn.send((port, [f"floor-{i:08d}" for i in range(tests)]))
        while not conn.poll():
            await asyncio.sleep(0.2)
        conn.recv()
        await server.stop(None)

    asyncio.run(main())
    conn.send({"rpc": 0, "status": 0})


def _count_lines(sink: Any) -> dict[str, int]:
    """RPC lines and status-change lines the server wrote."""
    sink.seek(0)
    counts = {"rpc": 0, "status": 0}
    for line in sink:
        if line.startswith(b'{"rpc"'):
            counts["rpc"] += 1
        elif line.startswith(b'{"event": "status"'):
            counts["status"] += 1
    return counts


class ServerProcess:
    def __init__(self, kind: str, tests: int) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(kind, tests, child), daemon=True)
        self._proc.start()
        self.port, self.ids = self._conn.recv()

    def close(self) -> Any:
        """Stop the server; a gRPC server answers with the number of RPC log lines it wrote."""
        self._conn.send("stop")
        reply = self._conn.recv() if self._conn.poll(10) else None
        self._proc.join(10)
        return reply
