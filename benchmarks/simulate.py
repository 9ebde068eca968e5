"""Simulation throughput: events/s on one core, a large run's time and peak RSS, and the
speed-up of --workers 2 over one worker, side by side in one invocation.

Run: ``python benchmarks/simulate.py --tests 50000 --big 1000000 --json``
(``--big 0`` skips the large run; ``--curve 2000,20000,200000`` adds the cost per
test of one unsharded engine at those sizes). Every run uses the default scenario
(agents = tests / 10, the default shard_size, ticker at lost_after / 4) without
continuous invariant checks; ``--check`` turns them on. ``--engine-only N`` records
every engine call of one N-test shard and replays them on a fresh engine: the
events/s of the engine alone, the ceiling for any simulator around it.
``--floor N`` runs the floor: N tests through their seven stage claims with
nothing but what any simulated event costs at least (a heap pop and push, one
random draw, a ``Claim``, a state copy, the core's ``apply``, one log line
hashed in batches) and no engine, store, agents or liveness.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any


def _child(tests: int, workers: int, check: bool, shard_size: int | None = None) -> dict[str, Any]:
    """Run one simulation in a fresh process; report its wall time and peak RSS.

    ``shard_size`` None keeps the scenario's default.
    """
    size = "" if shard_size is None else f", shard_size={shard_size}"
    code = (
        "import json, resource, sys, time\n"
        "from loadtest_core.sim import Scenario, simulate\n"
        f"sc = Scenario(tests={tests}, agents=max(1, {tests} // 10), seed=1{size})\n"
        "t0 = time.perf_counter()\n"
        f"m = simulate(sc, workers={workers}, check={check})\n"
        "wall = time.perf_counter() - t0\n"
        "rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,\n"
        "          resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print(json.dumps({'tests': m.tests, 'events': m.events, 'wall_s': wall,\n"
        "                  'peak_rss_mib': rss / 1024, 'stuck': m.stuck,\n"
        "                  'violations': m.invariant_violations,\n"
        "                  'event_log_sha256': m.event_log_sha256}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    result["events_per_s"] = round(result["events"] / result["wall_s"])
    result["us_per_test"] = round(result["wall_s"] / tests * 1e6, 1)
    return result


def engine_only(tests: int) -> dict[str, Any]:
    """Events/s of the simulated run, and of the engine replaying its calls without it."""
    import contextlib
    import itertools

    from loadtest_core import Engine, LoadtestError, ManualClock, MemoryStore, Policies
    from loadtest_core.sim import Scenario, Simulator
    from loadtest_core.sim._sim import BASE

    sc = Scenario(tests=tests, agents=max(1, tests // 10), seed=1, shard_size=tests)
    sim = Simulator(sc, check=False)
    calls: list[tuple[float, str, tuple[Any, ...], dict[str, Any]]] = []
    names = ("create_id", "next_job", "claim", "signal", "agent_heartbeat")
    for name in (*names, "report_imbalance", "stop", "tick"):
        real = getattr(sim.engine, name)

        def recording(*a: Any, _real: Any = real, _name: str = name, **k: Any) -> Any:
            calls.append((sim.clock.now(), _name, a, k))
            return _real(*a, **k)

        setattr(sim.engine, name, recording)
    t0 = time.perf_counter()
    metrics = sim.run()
    simulated = time.perf_counter() - t0
    numbers = itertools.count(1)
    logged = [0]

    def count(_: Any) -> None:
        logged[0] += 1

    clock = ManualClock(BASE)
    engine = Engine(
        MemoryStore(keep_log=False, on_log=count),
        clock=clock,
        policies=Policies(lost_after=sc.lost_after),
        ids=lambda kind: f"{kind}-s0-{next(numbers):08d}",
    )
    t0 = time.perf_counter()
    for at, name, a, k in calls:
        if at > clock.now():
            clock.set(at)
        with contextlib.suppress(LoadtestError):  # a refused user stop, as in the simulation
            getattr(engine, name)(*a, **k)
    alone = time.perf_counter() - t0
    assert logged[0] == metrics.events
    return {
        "tests": tests,
        "events": metrics.events,
        "engine_calls": len(calls),
        "simulated_events_per_s": round(metrics.events / simulated),
        "engine_alone_events_per_s": round(metrics.events / alone),
        "engine_share_of_time": round(alone / simulated, 2),
    }


def floor(tests: int, repeat: int = 3) -> dict[str, Any]:
    """The events/s of a simulated event with no engine around the core (best of ``repeat``)."""
    import hashlib
    import heapq
    import random

    from loadtest_core import Claim, Status, TestState, apply
    from loadtest_core._status import EXECUTION

    stages = [*EXECUTION, Status.DONE]
    best = 0.0
    for _ in range(repeat):
        rng = random.Random(1)
        states = {f"test-{i:08d}": TestState(f"test-{i:08d}", 0.0) for i in range(tests)}
        heap = [(rng.random(), i, test_id, 0) for i, test_id in enumerate(states)]
        heapq.heapify(heap)
        digest, lines, events = hashlib.sha256(), [], 0
        t0 = time.perf_counter()
        while heap:
            at, key, test_id, stage = heapq.heappop(heap)
            work = states[test_id].copy()
            outcome = apply(work, Claim("agent-1", stages[stage]), at)
            states[test_id] = work
            events += 1
            lines.append(f"{events}|{test_id}|{at!r}|claim|{outcome.to}|{work.version}\n")
            if len(lines) >= 4096:
                digest.update("".join(lines).encode())
                lines.clear()
            if stage + 1 < len(stages):
                heapq.heappush(heap, (at + rng.random(), key, test_id, stage + 1))
        best = max(best, events / (time.perf_counter() - t0))
    return {"tests": tests, "events": tests * len(stages), "events_per_s": round(best)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=100_000, help="tests for the throughput runs")
    ap.add_argument("--big", type=int, default=1_000_000, help="tests for the large run (0: skip)")
    ap.add_argument("--curve", default="", help="comma-separated sizes of one unsharded engine")
    ap.add_argument("--check", action="store_true", help="continuous invariant checks on")
    ap.add_argument("--engine-only", type=int, default=0, help="tests of the replayed shard")
    ap.add_argument("--floor", type=int, default=0, help="tests of the engine-less floor")
    ap.add_argument(
        "--shard-sizes", default="", help="comma-separated shard sizes for the --tests run"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    one = _child(args.tests, 1, args.check)
    two = _child(args.tests, 2, args.check)
    result: dict[str, Any] = {
        "one_worker": one,
        "two_workers": two,
        "workers_2_speedup": round(one["wall_s"] / two["wall_s"], 2),
        "events_per_s_one_core": one["events_per_s"],
        "same_hash_any_workers": one["event_log_sha256"] == two["event_log_sha256"],
        "check": args.check,
    }
    if args.big:
        t0 = time.perf_counter()
        result["big"] = _child(args.big, 2, args.check)
        result["big"]["total_s"] = round(time.perf_counter() - t0, 1)
    if args.curve:
        sizes = [int(n) for n in args.curve.split(",")]
        result["unsharded_us_per_test"] = {
            n: _child(n, 1, args.check, shard_size=n)["us_per_test"] for n in sizes
        }
    if args.shard_sizes:
        sizes = [int(n) for n in args.shard_sizes.split(",")]
        result["events_per_s_by_shard_size"] = {
            n: _child(args.tests, 1, args.check, shard_size=n)["events_per_s"] for n in sizes
        }
    if args.engine_only:
        result["engine_only"] = engine_only(args.engine_only)
    if args.floor:
        result["floor"] = floor(args.floor)
    result["targets"] = {
        "events_per_s_one_core": 200_000,
        "big_tests": 1_000_000,
        "big_wall_s": 60,
        "big_peak_rss_mib": 2048,
        "workers_2_speedup": 1.7,
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
