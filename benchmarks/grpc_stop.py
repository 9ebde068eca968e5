"""TestService.Stop round trips on loopback at 1 and 32 concurrent clients.

The server (engine + gRPC) runs in a child process with every test RUNNING;
clients are threads with their own channel, each stopping distinct tests.

Run: ``python benchmarks/grpc_stop.py --stops 4000 --json``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc
from _servers import USER, ServerProcess
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc

MD = [("authorization", f"Bearer {USER}")]


def measure(port: int, ids: list[str], clients: int) -> dict[str, Any]:
    chunks = [ids[i::clients] for i in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def client(n: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = test_service_pb2_grpc.TestServiceStub(channel)
            stub.Stop(test_service_pb2.StopTestRequest(test_id=chunks[n][0]), metadata=MD)
            barrier.wait()
            out = latencies[n]
            for test_id in chunks[n][1:]:
                t0 = time.perf_counter()
                stub.Stop(test_service_pb2.StopTestRequest(test_id=test_id), metadata=MD)
                out.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    flat = sorted(x for part in latencies for x in part)
    return {
        "clients": clients,
        "stops": len(flat),
        "stops_per_s": round(len(flat) / wall),
        "p50_ms": round(statistics.median(flat) * 1000, 3),
        "p99_ms": round(flat[int(0.99 * (len(flat) - 1))] * 1000, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stops", type=int, default=4000, help="stops per concurrency level")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    server = ServerProcess("grpc", 2 * args.stops)
    try:
        one = measure(server.port, server.ids[: args.stops], 1)
        many = measure(server.port, server.ids[args.stops :], 32)
    finally:
        server.close()
    result = {
        "c1": one,
        "c32": many,
        "target_p99_ms_at_32": 5.0,
        "target_met": many["p99_ms"] <= 5.0,
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
