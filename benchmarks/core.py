"""Per-event cost of the lifecycle core, side by side with two baselines.

* core: ``apply`` over ``TestState`` objects (the compiled table);
* transitions_naive: the obvious use of the library — every test a model of a
  ``transitions.Machine`` built from the same table (1,000 models a machine:
  ``add_model`` is quadratic in a machine's model count), one trigger call an event;
* dict_loop: a bare ``dict`` lookup per event over the same sequence (the floor).

Run: ``python benchmarks/core.py --tests 100000 --json``
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import random
import statistics
import sys
import time
import tracemalloc
from typing import Any

from transitions import Machine, MachineError

from loadtest_core._lifecycle import (
    COMPILED,
    Claim,
    Contact,
    Event,
    Imbalance,
    Lose,
    Stop,
    TestState,
    apply,
)
from loadtest_core._machine import REMOVED
from loadtest_core._status import Status
from loadtest_core._table import PHASES, RULES, Kind

AGENT = "agent-1"


def scenario(rng: random.Random) -> list[Event]:
    """One test's events: a realistic agent with skipped stages, duplicates and a stop."""
    events: list[Event] = [Claim(AGENT, Status.INITIATED)]
    for stage in (Status.PREPARING, Status.WAITING, Status.RUNNING):
        if rng.random() < 0.8:
            events.append(Claim(AGENT, stage))
        if rng.random() < 0.2:
            events.append(Contact(AGENT))
    if rng.random() < 0.1:
        events.append(Claim(AGENT, Status.PREPARING))  # stale
    roll = rng.random()
    if roll < 0.3:
        events += [Stop("user"), Claim(AGENT, Status.FINISHING), Claim(AGENT, Status.STOPPED)]
    elif roll < 0.4:
        events += [Lose(), Contact(AGENT), Claim(AGENT, Status.DONE)]
    elif roll < 0.5:
        events += [Imbalance(AGENT, 1.0, 100, "q99"), Claim(AGENT, Status.AUTOSTOPPED)]
    else:
        events += [Claim(AGENT, Status.FINISHING), Claim(AGENT, Status.DONE)]
    events.append(Claim(AGENT, Status.DONE))  # a duplicate or a conflict at the end
    return events


def build(n: int, seed: int) -> list[tuple[int, Event]]:
    rng = random.Random(seed)
    per_test = [scenario(rng) for _ in range(n)]
    cursors = [0] * n
    order: list[tuple[int, Event]] = []
    live = list(range(n))
    while live:
        j = rng.randrange(len(live))
        i = live[j]
        order.append((i, per_test[i][cursors[i]]))
        cursors[i] += 1
        if cursors[i] == len(per_test[i]):
            live[j] = live[-1]
            live.pop()
    return order


def run_core(n: int, order: list[tuple[int, Event]]) -> float:
    states = [TestState(f"test-{i:08d}", 1.0) for i in range(n)]
    t0 = time.perf_counter()
    now = 2.0
    for i, event in order:
        apply(states[i], event, now)
    return time.perf_counter() - t0


class _Model:
    pass


GROUP = 1000  # transitions.Machine.add_model checks membership in a list: O(n) per model


def _machine() -> Machine:
    machine = Machine(
        model=None, states=[*PHASES, REMOVED], initial="CREATED", auto_transitions=False
    )
    for rule in RULES:
        if rule.kind is Kind.ACCEPTED:
            dest = REMOVED if rule.dest is None else rule.dest.name
            machine.add_transition(rule.trigger.value, rule.source.name, dest)
    return machine


def run_naive(n: int, order: list[tuple[int, Event]]) -> float:
    models = [_Model() for _ in range(n)]
    for start in range(0, n, GROUP):
        _machine().add_model(models[start : start + GROUP])
    t0 = time.perf_counter()
    for i, event in order:
        with contextlib.suppress(MachineError):
            models[i].trigger(event.trigger)
    return time.perf_counter() - t0


def run_dict(n: int, order: list[tuple[int, Event]]) -> float:
    table = {
        (src, trig): (e.dest.name if e.kind is Kind.ACCEPTED and e.dest else src)
        for src, row in COMPILED.items()
        for trig, e in row.items()
    }
    phases = ["CREATED"] * n
    t0 = time.perf_counter()
    for i, event in order:
        phases[i] = table[(phases[i], event.trigger)]
    return time.perf_counter() - t0


def bytes_per_test(n: int, order: list[tuple[int, Event]]) -> float:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    states = [TestState(f"test-{i:08d}", 1.0) for i in range(n)]
    for i, event in order:
        apply(states[i], event, 3.0)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del states
    return used / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="median of this many runs")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    order = build(args.tests, args.seed)
    events = len(order)
    runs: dict[str, list[float]] = {"core": [], "naive": [], "dict": []}
    for _ in range(args.repeat):
        # interleave the drivers so machine noise hits all three alike
        runs["core"].append(run_core(args.tests, order))
        runs["naive"].append(run_naive(args.tests, order))
        runs["dict"].append(run_dict(args.tests, order))
    med = {k: statistics.median(v) for k, v in runs.items()}
    result: dict[str, Any] = {
        "tests": args.tests,
        "events": events,
        "core_events_per_s": round(events / med["core"]),
        "transitions_naive_events_per_s": round(events / med["naive"]),
        "dict_loop_events_per_s": round(events / med["dict"]),
        "bytes_per_test": round(bytes_per_test(args.tests, order), 1),
    }
    result["core_vs_naive"] = round(med["naive"] / med["core"], 2)
    result["core_vs_dict_loop"] = round(med["core"] / med["dict"], 2)
    result["targets_met"] = bool(
        result["core_vs_naive"] >= 10
        and result["core_vs_dict_loop"] <= 8
        and result["bytes_per_test"] <= 1024
    )
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:32} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
