"""Turning live state into the documents' JSON shape (and the immutable models)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loadtest_core._lifecycle import TestState
from loadtest_core._models import ImbalancePoint, Operation, StopTestMetadata, Summary, Test
from loadtest_core._records import StopOperation
from loadtest_core._time import format_time

if TYPE_CHECKING:
    from loadtest_core._models import TestSpec

__all__ = ["format_time", "operation_data", "operation_model", "test_data", "test_model"]


def test_data(state: TestState) -> dict[str, Any]:
    """The ``Test`` message of a live test, as proto3 JSON data."""
    spec: TestSpec | None = state.spec
    summary: dict[str, Any] = {
        "status": state.status.name,
        "created_at": format_time(state.created_at),
        "created_by": state.created_by,
        "is_finished": state.finished_at is not None,
        "error": state.error,
        "assigned_agent_id": state.assigned_agent_id or "",
    }
    if state.started_at is not None:
        summary["started_at"] = format_time(state.started_at)
    if state.finished_at is not None:
        summary["finished_at"] = format_time(state.finished_at)
    if state.imbalance is not None:
        at, rps, comment = state.imbalance
        summary["imbalance_point"] = {"at": format_time(at), "rps": str(rps), "comment": comment}
    out: dict[str, Any] = {"id": state.id, "summary": summary}
    if spec is not None:
        out.update(spec.to_data())
    return out


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def test_model(state: TestState) -> Test:
    """The immutable ``Test`` snapshot, built without re-validating trusted live state."""
    imbalance = None
    if state.imbalance is not None:
        at, rps, comment = state.imbalance
        imbalance = ImbalancePoint.model_construct(at=_dt(at), rps=rps, comment=comment)
    summary = Summary.model_construct(
        status=state.phase.status,
        created_at=_dt(state.created_at),
        created_by=state.created_by,
        started_at=_dt(state.started_at),
        finished_at=_dt(state.finished_at),
        is_finished=state.finished_at is not None,
        error=state.error,
        imbalance_point=imbalance,
        assigned_agent_id=state.assigned_agent_id or "",
        artifacts=None,
    )
    spec: TestSpec | None = state.spec
    if spec is None:
        return Test.model_construct(
            id=state.id, configurations=(), details=None, summary=summary, folder_id=""
        )
    return Test.model_construct(
        id=state.id,
        configurations=spec.configurations,
        details=spec.details,
        summary=summary,
        folder_id=spec.folder_id,
    )


def operation_data(op: StopOperation) -> dict[str, Any]:
    """The ``operation.Operation`` of a stop, as proto3 JSON data."""
    out: dict[str, Any] = {
        "id": op.id,
        "description": op.description,
        "created_at": format_time(op.created_at),
        "created_by": op.created_by,
        "modified_at": format_time(op.modified_at),
        "done": op.done,
        "metadata": {"test_id": op.test_id},
    }
    if op.error is not None:
        code, message = op.error
        out["error"] = {"code": code, "message": message, "details": []}
    elif op.response is not None:
        out["response"] = op.response
    return out


def operation_model(op: StopOperation) -> Operation:
    """The ``Operation`` of a stop; a pending one (every Stop's answer) skips validation."""
    if op.done:
        return Operation.from_data(operation_data(op))
    return Operation.model_construct(
        id=op.id,
        description=op.description,
        created_at=_dt(op.created_at),
        created_by=op.created_by,
        modified_at=_dt(op.modified_at),
        done=False,
        metadata=StopTestMetadata.model_construct(test_id=op.test_id),
        error=None,
        response=None,
    )
