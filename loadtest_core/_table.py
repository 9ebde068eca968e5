"""The lifecycle table: the one place that decides every status change (spec §3).

A *phase* is a status plus the little history the spec makes decisions depend
on: the execution stage a STOPPING test last reported (``STOPPING@RUNNING``),
the status a LOST test remembers (``LOST@STOPPING@RUNNING``), and whether a
FAILED test ever started (``FAILED@CREATED``). With that history in the state
name the table is finite and explicit: one :class:`Rule` for every
(phase, trigger) pair, read by the ``transitions`` machine, by the compiled hot
path and by the diagram generator.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from loadtest_core._status import EXECUTION, TERMINAL, Status

__all__ = [
    "PHASES",
    "RULES",
    "Kind",
    "Phase",
    "Rule",
    "Trigger",
    "claim_trigger",
]


class Trigger(enum.Enum):
    """Event kinds the lifecycle understands; values are ``transitions`` trigger names."""

    CLAIM_INITIATED = "claim_INITIATED"
    CLAIM_PREPARING = "claim_PREPARING"
    CLAIM_WAITING = "claim_WAITING"
    CLAIM_RUNNING = "claim_RUNNING"
    CLAIM_FINISHING = "claim_FINISHING"
    CLAIM_POST_PROCESSING = "claim_POST_PROCESSING"
    CLAIM_DONE = "claim_DONE"
    CLAIM_FAILED = "claim_FAILED"
    CLAIM_STOPPED = "claim_STOPPED"
    CLAIM_AUTOSTOPPED = "claim_AUTOSTOPPED"
    CONTACT = "contact"
    NOTE = "note"
    IMBALANCE = "imbalance"
    STOP = "stop"
    LOSE = "lose"
    EXPIRE = "expire"
    DELETE = "delete"
    PURGE = "purge"

    @property
    def claimed(self) -> Status | None:
        """The status a claim trigger reports, None for other triggers."""
        return _CLAIMED.get(self)


class Kind(enum.Enum):
    """What an event did. Only ACCEPTED bumps ``version``; UNCHANGED is not logged."""

    ACCEPTED = "accepted"
    UNCHANGED = "unchanged"
    NOTED = "noted"
    STALE = "stale"
    CONFLICT = "conflict"

    __hash__ = object.__hash__

    @property
    def ok(self) -> bool:
        return self not in (Kind.STALE, Kind.CONFLICT)


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    status: Status
    rank: int
    remembered: Phase | None = None
    started: bool = True


@dataclass(frozen=True, slots=True)
class Rule:
    source: Phase
    trigger: Trigger
    kind: Kind
    dest: Phase | None
    reason: str


_CLAIMED: dict[Trigger, Status] = {
    Trigger(f"claim_{s.name}"): s
    for s in (*EXECUTION, Status.DONE, Status.FAILED, Status.STOPPED, Status.AUTOSTOPPED)
}
_CLAIM_OF: dict[Status, Trigger] = {s: t for t, s in _CLAIMED.items()}
_OUTCOME_CLAIMS = (Status.DONE, Status.FAILED, Status.STOPPED, Status.AUTOSTOPPED)


def claim_trigger(status: Status) -> Trigger:
    """The claim trigger for a claimed test status (execution stage or outcome)."""
    try:
        return _CLAIM_OF[status]
    except KeyError:
        from loadtest_core._errors import InvalidArgument

        message = f"status: {status.name} cannot be claimed by an agent"
        raise InvalidArgument(message, field="status") from None


def _phases() -> dict[str, Phase]:
    out: dict[str, Phase] = {"CREATED": Phase("CREATED", Status.CREATED, 0, started=False)}
    for stage in EXECUTION:
        out[stage.name] = Phase(stage.name, stage, stage.rank)
    for stage in EXECUTION:
        stopping = Phase(f"STOPPING@{stage.name}", Status.STOPPING, stage.rank)
        out[stopping.name] = stopping
        for remembered in (out[stage.name], stopping):
            lost = Phase(f"LOST@{remembered.name}", Status.LOST, stage.rank, remembered)
            out[lost.name] = lost
    for status in (Status.DONE, Status.FAILED, Status.STOPPED, Status.AUTOSTOPPED):
        out[status.name] = Phase(status.name, status, 0)
    out["FAILED@CREATED"] = Phase("FAILED@CREATED", Status.FAILED, 0, started=False)
    out["CANCELLED"] = Phase("CANCELLED", Status.CANCELLED, 0, started=False)
    out["DELETING"] = Phase("DELETING", Status.DELETING, 0)
    return out


PHASES: dict[str, Phase] = _phases()


def _stage_claim(p: Phase, claimed: Status) -> tuple[Kind, Phase | None, str]:
    """A claim of execution stage ``claimed`` in phase ``p``."""
    status = p.status
    if status is Status.CREATED:
        return Kind.ACCEPTED, PHASES[claimed.name], "the agent started the test"
    if status in TERMINAL or status is Status.DELETING:
        return Kind.CONFLICT, None, f"the test is {status.name}: terminal statuses are absorbing"
    if claimed.rank < p.rank:
        return Kind.STALE, None, "stale report: the execution rank never goes backwards"
    if status is Status.STOPPING:
        if claimed.rank == p.rank:
            return Kind.UNCHANGED, p, "heartbeat while stopping"
        return Kind.ACCEPTED, PHASES[f"STOPPING@{claimed.name}"], "progress while stopping"
    if status is Status.LOST:
        assert p.remembered is not None
        back = p.remembered
        if back.status is Status.STOPPING:
            dest = PHASES[f"STOPPING@{claimed.name}"]
            return Kind.ACCEPTED, dest, "the agent is back; the stop stays sticky"
        return Kind.ACCEPTED, PHASES[claimed.name], "the agent is back"
    if claimed.rank == p.rank:
        return Kind.UNCHANGED, p, "the same stage again: contact only"
    return Kind.ACCEPTED, PHASES[claimed.name], "forward progress"


def _outcome_claim(p: Phase, claimed: Status) -> tuple[Kind, Phase | None, str]:
    status = p.status
    if status is Status.CREATED:
        if claimed is Status.FAILED:
            return Kind.ACCEPTED, PHASES["FAILED@CREATED"], "the agent failed before starting"
        return Kind.CONFLICT, None, f"{claimed.name} from CREATED: nothing ran"
    if status is Status.DELETING:
        return Kind.CONFLICT, None, "the test is being deleted"
    if status in TERMINAL:
        if status is claimed:
            return Kind.STALE, None, "the same outcome again: a duplicate report"
        return Kind.CONFLICT, None, f"the test is {status.name}: terminal statuses are absorbing"
    return Kind.ACCEPTED, PHASES[claimed.name], "the agent reported the outcome"


def _decide(p: Phase, trigger: Trigger) -> tuple[Kind, Phase | None, str]:
    status = p.status
    terminal = status in TERMINAL
    active = status.is_active
    lost = status is Status.LOST
    claimed = trigger.claimed
    if claimed is not None:
        if claimed in _OUTCOME_CLAIMS:
            return _outcome_claim(p, claimed)
        return _stage_claim(p, claimed)
    if trigger is Trigger.CONTACT:
        if lost:
            assert p.remembered is not None
            return Kind.ACCEPTED, p.remembered, "the agent is back"
        return Kind.UNCHANGED, p, "contact"
    if trigger is Trigger.NOTE:
        return Kind.NOTED, p, "agent error recorded"
    if trigger is Trigger.IMBALANCE:
        if p.started and status is not Status.DELETING:
            return Kind.ACCEPTED, p, "imbalance point recorded"
        return Kind.CONFLICT, None, f"no imbalance point for a {status.name} test that never ran"
    if trigger is Trigger.STOP:
        if status is Status.CREATED:
            return Kind.ACCEPTED, PHASES["CANCELLED"], "stopped before any agent started it"
        if status in EXECUTION:
            return Kind.ACCEPTED, PHASES[f"STOPPING@{status.name}"], "stop requested"
        if status is Status.STOPPING:
            return Kind.UNCHANGED, p, "already stopping"
        if lost:
            return Kind.ACCEPTED, PHASES["STOPPED"], "stopped while lost: nobody to wait for"
        return Kind.CONFLICT, None, f"the test is {status.name}: not running"
    if trigger is Trigger.LOSE:
        if active:
            return Kind.ACCEPTED, PHASES[f"LOST@{p.name}"], "no contact from the agent"
        return Kind.CONFLICT, None, f"a {status.name} test cannot be lost: not active"
    if trigger is Trigger.EXPIRE:
        if lost:
            return Kind.ACCEPTED, PHASES["FAILED"], "lost for longer than lost_expiry"
        return Kind.CONFLICT, None, f"a {status.name} test is not lost"
    if trigger is Trigger.DELETE:
        if status is Status.DELETING:
            return Kind.UNCHANGED, p, "already deleting"
        if status is Status.CREATED or terminal or lost:
            return Kind.ACCEPTED, PHASES["DELETING"], "deletion requested"
        return Kind.CONFLICT, None, f"the test is {status.name}: stop it first"
    if trigger is Trigger.PURGE:
        if status is Status.DELETING:
            return Kind.ACCEPTED, None, "deleted"
        return Kind.CONFLICT, None, f"a {status.name} test is not being deleted"
    raise AssertionError(trigger)  # pragma: no cover


def _rules() -> tuple[Rule, ...]:
    return tuple(Rule(p, t, *_decide(p, t)) for p in PHASES.values() for t in Trigger)


RULES: tuple[Rule, ...] = _rules()
