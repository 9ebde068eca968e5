"""Plain records the engine keeps in a store: log entries, stop operations, agents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from loadtest_core._status import Status
from loadtest_core._table import Kind

__all__ = ["AgentRecord", "LogRecord", "StopOperation"]


class LogRecord(NamedTuple):
    """One line of the append-only event log; ``seq`` is 0 until the store numbers it.

    ``payload`` holds everything needed to replay the event: the event's own
    fields, the creation spec for ``create``, the operation id for ``stop``.
    """

    seq: int
    test_id: str
    at: float
    actor: str
    event: str
    payload: dict[str, Any]
    from_status: Status | None
    to_status: Status | None
    outcome: Kind
    reason: str
    version: int

    def to_data(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "test_id": self.test_id,
            "at": self.at,
            "actor": self.actor,
            "event": self.event,
            "payload": self.payload,
            "from": None if self.from_status is None else self.from_status.name,
            "to": None if self.to_status is None else self.to_status.name,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "version": self.version,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> LogRecord:
        def status(v: str | None) -> Status | None:
            return None if v is None else Status[v]

        return cls(
            seq=int(data["seq"]),
            test_id=str(data["test_id"]),
            at=float(data["at"]),
            actor=str(data["actor"]),
            event=str(data["event"]),
            payload=dict(data["payload"]),
            from_status=status(data["from"]),
            to_status=status(data["to"]),
            outcome=Kind(data["outcome"]),
            reason=str(data["reason"]),
            version=int(data["version"]),
        )


@dataclass(slots=True)
class StopOperation:
    """A ``TestService.Stop`` long-running operation (spec §5), live and mutable.

    ``response`` is the Test snapshot (JSON data) taken when the test became
    terminal; ``error`` is a ``google.rpc.Status`` as (code, message).
    """

    id: str
    test_id: str
    created_at: float
    created_by: str
    modified_at: float
    done: bool = False
    error: tuple[int, str] | None = None
    response: dict[str, Any] | None = None
    description: str = "Stop test"

    def copy(self) -> StopOperation:
        return StopOperation(
            self.id,
            self.test_id,
            self.created_at,
            self.created_by,
            self.modified_at,
            self.done,
            self.error,
            self.response,
            self.description,
        )


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """A registered agent: what ``match_by_filter`` selectors are matched against.

    ``seen_at`` is its last recorded sign of life (any heartbeat or job call:
    what keeps a hand-out's lease), ``owner`` the principal of the token it
    registered with.
    """

    id: str
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    registered_at: float = 0.0
    folder_id: str = ""
    seen_at: float = 0.0
    owner: str = ""

    def lookup(self, name: str) -> object:
        if name == "id":
            return self.id
        if name == "name":
            return self.name
        if name.startswith("labels."):
            return self.labels.get(name[len("labels.") :])
        return None

    def to_data(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "labels": dict(self.labels),
            "registered_at": self.registered_at,
            "folder_id": self.folder_id,
            "seen_at": self.seen_at,
            "owner": self.owner,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> AgentRecord:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name", "")),
            labels={str(k): str(v) for k, v in dict(data.get("labels", {})).items()},
            registered_at=float(data.get("registered_at", 0.0)),
            folder_id=str(data.get("folder_id", "")),
            seen_at=float(data.get("seen_at", 0.0)),
            owner=str(data.get("owner", "")),
        )
