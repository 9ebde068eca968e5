"""TestService.Stop round trips on loopback at 1 and 32 concurrent clients.

The server runs in a child process: ``serve``'s ``grpc.aio`` server with its
batched one-JSON-line-per-RPC log (``--server sync``: the old
``grpc.server`` with 32 threads), over a MemoryStore where every test is
RUNNING. The clients are asyncio tasks in this process, each with its own
channel and the generated stub, in a closed loop: one Stop of a distinct test,
wait for the reply (a pending Operation), then the next. Latency is measured
per call. Levels alternate for ``--rounds`` rounds, since this machine's speed
drifts; each figure is the median over rounds.

Run: ``python benchmarks/grpc_stop.py --json``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
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
            await channel.close()
    latencies.sort()
    return {
        "stops": len(latencies),
        "stops_per_s": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
    }


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
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    levels = (1, 32)
    total = args.stops * args.rounds * len(levels)
    server = ServerProcess("grpc" if args.server == "aio" else "grpc-sync", total)
    ids = iter(server.ids)
    rounds: dict[int, list[dict[str, float]]] = {n: [] for n in levels}
    try:
        for _ in range(args.rounds):
            for n in levels:
                batch = [next(ids) for _ in range(args.stops)]
                rounds[n].append(asyncio.run(_round(server.port, batch, n)))
    finally:
        logged = server.close()
    one, many = _median(rounds[1], 1), _median(rounds[32], 32)
    result = {
        "server": args.server,
        "c1": one,
        "c32": many,
        "rpc_log_lines": logged,
        "target_p99_ms_at_32": TARGET_P99_MS,
        "target_met": many["p99_ms"] <= TARGET_P99_MS,
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
