"""The ``Target`` port: what the kit drives, in the vocabulary of the wire.

A target is a control plane seen from outside: a user who creates, stops,
deletes, gets and lists tests, and agents that register, take jobs, claim,
poll, heartbeat and report imbalance. Every answer is what a client of the
Yandex API would see (a ``Test``, an ``Operation``, a signal, or a gRPC code),
so one state machine checks an in-process ``Engine`` and anyone's server alike.
Capabilities a wire does not show (a test's ``version``, the event log) are
optional: a target answers ``None`` when it cannot.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from loadtest_core import AgentStatus, Operation, SignalKind, Test, TestSpec

__all__ = [
    "BatchAnswer",
    "Code",
    "JobStatus",
    "SignalAnswer",
    "Target",
    "TargetError",
    "TargetInfo",
]


class Code(enum.StrEnum):
    """gRPC status code names: how every refusal is compared, whatever the target."""

    OK = "OK"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    UNAVAILABLE = "UNAVAILABLE"
    DATA_LOSS = "DATA_LOSS"
    UNAUTHENTICATED = "UNAUTHENTICATED"


class TargetError(Exception):
    """A call the target refused: its code and message, as a client would see them."""

    def __init__(self, code: Code, message: str = "") -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


class JobStatus(enum.StrEnum):
    """``agent.v1.ClaimJobStatusRequest.JobStatus``: what an agent claims, by wire name."""

    JOB_STATUS_UNSPECIFIED = "JOB_STATUS_UNSPECIFIED"
    INITIATED = "INITIATED"
    PREPARING = "PREPARING"
    WAITING_FOR_A_COMMAND_TO_RUN = "WAITING_FOR_A_COMMAND_TO_RUN"
    RUNNING = "RUNNING"
    FINISHING = "FINISHING"
    POST_PROCESS = "POST_PROCESS"
    FINISHED = "FINISHED"
    STOPPED = "STOPPED"
    FAILED = "FAILED"
    AUTOSTOPPED = "AUTOSTOPPED"
    NOT_FOUND = "NOT_FOUND"


@dataclass(frozen=True, slots=True)
class SignalAnswer:
    """``JobService.GetSignal``'s answer: what to do, in how long, when to ask again."""

    kind: SignalKind
    run_in: float = 0.0
    wait: float = 0.0


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """``POST /stop/execution``'s answer: HTTP status and the parsed envelope (None if not JSON)."""

    status: int
    body: Any


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """What the kit must know about a target to say what it may and must do.

    Times are seconds. ``controls_time`` means ``advance`` moves the target's
    clock and fires its deadlines at once (an in-process engine on a
    ``ManualClock``); otherwise time is real, ``advance`` sleeps, and the
    target's own ticker fires deadlines at least every ``tick_every`` seconds.
    ``lateness`` is extra slack for a real-time target's ticker and calls
    (scheduling on a busy machine); ``clock_skew`` bounds how far the target's
    clock may be from the kit's when timestamps are compared.
    ``deletion_delay`` None means "removed some time after DELETING, no promise when".
    ``shared`` says other runs' tests live on the target too (a server that is
    not restarted between examples): the kit then only looks at its own.
    ``shows_version`` and ``has_log`` say whether ``version`` and ``events`` answer.
    ``oldest_first``: the target promises to hand out the oldest matching test
    (the contract only says "a matching one"; this project's engine promises it).
    """

    name: str
    lost_after: float
    contact_every: float = 0.0
    lease_after: float | None = None
    lost_expiry: float | None = None
    deletion_delay: float | None = 0.0
    controls_time: bool = True
    tick_every: float = 0.0
    lateness: float = 0.0
    clock_skew: float = 0.0
    shared: bool = False
    has_http: bool = False
    checks_auth: bool = False
    shows_version: bool = False
    has_log: bool = False
    oldest_first: bool = False
    tag_key: str = "plan_id"

    @property
    def lease(self) -> float:
        return self.lost_after if self.lease_after is None else self.lease_after


@runtime_checkable
class Target(Protocol):
    """A control plane the kit can drive. Refusals raise ``TargetError``.

    ``agent`` None on a job call means "no agent id sent": the server takes
    the caller to be the job's holder (what the real agent does).
    """

    info: TargetInfo

    def now(self) -> float:
        """The target's clock (exact when it controls time, else the kit's wall clock)."""
        ...

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass: move the clock and tick, or sleep."""
        ...

    def create(self, spec: TestSpec) -> Test: ...

    def get(self, test_id: str) -> Test: ...

    def list_tests(
        self, filter: str = "", page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Test], str]: ...

    def stop(self, test_id: str) -> Operation: ...

    def get_operation(self, operation_id: str) -> Operation: ...

    def delete(self, test_id: str) -> None: ...

    def stop_plans(self, body: bytes, *, token: str | None = None) -> BatchAnswer:
        """``POST /stop/execution`` with ``body``; ``token`` None sends the user token."""
        ...

    def register_agent(self, name: str, labels: dict[str, str]) -> str:
        """Register an agent; returns the id the target gave it."""
        ...

    def take_job(self, agent: str) -> str | None:
        """``JobService.Get`` for ``agent``: the job id handed out, or None (no job)."""
        ...

    def claim(self, job_id: str, agent: str | None, status: JobStatus, error: str = "") -> None:
        """``JobService.ClaimStatus``; returns when the target answered OK."""
        ...

    def poll(self, job_id: str, agent: str | None) -> SignalAnswer: ...

    def heartbeat(self, agent: str, status: AgentStatus) -> None: ...

    def report_imbalance(
        self, job_id: str, agent: str | None, at: int, rps: int, comment: str = ""
    ) -> None:
        """Agent ``TestService.Update`` with an imbalance point at ``at`` (Unix seconds)."""
        ...

    def bad_credentials(self, call: str) -> None:
        """Make ``call`` ("get", "stop", "claim") with a wrong or other-role token."""
        ...

    def version(self, test_id: str) -> int | None:
        """The test's ``version`` when the target shows it, else None."""
        ...

    def events(self, after_seq: int = 0) -> list[dict[str, Any]] | None:
        """Event-log records after ``after_seq`` (``LogRecord.to_data`` shape), or None."""
        ...

    def close(self) -> None: ...
