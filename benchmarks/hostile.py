"""Hostile clients against a real ``serve``: memory, /healthz and legitimate clients meanwhile.

``serve`` runs as a child process over SQLite with its default limits and, by
default, a 1,024-file limit (a small machine's). First legitimate probes run
alone (``unloaded``), then each attack runs for ``--seconds`` while the same
probes keep going:

- ``healthz``: ``GET /healthz`` on a new connection each time;
- ``http_stop``: ``POST /stop/execution`` for a STOPPING plan on one keep-alive
  connection (a retry: reads only);
- ``grpc_stop``: ``TestService.Stop`` of a STOPPING test on one channel.

For each attack: the server's RSS growth (peak over the attack, and after it),
its peak open files, each probe's p99 and its ratio to the unloaded p99
(target at most 10x for the attacks that need no token), probe errors, and
what the attack itself got.

Run: ``python benchmarks/hostile.py --seconds 15 --json``
The attacks are those of ``tests/hostile/attacks.py`` (the test suite runs them briefly).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from yandex.cloud.loadtesting.agent.v1 import job_service_pb2, job_service_pb2_grpc  # noqa: E402
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc  # noqa: E402

from tests.hostile.attacks import (  # noqa: E402
    AGENT,
    HEALTHZ,
    MALFORMED,
    STOP_PATH,
    UNDECODABLE,
    USER,
    Serve,
    answer,
    exchange,
    flood,
    huge_header,
    huge_url,
    percentile,
    raw_call,
    serve,
    slowloris_body,
    slowloris_headers,
    stop_request,
)

USER_MD = (("authorization", f"Bearer {USER}"),)
AUTHENTICATED = {"large_creates"}
AGENT_MD = (("authorization", f"Bearer {AGENT}"),)


def prepare(s: Serve) -> str:
    """One test tagged plan 1, RUNNING then STOPPING: what the probes stop again and again."""
    with grpc.insecure_channel(s.grpc) as channel:
        tests = test_service_pb2_grpc.TestServiceStub(channel)
        request = test_service_pb2.CreateTestRequest()
        request.test_details.tags.add(key="plan_id", value="1")
        request.configurations.add().agent_selector.agent_id = "probe-agent"
        op: Any = tests.Create(request, metadata=USER_MD)
        meta = test_service_pb2.CreateTestMetadata()
        op.metadata.Unpack(meta)
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        jobs.Get(job_service_pb2.GetJobRequest(agent_instance_id="probe-agent"), metadata=AGENT_MD)
        running = job_service_pb2.ClaimJobStatusRequest.RUNNING
        jobs.ClaimStatus(
            job_service_pb2.ClaimJobStatusRequest(job_id=meta.test_id, status=running),
            metadata=AGENT_MD,
        )
        tests.Stop(test_service_pb2.StopTestRequest(test_id=meta.test_id), metadata=USER_MD)
        return str(meta.test_id)


class Probes:
    """Legitimate clients sampling latency until ``stop`` is set."""

    def __init__(self, s: Serve, test_id: str) -> None:
        self.s, self.test_id = s, test_id
        self.times: dict[str, list[float]] = {"healthz": [], "http_stop": [], "grpc_stop": []}
        self.errors: dict[str, int] = dict.fromkeys(self.times, 0)
        self.first_error: dict[str, str] = {}
        self.stop = asyncio.Event()

    async def healthz(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                raw = await exchange(self.s.http_port, HEALTHZ, wait=30)
                ok = answer(raw)[0] == 200
            except (OSError, IndexError, ValueError):
                ok = False
            self._record("healthz", ok, t0)
            await asyncio.sleep(0.02)

    async def http_stop(self) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                if writer is None or reader is None or reader.at_eof():
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.s.http_port)
                writer.write(stop_request([1], keep_alive=True))
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                status, _, headers = answer(head)
                await reader.readexactly(int(headers["content-length"]))
                ok = status == 200
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                ok, writer = False, None
            self._record("http_stop", ok, t0)
            await asyncio.sleep(0.02)
        if writer is not None:
            writer.close()

    async def grpc_stop(self) -> None:
        async with grpc.aio.insecure_channel(self.s.grpc) as channel:
            stub = test_service_pb2_grpc.TestServiceStub(channel)
            request = test_service_pb2.StopTestRequest(test_id=self.test_id)
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    await stub.Stop(request, metadata=USER_MD, timeout=30)  # type: ignore[misc]
                    ok = True
                except grpc.RpcError as exc:
                    ok = False
                    self.first_error.setdefault("grpc_stop", f"{exc.code()}: {exc.details()}")
                self._record("grpc_stop", ok, t0)
                await asyncio.sleep(0.02)

    def _record(self, name: str, ok: bool, t0: float) -> None:
        if ok:
            self.times[name].append(time.perf_counter() - t0)
        else:
            self.errors[name] += 1

    async def run(self, seconds: float, attack: Callable[[], Awaitable[Any]] | None) -> Any:
        tasks = [asyncio.ensure_future(p()) for p in (self.healthz, self.http_stop, self.grpc_stop)]
        outcome = None
        try:
            if attack is None:
                await asyncio.sleep(seconds)
            else:
                outcome = await attack()
        finally:
            self.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        return outcome

    def summary(self, unloaded: dict[str, Any] | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, times in self.times.items():
            p99 = round(percentile(times, 0.99) * 1000, 2) if times else None
            entry: dict[str, Any] = {"n": len(times), "errors": self.errors[name], "p99_ms": p99}
            if name in self.first_error:
                entry["first_error"] = self.first_error[name]
            if unloaded is not None and p99 is not None and unloaded[name]["p99_ms"]:
                entry["p99_vs_unloaded"] = round(p99 / unloaded[name]["p99_ms"], 2)
            out[name] = entry
        return out


class Sampler(threading.Thread):
    """The server's RSS and open files every 50 ms."""

    def __init__(self, s: Serve) -> None:
        super().__init__(daemon=True)
        self.s, self.done = s, threading.Event()
        self.rss: list[int] = []
        self.files: list[int] = []

    def run(self) -> None:
        while not self.done.wait(0.05):
            with contextlib.suppress(OSError, RuntimeError):
                self.rss.append(self.s.rss_kib())
                self.files.append(self.s.open_files())


def attacks(s: Serve, seconds: float, scale: float) -> dict[str, Callable[[], Awaitable[Any]]]:
    port = s.http_port

    def n(base: int) -> int:
        return max(1, int(base * scale))

    async def repeat(send: Callable[[], Awaitable[Any]]) -> dict[str, int]:
        deadline, count = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            await send()
            count += 1
        return {"requests": count}

    async def slow_headers() -> Any:
        got = await slowloris_headers(port, n(800), seconds, 5.0)
        return {"connections": len(got), "answered_408": sum(b" 408 " in g for g in got)}

    async def slow_bodies() -> Any:
        got = await slowloris_body(port, n(200), seconds, 5.0)
        return {"connections": len(got), "answered_408": sum(b" 408 " in g for g in got)}

    async def again(send: Callable[[int, int], tuple[int, bytes]], size: int) -> Any:
        """Repeat a streaming attack until ``seconds`` pass (each is refused within a second)."""
        deadline, sent, statuses = time.monotonic() + seconds, [], set()
        while time.monotonic() < deadline:
            count, raw = await asyncio.to_thread(send, port, size)
            sent.append(count)
            statuses.add(answer(raw)[0] if raw else None)
        return {"attempts": len(sent), "max_bytes_sent": max(sent), "statuses": sorted(statuses)}

    async def big_header() -> Any:
        return await again(huge_header, n(300 << 20))

    async def big_url() -> Any:
        return await again(huge_url, n(100 << 20))

    async def conn_flood() -> Any:
        opened, closed = await flood(port, n(1100), seconds)
        return {"opened": opened, "closed_by_server": closed}

    async def malformed() -> Any:
        cases = list(MALFORMED.values())
        i = iter(range(10**9))
        return await repeat(lambda: exchange(port, cases[next(i) % len(cases)], wait=5))

    async def big_integer() -> Any:
        body = b'{"plans": [' + b"7" * 5000 + b"]}"
        return await repeat(lambda: exchange(port, stop_request(body), wait=5))

    async def undecodable() -> Any:
        def blast() -> dict[str, int]:
            deadline, count = time.monotonic() + seconds, 0
            with grpc.insecure_channel(s.grpc) as channel:
                while time.monotonic() < deadline:
                    raw_call(channel, STOP_PATH, UNDECODABLE[count % len(UNDECODABLE)], None)
                    count += 1
            return {"requests": count}

        return await asyncio.to_thread(blast)

    async def large_creates() -> Any:
        """Authenticated: creates just under the default message limit, back to back."""
        size = int(((4 << 20) - (64 << 10) - 1024) * min(scale, 1.0))

        def blast() -> dict[str, int]:
            deadline, count = time.monotonic() + seconds, 0
            with grpc.insecure_channel(s.grpc) as channel:
                stub = test_service_pb2_grpc.TestServiceStub(channel)
                while time.monotonic() < deadline and count < n(300):
                    request = test_service_pb2.CreateTestRequest()
                    request.test_details.description = "m" * size
                    request.configurations.add().agent_selector.agent_id = f"big-{count}"
                    stub.Create(request, metadata=USER_MD, timeout=60)
                    count += 1
            return {"creates": count, "bytes_each": size}

        return await asyncio.to_thread(blast)

    async def grpc_flood() -> Any:
        host, grpc_port = s.grpc.rsplit(":", 1)
        writers = []
        for _ in range(n(400)):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(host, int(grpc_port))
                writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                writers.append(writer)
        await asyncio.sleep(seconds)
        for writer in writers:
            writer.close()
        return {"opened": len(writers)}

    return {
        "slowloris_headers": slow_headers,
        "slowloris_bodies": slow_bodies,
        "huge_header_300MB": big_header,
        "huge_url_100MB": big_url,
        "connection_flood": conn_flood,
        "malformed_http": malformed,
        "huge_integer": big_integer,
        "undecodable_protobuf_no_token": undecodable,
        "large_creates": large_creates,
        "grpc_connection_flood": grpc_flood,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="each attack's duration")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies attack sizes")
    ap.add_argument("--only", default="", help="comma-separated attack names (default: all)")
    ap.add_argument("--nofile", type=int, default=1024, help="serve's open-file limit")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"seconds": args.seconds, "nofile": args.nofile, "attacks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "hostile.db")
        # the probes' test stays STOPPING: no agent contact must make it LOST meanwhile
        with serve(Path(tmp), "--lost-after", "86400", db=db, nofile=args.nofile) as s:
            test_id = prepare(s)
            probes = Probes(s, test_id)
            asyncio.run(probes.run(min(args.seconds, 10.0), None))
            result["unloaded"] = unloaded = probes.summary(None)
            chosen = attacks(s, args.seconds, args.scale)
            names = [n for n in args.only.split(",") if n] or list(chosen)
            for name in names:
                sampler = Sampler(s)
                rss0, files0 = s.rss_kib(), s.open_files()
                sampler.start()
                probes = Probes(s, test_id)
                outcome = asyncio.run(probes.run(args.seconds, chosen[name]))
                sampler.done.set()
                sampler.join()
                time.sleep(1.0)
                result["attacks"][name] = {
                    "attack": outcome,
                    "rss_growth_peak_mib": round((max(sampler.rss, default=rss0) - rss0) / 1024, 1),
                    "rss_growth_after_mib": round((s.rss_kib() - rss0) / 1024, 1),
                    "open_files_peak": max(sampler.files, default=files0),
                    "probes": probes.summary(unloaded),
                }
            result["traceback_on_stderr"] = "Traceback" in s.log()
    worst = [  # the target is for callers without a token; large creates need one
        p.get("p99_vs_unloaded", 0)
        for name, a in result["attacks"].items()
        if name not in AUTHENTICATED
        for p in a["probes"].values()
    ]
    result["worst_p99_vs_unloaded"] = max(worst, default=0)
    result["target_met"] = (
        result["worst_p99_vs_unloaded"] <= 10 and not result["traceback_on_stderr"]
    )
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
