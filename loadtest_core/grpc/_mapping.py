"""Every translation table between the wire and the core, in one place."""

from __future__ import annotations

import grpc
from yandex.cloud.loadtesting.agent.v1 import agent_service_pb2, job_service_pb2

from loadtest_core import (
    Aborted,
    AgentStatus,
    InvalidArgument,
    Kind,
    LimitExceeded,
    LoadtestError,
    NotFound,
    PermissionDenied,
    Rejected,
    SignalKind,
    Status,
    StoreError,
    StoreUnavailable,
    Unauthenticated,
    Unsupported,
)

JobStatus = job_service_pb2.ClaimJobStatusRequest.JobStatus
NOT_FOUND_ERROR = "agent could not find the job"

# agent job status -> (test status, error used when the agent sent none)
JOB_STATUS: dict[int, tuple[Status, str]] = {
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
    JobStatus.NOT_FOUND: (Status.FAILED, NOT_FOUND_ERROR),
}

_AgentProto = agent_service_pb2.ClaimAgentStatusRequest.Status
AGENT_STATUS: dict[int, AgentStatus] = {
    _AgentProto.READY_FOR_TEST: AgentStatus.READY_FOR_TEST,
    _AgentProto.PREPARING_TEST: AgentStatus.PREPARING_TEST,
    _AgentProto.TESTING: AgentStatus.TESTING,
    _AgentProto.TANK_FAILED: AgentStatus.TANK_FAILED,
    _AgentProto.STOPPED: AgentStatus.STOPPED,
    _AgentProto.UPLOADING_ARTIFACTS: AgentStatus.UPLOADING_ARTIFACTS,
    _AgentProto.ERROR: AgentStatus.ERROR,
}

_Signal = job_service_pb2.JobSignalResponse.Signal
SIGNAL: dict[SignalKind, int] = {
    SignalKind.NONE: _Signal.SIGNAL_UNSPECIFIED,
    SignalKind.STOP: _Signal.STOP,
    SignalKind.RUN_IN: _Signal.RUN_IN,
}

# Outcome of a claim -> the gRPC answer: stale claims are acknowledged (the
# real agent aborts its job on FAILED_PRECONDITION or NOT_FOUND).
CLAIM_CODE: dict[Kind, grpc.StatusCode] = {
    Kind.ACCEPTED: grpc.StatusCode.OK,
    Kind.UNCHANGED: grpc.StatusCode.OK,
    Kind.NOTED: grpc.StatusCode.OK,
    Kind.STALE: grpc.StatusCode.OK,
    Kind.CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
}


# Error class -> (gRPC status, ErrorInfo reason). Looked up along the class's MRO, so a
# subclass without its own row answers as its parent.
ERROR_CODES: dict[type[LoadtestError], tuple[grpc.StatusCode, str]] = {
    LoadtestError: (grpc.StatusCode.INTERNAL, "INTERNAL"),
    InvalidArgument: (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    Unsupported: (grpc.StatusCode.INVALID_ARGUMENT, "UNSUPPORTED"),
    NotFound: (grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
    Unauthenticated: (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
    PermissionDenied: (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"),
    Rejected: (grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION"),
    Aborted: (grpc.StatusCode.ABORTED, "ABORTED"),
    LimitExceeded: (grpc.StatusCode.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED"),
    StoreError: (grpc.StatusCode.INTERNAL, "STORE_ERROR"),
    StoreUnavailable: (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE"),
}


def grpc_error(error: LoadtestError) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and ErrorInfo reason for an error (``ERROR_CODES``)."""
    for cls in type(error).__mro__:
        found = ERROR_CODES.get(cls)
        if found is not None:
            return found
    return ERROR_CODES[LoadtestError]
