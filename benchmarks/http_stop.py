"""POST /stop/execution of single-plan stops on loopback at 32 concurrent clients.

The server (engine + Starlette under uvicorn) runs in a child process, one
RUNNING test a plan; an asyncio httpx client runs 32 workers.

Run: ``python benchmarks/http_stop.py --requests 3000 --json``
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

import httpx
from _servers import USER, ServerProcess


async def run(port: int, plans: list[int], clients: int) -> dict[str, Any]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for plan in plans:
        queue.put_nowait(plan)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {USER}"}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, headers=headers, timeout=30
    ) as client:
        await client.get("/healthz")

        async def worker() -> None:
            while not queue.empty():
                plan = queue.get_nowait()
                t0 = time.perf_counter()
                r = await client.post("/stop/execution", json={"plans": [plan]})
                latencies.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    server = ServerProcess("http", args.requests)
    try:
        result = asyncio.run(run(server.port, list(range(1, args.requests + 1)), args.clients))
    finally:
        server.close()
    result["targets"] = {"requests_per_s": 1500, "p99_ms": 20}
    result["target_met"] = result["requests_per_s"] >= 1500 and result["p99_ms"] <= 20
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
