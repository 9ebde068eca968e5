"""POST /stop/execution of single-plan stops on loopback at 32 concurrent clients.

The server (engine + Starlette under uvicorn) runs in a child process, one
RUNNING test a plan; 32 keep-alive connections from a bare asyncio client
send requests back to back.

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

from _servers import USER, ServerProcess


async def _connection(port: int, plans: asyncio.Queue[int], latencies: list[float]) -> None:
    """One keep-alive HTTP/1.1 connection sending requests back to back (no client library
    overhead: the client must not be the bottleneck being measured)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while not plans.empty():
            plan = plans.get_nowait()
            body = json.dumps({"plans": [plan]}).encode()
            request = (
                f"POST /stop/execution HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {USER}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            payload = await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200") or b'"errors":null' not in payload:
                raise RuntimeError(f"unexpected answer: {head[:40]!r} {payload[:80]!r}")
    finally:
        writer.close()


async def run(port: int, plans: list[int], clients: int) -> dict[str, Any]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for plan in plans:
        queue.put_nowait(plan)
    t0 = time.perf_counter()
    await asyncio.gather(*(_connection(port, queue, latencies) for _ in range(clients)))
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
