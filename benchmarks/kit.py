"""How fast the invariant kit checks: linearizability histories, state-machine steps, log replay.

* linearizability: clients racing stops, claims, polls and gets on an in-process
  engine (each on its own thread) make a history, which ``check_linearizable``
  then checks per test; calls checked per second for 2, 4 and 8 clients side by
  side, as recorded (linearizable: the search finds an order at once) and with
  the final Get of one test answered NOT_FOUND (not linearizable: the search
  must try every order of that test's calls the call times allow first);
* with ``--serve``, the same over gRPC against a ``loadtest-core serve`` process
  (network latency makes calls overlap far more: a harder search);
* machine: ``LifecycleMachine`` steps per second over an in-process engine;
* replay: ``replay_log`` records per second over an engine's exported log.

Run: ``python benchmarks/kit.py --serve --json``
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from loadtest_core import Engine, ManualClock, MemoryStore, Policies, SystemClock
from loadtest_core.testing import (
    Code,
    EngineTarget,
    GrpcTarget,
    Stats,
    check_linearizable,
    machine_for,
    prepare_race,
    race,
    replay_log,
)


def histories(clients: int, calls: int, tests: int, broken: bool, seed: int) -> dict[str, Any]:
    engine = Engine(MemoryStore(), clock=SystemClock(), policies=Policies(lost_after=3600.0))
    target = EngineTarget(engine)
    model, ids = prepare_race(target, tests=tests)
    history = race([target] * clients, model, ids, calls=calls, seed=seed)
    if broken:  # the last Get answered NOT_FOUND: no order of the calls before it explains that
        i = max(i for i, c in enumerate(history.calls) if c.kind == "get")
        history.calls[i] = dataclasses.replace(history.calls[i], code=Code.NOT_FOUND, value=None)
    return {"history": history, "model": model}


@contextlib.contextmanager
def serve(lost_after: float) -> Iterator[str]:
    """``loadtest-core serve`` on a free port, in memory; yields its gRPC address."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadtest_core.cli",
            "serve",
            *("--db", ":memory:", "--grpc", "127.0.0.1:0", "--no-http"),
            *("--user-token", "bench-user", "--agent-token", "bench-agent"),
            *("--lost-after", str(lost_after)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        while True:
            event = json.loads(proc.stdout.readline())
            if event["event"] == "grpc_listening":
                yield str(event["address"])
                return
    finally:
        proc.terminate()
        proc.wait(20)


def serve_histories(
    address: str, clients: int, calls: int, tests: int, broken: bool, seed: int
) -> dict[str, Any]:
    def target() -> GrpcTarget:
        return GrpcTarget(
            address, user_token="bench-user", agent_token="bench-agent", lost_after=3600.0
        )

    setup = target()
    model, ids = prepare_race(setup, tests=tests)
    history = race([target() for _ in range(clients)], model, ids, calls=calls, seed=seed)
    if broken:
        i = max(i for i, c in enumerate(history.calls) if c.kind == "get")
        history.calls[i] = dataclasses.replace(history.calls[i], code=Code.NOT_FOUND, value=None)
    return {"history": history, "model": model}


def check_rate(made: dict[str, Any], repeat: int) -> dict[str, Any]:
    times, explored, ok = [], 0, True
    for _ in range(repeat):
        verdict = check_linearizable(made["history"], made["model"])
        times.append(verdict.seconds)
        explored, ok = verdict.states_explored, verdict.ok
    calls = len(made["history"].calls)
    median = statistics.median(times)
    return {
        "calls": calls,
        "linearizable": ok,
        "states_explored": explored,
        "median_s": round(median, 6),
        "calls_per_s": round(calls / median) if median else None,
    }


def machine_rate(examples: int) -> dict[str, Any]:
    stats = Stats()
    machine = machine_for(EngineTarget, stats=stats)
    started = time.perf_counter()
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=50,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.generate],
            ),
        )
        found = None
    except Exception as exc:  # a violation ends the run early: reported, the rate still holds
        found = str(exc).splitlines()[0][:200]
    seconds = time.perf_counter() - started
    return {
        "examples": stats.examples,
        "steps": stats.steps,
        "checks": sum(stats.checked.values()),
        "seconds": round(seconds, 3),
        "steps_per_s": round(stats.steps / seconds) if seconds else None,
        "violation": found,
    }


def replay_rate(tests: int) -> dict[str, Any]:
    clock = ManualClock(1_700_000_000.0)
    engine = Engine(MemoryStore(), clock=clock, policies=Policies(lost_after=30.0))
    target = EngineTarget(engine)
    prepare_race(target, tests=tests)
    for test_id in [t.id for t in engine.list_tests(page_size=1000)[0]]:
        engine.stop(test_id, principal="bench")
    records = [r.to_data() for r in engine.events()]
    started = time.perf_counter()
    report = replay_log(records)
    seconds = time.perf_counter() - started
    return {
        "records": len(records),
        "ok": report.ok,
        "records_per_s": round(len(records) / seconds) if seconds else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", default="2,4,8", help="client counts, side by side (2,4,8)")
    p.add_argument("--calls", type=int, default=50, help="calls per client (50)")
    p.add_argument("--tests", type=int, default=4, help="tests the clients race on (4)")
    p.add_argument("--repeat", type=int, default=5, help="checks of each history (median)")
    p.add_argument("--machine-examples", type=int, default=50, help="state-machine examples")
    p.add_argument("--replay-tests", type=int, default=200, help="tests in the replayed log")
    p.add_argument(
        "--serve", action="store_true", help="also race clients over gRPC on a serve process"
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",")]
    result: dict[str, Any] = {"calls_per_client": args.calls, "tests": args.tests}
    for broken in (False, True):
        key = "not_linearizable" if broken else "linearizable"
        result[key] = {
            str(n): check_rate(histories(n, args.calls, args.tests, broken, seed=n), args.repeat)
            for n in counts
        }
    if args.serve:
        with serve(3600.0) as address:
            for broken in (False, True):
                key = "serve_not_linearizable" if broken else "serve_linearizable"
                result[key] = {
                    str(n): check_rate(
                        serve_histories(address, n, args.calls, args.tests, broken, seed=n),
                        args.repeat,
                    )
                    for n in counts
                }
    result["machine"] = machine_rate(args.machine_examples)
    result["replay"] = replay_rate(args.replay_tests)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key in [k for k in result if k.endswith("linearizable")]:
            for n, r in result[key].items():
                print(
                    f"{key:22} {n:>2} clients: {r['calls']:4d} calls, "
                    f"{r['calls_per_s']} calls/s checked, {r['states_explored']} states"
                )
        m = result["machine"]
        print(f"machine: {m['steps_per_s']} steps/s ({m['steps']} steps, {m['checks']} checks)")
        print(f"replay: {result['replay']['records_per_s']} records/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
