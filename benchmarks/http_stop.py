"""POST /stop/execution of single-plan stops on loopback at 32 concurrent clients.

The server (engine + Starlette under uvicorn) runs in a child process, one
RUNNING test a plan; 32 keep-alive connections from a bare asyncio client
send requests back to back.

``--servers`` compares HTTP servers side by side, in alternating rounds
(medians): ``http`` is serve's (uvicorn + the hardened httptools protocol),
``http-uvicorn`` uvicorn as serve ran it before its limits, and
``http-hypercorn`` / ``http-granian`` (embedded) the alternatives
(``pip install hypercorn granian``).

Run: ``python benchmarks/http_stop.py --requests 3000 --json``
Side by side: ``python benchmarks/http_stop.py --requests 3000 --rounds 3 \
--servers http,http-uvicorn,http-hypercorn,http-granian --json``
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


def measure(kind: str, requests: int, clients: int) -> dict[str, Any]:
    server = ServerProcess(kind, requests)
    try:
        return asyncio.run(run(server.port, list(range(1, requests + 1)), clients))
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--servers", default="http", help="comma-separated server kinds (see above)")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds per server")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    kinds = args.servers.split(",")
    rounds: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            rounds[kind].append(measure(kind, args.requests, args.clients))
    servers: dict[str, Any] = {}
    for kind, runs in rounds.items():
        servers[kind] = {
            key: statistics.median(r[key] for r in runs)
            for key in ("requests_per_s", "p50_ms", "p99_ms")
        }
        servers[kind]["rounds"] = runs
    result = dict(rounds[kinds[0]][-1])
    result.update({k: servers[kinds[0]][k] for k in ("requests_per_s", "p50_ms", "p99_ms")})
    if len(kinds) > 1:
        base = servers[kinds[0]]
        for kind in kinds[1:]:
            other = servers[kind]
            other["throughput_vs_first"] = round(
                other["requests_per_s"] / base["requests_per_s"], 3
            )
            other["p99_vs_first"] = round(other["p99_ms"] / base["p99_ms"], 3)
        result["servers"] = servers
    result["targets"] = {"requests_per_s": 1500, "p99_ms": 20}
    result["target_met"] = result["requests_per_s"] >= 1500 and result["p99_ms"] <= 20
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
