"""``EngineTarget``: an in-process ``Engine``, driven like a server.

On a ``ManualClock`` the kit controls time (``advance`` moves the clock and
ticks); on a real clock time is real (concurrency histories need that). It
sees each test's ``version`` and reads the event log, so every invariant is
checked exactly.
Calls are translated as the gRPC adapter does (an agent that sends no id is
the job's holder; stale claims are success, conflicts FAILED_PRECONDITION);
errors are mapped in the one table below.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from loadtest_core import (
    Aborted,
    AgentStatus,
    Engine,
    InvalidArgument,
    Kind,
    LoadtestError,
    ManualClock,
    MemoryStore,
    NotFound,
    Operation,
    PermissionDenied,
    Policies,
    Rejected,
    SignalKind,
    Status,
    StoreError,
    Test,
    TestSpec,
    Unauthenticated,
)
from loadtest_core.testing._target import (
    BatchAnswer,
    Code,
    JobStatus,
    SignalAnswer,
    TargetError,
    TargetInfo,
)

__all__ = ["EngineTarget", "error_code"]

_ERRORS: tuple[tuple[type[LoadtestError], Code], ...] = (
    (InvalidArgument, Code.INVALID_ARGUMENT),
    (NotFound, Code.NOT_FOUND),
    (Rejected, Code.FAILED_PRECONDITION),
    (Aborted, Code.ABORTED),
    (Unauthenticated, Code.UNAUTHENTICATED),
    (PermissionDenied, Code.PERMISSION_DENIED),
    (StoreError, Code.INTERNAL),
)

_JOB: dict[JobStatus, tuple[Status, str]] = {
    JobStatus.INITIATED: (Status.INITIATED, ""),
    JobStatus.PREPARING: (Status.PREPARING, ""),
    JobStatus.WAITING_FOR_A_COMMAND_TO_RUN: (Status.WAITING, ""),
    JobStatus.RUNNING: (Status.RUNNING, ""),
    JobStatus.FINISHING: (Status.FINISHING, ""),
    JobStatus.POST_PROCESS: (Status.POST_PROCESSING, ""),
    JobStatus.FINISHED: (Status.DONE, ""),
    JobStatus.STOPPED: (Status.STOPPED, ""),
    JobStatus.FAILED: (Status.FAILED, ""),
    JobStatus.AUTOSTOPPED: (Status.AUTOSTOPPED, ""),
    JobStatus.NOT_FOUND: (Status.FAILED, "agent could not find the job"),
}


def error_code(exc: LoadtestError) -> Code:
    """The gRPC code a client would see for an engine error."""
    for cls, code in _ERRORS:
        if isinstance(exc, cls):
            return code
    return Code.INTERNAL


def counting_ids() -> Callable[[str], str]:
    """Ids ``test-000001``, ``op-000002``...: a rerun of an example sees the same ids.

    Ties in ``created_at`` are ordered by id, so random ids would make a replayed
    example take another path (hypothesis then reports it as flaky).
    """
    numbers = itertools.count(1)
    return lambda kind: f"{kind}-{next(numbers):06d}"


def _contact_every(policies: Policies) -> float:
    """``Policies.contact_every`` where the engine has it (None: a tenth of lost_after), else 0."""
    value = getattr(policies, "contact_every", 0.0)
    if value is None:
        return policies.lost_after / 10
    return float(value)


class EngineTarget:
    """An ``Engine`` (default: a ``MemoryStore`` on a ``ManualClock``) as a kit ``Target``."""

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        policies: Policies | None = None,
        principal: str = "user",
        name: str = "engine",
        lateness: float = 0.5,
    ) -> None:
        if engine is None:
            engine = Engine(
                MemoryStore(),
                clock=ManualClock(1_700_000_000.0),
                policies=policies or Policies(lost_after=30.0),
                ids=counting_ids(),
            )
        self.engine = engine
        self.manual = engine.clock if isinstance(engine.clock, ManualClock) else None
        self.principal = principal
        p = engine.policies
        self.info = TargetInfo(
            name=name,
            lost_after=p.lost_after,
            contact_every=_contact_every(p),
            lease_after=p.lease_after,
            lost_expiry=p.lost_expiry,
            deletion_delay=p.deletion_delay,
            controls_time=self.manual is not None,
            tick_every=0.0 if self.manual is not None else p.lost_after / 4,
            lateness=0.0 if self.manual is not None else lateness,
            shows_version=True,
            has_log=True,
            oldest_first=True,
        )

    # --- time ---------------------------------------------------------------------

    def now(self) -> float:
        return self.engine.clock.now()

    def advance(self, seconds: float) -> None:
        """Move a ManualClock and tick; on any other clock, sleep (run a ticker yourself)."""
        if self.manual is None:
            time.sleep(seconds)
            return
        self.manual.advance(seconds)
        self._call(self.engine.tick)

    # --- users ----------------------------------------------------------------------

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LoadtestError as exc:
            raise TargetError(error_code(exc), exc.message) from None
        except Exception as exc:  # what a server would answer INTERNAL for
            raise TargetError(Code.INTERNAL, f"{type(exc).__name__}: {exc}") from exc

    def create(self, spec: TestSpec) -> Test:
        test: Test = self._call(self.engine.create, spec, principal=self.principal)
        return test

    def get(self, test_id: str) -> Test:
        test: Test = self._call(self.engine.get, test_id)
        return test

    def list_tests(
        self, filter: str = "", page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Test], str]:
        page: tuple[list[Test], str] = self._call(
            self.engine.list_tests, filter=filter, page_size=page_size, page_token=page_token
        )
        return page

    def stop(self, test_id: str) -> Operation:
        op: Operation = self._call(self.engine.stop, test_id, principal=self.principal)
        return op

    def get_operation(self, operation_id: str) -> Operation:
        op: Operation = self._call(self.engine.get_operation, operation_id)
        return op

    def delete(self, test_id: str) -> None:
        self._call(self.engine.delete, test_id, principal=self.principal)

    def stop_plans(self, body: bytes, *, token: str | None = None) -> BatchAnswer:
        raise TargetError(Code.UNIMPLEMENTED, "an in-process engine has no HTTP endpoint")

    # --- agents ---------------------------------------------------------------------

    def register_agent(self, name: str, labels: dict[str, str]) -> str:
        agent = self._call(self.engine.register_agent, name=name, labels=labels)
        return str(agent.id)

    def take_job(self, agent: str) -> str | None:
        job = self._call(self.engine.next_job, agent)
        return None if job is None else str(job.id)

    def _holder(self, job_id: str, agent: str | None) -> str:
        if agent is not None:
            return agent
        holder = self._call(self.engine.job_holder, job_id)
        if holder is None:
            raise TargetError(Code.NOT_FOUND, f"job {job_id} was not handed out")
        return str(holder)

    def _answer(self, kind: Kind, message: str) -> None:
        if kind is Kind.CONFLICT:
            raise TargetError(Code.FAILED_PRECONDITION, message)

    def claim(self, job_id: str, agent: str | None, status: JobStatus, error: str = "") -> None:
        if status is JobStatus.JOB_STATUS_UNSPECIFIED:
            claimant = self._holder(job_id, agent)
            outcome = self._call(self.engine.claim, job_id, claimant, None, error)
        else:
            claimant = self._holder(job_id, agent)
            mapped, default = _JOB[status]
            outcome = self._call(self.engine.claim, job_id, claimant, mapped, error or default)
        self._answer(outcome.kind, outcome.describe())

    def poll(self, job_id: str, agent: str | None) -> SignalAnswer:
        try:
            claimant = self._holder(job_id, agent)
        except TargetError as exc:
            if exc.code is not Code.NOT_FOUND:
                raise
            return SignalAnswer(SignalKind.STOP, 0.0, self.engine.policies.signal_wait)
        signal = self._call(self.engine.signal, job_id, claimant)
        return SignalAnswer(signal.kind, signal.run_in, signal.wait)

    def heartbeat(self, agent: str, status: AgentStatus) -> None:
        self._call(self.engine.agent_heartbeat, agent, status)

    def report_imbalance(
        self, job_id: str, agent: str | None, at: int, rps: int, comment: str = ""
    ) -> None:
        claimant = self._holder(job_id, agent)
        outcome = self._call(
            self.engine.report_imbalance, job_id, claimant, at=float(at), rps=rps, comment=comment
        )
        self._answer(outcome.kind, outcome.describe())

    def bad_credentials(self, call: str) -> None:
        raise TargetError(Code.UNIMPLEMENTED, "an in-process engine has no credentials")

    # --- what only an in-process target shows ------------------------------------------

    def version(self, test_id: str) -> int | None:
        try:
            return int(self.engine.state(test_id).version)
        except NotFound:
            return None

    def events(self, after_seq: int = 0) -> list[dict[str, Any]] | None:
        return [r.to_data() for r in self.engine.events(after_seq)]

    def close(self) -> None:
        self.engine.store.close()
