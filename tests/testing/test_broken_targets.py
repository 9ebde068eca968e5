"""Proof that the kit catches bugs: each deliberately broken target is found, within ``ci``.

Every target in ``tests/testing/broken.py`` gets one rule wrong; the kit runs
its state machine with the ``ci`` budget (500 examples of up to 50 steps,
derandomized so CI sees the same examples every run) and must report a
violation of the clause that rule belongs to. The correct engine passes the
same machine in ``tests/engine/test_engine_stateful.py``.
"""

from __future__ import annotations

import re

import pytest

from loadtest_core.testing._run import check_target
from tests.testing.broken import BROKEN, half_applying_app
from tests.testing.servers import servers

CI_EXAMPLES, CI_STEPS = 500, 50

# what each report must say, beyond its clause
SAYS = {
    "wrong transition (STOPPING + FINISHED refused)": r"\(FINISHED\) answered FAILED_PRE",
    "missing version bump": r"version",
    "a second stop operation": r"-again-",
    "a stale claim answered FAILED_PRECONDITION": r"answered FAILED_PRECONDITION",
    "LOST while the agent polls": r"LOST",
    "an operation done before the test is terminal": r"done=True",
    "a replay mismatch": r"claim_RUNNING",
    "heartbeats ignored": r"LOST",
    "delete of a running test accepted": r"Delete answered OK",
    "LOST too late": r"should be LOST",
    "another agent's claim takes the job over": r"answered OK",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_the_kit_finds_the_broken_rule(name: str) -> None:
    """The kit reports the clause the broken target violates, within the ci budget."""
    factory, clauses = BROKEN[name]
    outcome = check_target(
        factory, examples=CI_EXAMPLES, steps=CI_STEPS, derandomize=True, shrink=False
    )
    assert not outcome.ok, f"{name}: not found in {outcome.examples} examples"
    assert outcome.clause in clauses, outcome.violation
    assert re.search(SAYS[name], outcome.violation or ""), outcome.violation


def test_the_kit_finds_a_batch_stop_that_half_applies() -> None:
    """A batch stop that stops only the first test of each plan is reported under §6."""
    with servers(app=half_applying_app) as s:
        outcome = check_target(
            s.target, examples=CI_EXAMPLES, steps=CI_STEPS, derandomize=True, shrink=False
        )
    assert not outcome.ok, f"not found in {outcome.examples} examples"
    assert outcome.clause in ("§6", "§3"), outcome.violation
    assert re.search(r"STOPPING|CANCELLED|STOPPED|stop/execution", outcome.violation or "")


def test_every_required_kind_of_bug_is_covered() -> None:
    """At least ten broken targets, covering the kinds of bug the kit promises to catch."""
    assert len(BROKEN) + 1 >= 10
    for kind in (
        "wrong transition",
        "missing version bump",
        "second stop operation",
        "stale claim answered FAILED_PRECONDITION",
        "LOST while the agent polls",
        "operation done before the test is terminal",
        "replay mismatch",
    ):
        assert any(kind in name for name in BROKEN), kind
