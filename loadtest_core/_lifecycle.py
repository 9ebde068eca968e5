"""Applying one event to one test: the hot path of every engine and simulation.

``apply`` never does I/O and never reads a clock: the caller passes ``now``.
It looks the (phase, trigger) pair up in a table compiled from the
``transitions`` machine (see :mod:`loadtest_core._machine`), so one event costs
a dict lookup and a few attribute writes; rejections return a prebuilt
:class:`Outcome` and touch nothing.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from loadtest_core._machine import REMOVED, build_machine
from loadtest_core._status import ACTIVE, FINISHED, Status
from loadtest_core._table import (
    AGENT_TRIGGERS,
    NOT_HOLDER,
    PHASES,
    RULES,
    Kind,
    Phase,
    Trigger,
    claim_trigger,
)

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
    reads it. A store may hand over the spec as JSON text instead (``spec_json``):
    it is parsed on first read, so commands that never look at it never pay.

    Besides the lifecycle fields (``fields()``, what the event log replays),
    a stored test carries its liveness, which decides outcomes but is not an
    event: ``holder`` (the agent its job was handed to), ``contact_at`` (the
    last recorded contact), ``entered_at`` (when it entered its status),
    ``due_at`` (when its deadline is next looked at) and ``stamp`` (the row's
    write counter, the compare-and-set key of every write).
    """

    __test__ = False  # not a pytest class
    __slots__ = (
        "_spec",
        "_spec_json",
        "assigned_agent_id",
        "contact_at",
        "created_at",
        "created_by",
        "due_at",
        "entered_at",
        "error",
        "finished_at",
        "holder",
        "id",
        "imbalance",
        "phase",
        "rank",
        "stamp",
        "started_at",
        "version",
    )
    _LIFECYCLE = (
        "assigned_agent_id",
        "created_at",
        "created_by",
        "error",
        "finished_at",
        "id",
        "imbalance",
        "phase",
        "rank",
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
        self._spec = spec
        self._spec_json: str | None = None
        self.holder: str | None = None
        self.contact_at = created_at
        self.entered_at = created_at
        self.due_at: float | None = None
        self.stamp = 0

    @property
    def spec(self) -> Any:
        spec = self._spec
        if spec is None and self._spec_json is not None:
            from loadtest_core._models import TestSpec

            spec = self._spec = TestSpec.from_data(json.loads(self._spec_json))
        return spec

    @spec.setter
    def spec(self, value: Any) -> None:
        self._spec, self._spec_json = value, None

    @property
    def spec_json(self) -> str | None:
        """The spec as compact JSON (what a store keeps), built on first read."""
        text = self._spec_json
        if text is None and self._spec is not None:
            text = self._spec_json = json.dumps(self._spec.to_data(), separators=(",", ":"))
        return text

    @spec_json.setter
    def spec_json(self, value: str | None) -> None:
        self._spec, self._spec_json = None, value

    @property
    def status(self) -> Status:
        return self.phase.status

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None

    @property
    def owner(self) -> str | None:
        """Who holds the job: the assigned agent, else the agent it was handed out to."""
        return self.assigned_agent_id or self.holder

    def copy(self) -> TestState:
        new = TestState.__new__(TestState)
        new.id, new.phase, new.version = self.id, self.phase, self.version
        new.created_at, new.created_by = self.created_at, self.created_by
        new.started_at, new.finished_at = self.started_at, self.finished_at
        new.error, new.imbalance = self.error, self.imbalance
        new.assigned_agent_id, new.rank = self.assigned_agent_id, self.rank
        new._spec, new._spec_json = self._spec, self._spec_json
        new.holder, new.contact_at, new.due_at = self.holder, self.contact_at, self.due_at
        new.entered_at, new.stamp = self.entered_at, self.stamp
        return new

    def fields(self) -> dict[str, Any]:
        """Every lifecycle field by name: what replay reproduces and invariants compare."""
        return {name: getattr(self, name) for name in TestState._LIFECYCLE}

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
    wrong_agent: Outcome | None
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
            wrong_agent=None
            if rule.trigger not in AGENT_TRIGGERS
            else Outcome(NOT_HOLDER[0], rule.trigger.value, src.status, src.status, NOT_HOLDER[1]),
            starts=accepted
            and dest is not None
            and src.status is Status.CREATED
            and dest.status in ACTIVE,
            finishes=accepted
            and dest is not None
            and dest.status in FINISHED
            and src.status not in FINISHED,
            fails=accepted
            and dest is not None
            and dest.status is Status.FAILED
            and src.status is not Status.FAILED,
        )
    assert not dest_of, dest_of
    return table


COMPILED: dict[str, dict[str, _Compiled]] = _compile()
_IMBALANCE = Trigger.IMBALANCE.value


def apply(state: TestState, event: Event, now: float) -> Outcome:
    """Apply ``event`` at time ``now``; a rejected event changes nothing."""
    entry = COMPILED[state.phase.name][event.trigger]
    wrong = entry.wrong_agent
    agent = event.agent_id
    if wrong is not None:
        owner = state.assigned_agent_id or state.holder
        if owner is not None and agent != owner:
            return wrong
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
