"""TestService.Stop round trips on loopback at 1 and 32 concurrent clients.

The server runs in a child process: ``serve``'s ``grpc.aio`` server with its
batched one-JSON-line-per-RPC log (``--server sync``: the old
``grpc.server`` with 32 threads), over a MemoryStore where every test is
RUNNING. The clients are asyncio tasks in this process, each with its own
channel and the generated stub, in a closed loop: one Stop of a distinct test,
wait for the reply (a pending Operation), then the next. Latency is measured
per call. Levels alternate for ``--rounds`` rounds, since this machine's speed
drifts; each figure is the median over rounds.

``--bare`` also starts the same server without its metrics and status-change
lines (the server before they existed), interleaved the same way: the
``serve_vs_bare`` ratios say what observability costs a Stop.

``--floor`` also starts a second child, the floor: a ``grpc.aio`` server
that answers Stop with constant bytes (no auth, no engine, no log), and runs
its rounds interleaved with the real server's, so the two are compared in the
same minutes. Whatever the floor cannot reach, no Python servicer can.

``--client h2load`` drives the same servers with nghttp2's ``h2load`` (Debian
package ``nghttp2-client``) instead of Python clients, so the client's own CPU
does not compete with the server's on this 2-vCPU machine: 1 thread, ``-c``
connections of one stream each, per-request times from its ``--log-file``.
h2load sends one body, so every request stops the same test: the first one
moves it to STOPPING, the rest are retries answered with the pending
Operation (the engine reads the test and finds the operation; nothing is
committed). Before the rounds, one Stop through the generated stub checks that
the body and token are right; afterwards every response must have carried a
message (a gRPC error has none).

Run: ``python benchmarks/grpc_stop.py --json``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc
from _servers import USER, ServerProcess
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc

MD = (("authorization", f"Bearer {USER}"),)
TARGET_P99_MS = 5.0


async def _round(port: int, ids: list[str], clients: int) -> dict[str, float]:
    chunks = [ids[i::clients] for i in range(clients)]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(clients)]
    stubs = [test_service_pb2_grpc.TestServiceStub(c) for c in channels]
    latencies: list[float] = []

    async def client(stub: Any, test_ids: list[str]) -> None:
        for test_id in test_ids:
            t0 = time.perf_counter()
            op = await stub.Stop(test_service_pb2.StopTestRequest(test_id=test_id), metadata=MD)
            latencies.append(time.perf_counter() - t0)
            assert not op.done, "a stop of a RUNNING test is a pending operation"

    try:
        # one warm-up stop per client connects its channel
        await asyncio.gather(*(client(s, c[:1]) for s, c in zip(stubs, chunks, strict=True)))
        latencies.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(client(s, c[1:]) for s, c in zip(stubs, chunks, strict=True)))
        wall = time.perf_counter() - t0
    finally:
        for channel in channels:
            await channel.close(None)
    latencies.sort()
    return {
        "stops": len(latencies),
        "stops_per_s": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
    }


def _h2load_round(port: int, test_id: str, stops: int, clients: int) -> dict[str, float]:
    exe = shutil.which("h2load")
    if exe is None:
        raise SystemExit("--client h2load needs h2load (apt-get install nghttp2-client)")
    body = test_service_pb2.StopTestRequest(test_id=test_id).SerializeToString()
    with tempfile.TemporaryDirectory() as tmp:
        data, log = Path(tmp, "body"), Path(tmp, "log")
        data.write_bytes(b"\0" + struct.pack(">I", len(body)) + body)  # one gRPC message
        headers = (
            "content-type: application/grpc",
            "te: trailers",
            f"authorization: Bearer {USER}",
        )
        out = subprocess.run(
            [
                exe,
                *("-n", str(stops), "-c", str(clients), "-m", "1", "-t", "1"),
                *("-d", str(data), "--log-file", str(log)),
                *(arg for header in headers for arg in ("-H", header)),
                f"http://127.0.0.1:{port}/yandex.cloud.loadtesting.api.v1.TestService/Stop",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = [line.split() for line in log.read_text().splitlines()]
    first = min(int(r[0]) for r in rows)
    last = max(int(r[0]) + int(r[2]) for r in rows)
    latencies = sorted(int(r[2]) / 1e6 for r in rows)
    ok = all(r[1] == "200" for r in rows)
    traffic = next(line for line in out.splitlines() if line.startswith("traffic:"))
    data_bytes = int(traffic.rsplit("(", 1)[1].split(")")[0])
    if not ok or len(rows) != stops or data_bytes < stops * 10:
        raise SystemExit(f"h2load: not every Stop answered with a message:\n{out}")
    wall = (last - first) / 1e6
    return {
        "stops": len(latencies),
        "stops_per_s": len(latencies) / wall if wall > 0 else 0.0,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
    }


async def _check_one(port: int, test_id: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub: Any = test_service_pb2_grpc.TestServiceStub(channel)
        op = await stub.Stop(test_service_pb2.StopTestRequest(test_id=test_id), metadata=MD)
        assert not op.done, "a stop of a RUNNING test is a pending operation"


def _median(rounds: list[dict[str, float]], clients: int) -> dict[str, Any]:
    return {
        "clients": clients,
        "stops": int(sum(r["stops"] for r in rounds)),
        "stops_per_s": round(statistics.median(r["stops_per_s"] for r in rounds)),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in rounds), 3),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in rounds), 3),
        "p99_ms_per_round": [round(r["p99_ms"], 2) for r in rounds],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--stops", type=int, default=3000, help="stops per level and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--server", choices=["aio", "sync"], default="aio")
    ap.add_argument("--floor", action="store_true", help="interleave the constant-reply floor")
    ap.add_argument("--bare", action="store_true", help="interleave serve's server without metrics")
    ap.add_argument("--client", choices=["python", "h2load"], default="python")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    levels = (1, 32)
    total = args.stops * args.rounds * len(levels) if args.client == "python" else 1
    servers = {"serve": ServerProcess("grpc" if args.server == "aio" else "grpc-sync", total)}
    if args.bare:
        servers["bare"] = ServerProcess("grpc-bare", total)
    if args.floor:
        servers["floor"] = ServerProcess("grpc-floor", total)
    ids = {name: iter(s.ids) for name, s in servers.items()}
    rounds: dict[tuple[str, int], list[dict[str, float]]] = {
        (name, n): [] for name in servers for n in levels
    }
    logged: dict[str, Any] = {}
    try:
        if args.client == "h2load":
            retried = {name: next(ids[name]) for name in servers}
            for name, server in servers.items():
                asyncio.run(_check_one(server.port, retried[name]))
        for _ in range(args.rounds):
            for name, server in servers.items():
                for n in levels:
                    if args.client == "h2load":
                        one = _h2load_round(server.port, retried[name], args.stops, n)
                    else:
                        batch = [next(ids[name]) for _ in range(args.stops)]
                        one = asyncio.run(_round(server.port, batch, n))
                    rounds[name, n].append(one)
    finally:
        for name, server in servers.items():
            logged[name] = server.close()
    many = _median(rounds["serve", 32], 32)
    result: dict[str, Any] = {
        "server": args.server,
        "client": args.client,
        "c1": _median(rounds["serve", 1], 1),
        "c32": many,
        "rpc_log_lines": logged["serve"]["rpc"],
        "status_log_lines": logged["serve"]["status"],
        "target_p99_ms_at_32": TARGET_P99_MS,
        "target_met": many["p99_ms"] <= TARGET_P99_MS,
    }
    if args.bare:
        bare = {f"c{n}": _median(rounds["bare", n], n) for n in levels}
        result["bare"] = bare
        result["serve_vs_bare"] = {
            f"c{n}": {
                key: round(result[f"c{n}"][key] / bare[f"c{n}"][key], 3)
                for key in ("stops_per_s", "p50_ms", "p99_ms")
            }
            for n in levels
        }
    if args.floor:
        floor = _median(rounds["floor", 32], 32)
        result["floor"] = {
            "c1": _median(rounds["floor", 1], 1),
            "c32": floor,
            "target_met": floor["p99_ms"] <= TARGET_P99_MS,
        }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
