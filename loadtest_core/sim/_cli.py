"""Flags of ``loadtest-core simulate``; heavy imports wait until the command runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FAULTS = ("crash", "partition", "slow", "duplicate", "reorder", "failure")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", metavar="FILE", help="a .yaml/.toml scenario; flags override it")
    p.add_argument("--tests", type=int, help="number of tests (default 100)")
    p.add_argument(
        "--agents", type=int, help="number of agents (default: one per 10 tests, at least 10)"
    )
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
    p.add_argument("--workers", type=int, default=1, help="processes running shards (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--trace", metavar="FILE.jsonl", help="write the event log, one record a line")
    p.add_argument("--plot", metavar="FILE.png", help="draw status counts over simulated time")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_scenario(args: argparse.Namespace) -> Any:
    from loadtest_core.sim._scenario import Scenario, load_scenario

    base = load_scenario(args.scenario) if args.scenario else Scenario()
    args._file_fields = set(base.model_fields_set)
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


class Progress:
    """A progress line over the whole run: ended tests, elapsed wall time and an ETA.

    Times come from the monotonic clock of this process, never from a shard's
    simulated clock, so the line only moves forward whatever shard reports.
    """

    width = 30

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.done = 0

    def line(self, done: int, total: int) -> str:
        self.done = max(self.done, done)
        done = self.done
        elapsed = self.clock() - self.started
        share = done / total if total else 1.0
        filled = int(self.width * share)
        eta = _clock(elapsed * (total - done) / done) if done else "--:--"
        return (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {done:,}/{total:,} tests ended "
            f"({share:.1%}), {_clock(elapsed)} elapsed, ETA {eta}"
        )

    def __call__(self, done: int, total: int, simulated: float) -> None:
        sys.stderr.write("\r" + self.line(done, total) + "\033[K")
        sys.stderr.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _table(summary: dict[str, Any]) -> str:
    rows = [(k, v) for k, v in summary.items() if k != "final_status_counts"]
    rows += [(f"  {k}", v) for k, v in summary["final_status_counts"].items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def title(scenario: Any) -> str:
    """The scenario in one line, for the plot's title."""
    parts = [f"{scenario.tests:,} tests", f"{scenario.agents:,} agents", f"seed {scenario.seed}"]
    parts.append(f"lost_after {scenario.lost_after:g} s")
    faults = scenario.faults.model_dump()
    parts += [f"{k} {v:.0%}" for k in FAULTS if (v := faults.get(k))]
    if scenario.stop_probability:
        parts.append(f"user stops {scenario.stop_probability:.0%}")
    return " · ".join(parts)


class _Usage(Exception):
    pass


def _writable(path: str, flag: str) -> Path:
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise _Usage(f"{flag} {path}: is a directory; give a file name")
    if not parent.is_dir():
        raise _Usage(f"{flag} {path}: no directory {parent}; create it first")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise _Usage(f"{flag} {path}: not writable")
    return target


def _check_outputs(args: argparse.Namespace) -> None:
    """Everything optional that could fail after the run, checked before it."""
    if args.workers < 1:
        raise _Usage("--workers must be at least 1")
    if args.workers > 1 and args.trace:
        raise _Usage("--trace needs --workers 1 (one process writes the log in order)")
    if args.trace:
        _writable(args.trace, "--trace")
    if args.plot:
        target = _writable(args.plot, "--plot")
        try:
            from loadtest_core.sim._plot import supported
        except ImportError:  # pragma: no cover - matplotlib is in the sim extra
            raise _Usage("--plot needs matplotlib: pip install 'loadtest-core[sim]'") from None
        try:
            suffixes = supported()
        except ImportError:
            raise _Usage("--plot needs matplotlib: pip install 'loadtest-core[sim]'") from None
        if target.suffix.lower() not in suffixes:
            known = ", ".join(sorted(suffixes))
            raise _Usage(f"--plot {args.plot}: unknown image type; end it with one of {known}")


def _default_agents(args: argparse.Namespace, scenario: Any) -> Any:
    """One agent per 10 tests (at least 10) unless --agents or the scenario file sets them."""
    if args.agents is not None or "agents" in getattr(args, "_file_fields", set()):
        return scenario
    agents = max(10, scenario.tests // 10)
    if agents == scenario.agents:
        return scenario
    print(
        f"loadtest-core simulate: {agents:,} agents (one per 10 tests); set --agents to choose",
        file=sys.stderr,
    )
    return scenario.with_overrides(agents=agents)


def _fail(message: str) -> int:
    print(f"loadtest-core simulate: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from loadtest_core import InvalidArgument
    from loadtest_core.sim._sim import Interrupted, simulate

    try:
        scenario = _default_agents(args, build_scenario(args))
        _check_outputs(args)
    except _Usage as exc:
        return _fail(str(exc))
    except InvalidArgument as exc:
        return _fail(exc.message)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return _fail(f"{where}: {err['msg']}")
    show = not args.quiet and sys.stderr.isatty()
    progress = Progress() if show else None
    try:
        trace = open(args.trace, "w", encoding="utf-8") if args.trace else None  # noqa: SIM115
    except OSError as exc:
        return _fail(f"--trace {args.trace}: {exc.strerror}")
    interrupted = False
    try:
        metrics = simulate(
            scenario,
            workers=args.workers,
            check=not args.no_check,
            trace=trace,
            progress=progress,
            timeline_every=max(1.0, scenario.time_limit / 20) if args.plot else None,
        )
    except Interrupted as exc:
        metrics, interrupted = exc.metrics, True
    finally:
        if trace is not None:
            trace.close()
    if show:
        sys.stderr.write("\n")
    summary = metrics.summary()
    if interrupted:
        summary["interrupted"] = True
        ended = sum(v for k, v in summary["final_status_counts"].items() if k in _FINAL)
        print(
            f"loadtest-core simulate: interrupted after {metrics.wall_seconds:.1f} s; "
            f"{ended:,} of {scenario.tests:,} tests had ended. What ran so far:",
            file=sys.stderr,
        )
    print(json.dumps(summary) if args.json else _table(summary), flush=True)
    if interrupted:
        return 130
    if args.plot:
        from loadtest_core.sim._plot import plot

        try:
            plot(metrics.timeline, args.plot, title(scenario))
        except Exception as exc:  # the results are printed; the picture is optional
            print(f"loadtest-core simulate: error: --plot {args.plot}: {exc}", file=sys.stderr)
            return 1
    return 0 if metrics.invariant_violations == 0 else 1


_FINAL = {"DONE", "FAILED", "STOPPED", "AUTOSTOPPED", "CANCELLED"}
