"""Real servers on 127.0.0.1 for the kit's own tests: gRPC and HTTP over a swappable engine.

One pair of servers serves a whole hypothesis run; each example swaps in a
fresh engine on its own ``ManualClock``, and the target's clock and advance
hooks drive it, so remote checks are exact and fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import uvicorn

from loadtest_core import Engine, ManualClock, MemoryStore, Policies, TokenAuth
from loadtest_core.grpc import add_servicers
from loadtest_core.http import create_app
from loadtest_core.testing._engine_target import counting_ids
from loadtest_core.testing._grpc_target import GrpcTarget

USER = "kit-user-token"
AGENT = "kit-agent-token"


class EngineSwitch:
    """Stands for the current engine: the servers keep it, examples swap what it points to."""

    def __init__(self, engine: Engine) -> None:
        self.current = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)


def new_engine(policies: Policies | None = None) -> Engine:
    return Engine(
        MemoryStore(),
        clock=ManualClock(1_700_000_000.0),
        policies=policies or Policies(lost_after=30.0),
        ids=counting_ids(),
    )


@dataclass
class Servers:
    switch: EngineSwitch
    grpc_address: str
    http_address: str | None
    channel: grpc.Channel

    def target(self, engine: Engine | None = None) -> GrpcTarget:
        """A target over a fresh engine (or ``engine``), its clock driven by the kit."""
        engine = new_engine() if engine is None else engine
        self.switch.current = engine
        clock = engine.clock
        assert isinstance(clock, ManualClock)

        def advance(seconds: float) -> None:
            clock.advance(seconds)
            engine.tick()

        p = engine.policies
        return GrpcTarget(
            self.grpc_address,
            user_token=USER,
            agent_token=AGENT,
            http=self.http_address,
            lost_after=p.lost_after,
            contact_every=p.contact_interval,
            lost_expiry=p.lost_expiry,
            deletion_delay=p.deletion_delay,
            shared=False,
            clock=clock.now,
            advance=advance,
            channel=self.channel,
            oldest_first=True,
            name="in-process gRPC",
        )


def serve_http(app: Any) -> tuple[uvicorn.Server, threading.Thread, int]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    return server, thread, int(server.servers[0].sockets[0].getsockname()[1])


@contextlib.contextmanager
def servers(
    *,
    http: bool = True,
    app: Callable[[Any, TokenAuth], Any] | None = None,
    engine: Engine | None = None,
    tick_every: float | None = None,
) -> Iterator[Servers]:
    """A gRPC server and (with ``http``) a uvicorn server on 127.0.0.1 over one EngineSwitch.

    ``app`` builds the HTTP application from the switch and the auth (default:
    ``create_app``): broken-target tests pass their own. ``tick_every`` runs a
    ticker thread, as ``serve`` does, for an engine on a real clock.
    """
    switch = EngineSwitch(new_engine() if engine is None else engine)
    stop_ticking = threading.Event()
    if tick_every is not None:

        def tick() -> None:
            while not stop_ticking.wait(tick_every):
                switch.current.tick()

        threading.Thread(target=tick, name="kit-ticker", daemon=True).start()
    auth = TokenAuth([USER], [AGENT])
    served: Any = switch
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    add_servicers(server, served, auth, rpc_log=lambda line: None)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    web = None
    try:
        http_address = None
        if http:
            web = serve_http((app or create_app)(served, auth))
            http_address = f"127.0.0.1:{web[2]}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Servers(switch, f"127.0.0.1:{port}", http_address, channel)
    finally:
        stop_ticking.set()
        if web is not None:
            web[0].should_exit = True
            web[1].join(10)
        server.stop(None)


@contextlib.contextmanager
def serve_process(
    *, lost_after: float = 1.0, db: str = ":memory:", http: bool = True
) -> Iterator[tuple[str, str | None]]:
    """``loadtest-core serve`` as a real process on free ports; yields (gRPC, HTTP) addresses."""
    args = [
        sys.executable,
        "-m",
        "loadtest_core.cli",
        "serve",
        "--db",
        db,
        "--grpc",
        "127.0.0.1:0",
        "--user-token",
        USER,
        "--agent-token",
        AGENT,
        "--lost-after",
        str(lost_after),
    ]
    args += ["--http", "127.0.0.1:0"] if http else ["--no-http"]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        seen: dict[str, str | None] = {}
        deadline = time.monotonic() + 30
        while "grpc" not in seen or (http and "http" not in seen):
            assert time.monotonic() < deadline, "serve did not start"
            line = proc.stdout.readline()
            assert line, "serve exited early"
            event = json.loads(line)
            if event["event"] == "grpc_listening":
                seen["grpc"] = event["address"]
            if event["event"] == "http_listening":
                seen["http"] = event["address"]
        grpc_address = seen["grpc"]
        assert grpc_address is not None
        yield grpc_address, seen.get("http")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
