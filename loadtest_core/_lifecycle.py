"""Applying one event to one test: the hot path of every engine and simulation.

``apply`` never does I/O and never reads a clock: the caller passes ``now``.
It looks the (phase, trigger) pair up in a table compiled from the
``transitions`` machine (see :mod:`loadtest_core._machine`), so one event costs
a dict lookup and a few attribute writes; rejections return a prebuilt
:class:`Outcome` and touch nothing.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from loadtest_core._machine import REMOVED, build_machine
from loadtest_core._status import ACTIVE, TERMINAL, Status
from loadtest_core._table import PHASES, RULES, Kind, Phase, Trigger, claim_trigger

__all__ = [
    "AgentError",
    "Claim",
    "Contact",
    "Delete",
    "Event",
    "Expire",
    "Imbalance",
    "Lose",
    "Outcome",
    "Purge",
    "Stop",
    "TestState",
    "apply",
]

_FINISHED = TERMINAL | {Status.DELETING}
_CLAIM_TRIGGER: dict[Status, str] = {s: t.value for t in Trigger if (s := t.claimed) is not None}
DEFAULT_FAILED_ERROR = "the agent reported FAILED without an error text"


class Outcome(NamedTuple):
    """What one event did to one test: kind, event, status before and after, why."""

    kind: Kind
    event: str
    status: Status
    to: Status | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.kind.ok

    def describe(self) -> str:
        to = "removed" if self.to is None else self.to.name
        return f"{self.event} in {self.status.name} -> {to}: {self.kind.value} ({self.reason})"


# --- events -----------------------------------------------------------------


class Event:
    """An input to the lifecycle. ``agent_id`` is set for events an agent sends."""

    __slots__ = ()
    trigger: str
    agent_id: str | None = None

    @property
    def actor(self) -> str:
        return self.agent_id or ""

    def payload(self) -> dict[str, Any]:
        return {}

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.payload() == other.payload()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.payload().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.payload().items())
        return f"{type(self).__name__}({args})"


class Claim(Event):
    """``JobService.ClaimStatus`` with a job status already mapped to a test status."""

    __slots__ = ("agent_id", "error", "status", "trigger")

    def __init__(self, agent_id: str, status: Status, error: str = "") -> None:
        self.agent_id = agent_id
        self.status = status
        self.error = error
        trigger = _CLAIM_TRIGGER.get(status)
        self.trigger = claim_trigger(status).value if trigger is None else trigger

    def payload(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "status": self.status.name, "error": self.error}


class AgentError(Event):
    """A claim with JOB_STATUS_UNSPECIFIED and an error text: recorded, changes nothing."""

    __slots__ = ("agent_id", "error")
    trigger = Trigger.NOTE.value

    def __init__(self, agent_id: str, error: str) -> None:
        if not error:
            from loadtest_core._errors import InvalidArgument

            raise InvalidArgument(
                "error: a claim without a status needs an error text", field="error"
            )
        self.agent_id = agent_id
        self.error = error

    def payload(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "error": self.error}


class Contact(Event):
    """Job-scoped evidence that the agent is alive (a signal poll, an agent heartbeat)."""

    __slots__ = ("agent_id",)
    trigger = Trigger.CONTACT.value

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id

    def payload(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id}


class Imbalance(Event):
    """The autostop imbalance point, from agent ``TestService.Update``."""

    __slots__ = ("agent_id", "at", "comment", "rps")
    trigger = Trigger.IMBALANCE.value

    def __init__(self, agent_id: str, at: float, rps: int, comment: str = "") -> None:
        self.agent_id = agent_id
        self.at = at
        self.rps = rps
        self.comment = comment

    def payload(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "at": self.at, "rps": self.rps, "comment": self.comment}


class _UserEvent(Event):
    __slots__ = ("principal",)

    def __init__(self, principal: str = "") -> None:
        self.principal = principal

    @property
    def actor(self) -> str:
        return self.principal

    def payload(self) -> dict[str, Any]:
        return {"principal": self.principal}


class Stop(_UserEvent):
    __slots__ = ()
    trigger = Trigger.STOP.value


class Delete(_UserEvent):
    __slots__ = ()
    trigger = Trigger.DELETE.value


class _SystemEvent(Event):
    __slots__ = ()

    @property
    def actor(self) -> str:
        return "system"


class Lose(_SystemEvent):
    """A tick found no contact for ``lost_after`` during an active stage."""

    __slots__ = ()
    trigger = Trigger.LOSE.value


class Expire(_SystemEvent):
    """A tick found the test LOST for longer than ``lost_expiry``; ``error`` says so."""

    __slots__ = ("error",)
    trigger = Trigger.EXPIRE.value

    def __init__(self, error: str) -> None:
        self.error = error

    def payload(self) -> dict[str, Any]:
        return {"error": self.error}


class Purge(_SystemEvent):
    """Deletion done: the test is removed; the event log keeps its tombstone."""

    __slots__ = ()
    trigger = Trigger.PURGE.value


# --- live state ---------------------------------------------------------------


class TestState:
    """The live, mutable lifecycle state of one test (a plain object, not pydantic).

    Times are float seconds since the epoch from the engine's clock. ``spec`` is
    whatever immutable creation data the embedder attaches; the lifecycle never
    reads it.
    """

    __test__ = False  # not a pytest class
    __slots__ = (
        "assigned_agent_id",
        "created_at",
        "created_by",
        "error",
        "finished_at",
        "id",
        "imbalance",
        "phase",
        "rank",
        "spec",
        "started_at",
        "version",
    )

    def __init__(self, id: str, created_at: float, created_by: str = "", spec: Any = None) -> None:
        self.id = id
        self.phase: Phase = PHASES["CREATED"]
        self.version = 1
        self.created_at = created_at
        self.created_by = created_by
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.error = ""
        self.imbalance: tuple[float, int, str] | None = None
        self.assigned_agent_id: str | None = None
        self.rank = 0
        self.spec = spec

    @property
    def status(self) -> Status:
        return self.phase.status

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None

    def copy(self) -> TestState:
        new = TestState.__new__(TestState)
        new.id, new.phase, new.version = self.id, self.phase, self.version
        new.created_at, new.created_by = self.created_at, self.created_by
        new.started_at, new.finished_at = self.started_at, self.finished_at
        new.error, new.imbalance = self.error, self.imbalance
        new.assigned_agent_id, new.rank, new.spec = self.assigned_agent_id, self.rank, self.spec
        return new

    def fields(self) -> dict[str, Any]:
        """Every lifecycle field by name, for equality checks and the event log."""
        return {name: getattr(self, name) for name in TestState.__slots__ if name != "spec"}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TestState) and self.fields() == other.fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TestState(id={self.id!r}, phase={self.phase.name}, version={self.version})"


# --- the compiled table -------------------------------------------------------


class _Compiled(NamedTuple):
    kind: Kind
    dest: Phase | None
    outcome: Outcome
    wrong_agent: Outcome
    starts: bool
    finishes: bool
    fails: bool


def _compile() -> dict[str, dict[str, _Compiled]]:
    """Read accepted transitions from the machine, rejections from the table."""
    machine = build_machine()
    dest_of: dict[tuple[str, str], str] = {}
    for trigger in Trigger:
        for transition in machine.get_transitions(trigger=trigger.value):
            assert transition.dest is not None
            dest_of[(transition.source, trigger.value)] = transition.dest
    table: dict[str, dict[str, _Compiled]] = {name: {} for name in PHASES}
    for rule in RULES:
        src = rule.source
        key = (src.name, rule.trigger.value)
        if rule.kind is Kind.ACCEPTED:
            name = dest_of.pop(key)
            dest = None if name == REMOVED else PHASES[name]
        else:
            assert key not in dest_of, key
            dest = rule.dest
        to = None if dest is None else dest.status
        if rule.kind in (Kind.STALE, Kind.CONFLICT):
            to = src.status
        accepted = rule.kind is Kind.ACCEPTED and dest is not None
        table[src.name][rule.trigger.value] = _Compiled(
            kind=rule.kind,
            dest=dest,
            outcome=Outcome(rule.kind, rule.trigger.value, src.status, to, rule.reason),
            wrong_agent=Outcome(
                Kind.CONFLICT,
                rule.trigger.value,
                src.status,
                src.status,
                "the job belongs to another agent",
            ),
            starts=accepted
            and dest is not None
            and src.status is Status.CREATED
            and dest.status in ACTIVE,
            finishes=accepted
            and dest is not None
            and dest.status in _FINISHED
            and src.status not in _FINISHED,
            fails=accepted and dest is not None and dest.status is Status.FAILED,
        )
    assert not dest_of, dest_of
    return table


COMPILED: dict[str, dict[str, _Compiled]] = _compile()
_IMBALANCE = Trigger.IMBALANCE.value


def apply(state: TestState, event: Event, now: float) -> Outcome:
    """Apply ``event`` at time ``now``; a rejected event changes nothing."""
    entry = COMPILED[state.phase.name][event.trigger]
    agent = event.agent_id
    if (
        agent is not None
        and state.assigned_agent_id is not None
        and agent != state.assigned_agent_id
    ):
        return entry.wrong_agent
    if entry.kind is not Kind.ACCEPTED:
        return entry.outcome
    dest = entry.dest
    if dest is None:
        state.version += 1
        return entry.outcome
    if entry.starts:
        state.started_at = now
    if agent is not None and state.assigned_agent_id is None:
        state.assigned_agent_id = agent
    if entry.finishes:
        state.finished_at = now
    if entry.fails:
        state.error = getattr(event, "error", "") or DEFAULT_FAILED_ERROR
    if event.trigger == _IMBALANCE:
        assert isinstance(event, Imbalance)
        state.imbalance = (event.at, event.rps, event.comment)
    if dest.rank > state.rank:
        state.rank = dest.rank
    state.phase = dest
    state.version += 1
    return entry.outcome
