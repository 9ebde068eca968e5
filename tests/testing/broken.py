"""Deliberately broken targets: each gets exactly one rule of the contract wrong.

Most are an ``EngineTarget`` with one method changed, as a server with that
bug would behave on the wire (they use only the engine's public API); the
batch stop that half-applies is a real HTTP server with a broken plan
resolver; ``NonAtomicEngine`` stops a test with a read-modify-write that a
concurrent claim can slip into.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable
from typing import Any

from loadtest_core import (
    AgentStatus,
    Commit,
    Engine,
    InvalidArgument,
    Kind,
    LogRecord,
    ManualClock,
    MemoryStore,
    NotFound,
    Operation,
    Policies,
    Rejected,
    Status,
    Stop,
    StopTestMetadata,
    TokenAuth,
    apply,
)
from loadtest_core.http import create_app
from loadtest_core.http._app import TagPlanResolver
from loadtest_core.testing import EngineTarget, JobStatus, SignalAnswer, TargetError
from loadtest_core.testing._engine_target import counting_ids
from loadtest_core.testing._target import Code

RANK = {
    JobStatus.INITIATED: 1,
    JobStatus.PREPARING: 2,
    JobStatus.WAITING_FOR_A_COMMAND_TO_RUN: 3,
    JobStatus.RUNNING: 4,
    JobStatus.FINISHING: 5,
    JobStatus.POST_PROCESS: 6,
}
STATUS_RANK = {
    Status.INITIATED: 1,
    Status.PREPARING: 2,
    Status.WAITING: 3,
    Status.RUNNING: 4,
    Status.FINISHING: 5,
    Status.POST_PROCESSING: 6,
}


def _status(target: EngineTarget, test_id: str) -> Status | None:
    try:
        summary = target.engine.get(test_id).summary
    except (NotFound, InvalidArgument):
        return None
    return None if summary is None else summary.status


class OutcomeRefusedWhileStopping(EngineTarget):
    """Wrong transition: STOPPING + claim FINISHED is refused instead of ending DONE."""

    def claim(self, job_id: str, agent: str | None, status: JobStatus, error: str = "") -> None:
        if status is JobStatus.FINISHED and _status(self, job_id) is Status.STOPPING:
            raise TargetError(Code.FAILED_PRECONDITION, "the test is being stopped")
        super().claim(job_id, agent, status, error)


class ImbalanceWithoutVersionBump(EngineTarget):
    """Missing version bump: an imbalance report changes the test but not its version."""

    def __init__(self) -> None:
        super().__init__()
        self.unbumped: dict[str, int] = {}

    def report_imbalance(
        self, job_id: str, agent: str | None, at: int, rps: int, comment: str = ""
    ) -> None:
        before = super().version(job_id)
        super().report_imbalance(job_id, agent, at, rps, comment)
        if before is not None and super().version(job_id) == before + 1:
            self.unbumped[job_id] = self.unbumped.get(job_id, 0) + 1

    def version(self, test_id: str) -> int | None:
        v = super().version(test_id)
        return None if v is None else v - self.unbumped.get(test_id, 0)

    def events(self, after_seq: int = 0) -> list[dict[str, Any]] | None:
        out = []
        for r in super().events(after_seq) or []:
            r = dict(r)
            r["version"] -= self.unbumped.get(r["test_id"], 0) if r["event"] != "create" else 0
            out.append(r)
        return out


class SecondStopOperation(EngineTarget):
    """A second stop operation: Stop of a STOPPING test starts a new operation."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: dict[str, str] = {}
        self.numbers = itertools.count(1)

    def stop(self, test_id: str) -> Operation:
        stopping = _status(self, test_id) is Status.STOPPING
        op = super().stop(test_id)
        if not stopping:
            return op
        copy = f"{op.id}-again-{next(self.numbers)}"
        self.copies[copy] = op.id
        return op.model_copy(update={"id": copy})

    def get_operation(self, operation_id: str) -> Operation:
        original = self.copies.get(operation_id)
        if original is None:
            return super().get_operation(operation_id)
        return super().get_operation(original).model_copy(update={"id": operation_id})


class StaleClaimRefused(EngineTarget):
    """A stale claim (rank going backwards) answered FAILED_PRECONDITION: the agent would quit."""

    def claim(self, job_id: str, agent: str | None, status: JobStatus, error: str = "") -> None:
        current = _status(self, job_id)
        super().claim(job_id, agent, status, error)
        if status in RANK and current in STATUS_RANK and RANK[status] < STATUS_RANK[current]:
            raise TargetError(Code.FAILED_PRECONDITION, "stale report")


class PollIsNotContact(EngineTarget):
    """LOST while the agent polls: GetSignal answers, but does not count as contact."""

    def poll(self, job_id: str, agent: str | None) -> SignalAnswer:
        from loadtest_core import SignalKind

        status = _status(self, job_id)
        if status is None or status is Status.LOST:
            return super().poll(job_id, agent)
        if status in (Status.STOPPING, Status.DONE, Status.FAILED, Status.STOPPED) or status in (
            Status.AUTOSTOPPED,
            Status.CANCELLED,
            Status.DELETING,
        ):
            return SignalAnswer(SignalKind.STOP, 0.0, 1.0)
        if status is Status.WAITING:
            return SignalAnswer(SignalKind.RUN_IN, 0.0, 1.0)
        return SignalAnswer(SignalKind.NONE, 0.0, 1.0)


class OperationDoneEarly(EngineTarget):
    """An operation done before its test is terminal: a STOPPING test's stop shows done."""

    def get_operation(self, operation_id: str) -> Operation:
        op = super().get_operation(operation_id)
        if op.done or op.metadata is None:
            return op
        test = self.engine.get(op.metadata.test_id)
        return Operation(
            id=op.id,
            description=op.description,
            created_at=op.created_at,
            created_by=op.created_by,
            modified_at=op.modified_at,
            done=True,
            metadata=op.metadata,
            response=test,
        )


class LogMislabelsClaims(EngineTarget):
    """A replay mismatch: the log records FINISHING claims as RUNNING ones."""

    def events(self, after_seq: int = 0) -> list[dict[str, Any]] | None:
        out = []
        for r in super().events(after_seq) or []:
            if r["event"] == "claim_FINISHING":
                r = {
                    **r,
                    "event": "claim_RUNNING",
                    "payload": {**r["payload"], "status": "RUNNING"},
                }
            out.append(r)
        return out


class HeartbeatIgnored(EngineTarget):
    """Busy heartbeats are dropped, so a test whose agent only heartbeats goes LOST."""

    def heartbeat(self, agent: str, status: AgentStatus) -> None:
        return None


class DeleteForceStops(EngineTarget):
    """Delete of a running test is accepted (it is stopped and deleted) instead of refused."""

    def delete(self, test_id: str) -> None:
        status = _status(self, test_id)
        if status in STATUS_RANK or status is Status.STOPPING:
            self.engine.stop(test_id, principal=self.principal)
            owner = self.engine.job_holder(test_id)
            assert owner is not None
            self.engine.claim(test_id, owner, Status.STOPPED)
        super().delete(test_id)


class LostTooLate(EngineTarget):
    """LOST fires late: the engine waits twice lost_after, the server says lost_after."""

    def __init__(self) -> None:
        engine = Engine(
            MemoryStore(),
            clock=ManualClock(1_700_000_000.0),
            policies=Policies(lost_after=60),
            ids=counting_ids(),
        )
        super().__init__(engine)
        self.info = type(self.info)(**{**_fields(self.info), "lost_after": 30.0})


class ClaimTakesOver(EngineTarget):
    """The assigned agent changes: another agent's claim takes the job over."""

    def claim(self, job_id: str, agent: str | None, status: JobStatus, error: str = "") -> None:
        owner = None
        with contextlib.suppress(NotFound, InvalidArgument):
            owner = self.engine.job_holder(job_id)
        if agent is not None and owner is not None and agent != owner:
            agent = owner
        super().claim(job_id, agent, status, error)


def _fields(info: Any) -> dict[str, Any]:
    return {name: getattr(info, name) for name in info.__dataclass_fields__}


class FirstTestOnly(TagPlanResolver):
    """Half-applies a batch: each plan stops only its first test."""

    def tests_for_plan(self, engine: Engine, plan_id: int) -> list[str]:
        return super().tests_for_plan(engine, plan_id)[:1]


def half_applying_app(engine: Any, auth: TokenAuth) -> Any:
    return create_app(engine, auth, FirstTestOnly())


def pretending_app(engine: Any, auth: TokenAuth) -> Any:
    """A batch stop that answers success and stops nothing."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def stop_execution(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"data": None, "errors": None})

    return Starlette(routes=[Route("/stop/execution", stop_execution, methods=["POST"])])


class NonAtomicEngine(Engine):
    """Stop as read, think, write: a claim landing in between is overwritten (a lost update)."""

    def __init__(self, *args: Any, window: float = 0.003, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.window = window

    def stop(self, test_id: str, *, principal: str = "") -> Operation:
        before = self.store.get_test(test_id)
        if before is None:
            raise NotFound(f"test {test_id} not found")
        work = before.copy()
        now = self.now()
        outcome = apply(work, Stop(principal), now)
        if not outcome.ok:
            raise Rejected(outcome)
        if outcome.kind is not Kind.ACCEPTED or work.status is not Status.STOPPING:
            return super().stop(test_id, principal=principal)
        time.sleep(self.window)
        current = self.store.get_test(test_id)
        assert current is not None
        work.version = current.version + 1
        work.stamp = current.stamp + 1
        record = LogRecord(
            0,
            test_id,
            now,
            principal,
            "stop",
            {"principal": principal},
            current.status,
            Status.STOPPING,
            Kind.ACCEPTED,
            "stop requested",
            work.version,
        )
        self.store.commit(Commit(test_id, current.stamp, work, False, (), (record,)))
        return Operation(
            id=f"op-{test_id}-{now}",
            done=False,
            created_by=principal,
            metadata=StopTestMetadata(test_id=test_id),
        )


BROKEN: dict[str, tuple[Callable[[], EngineTarget], tuple[str, ...]]] = {
    "wrong transition (STOPPING + FINISHED refused)": (OutcomeRefusedWhileStopping, ("§3",)),
    "missing version bump": (ImbalanceWithoutVersionBump, ("§4.12",)),
    "a second stop operation": (SecondStopOperation, ("§5",)),
    "a stale claim answered FAILED_PRECONDITION": (StaleClaimRefused, ("§3",)),
    "LOST while the agent polls": (PollIsNotContact, ("§4.10",)),
    "an operation done before the test is terminal": (OperationDoneEarly, ("§4.11",)),
    "a replay mismatch": (LogMislabelsClaims, ("§3", "§4.12")),
    "heartbeats ignored": (HeartbeatIgnored, ("§4.10",)),
    "delete of a running test accepted": (DeleteForceStops, ("§3",)),
    "LOST too late": (LostTooLate, ("§4.10",)),
    "another agent's claim takes the job over": (ClaimTakesOver, ("§3",)),
}
