"""Flags of ``loadtest-core simulate``; heavy imports wait until the command runs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

FAULTS = ("crash", "partition", "slow", "duplicate", "reorder", "failure")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", metavar="FILE", help="a .yaml/.toml scenario; flags override it")
    p.add_argument("--tests", type=int, help="number of tests (default 100)")
    p.add_argument("--agents", type=int, help="number of agents (default 10)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--lost-after", type=float, help="engine lost_after in seconds (default 30)")
    p.add_argument("--lost-expiry", type=float, help="engine lost_expiry in seconds (default off)")
    p.add_argument(
        "--tick-interval",
        type=float,
        help="engine ticker period (default lost_after/4, as serve; 0: exact deadlines)",
    )
    p.add_argument(
        "--arrival-rate", type=float, help="tests created per second (default: all at 0)"
    )
    p.add_argument("--time-limit", type=float, help="RUNNING longer than this AUTOSTOPs")
    p.add_argument("--stop-probability", type=float, help="share of tests a user stops")
    p.add_argument("--horizon", type=float, help="simulated seconds before giving up")
    p.add_argument(
        "--shard-size", type=int, help="tests per independent shard (default 1000; see docs)"
    )
    for fault in FAULTS:
        p.add_argument(f"--{fault}", type=float, metavar="P", help=f"per-test {fault} probability")
    p.add_argument("--full-polling", action="store_true", help="simulate every poll (slow)")
    p.add_argument("--no-check", action="store_true", help="skip continuous invariant checks")
    p.add_argument("--workers", type=int, default=1, help="processes running shards")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--trace", metavar="FILE.jsonl", help="write the event log, one record a line")
    p.add_argument("--plot", metavar="FILE.png", help="draw status counts over simulated time")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_scenario(args: argparse.Namespace) -> Any:
    from loadtest_core.sim._scenario import Scenario, load_scenario

    base = load_scenario(args.scenario) if args.scenario else Scenario()
    overrides: dict[str, Any] = {
        "tests": args.tests,
        "agents": args.agents,
        "seed": args.seed,
        "lost_after": args.lost_after,
        "lost_expiry": args.lost_expiry,
        "tick_interval": args.tick_interval,
        "arrival_rate": args.arrival_rate,
        "time_limit": args.time_limit,
        "stop_probability": args.stop_probability,
        "horizon": args.horizon,
        "shard_size": args.shard_size,
    }
    if args.full_polling:
        overrides["full_polling"] = True
    data = base.model_dump()
    data.update({k: v for k, v in overrides.items() if v is not None})
    for fault in FAULTS:
        value = getattr(args, fault)
        if value is not None:
            data["faults"][fault] = value
    return Scenario.model_validate(data)


def _progress(done: int, total: int, simulated: float) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} tests "
        f"ended, t={simulated:,.0f}s"
    )
    sys.stderr.flush()


def _table(summary: dict[str, Any]) -> str:
    rows = [(k, v) for k, v in summary.items() if k != "final_status_counts"]
    rows += [(f"  {k}", v) for k, v in summary["final_status_counts"].items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from loadtest_core import InvalidArgument
    from loadtest_core.sim._sim import simulate

    try:
        scenario = build_scenario(args)
    except InvalidArgument as exc:
        print(f"loadtest-core simulate: {exc.message}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        print(f"loadtest-core simulate: {where}: {err['msg']}", file=sys.stderr)
        return 2
    if args.workers > 1 and args.trace:
        print("loadtest-core simulate: --trace needs --workers 1", file=sys.stderr)
        return 2
    show = not args.quiet and sys.stderr.isatty()
    trace = open(args.trace, "w", encoding="utf-8") if args.trace else None  # noqa: SIM115
    try:
        metrics = simulate(
            scenario,
            workers=args.workers,
            check=not args.no_check,
            trace=trace,
            progress=_progress if show else None,
            timeline_every=max(1.0, scenario.time_limit / 20) if args.plot else None,
        )
    finally:
        if trace is not None:
            trace.close()
    if show:
        sys.stderr.write("\n")
    summary = metrics.summary()
    if args.plot:
        from loadtest_core.sim._plot import plot

        plot(metrics.timeline, args.plot)
    print(json.dumps(summary) if args.json else _table(summary))
    return 0 if metrics.invariant_violations == 0 else 1
