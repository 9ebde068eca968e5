"""Every phase x every trigger against the contract (spec §3), written out here independently.

``expected`` below is the contract's §3 table in our own words; it never reads
``_table``. Every one of the 32 phases is reached by real events from CREATED,
then every one of the 18 triggers is applied to a copy of it, and the outcome
kind, the status, the phase's memory (stage reached, stop requested) and the
version bump must all be what the contract says. The ``transitions`` machine
is held to the same expectations.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from transitions import MachineError

from loadtest_core import (
    AgentError,
    Claim,
    Contact,
    Delete,
    Event,
    Expire,
    Imbalance,
    InvalidArgument,
    Kind,
    Lose,
    Purge,
    Status,
    Stop,
    TestState,
    Trigger,
    apply,
)
from loadtest_core._machine import PhaseHolder, build_machine
from loadtest_core._table import (
    _AGENT_COLUMNS,
    _COMMAND_COLUMNS,
    AGENT_GRID,
    COMMAND_GRID,
    PHASES,
    RULES,
    _read,
    claim_trigger,
)

A = "agent-1"
S = Status
STAGES = [S.INITIATED, S.PREPARING, S.WAITING, S.RUNNING, S.FINISHING, S.POST_PROCESSING]
OUTCOMES = [S.DONE, S.FAILED, S.STOPPED, S.AUTOSTOPPED]
TERMINAL = {S.DONE, S.FAILED, S.STOPPED, S.AUTOSTOPPED, S.CANCELLED}


def rank(stage: Status) -> int:
    return STAGES.index(stage) + 1


@dataclass(frozen=True)
class Where:
    """A test's position as the contract describes it: status, stage reached, memory."""

    status: Status
    stage: Status | None = None  # execution stage reached (execution, STOPPING, LOST)
    stopping: bool = False  # LOST while a stop was in progress
    started: bool = True


def routes() -> dict[str, tuple[list[Event], Where]]:
    """Real event sequences from CREATED to each of the 32 phases, and where they end."""
    out: dict[str, tuple[list[Event], Where]] = {"CREATED": ([], Where(S.CREATED, started=False))}
    for stage in STAGES:
        out[stage.name] = ([Claim(A, stage)], Where(stage, stage))
        out[f"STOPPING@{stage.name}"] = ([Claim(A, stage), Stop()], Where(S.STOPPING, stage))
        out[f"LOST@{stage.name}"] = ([Claim(A, stage), Lose()], Where(S.LOST, stage))
        out[f"LOST@STOPPING@{stage.name}"] = (
            [Claim(A, stage), Stop(), Lose()],
            Where(S.LOST, stage, stopping=True),
        )
    for outcome in OUTCOMES:
        out[outcome.name] = ([Claim(A, S.RUNNING), Claim(A, outcome, "boom")], Where(outcome))
    out["FAILED@CREATED"] = ([Claim(A, S.FAILED, "boom")], Where(S.FAILED, started=False))
    out["CANCELLED"] = ([Stop()], Where(S.CANCELLED, started=False))
    out["DELETING"] = ([Claim(A, S.RUNNING), Claim(A, S.DONE), Delete()], Where(S.DELETING))
    return out


ROUTES = routes()
GONE = Where(S.STATUS_UNSPECIFIED)  # removed by purge


def expected(w: Where, trigger: Trigger) -> tuple[Kind, Where]:
    """Spec §3: what ``trigger`` does to a test at ``w`` (kind, and where it ends)."""
    same = (Kind.UNCHANGED, w)
    stale = (Kind.STALE, w)
    conflict = (Kind.CONFLICT, w)
    executing = w.status in STAGES
    claimed = trigger.claimed
    if claimed in STAGES:
        assert claimed is not None
        if w.status is S.CREATED:
            return Kind.ACCEPTED, Where(claimed, claimed)
        if w.status in TERMINAL or w.status is S.DELETING:
            return conflict
        assert w.stage is not None
        if rank(claimed) < rank(w.stage):
            return stale
        if w.status is S.LOST:  # recovery, one event
            if w.stopping:
                return Kind.ACCEPTED, Where(S.STOPPING, claimed)
            return Kind.ACCEPTED, Where(claimed, claimed)
        if claimed == w.stage:
            return same
        if w.status is S.STOPPING:
            return Kind.ACCEPTED, Where(S.STOPPING, claimed)
        return Kind.ACCEPTED, Where(claimed, claimed)
    if claimed in OUTCOMES:
        assert claimed is not None
        if w.status is S.CREATED:
            if claimed is S.FAILED:
                return Kind.ACCEPTED, Where(S.FAILED, started=False)
            return conflict
        if w.status is S.DELETING:
            return conflict
        if w.status in TERMINAL:
            return stale if claimed is w.status else conflict
        return Kind.ACCEPTED, Where(claimed)
    if trigger is Trigger.CONTACT:
        if w.status is S.LOST:
            return Kind.ACCEPTED, Where(S.STOPPING if w.stopping else w.stage, w.stage)  # type: ignore[arg-type]
        return same
    if trigger is Trigger.NOTE:
        return Kind.NOTED, w
    if trigger is Trigger.IMBALANCE:
        if not w.started or w.status is S.DELETING:
            return conflict
        if w.status is S.LOST:
            return Kind.ACCEPTED, Where(S.STOPPING if w.stopping else w.stage, w.stage)  # type: ignore[arg-type]
        return Kind.ACCEPTED, w
    if trigger is Trigger.STOP:
        if w.status is S.CREATED:
            return Kind.ACCEPTED, Where(S.CANCELLED, started=False)
        if executing:
            return Kind.ACCEPTED, Where(S.STOPPING, w.stage)
        if w.status is S.STOPPING:
            return same
        if w.status is S.LOST:
            return Kind.ACCEPTED, Where(S.STOPPED)
        return conflict
    if trigger is Trigger.LOSE:
        if executing:
            return Kind.ACCEPTED, Where(S.LOST, w.stage)
        if w.status is S.STOPPING:
            return Kind.ACCEPTED, Where(S.LOST, w.stage, stopping=True)
        return conflict
    if trigger is Trigger.EXPIRE:
        return (Kind.ACCEPTED, Where(S.FAILED)) if w.status is S.LOST else conflict
    if trigger is Trigger.DELETE:
        if w.status is S.DELETING:
            return same
        if w.status in TERMINAL or w.status in (S.CREATED, S.LOST):
            return Kind.ACCEPTED, Where(S.DELETING)
        return conflict
    assert trigger is Trigger.PURGE
    return (Kind.ACCEPTED, GONE) if w.status is S.DELETING else conflict


def event_for(trigger: Trigger, agent: str = A) -> Event:
    claimed = trigger.claimed
    if claimed is not None:
        return Claim(agent, claimed, "boom" if claimed is S.FAILED else "")
    return {
        Trigger.CONTACT: Contact(agent),
        Trigger.NOTE: AgentError(agent, "upload failed"),
        Trigger.IMBALANCE: Imbalance(agent, 5.0, 100, "c"),
        Trigger.STOP: Stop("u"),
        Trigger.LOSE: Lose(),
        Trigger.EXPIRE: Expire("silent"),
        Trigger.DELETE: Delete("u"),
        Trigger.PURGE: Purge(),
    }[trigger]


def reach(phase: str) -> TestState:
    state = TestState("t", 0.0)
    events, _ = ROUTES[phase]
    for n, event in enumerate(events, start=1):
        assert apply(state, event, float(n)).kind is Kind.ACCEPTED
    assert state.phase.name == phase
    return state


def where(state: TestState) -> Where:
    phase = state.phase
    return Where(phase.status, phase.stage, phase.status is S.LOST and phase.stop_requested,
                 phase.started)  # fmt: skip


PAIRS = [(phase, trigger) for phase in ROUTES for trigger in Trigger]


def test_routes_reach_every_phase_the_table_has() -> None:
    """The 32 routes end in the 32 phases, and each phase's memory is what the route did."""
    assert sorted(ROUTES) == sorted(PHASES)
    for phase, (_, w) in ROUTES.items():
        assert where(reach(phase)) == w, phase


@pytest.mark.parametrize(("phase", "trigger"), PAIRS, ids=[f"{p}-{t.value}" for p, t in PAIRS])
def test_every_phase_and_trigger(phase: str, trigger: Trigger) -> None:
    """apply does what the contract says: kind, status, memory, version, nothing on rejection."""
    state = reach(phase)
    before = state.copy()
    kind, after = expected(ROUTES[phase][1], trigger)
    outcome = apply(state, event_for(trigger), 100.0)
    assert outcome.kind is kind, outcome.describe()
    if kind is Kind.ACCEPTED:
        assert state.version == before.version + 1
        if after is GONE:
            assert outcome.to is None
            return
        assert outcome.to is after.status
        assert where(state) == after, outcome.describe()
    else:
        assert state.fields() == before.fields(), outcome.describe()
        assert outcome.to is before.status


@pytest.mark.parametrize(("phase", "trigger"), PAIRS, ids=[f"{p}-{t.value}" for p, t in PAIRS])
def test_the_transitions_machine_agrees(phase: str, trigger: Trigger) -> None:
    """The transitions machine fires exactly the accepted pairs, into the contract's phase."""
    kind, after = expected(ROUTES[phase][1], trigger)
    holder = PhaseHolder(phase)
    build_machine(holder, initial=phase)
    try:
        holder.fire(trigger)
    except MachineError:
        assert kind is not Kind.ACCEPTED
        return
    assert kind is Kind.ACCEPTED
    if after is GONE:
        assert holder.state == "REMOVED"
    else:
        landed = PHASES[holder.state]
        assert (landed.status, landed.stage) == (after.status, after.stage)


def test_a_claim_from_another_agent_is_refused_in_every_phase() -> None:
    """Once a test is held, an agent event from anyone else is a conflict and changes nothing."""
    for phase in ROUTES:
        for trigger in Trigger:
            if trigger.claimed is None and trigger not in (
                Trigger.CONTACT,
                Trigger.NOTE,
                Trigger.IMBALANCE,
            ):
                continue
            state = reach(phase)
            state.holder = A  # CREATED: the job was handed to agent-1
            before = state.fields()
            outcome = apply(state, event_for(trigger, "agent-2"), 100.0)
            assert outcome.kind is Kind.CONFLICT, (phase, trigger)
            assert "another agent" in outcome.reason
            assert state.fields() == before


def test_the_table_has_one_rule_per_pair() -> None:
    """RULES holds each (phase, trigger) pair exactly once: 32 x 18."""
    pairs = [(r.source.name, r.trigger) for r in RULES]
    assert len(pairs) == len(set(pairs)) == 32 * 18


def test_reading_the_grids_again_gives_the_rules() -> None:
    """RULES, read at import, equals a fresh read of both grids (reasons and groups included)."""
    again = _read(AGENT_GRID, _AGENT_COLUMNS) + _read(COMMAND_GRID, _COMMAND_COLUMNS)
    assert again == list(RULES)


def test_a_label_before_a_rows_cells_is_skipped() -> None:
    """A first cell ending in a colon labels the row and is not read as a trigger's cell."""
    labelled = COMMAND_GRID.replace("CREATED                       | ",
                                    "CREATED                       | row: ")  # fmt: skip
    assert _read(labelled, _COMMAND_COLUMNS) == _read(COMMAND_GRID, _COMMAND_COLUMNS)


def test_a_row_with_a_cell_too_few_is_refused() -> None:
    """A row whose cell count differs from the trigger count fails the read, naming the phase."""
    short = COMMAND_GRID.replace("!inactive !unlost DEL      !undeleted\nINITIATED",
                                 "!inactive !unlost DEL\nINITIATED")  # fmt: skip
    with pytest.raises(ValueError, match=r"^CREATED: 4 cells for 5 triggers$"):
        _read(short, _COMMAND_COLUMNS)


def test_rows_out_of_phase_order_are_refused() -> None:
    """A grid whose rows are not the phases in PHASE_LIST order fails the read."""
    header, *rows = COMMAND_GRID.strip().splitlines()
    swapped = "\n".join([header, rows[1], rows[0], *rows[2:]])
    with pytest.raises(
        ValueError, match=r"^every phase needs exactly one row, in PHASE_LIST order$"
    ):
        _read(swapped, _COMMAND_COLUMNS)


def test_only_a_stage_or_an_outcome_has_a_claim_trigger() -> None:
    """claim_trigger refuses a status no agent claims as an invalid ``status`` argument."""
    assert claim_trigger(S.RUNNING) is Trigger.CLAIM_RUNNING
    with pytest.raises(InvalidArgument) as caught:
        claim_trigger(S.CREATED)
    assert caught.value.field == "status"
    assert caught.value.message == "status: CREATED cannot be claimed by an agent"
