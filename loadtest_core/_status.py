"""Test statuses and their groups (spec §1).

Values are the protobuf numbers of ``yandex.cloud.loadtesting.api.v1.test.Status``
so that wire conversion is the identity; nothing orders statuses by number —
execution order is by :data:`EXECUTION_RANK` (WAITING=12 sits between PREPARING
and RUNNING).
"""

from __future__ import annotations

import enum

__all__ = [
    "ACTIVE",
    "EXECUTION",
    "EXECUTION_RANK",
    "FINISHED",
    "LIFECYCLE",
    "TERMINAL",
    "AgentStatus",
    "Status",
]


class Status(enum.Enum):
    STATUS_UNSPECIFIED = 0
    CREATED = 1
    INITIATED = 2
    PREPARING = 3
    RUNNING = 4
    FINISHING = 5
    DONE = 6
    POST_PROCESSING = 7
    FAILED = 8
    STOPPING = 9
    STOPPED = 10
    AUTOSTOPPED = 11
    WAITING = 12
    DELETING = 13
    LOST = 14
    CANCELLED = 15

    __hash__ = object.__hash__  # members are singletons; identity hashing is C-fast

    @classmethod
    def parse(cls, value: object) -> Status:
        """A stored status from a name or protobuf number; UNSPECIFIED is refused."""
        from loadtest_core._errors import InvalidArgument

        status: Status | None = None
        if isinstance(value, Status):
            status = value
        elif isinstance(value, str):
            status = cls.__members__.get(value.upper())
        elif isinstance(value, int) and not isinstance(value, bool):
            status = cls._value2member_map_.get(value)  # type: ignore[assignment]
        if status is None or status is Status.STATUS_UNSPECIFIED:
            raise InvalidArgument(f"status: {value!r} is not a known test status", field="status")
        return status

    @property
    def rank(self) -> int:
        """Execution rank 1..6, or 0 outside the execution stages."""
        return EXECUTION_RANK.get(self, 0)

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_active(self) -> bool:
        return self in ACTIVE


EXECUTION: tuple[Status, ...] = (
    Status.INITIATED,
    Status.PREPARING,
    Status.WAITING,
    Status.RUNNING,
    Status.FINISHING,
    Status.POST_PROCESSING,
)
EXECUTION_RANK: dict[Status, int] = {s: i for i, s in enumerate(EXECUTION, start=1)}
ACTIVE: frozenset[Status] = frozenset(EXECUTION) | {Status.STOPPING}
TERMINAL: frozenset[Status] = frozenset(
    {Status.DONE, Status.FAILED, Status.STOPPED, Status.AUTOSTOPPED, Status.CANCELLED}
)
LIFECYCLE: tuple[Status, ...] = (
    Status.CREATED,
    *EXECUTION,
    Status.STOPPING,
    Status.LOST,
    Status.DONE,
    Status.FAILED,
    Status.STOPPED,
    Status.AUTOSTOPPED,
    Status.CANCELLED,
    Status.DELETING,
)
"""Every stored status in the order a test meets them: for tables, legends and pickers."""


FINISHED: frozenset[Status] = TERMINAL | {Status.DELETING}
"""Statuses with ``finished_at`` set: terminal, or being deleted."""


class AgentStatus(enum.Enum):
    """The agent-level heartbeat status (``AgentService.ClaimStatus``)."""

    READY_FOR_TEST = "READY_FOR_TEST"
    PREPARING_TEST = "PREPARING_TEST"
    TESTING = "TESTING"
    TANK_FAILED = "TANK_FAILED"
    STOPPED = "STOPPED"
    UPLOADING_ARTIFACTS = "UPLOADING_ARTIFACTS"
    ERROR = "ERROR"
