"""Running the state machine for a user: progress, a summary, and a counterexample script.

Shared by ``loadtest-core check`` and the pytest plugin. Hypothesis prints a
failing example as the steps it took (``state.stop(test=tests_0)``); the kit
turns them into a short Python script that rebuilds the same target and runs
the same steps, so a failure can be replayed, read and attached to a bug report.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from hypothesis import HealthCheck, Phase
from hypothesis import settings as Settings
from hypothesis.errors import FlakyFailure
from hypothesis.stateful import run_state_machine_as_test

from loadtest_core.testing._machine import Stats, machine_for
from loadtest_core.testing._model import ContractViolation
from loadtest_core.testing._target import Target

__all__ = ["Outcome", "check_target", "counterexample_script"]

MACHINE_NAME = "LifecycleMachineFor"


@dataclass
class Outcome:
    """What a run found: counts, and the violation with its steps when one was found."""

    examples: int = 0
    steps: int = 0
    seconds: float = 0.0
    checked: dict[str, int] = field(default_factory=dict)
    violation: str | None = None
    clause: str | None = None
    steps_text: list[str] = field(default_factory=list)
    flaky: bool = False

    @property
    def ok(self) -> bool:
        return self.violation is None

    def summary(self) -> str:
        lines = [
            f"{self.examples} examples, {self.steps} steps in {self.seconds:.1f} s; "
            f"{sum(self.checked.values())} checks:"
        ]
        width = max((len(k) for k in self.checked), default=0)
        lines.extend(f"  {k.ljust(width)}  {v}" for k, v in sorted(self.checked.items()))
        if self.violation is None:
            lines.append("no violation found")
        else:
            flaky = " (it did not happen again when replayed: timing)" if self.flaky else ""
            lines.append(f"VIOLATION{flaky}: {self.violation}")
        return "\n".join(lines)

    def to_data(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "examples": self.examples,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "checked": dict(sorted(self.checked.items())),
            "violation": self.violation,
            "clause": self.clause,
            "flaky": self.flaky,
            "steps_text": self.steps_text,
        }


def _progress(out: IO[str], total: int) -> Callable[[Stats], None]:
    last = [0.0]

    def show(stats: Stats) -> None:
        now = time.monotonic()
        if now - last[0] < 0.2:
            return
        last[0] = now
        done = min(stats.examples, total)
        bar = "#" * (30 * done // max(total, 1))
        out.write(
            f"\r[{bar.ljust(30)}] {done}/{total} examples, {stats.steps} steps, "
            f"{sum(stats.checked.values())} checks"
        )
        out.flush()

    return show


def _steps_from(exc: BaseException) -> list[str]:
    """The steps hypothesis attached to a failure (its "Failing test case" note)."""
    lines: list[str] = []
    for note in getattr(exc, "__notes__", ()):
        for line in str(note).splitlines():
            text = line.strip()
            if (text.startswith(("state", "tests_")) and "=" in text) or text.startswith("state."):
                lines.append(text)
    return lines


def _violation(exc: BaseException) -> tuple[ContractViolation | BaseException, bool]:
    if isinstance(exc, FlakyFailure | BaseExceptionGroup):
        for inner in exc.exceptions:
            if isinstance(inner, ContractViolation):
                return inner, True
        return exc.exceptions[0], True
    return exc, False


def check_target(
    factory: Callable[[], Target],
    *,
    examples: int,
    steps: int,
    derandomize: bool = False,
    progress: IO[str] | None = None,
    shrink: bool = True,
    shrink_seconds: float = 60.0,
) -> Outcome:
    """Run the lifecycle machine against ``factory()``'s targets; never raises a violation.

    Shrinking replays a failing run many times, which against a real-time server
    takes a while: it stops after ``shrink_seconds`` with the shortest run so far.
    """
    stats = Stats()
    if progress is not None:
        stats.on_step = _progress(progress, examples)
    machine = machine_for(factory, stats=stats, name=MACHINE_NAME)
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    if shrink:
        phases.append(Phase.shrink)
    settings = Settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
        phases=phases,
    )
    outcome = Outcome()
    started = time.monotonic()
    try:
        with _shrink_budget(shrink_seconds):
            run_state_machine_as_test(machine, settings=settings)
    except Exception as exc:
        found, flaky = _violation(exc)
        outcome.violation = str(found) if isinstance(found, ContractViolation) else repr(found)
        outcome.clause = found.clause if isinstance(found, ContractViolation) else None
        outcome.steps_text = _steps_from(found) or _steps_from(exc)
        outcome.flaky = flaky
    finally:
        if progress is not None:
            progress.write("\n")
            progress.flush()
    outcome.seconds = time.monotonic() - started
    outcome.examples = stats.examples
    outcome.steps = stats.steps
    outcome.checked = dict(stats.checked)
    return outcome


@contextlib.contextmanager
def _shrink_budget(seconds: float) -> Iterator[None]:
    """Hypothesis shrinks for up to 5 minutes; its (private) limit is lowered while we run."""
    from hypothesis.internal.conjecture import engine

    saved = getattr(engine, "MAX_SHRINKING_SECONDS", None)
    if saved is None:  # pragma: no cover - a hypothesis without the limit
        yield
        return
    engine.MAX_SHRINKING_SECONDS = seconds  # type: ignore[assignment]
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = saved


def counterexample_script(outcome: Outcome, target_source: str, imports: str) -> str:
    """A runnable script replaying ``outcome``'s steps against the target ``target_source`` builds.

    ``target_source`` is a Python expression (it may use ``os``); ``imports`` the
    import lines it needs.
    """
    violation = (outcome.violation or "").splitlines()[0] if outcome.violation else ""
    steps = outcome.steps_text or [f"state = {MACHINE_NAME}()", "state.teardown()"]
    body = "\n".join(steps)
    return f'''"""Counterexample found by loadtest-core check.

{violation}

Run it with `python this_file.py`: it raises the same ContractViolation.
"""

import os

{imports}
from loadtest_core.testing import machine_for

{MACHINE_NAME} = machine_for(lambda: {target_source}, name="{MACHINE_NAME}")

{body}
'''
