"""Servicers: parse the request, call the engine, map the result or the error.

User RPCs (api ``TestService``, ``OperationService``) need a user token;
agent RPCs (registration, heartbeat, jobs, agent ``TestService``) an agent
token. Every RPC not listed answers UNIMPLEMENTED through the generated base
classes. Each call logs one JSON line: method, code, duration, peer.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2, json_format
from google.protobuf.any_pb2 import Any as AnyProto
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from yandex.cloud.loadtesting.agent.v1 import (
    agent_registration_service_pb2,
    agent_registration_service_pb2_grpc,
    agent_service_pb2,
    agent_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
)
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2 as agent_test_service_pb2
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2_grpc as agent_test_service_grpc
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc
from yandex.cloud.operation import operation_pb2, operation_service_pb2_grpc

from loadtest_core import (
    Engine,
    InvalidArgument,
    LoadtestError,
    NotFound,
    Operation,
    Role,
    Test,
    TokenAuth,
)
from loadtest_core._auth import bearer_token, principal_of
from loadtest_core.grpc._convert import operation_to_proto, to_proto
from loadtest_core.grpc._mapping import AGENT_STATUS, CLAIM_CODE, JOB_STATUS, SIGNAL, grpc_code

__all__ = ["add_servicers"]

log = logging.getLogger("loadtest_core.grpc")
DOMAIN = "loadtesting.loadtest-core"
AGENT_ID_METADATA = "x-agent-instance-id"
F = TypeVar("F", bound=Callable[..., Any])


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, reason: str) -> None:
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason


def _status(code: grpc.StatusCode, message: str, reason: str) -> grpc.Status:
    info = AnyProto()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN))
    return rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=message, details=[info])
    )


def _metadata(context: grpc.ServicerContext, key: str) -> str | None:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode("utf-8", "replace")
    return None


def rpc(role: Role) -> Callable[[F], F]:
    """Auth, error mapping and one structured log line around a servicer method."""

    def wrap(method: F) -> F:
        name = method.__name__

        @functools.wraps(method)
        def handler(self: _Base, request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                self.auth.require(_metadata(context, "authorization"), role)
                return method(self, request, context)
            except LoadtestError as exc:
                code, message, reason = grpc_code(exc), exc.message, exc.reason
            except _Abort as exc:
                code, message, reason = exc.code, exc.message, exc.reason
            except Exception:
                log.exception("unexpected failure in %s", name)
                code, message, reason = grpc.StatusCode.INTERNAL, "internal error", "INTERNAL"
            finally:
                log.info(
                    json.dumps(
                        {
                            "rpc": f"{type(self).__name__}.{name}",
                            "code": code.name,
                            "ms": round((time.perf_counter() - started) * 1000, 3),
                            "peer": context.peer(),
                        }
                    )
                )
            context.abort_with_status(_status(code, message, reason))
            raise AssertionError("unreachable")  # pragma: no cover

        return handler  # type: ignore[return-value]

    return wrap


class _Base:
    def __init__(self, engine: Engine, auth: TokenAuth, ops: _DoneOperations) -> None:
        self.engine = engine
        self.auth = auth
        self.ops = ops


class _DoneOperations:
    """Operations finished at once (create, delete, registration), kept for OperationService.Get."""

    def __init__(self, limit: int = 10_000) -> None:
        self._ops: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit

    def add(self, description: str, principal: str, metadata: Any, response: Any) -> Any:
        now = datetime.now(UTC)
        op = operation_pb2.Operation(
            id="op" + uuid.uuid4().hex[:20],
            description=description,
            created_by=principal,
            done=True,
        )
        op.created_at.FromDatetime(now)
        op.modified_at.FromDatetime(now)
        op.metadata.Pack(metadata)
        op.response.Pack(response)
        with self._lock:
            self._ops[op.id] = op
            while len(self._ops) > self._limit:
                self._ops.popitem(last=False)
        return op

    def get(self, op_id: str) -> Any:
        with self._lock:
            return self._ops.get(op_id)


def _unimplemented(context: grpc.ServicerContext) -> Any:
    """What the generated base classes answer for an RPC this server does not offer."""
    context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


def _principal(context: grpc.ServicerContext) -> str:
    return principal_of(bearer_token(_metadata(context, "authorization")))


def _test(test: Test) -> Any:
    return to_proto(test)


class TestService(_Base, test_service_pb2_grpc.TestServiceServicer):
    __test__ = False

    @rpc(Role.USER)
    def Create(self, request: Any, context: grpc.ServicerContext) -> Any:
        data = json_format.MessageToDict(request, preserving_proto_field_name=True)
        spec = {
            "configurations": data.get("configurations", []),
            "details": data.get("test_details", {}),
            "folder_id": data.get("folder_id", ""),
        }
        test = self.engine.create(spec, principal=_principal(context))
        meta = test_service_pb2.CreateTestMetadata(test_id=test.id)
        return self.ops.add("Create test", _principal(context), meta, _test(test))

    @rpc(Role.USER)
    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _test(self.engine.get(request.test_id))

    @rpc(Role.USER)
    def Stop(self, request: Any, context: grpc.ServicerContext) -> Any:
        op = self.engine.stop(request.test_id, principal=_principal(context))
        return operation_to_proto(op, test_service_pb2.StopTestMetadata(test_id=request.test_id))

    @rpc(Role.USER)
    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.engine.delete(request.test_id, principal=_principal(context))
        meta = test_service_pb2.DeleteTestMetadata(test_id=request.test_id)
        return self.ops.add("Delete test", _principal(context), meta, empty_pb2.Empty())

    @rpc(Role.USER)
    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        tests, token = self.engine.list_tests(
            filter=request.filter,
            folder_id=request.folder_id or None,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return test_service_pb2.ListTestsResponse(
            tests=[_test(t) for t in tests], next_page_token=token
        )


class OperationService(_Base, operation_service_pb2_grpc.OperationServiceServicer):
    @rpc(Role.USER)
    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        done = self.ops.get(request.operation_id)
        if done is not None:
            return done
        op: Operation = self.engine.get_operation(request.operation_id)
        assert op.metadata is not None
        meta = test_service_pb2.StopTestMetadata(test_id=op.metadata.test_id)
        return operation_to_proto(op, meta)

    def Cancel(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _unimplemented(context)


class AgentRegistrationService(
    _Base, agent_registration_service_pb2_grpc.AgentRegistrationServiceServicer
):
    @rpc(Role.AGENT)
    def Register(self, request: Any, context: grpc.ServicerContext) -> Any:
        agent = self.engine.register_agent(
            name=request.compute_instance_id,
            labels={"compute_instance_id": request.compute_instance_id}
            if request.compute_instance_id
            else {},
        )
        return agent_registration_service_pb2.RegisterResponse(agent_instance_id=agent.id)

    @rpc(Role.AGENT)
    def ExternalAgentRegister(self, request: Any, context: grpc.ServicerContext) -> Any:
        agent = self.engine.register_agent(
            name=request.name, labels=dict(request.labels), folder_id=request.folder_id
        )
        meta = agent_registration_service_pb2.ExternalAgentRegisterMetadata(
            agent_instance_id=agent.id
        )
        response = agent_registration_service_pb2.RegisterResponse(agent_instance_id=agent.id)
        return self.ops.add("Register external agent", agent.id, meta, response)


class AgentService(_Base, agent_service_pb2_grpc.AgentServiceServicer):
    @rpc(Role.AGENT)
    def ClaimStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        status = AGENT_STATUS.get(request.status)
        if not request.agent_instance_id:
            raise InvalidArgument("agent_instance_id: required", field="agent_instance_id")
        if status is not None:
            self.engine.agent_heartbeat(request.agent_instance_id, status)
        return agent_service_pb2.ClaimAgentStatusResponse(code=0)

    def ReportEventLogs(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _unimplemented(context)


def _agent_for(engine: Engine, job_id: str, context: grpc.ServicerContext) -> str:
    """The calling agent: its x-agent-instance-id metadata, else the job's holder."""
    if not job_id:
        raise InvalidArgument("job_id: required", field="job_id")
    claimed = _metadata(context, AGENT_ID_METADATA)
    if claimed:
        return claimed
    holder = engine.job_holder(job_id)
    if holder is None:
        raise NotFound(f"job {job_id} was not handed out")
    return holder


class JobService(_Base, job_service_pb2_grpc.JobServiceServicer):
    @rpc(Role.AGENT)
    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        agent = request.agent_instance_id or request.compute_instance_id
        if not agent:
            raise InvalidArgument("agent_instance_id: required", field="agent_instance_id")
        job = self.engine.next_job(agent)
        if job is None:
            raise NotFound("no job for this agent yet")
        config = job.test.configurations[0] if job.test.configurations else None
        details = job.test.details
        return job_service_pb2.Job(
            id=job.id,
            config=json.dumps(
                {
                    "config_id": "" if config is None else config.config_id,
                    "test": job.test.to_data(),
                }
            ),
            logging_log_group_id="" if details is None else details.logging_log_group_id,
        )

    @rpc(Role.AGENT)
    def ClaimStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        agent = _agent_for(self.engine, request.job_id, context)
        if request.status == job_service_pb2.ClaimJobStatusRequest.JOB_STATUS_UNSPECIFIED:
            outcome = self.engine.claim(request.job_id, agent, None, request.error)
        else:
            mapped = JOB_STATUS.get(request.status)
            if mapped is None:
                message = f"status: unknown job status {request.status}"
                raise InvalidArgument(message, field="status")
            status, default_error = mapped
            outcome = self.engine.claim(
                request.job_id, agent, status, request.error or default_error
            )
        code = CLAIM_CODE[outcome.kind]
        if code is not grpc.StatusCode.OK:
            raise _Abort(code, outcome.describe(), "CONFLICT")
        return job_service_pb2.ClaimJobStatusResponse(code=code_pb2.OK)

    @rpc(Role.AGENT)
    def GetSignal(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not request.job_id:
            raise InvalidArgument("job_id: required", field="job_id")
        try:
            agent = _agent_for(self.engine, request.job_id, context)
        except NotFound:
            agent = ""
        signal = self.engine.signal(request.job_id, agent) if agent else None
        if signal is None:
            return job_service_pb2.JobSignalResponse(
                signal=job_service_pb2.JobSignalResponse.STOP, wait_duration=1.0
            )
        return job_service_pb2.JobSignalResponse(
            signal=SIGNAL[signal.kind],  # type: ignore[arg-type]
            run_in=signal.run_in,
            wait_duration=signal.wait,
        )

    def GetTransientFile(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _unimplemented(context)


class AgentTestService(_Base, agent_test_service_grpc.TestServiceServicer):
    __test__ = False

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _unimplemented(context)

    @rpc(Role.AGENT)
    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:
        paths = set(request.update_mask.paths)
        job_id = request.test_id
        agent = _agent_for(self.engine, job_id, context)
        if paths & {"imbalance_point", "imbalance_ts", "imbalance_comment"}:
            if request.imbalance_point < 0:
                raise InvalidArgument("imbalance_point: must be >= 0", field="imbalance_point")
            outcome = self.engine.report_imbalance(
                job_id,
                agent,
                at=float(request.imbalance_ts),
                rps=request.imbalance_point,
                comment=request.imbalance_comment,
            )
            if CLAIM_CODE[outcome.kind] is not grpc.StatusCode.OK:
                raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, outcome.describe(), "CONFLICT")
        else:
            self.engine.signal(job_id, agent)  # any job-scoped call is contact
        meta = agent_test_service_pb2.UpdateTestMetadata(test_id=job_id)
        return self.ops.add("Update test", agent, meta, _test(self.engine.get(job_id)))


def add_servicers(server: grpc.Server, engine: Engine, auth: TokenAuth) -> None:
    """Register every servicer of the Yandex API and agent protocol on ``server``."""
    ops = _DoneOperations()
    test_service_pb2_grpc.add_TestServiceServicer_to_server(TestService(engine, auth, ops), server)
    operation_service_pb2_grpc.add_OperationServiceServicer_to_server(
        OperationService(engine, auth, ops), server
    )
    agent_registration_service_pb2_grpc.add_AgentRegistrationServiceServicer_to_server(
        AgentRegistrationService(engine, auth, ops), server
    )
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(
        AgentService(engine, auth, ops), server
    )
    job_service_pb2_grpc.add_JobServiceServicer_to_server(JobService(engine, auth, ops), server)
    agent_test_service_grpc.add_TestServiceServicer_to_server(
        AgentTestService(engine, auth, ops), server
    )
