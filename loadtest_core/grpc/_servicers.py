"""Servicers: parse the request, call the engine, map the result or the error.

User RPCs (api ``TestService``, ``ConfigService``, ``AgentService``,
``OperationService``, ``loadtest_core.v1.UploadService``) need a user token;
agent RPCs (registration, heartbeat, event logs, jobs, agent ``TestService``,
trails, monitoring) an agent token. Every RPC of a generated servicer that is
not implemented here answers UNIMPLEMENTED. Each call logs one JSON line:
method, code, duration, peer, and the test id when the (authenticated) call
names one.

Service methods take ``(request, call)`` and raise on failure; ``add_servicers``
(``grpc.server``) and ``add_aio_servicers`` (``grpc.aio.server``) wrap the very
same methods, so both servers answer identically.

Requests reach the handlers as bytes: the bearer token is checked before the
message is parsed, so a caller without a token never gets its bytes decoded
(UNAUTHENTICATED), and bytes that are not the request message are
INVALID_ARGUMENT with the RPC's log line, never a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2, json_format
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from yandex.cloud.loadtesting.agent.v1 import (
    agent_registration_service_pb2,
    agent_registration_service_pb2_grpc,
    agent_service_pb2,
    agent_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
    monitoring_service_pb2,
    monitoring_service_pb2_grpc,
    trail_service_pb2,
    trail_service_pb2_grpc,
)
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2 as agent_test_service_pb2
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2_grpc as agent_test_service_grpc
from yandex.cloud.loadtesting.api.v1 import agent_service_pb2 as api_agent_service_pb2
from yandex.cloud.loadtesting.api.v1 import (
    agent_service_pb2_grpc as api_agent_service_grpc,
)
from yandex.cloud.loadtesting.api.v1 import (
    config_service_pb2,
    config_service_pb2_grpc,
    test_service_pb2,
    test_service_pb2_grpc,
)
from yandex.cloud.loadtesting.api.v1.agent import agent_pb2
from yandex.cloud.loadtesting.api.v1.config import config_pb2
from yandex.cloud.operation import operation_pb2, operation_service_pb2_grpc

from loadtest_core import (
    AgentRecord,
    ConfigRecord,
    Engine,
    InvalidArgument,
    LoadtestError,
    MemoryStore,
    NotFound,
    Operation,
    Role,
    Status,
    Test,
    TokenAuth,
    Unsupported,
)
from loadtest_core._time import check_time
from loadtest_core.grpc import _uploads_pb
from loadtest_core.grpc._convert import operation_to_proto, set_timestamp, to_proto
from loadtest_core.grpc._limits import GrpcLimits
from loadtest_core.grpc._mapping import AGENT_STATUS, CLAIM_CODE, JOB_STATUS, SIGNAL, grpc_error

__all__ = ["OnRpc", "RpcLog", "add_aio_servicers", "add_servicers", "service_names"]

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


class Call:
    """What a servicer method sees of its call, read on the server's own thread.

    Methods never touch the gRPC context, so the same code serves the
    synchronous and the asyncio server, inline or on a worker thread.
    """

    __slots__ = ("_metadata", "peer", "principal", "test_id")

    def __init__(self, context: grpc.ServicerContext | grpc.aio.ServicerContext[Any, Any]) -> None:
        self._metadata = context.invocation_metadata() or ()
        self.peer: str = context.peer()
        self.principal = ""
        self.test_id = ""

    def metadata(self, key: str) -> str | None:
        for k, v in self._metadata:
            if k == key:
                return v if isinstance(v, str) else v.decode("utf-8", "replace")
        return None


Method = Callable[[Any, Any, Call], Any]
Decode = Callable[[bytes], Any]


def rpc(role: Role) -> Callable[[F], F]:
    """Mark a servicer method as an RPC that needs a token of ``role``."""

    def mark(method: F) -> F:
        method.rpc_role = role  # type: ignore[attr-defined]
        return method

    return mark


def invoke(
    servicer: _Base, method: Method, role: Role, decode: Decode, raw: bytes, call: Call
) -> Any:
    """Auth, then parsing, then the method, and its error as an ``_Abort``.

    The part both servers share; the request is parsed only once the token is good.
    """
    try:
        call.principal = servicer.auth.authenticate(call.metadata("authorization"), role)
        try:
            request = decode(raw)
        except (DecodeError, ValueError, RecursionError):
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the request is not a valid message of this RPC",
                "INVALID_ARGUMENT",
            ) from None
        field = _ID_FIELDS.get(type(request))
        if field is None:
            field = _ID_FIELDS[type(request)] = _id_field(request)
        if field:
            call.test_id = getattr(request, field)
        return method(servicer, request, call)
    except LoadtestError as exc:
        code, reason = grpc_error(exc)
        return _Abort(code, exc.message, reason)
    except _Abort as exc:
        return exc
    except Exception:
        log.exception("unexpected failure in %s", method.__name__)
        return _Abort(grpc.StatusCode.INTERNAL, "internal error", "INTERNAL")


RpcLog = Callable[[str], None]
"""Takes one RPC's JSON line (no newline); ``serve`` passes a buffered file's writer."""

OnRpc = Callable[[str, str, float], None]
"""Told of every finished RPC: method (``TestService.Stop``), code name, seconds."""

_NAMING_FIELDS = ("test_id", "job_id")
_ID_FIELDS: dict[type, str] = {}  # request class -> its field naming a test ("" for none)


def _id_field(request: Any) -> str:
    """The request field naming a test (a job id is a test id), or ""."""
    fields = request.DESCRIPTOR.fields_by_name
    return next((f for f in _NAMING_FIELDS if f in fields), "")


def _log_line(servicer: _Base, name: str, outcome: Any, started: float, call: Call) -> None:
    """One JSON line per RPC: to the servicer's sink if given, else to logging if enabled.

    The sink skips a ``LogRecord`` per call (its caller lookup, thread and
    process names), some 15 % of a Stop's cost in ``serve``.
    """
    sink, on_rpc = servicer.rpc_log, servicer.on_rpc
    logging_on = sink is not None or log.isEnabledFor(logging.INFO)
    if not logging_on and on_rpc is None:
        return
    code = outcome.code.name if isinstance(outcome, _Abort) else "OK"
    seconds = time.perf_counter() - started
    if on_rpc is not None:
        on_rpc(name, code, seconds)
    if not logging_on:
        return
    test = f', "test_id": {json.dumps(call.test_id[:128])}' if call.test_id else ""
    line = (
        f'{{"rpc": "{name}", "code": "{code}", "ms": {round(seconds * 1000, 3)}, '
        f'"peer": {json.dumps(call.peer)}{test}}}'
    )
    if sink is None:
        log.info("%s", line)
    else:
        sink(line)


def _sync_handler(
    servicer: _Base, method: Method, role: Role, decode: Decode
) -> Callable[..., Any]:
    name = f"{type(servicer).__name__}.{method.__name__}"

    def handler(raw: bytes, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        call = Call(context)
        outcome = invoke(servicer, method, role, decode, raw, call)
        _log_line(servicer, name, outcome, started, call)
        if isinstance(outcome, _Abort):
            context.abort_with_status(_status(outcome.code, outcome.message, outcome.reason))
        return outcome

    return handler


def _aio_handler(
    servicer: _Base, method: Method, role: Role, decode: Decode, *, offload: bool
) -> Callable[..., Awaitable[Any]]:
    name = f"{type(servicer).__name__}.{method.__name__}"

    async def handler(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        call = Call(context)
        if offload:
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(
                None, invoke, servicer, method, role, decode, raw, call
            )
        else:
            outcome = invoke(servicer, method, role, decode, raw, call)
        _log_line(servicer, name, outcome, started, call)
        if isinstance(outcome, _Abort):
            status = _status(outcome.code, outcome.message, outcome.reason)
            await context.abort(status.code, status.details, status.trailing_metadata)
        return outcome

    return handler


def _unimplemented(request: Any, context: grpc.ServicerContext) -> Any:
    """What the generated base classes answer for an RPC this server does not offer."""
    context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


async def _aio_unimplemented(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


Register = Callable[[Any, Any], None]
Wrap = Callable[[Method, Role, Decode], Callable[..., Any]]


class _Capture:
    """Stands in for a server so a generated ``add_*_to_server`` shows its method handlers."""

    def __init__(self) -> None:
        self.name = ""
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        for handler in handlers:  # generated code of grpcio < 1.62 registers only these
            if not self.handlers:
                self.name = handler.service_name()
                self.handlers = dict(handler._method_handlers)

    def add_registered_method_handlers(self, name: str, handlers: Any) -> None:
        self.name, self.handlers = name, dict(handlers)


class _Blank:
    """A servicer whose every RPC is None: enough for ``_Capture`` to read the handlers."""

    def __getattr__(self, name: str) -> None:
        return None


def _generated(register: Register) -> tuple[str, dict[str, Any]]:
    """The service name and the generated handlers (request parser, reply writer) per RPC."""
    capture = _Capture()
    register(_Blank(), capture)
    return capture.name, capture.handlers


class _Base:
    """A service: its RPC methods take ``(request, call)``; the generated base lists every RPC."""

    generated: type

    def __init__(
        self,
        engine: Engine,
        auth: TokenAuth,
        ops: _DoneOperations,
        rpc_log: RpcLog | None,
        limits: GrpcLimits,
        on_rpc: OnRpc | None = None,
    ) -> None:
        self.engine = engine
        self.auth = auth
        self.ops = ops
        self.rpc_log = rpc_log
        self.limits = limits
        self.on_rpc = on_rpc

    def register(self, server: Any, register: Register, wrap: Wrap, missing: Any) -> None:
        """Add this service to ``server`` with handlers that take the request as bytes."""
        name, generated = _generated(register)
        handlers: dict[str, Any] = {}
        for rpc_name, spec in generated.items():
            method = getattr(type(self), rpc_name, None)
            role = getattr(method, "rpc_role", None)
            decode: Decode = spec.request_deserializer or bytes
            handler = missing if method is None or role is None else wrap(method, role, decode)
            handlers[rpc_name] = grpc.unary_unary_rpc_method_handler(
                handler, request_deserializer=None, response_serializer=spec.response_serializer
            )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
        registered = getattr(server, "add_registered_method_handlers", None)
        if registered is not None:
            registered(name, handlers)


class _DoneOperations:
    """Operations finished at once (create, delete, registration), kept for OperationService.Get.

    The newest are kept, at most ``limit`` of them and ``max_bytes`` of their
    serialized size: a burst of large creates cannot pin their tests in memory.
    """

    def __init__(self, limit: int = 10_000, max_bytes: int = 16 << 20) -> None:
        self._ops: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit
        self._max_bytes = max_bytes
        self.bytes = 0

    def add(self, description: str, principal: str, metadata: Any, response: Any) -> Any:
        now = datetime.now(UTC)
        op = operation_pb2.Operation(
            id="op" + uuid.uuid4().hex[:20],
            description=description,
            created_by=principal,
            done=True,
        )
        set_timestamp(op.created_at, now)
        set_timestamp(op.modified_at, now)
        op.metadata.Pack(metadata)
        op.response.Pack(response)
        size = op.ByteSize()
        with self._lock:
            self._ops[op.id] = (op, size)
            self.bytes += size
            while len(self._ops) > self._limit or self.bytes > self._max_bytes:
                self.bytes -= self._ops.popitem(last=False)[1][1]
        return op

    def __len__(self) -> int:
        return len(self._ops)

    def get(self, op_id: str) -> Any:
        with self._lock:
            found = self._ops.get(op_id)
        return None if found is None else found[0]


def _test(test: Test) -> Any:
    return to_proto(test)


class TestService(_Base):
    generated = test_service_pb2_grpc.TestServiceServicer
    __test__ = False

    @rpc(Role.USER)
    def Create(self, request: Any, call: Call) -> Any:
        data = json_format.MessageToDict(request, preserving_proto_field_name=True)
        spec = {
            "configurations": data.get("configurations", []),
            "details": data.get("test_details", {}),
            "folder_id": data.get("folder_id", ""),
        }
        test = self.engine.create(spec, principal=call.principal)
        call.test_id = test.id
        meta = test_service_pb2.CreateTestMetadata(test_id=test.id)
        return self.ops.add("Create test", call.principal, meta, _test(test))

    @rpc(Role.USER)
    def Get(self, request: Any, call: Call) -> Any:
        return _test(self.engine.get(request.test_id))

    @rpc(Role.USER)
    def Stop(self, request: Any, call: Call) -> Any:
        op = self.engine.stop(request.test_id, principal=call.principal)
        return operation_to_proto(op, test_service_pb2.StopTestMetadata(test_id=request.test_id))

    @rpc(Role.USER)
    def Delete(self, request: Any, call: Call) -> Any:
        self.engine.delete(request.test_id, principal=call.principal)
        meta = test_service_pb2.DeleteTestMetadata(test_id=request.test_id)
        return self.ops.add("Delete test", call.principal, meta, empty_pb2.Empty())

    @rpc(Role.USER)
    def List(self, request: Any, call: Call) -> Any:
        """A page never outgrows a reply: fewer large tests, and a next token."""
        protos: dict[str, Any] = {}

        def size_of(test: Test) -> int:
            proto = protos[test.id] = _test(test)
            return int(proto.ByteSize()) + 8  # its field tag and length in the page

        tests, token = self.engine.list_tests(
            filter=request.filter,
            folder_id=request.folder_id or None,
            page_size=request.page_size,
            page_token=request.page_token,
            max_bytes=self.limits.max_reply - 4096,  # the token and framing
            size_of=size_of,
        )
        return test_service_pb2.ListTestsResponse(
            tests=[protos[t.id] for t in tests], next_page_token=token
        )


class OperationService(_Base):
    generated = operation_service_pb2_grpc.OperationServiceServicer

    @rpc(Role.USER)
    def Get(self, request: Any, call: Call) -> Any:
        done = self.ops.get(request.operation_id)
        if done is not None:
            return done
        op: Operation = self.engine.get_operation(request.operation_id)
        assert op.metadata is not None
        meta = test_service_pb2.StopTestMetadata(test_id=op.metadata.test_id)
        return operation_to_proto(op, meta)


def _agent(agent: AgentRecord) -> Any:
    return agent_pb2.Agent(
        id=agent.id, name=agent.name, folder_id=agent.folder_id, labels=agent.labels
    )


def _agent_token(agent_id: str) -> str:
    return base64.urlsafe_b64encode(f"agents:{agent_id}".encode()).decode()


def _agent_after(token: str) -> str:
    """The last agent id of the previous page, from a token ``_agent_token`` made."""
    if not token:
        return ""
    try:
        text = base64.urlsafe_b64decode(token.encode("ascii")).decode()
    except (ValueError, UnicodeError):
        text = ""
    if not text.startswith("agents:") or len(text) > 200:
        raise InvalidArgument("page_token: not a token this listing returned", field="page_token")
    return text.removeprefix("agents:")


class ApiAgentService(_Base):
    """The user's view of registered agents (``api.v1.AgentService``): Get and List."""

    generated = api_agent_service_grpc.AgentServiceServicer

    @rpc(Role.USER)
    def Get(self, request: Any, call: Call) -> Any:
        if not request.agent_id:
            raise InvalidArgument("agent_id: required", field="agent_id")
        return _agent(self.engine.get_agent(request.agent_id))

    @rpc(Role.USER)
    def List(self, request: Any, call: Call) -> Any:
        if request.filter:
            raise InvalidArgument("filter: not supported for agents yet", field="filter")
        if request.page_size < 0:
            raise InvalidArgument("page_size: must be >= 0", field="page_size")
        size = min(request.page_size or 100, 1000)
        after = _agent_after(request.page_token)
        agents = [
            a
            for a in self.engine.list_agents()
            if a.id > after and (not request.folder_id or a.folder_id == request.folder_id)
        ]
        page = agents[:size]
        token = _agent_token(page[-1].id) if len(agents) > size else ""
        return api_agent_service_pb2.ListAgentsResponse(
            agents=[_agent(a) for a in page], next_page_token=token
        )


class AgentRegistrationService(_Base):
    generated = agent_registration_service_pb2_grpc.AgentRegistrationServiceServicer

    @rpc(Role.AGENT)
    def Register(self, request: Any, call: Call) -> Any:
        agent = self.engine.register_agent(
            name=request.compute_instance_id,
            labels={"compute_instance_id": request.compute_instance_id}
            if request.compute_instance_id
            else {},
            owner=call.principal,
        )
        return agent_registration_service_pb2.RegisterResponse(agent_instance_id=agent.id)

    @rpc(Role.AGENT)
    def ExternalAgentRegister(self, request: Any, call: Call) -> Any:
        agent = self.engine.register_agent(
            name=request.name,
            labels=dict(request.labels),
            folder_id=request.folder_id,
            owner=call.principal,
        )
        meta = agent_registration_service_pb2.ExternalAgentRegisterMetadata(
            agent_instance_id=agent.id
        )
        response = agent_registration_service_pb2.RegisterResponse(agent_instance_id=agent.id)
        return self.ops.add("Register external agent", agent.id, meta, response)


class AgentService(_Base):
    generated = agent_service_pb2_grpc.AgentServiceServicer

    @rpc(Role.AGENT)
    def ClaimStatus(self, request: Any, call: Call) -> Any:
        status = AGENT_STATUS.get(request.status)
        if not request.agent_instance_id:
            raise InvalidArgument("agent_instance_id: required", field="agent_instance_id")
        self.engine.check_agent(request.agent_instance_id, call.principal)
        if status is not None:
            self.engine.agent_heartbeat(request.agent_instance_id, status)
        return agent_service_pb2.ClaimAgentStatusResponse(code=0)

    @rpc(Role.AGENT)
    def ReportEventLogs(self, request: Any, call: Call) -> Any:
        agent = request.agent_instance_id
        if not agent:
            raise InvalidArgument("agent_instance_id: required", field="agent_instance_id")
        self.engine.check_agent(agent, call.principal)
        events = [
            (event.metadata.get("test_id", ""), _data(event, f"events[{i}]"))
            for i, event in enumerate(request.events)
        ]
        self.engine.report_events(agent, events)
        return agent_service_pb2.ReportEventLogsResponse()


def _data(message: Any, field: str) -> dict[str, Any]:
    """An uploaded message as stored: proto3 JSON with the proto's field names.

    A value proto3 JSON cannot write (a timestamp outside 0001-9999) is invalid input.
    """
    try:
        data: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    except (json_format.Error, ValueError) as exc:
        raise InvalidArgument(f"{field}: {exc}", field=field) from None
    return data


def _agent_for(engine: Engine, job_id: str, call: Call, named: str = "") -> str:
    """The calling agent: ``named`` or its x-agent-instance-id metadata, else the job's holder.

    PERMISSION_DENIED when the caller's token is not the one the job was taken with.
    """
    if not job_id:
        raise InvalidArgument("job_id: required", field="job_id")
    claimed = named or call.metadata(AGENT_ID_METADATA) or None
    return engine.job_caller(job_id, call.principal, claimed)


class JobService(_Base):
    generated = job_service_pb2_grpc.JobServiceServicer

    @rpc(Role.AGENT)
    def Get(self, request: Any, call: Call) -> Any:
        agent = request.agent_instance_id or request.compute_instance_id
        if request.job_id:
            job = self.engine.take_job(request.job_id, agent or None, principal=call.principal)
        elif agent:
            found = self.engine.next_job(agent, principal=call.principal)
            if found is None:
                raise NotFound("no job for this agent yet")
            job = found
        else:
            raise InvalidArgument(
                "agent_instance_id or job_id: required", field="agent_instance_id"
            )
        call.test_id = job.id
        payload = [
            job_service_pb2.TestDataEntry(
                name=name,
                is_transient=False,
                storage_object=_storage_object(pointer.object_storage),
            )
            for name, pointer in sorted(job.test.configurations[0].files.items())
        ]
        return job_service_pb2.Job(
            id=job.id,
            config=json.dumps(self.engine.job_config(job), ensure_ascii=False),
            data_payload=payload,
            test_data=payload[0].storage_object if len(payload) == 1 else None,
            logging_log_group_id="",
        )

    @rpc(Role.AGENT)
    def GetTransientFile(self, request: Any, call: Call) -> Any:
        agent = _agent_for(self.engine, request.job_id, call)
        self.engine.contact(request.job_id, agent)
        raise _Abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "serve stores no transient files: give test data as object storage pointers "
            "(the test configuration's files)",
            "UNIMPLEMENTED",
        )

    @rpc(Role.AGENT)
    def ClaimStatus(self, request: Any, call: Call) -> Any:
        status: Status | None = None
        error = request.error
        if request.status == job_service_pb2.ClaimJobStatusRequest.JOB_STATUS_UNSPECIFIED:
            if not error:
                raise InvalidArgument(
                    "error: a claim without a status needs an error text", field="error"
                )
        else:
            mapped = JOB_STATUS.get(request.status)
            if mapped is None:
                message = f"status: unknown job status {request.status}"
                raise InvalidArgument(message, field="status")
            status, default_error = mapped
            error = error or default_error
        agent = _agent_for(self.engine, request.job_id, call)  # the request is valid: may take
        outcome = self.engine.claim(request.job_id, agent, status, error)
        code = CLAIM_CODE[outcome.kind]
        if code is not grpc.StatusCode.OK:
            raise _Abort(code, outcome.describe(), "CONFLICT")
        return job_service_pb2.ClaimJobStatusResponse(code=code_pb2.OK)

    @rpc(Role.AGENT)
    def GetSignal(self, request: Any, call: Call) -> Any:
        if not request.job_id:
            raise InvalidArgument("job_id: required", field="job_id")
        try:
            agent = _agent_for(self.engine, request.job_id, call)
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


def _storage_object(storage: Any) -> Any:
    if storage is None:
        return job_service_pb2.StorageObject()
    return job_service_pb2.StorageObject(
        object_storage_bucket=storage.bucket, object_storage_filename=storage.name
    )


class TrailService(_Base):
    generated = trail_service_pb2_grpc.TrailServiceServicer

    @rpc(Role.AGENT)
    def Create(self, request: Any, call: Call) -> Any:
        named = request.agent_instance_id or request.compute_instance_id
        items = [_data(trail, f"data[{i}]") for i, trail in enumerate(request.data)]
        agent = _agent_for(self.engine, request.job_id, call, named)
        seq = self.engine.upload(request.job_id, agent, "trails", items)
        return trail_service_pb2.CreateTrailResponse(trail_id=str(seq) if seq else "", code=0)


class MonitoringService(_Base):
    generated = monitoring_service_pb2_grpc.MonitoringServiceServicer

    @rpc(Role.AGENT)
    def AddMetric(self, request: Any, call: Call) -> Any:
        named = request.agent_instance_id or request.compute_instance_id
        items = [_data(chunk, f"chunks[{i}]") for i, chunk in enumerate(request.chunks)]
        agent = _agent_for(self.engine, request.job_id, call, named)
        seq = self.engine.upload(request.job_id, agent, "metrics", items)
        return monitoring_service_pb2.AddMetricResponse(
            metric_trail_id=str(seq) if seq else "", code=0
        )


def _config(config: ConfigRecord) -> Any:
    proto = config_pb2.Config(
        id=config.id,
        folder_id=config.folder_id,
        yaml_string=config.yaml,
        name=config.name,
        created_by=config.created_by,
    )
    set_timestamp(proto.created_at, datetime.fromtimestamp(config.created_at, UTC))
    return proto


class ConfigService(_Base):
    generated = config_service_pb2_grpc.ConfigServiceServicer

    @rpc(Role.USER)
    def Create(self, request: Any, call: Call) -> Any:
        config = self.engine.create_config(
            request.yaml_string,
            name=request.name,
            folder_id=request.folder_id,
            principal=call.principal,
        )
        meta = config_service_pb2.CreateConfigMetadata(config_id=config.id)
        return self.ops.add("Create config", call.principal, meta, _config(config))

    @rpc(Role.USER)
    def Get(self, request: Any, call: Call) -> Any:
        return _config(self.engine.get_config(request.config_id))

    @rpc(Role.USER)
    def List(self, request: Any, call: Call) -> Any:
        if request.filter:
            raise Unsupported("filter: configs cannot be filtered yet", field="filter")
        configs, token = self.engine.list_configs(
            folder_id=request.folder_id or None,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return config_service_pb2.ListConfigsResponse(
            configs=[_config(c) for c in configs], next_page_token=token
        )

    @rpc(Role.USER)
    def Delete(self, request: Any, call: Call) -> Any:
        self.engine.delete_config(request.config_id)
        meta = config_service_pb2.DeleteConfigMetadata(config_id=request.config_id)
        return self.ops.add("Delete config", call.principal, meta, empty_pb2.Empty())


class UploadService(_Base):
    """``loadtest_core.v1.UploadService`` (``_uploads_pb``): what agents uploaded, read back."""

    generated = _uploads_pb.UploadServiceServicer

    @rpc(Role.USER)
    def List(self, request: Any, call: Call) -> Any:
        if request.page_size < 0:
            raise InvalidArgument("page_size: must be >= 0", field="page_size")
        if request.after < 0:
            raise InvalidArgument("after: must be >= 0", field="after")
        limit = min(request.page_size or 100, self.engine.policies.max_page_size)
        response = _uploads_pb.ListUploadsResponse(next_after=request.after)
        if request.test_id and request.agent_id:
            raise InvalidArgument("test_id, agent_id: give one of them", field="agent_id")
        if request.agent_id:
            if request.kind not in ("", "events"):
                raise InvalidArgument("kind: an agent's own uploads are events", field="kind")
            items = self.engine.agent_events(request.agent_id, after=request.after, limit=limit)
        elif request.test_id:
            kind = request.kind or "trails"
            items = self.engine.uploads(request.test_id, kind, after=request.after, limit=limit)
            count, size = self.engine.upload_usage(request.test_id).get(kind, (0, 0))
            response.stored_items, response.stored_bytes = count, size
            response.limit_bytes = self.engine.policies.upload_limit
        else:
            raise InvalidArgument("test_id: required (or agent_id)", field="test_id")
        for item in items:
            upload = response.uploads.add(
                seq=item.seq, test_id=item.test_id, agent_id=item.agent_id, kind=item.kind
            )
            set_timestamp(upload.received_at, datetime.fromtimestamp(item.at, UTC))
            upload.data.update(item.data)
        if items:
            response.next_after = items[-1].seq
        return response


class AgentTestService(_Base):
    generated = agent_test_service_grpc.TestServiceServicer
    __test__ = False

    @rpc(Role.AGENT)
    def Update(self, request: Any, call: Call) -> Any:
        paths = set(request.update_mask.paths)
        job_id = request.test_id
        imbalance = bool(paths & {"imbalance_point", "imbalance_ts", "imbalance_comment"})
        if imbalance:  # checked before the call may take an anonymous job
            if request.imbalance_point < 0:
                raise InvalidArgument("imbalance_point: must be >= 0", field="imbalance_point")
            check_time(request.imbalance_ts, "imbalance_ts")
        agent = _agent_for(self.engine, job_id, call)
        if imbalance:
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
            self.engine.contact(job_id, agent)  # any job-scoped call is contact
        meta = agent_test_service_pb2.UpdateTestMetadata(test_id=job_id)
        return self.ops.add("Update test", agent, meta, _test(self.engine.get(job_id)))


_SERVICES: tuple[tuple[type[_Base], Callable[[Any, Any], None]], ...] = (
    (TestService, test_service_pb2_grpc.add_TestServiceServicer_to_server),
    (OperationService, operation_service_pb2_grpc.add_OperationServiceServicer_to_server),
    (ApiAgentService, api_agent_service_grpc.add_AgentServiceServicer_to_server),
    (
        AgentRegistrationService,
        agent_registration_service_pb2_grpc.add_AgentRegistrationServiceServicer_to_server,
    ),
    (AgentService, agent_service_pb2_grpc.add_AgentServiceServicer_to_server),
    (JobService, job_service_pb2_grpc.add_JobServiceServicer_to_server),
    (AgentTestService, agent_test_service_grpc.add_TestServiceServicer_to_server),
    (ConfigService, config_service_pb2_grpc.add_ConfigServiceServicer_to_server),
    (TrailService, trail_service_pb2_grpc.add_TrailServiceServicer_to_server),
    (MonitoringService, monitoring_service_pb2_grpc.add_MonitoringServiceServicer_to_server),
    (UploadService, _uploads_pb.add_UploadServiceServicer_to_server),
)


def add_servicers(
    server: grpc.Server,
    engine: Engine,
    auth: TokenAuth,
    *,
    rpc_log: RpcLog | None = None,
    limits: GrpcLimits | None = None,
    on_rpc: OnRpc | None = None,
) -> None:
    """Register every servicer of the Yandex API and agent protocol on ``server``.

    Each RPC's JSON line goes to ``rpc_log`` if given, else to the
    ``loadtest_core.grpc`` logger at INFO. ``limits`` sizes List pages to its
    reply limit; the server's own options (``limits.options()``) are the
    caller's to set when it builds the server. ``on_rpc`` (metrics) is told
    of every finished call.
    """
    limits = GrpcLimits() if limits is None else limits
    ops = _DoneOperations()
    for service, register in _SERVICES:
        servicer = service(engine, auth, ops, rpc_log, limits, on_rpc)
        servicer.register(
            server, register, functools.partial(_sync_handler, servicer), _unimplemented
        )


def add_aio_servicers(
    server: grpc.aio.Server,
    engine: Engine,
    auth: TokenAuth,
    *,
    offload: bool | None = None,
    rpc_log: RpcLog | None = None,
    limits: GrpcLimits | None = None,
    on_rpc: OnRpc | None = None,
) -> None:
    """``add_servicers`` for a ``grpc.aio`` server, sharing every method with it.

    ``offload`` runs each call on the event loop's default executor instead of
    the loop itself; by default only when the store may block (anything but a
    ``MemoryStore``, e.g. SQLite commits), since an in-memory stop takes tens
    of microseconds and a thread hop costs more than that.
    """
    if offload is None:
        offload = not isinstance(engine.store, MemoryStore)
    limits = GrpcLimits() if limits is None else limits
    ops = _DoneOperations()
    for service, register in _SERVICES:
        servicer = service(engine, auth, ops, rpc_log, limits, on_rpc)
        servicer.register(
            server,
            register,
            functools.partial(_aio_handler, servicer, offload=offload),
            _aio_unimplemented,
        )


def service_names() -> list[str]:
    """Full names of every service ``add_servicers`` registers (for health and reflection)."""
    return [_generated(register)[0] for _, register in _SERVICES]
