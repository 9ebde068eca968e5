"""``GrpcTarget``: any server speaking the Yandex Load Testing API, and its batch-stop endpoint.

The wire types are the official ``yandexcloud`` SDK's generated modules; the
HTTP side is plain ``urllib`` (``POST /stop/execution``). Time is real by
default: ``advance`` sleeps, and the server's own ticker fires deadlines, so
start the server with a small ``lost_after`` (the kit's figures are relative
to it). A server whose clock you control in-process can pass ``clock`` and
``advance`` hooks instead; the kit then checks deadlines exactly.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import field_mask_pb2, json_format
from yandex.cloud.loadtesting.agent.v1 import (
    agent_registration_service_pb2,
    agent_registration_service_pb2_grpc,
    agent_service_pb2,
    agent_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
)
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2 as agent_test_pb2
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2_grpc as agent_test_grpc
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc
from yandex.cloud.operation import operation_service_pb2, operation_service_pb2_grpc

from loadtest_core import (
    AgentStatus,
    InvalidArgument,
    Operation,
    SignalKind,
    Test,
    TestSpec,
)
from loadtest_core.grpc import from_proto
from loadtest_core.testing._model import ContractViolation
from loadtest_core.testing._target import (
    BatchAnswer,
    Code,
    JobStatus,
    SignalAnswer,
    TargetError,
    TargetInfo,
)

__all__ = ["GrpcTarget"]

AGENT_ID_METADATA = "x-agent-instance-id"
WRONG_TOKEN = "loadtest-kit-wrong-token"
_SIGNALS = {
    job_service_pb2.JobSignalResponse.SIGNAL_UNSPECIFIED: SignalKind.NONE,
    job_service_pb2.JobSignalResponse.STOP: SignalKind.STOP,
    job_service_pb2.JobSignalResponse.RUN_IN: SignalKind.RUN_IN,
}
_Proto = agent_service_pb2.ClaimAgentStatusRequest


def _code(exc: grpc.RpcError) -> TargetError:
    status = exc.code() if isinstance(exc, grpc.Call) else None
    name = status.name if status is not None else "UNKNOWN"
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    return TargetError(Code[name] if name in Code.__members__ else Code.UNKNOWN, details or "")


def _model(cls: Any, proto: Any, what: str) -> Any:
    """A wire message as the library's model; a message no model accepts breaks §4.1 or §5."""
    try:
        return from_proto(cls, proto)
    except InvalidArgument as exc:
        clause = "§4.1" if "status" in exc.message else "§5"
        raise ContractViolation(
            clause, f"{what} answered a malformed message: {exc.message}"
        ) from None


class GrpcTarget:
    """A gRPC endpoint (and optionally its HTTP batch stop) as a kit ``Target``.

    ``lost_after`` (and ``contact_every``, ``lost_expiry``) must be what the server
    runs with; ``tick_every`` is how often its ticker fires deadlines at worst
    (default ``lost_after / 4``, as ``loadtest-core serve``); ``lateness`` is extra
    slack for a busy machine. ``shared=True`` (the default) means tests from
    earlier examples stay on the server: the kit tags and filters its own.
    ``oldest_first`` holds the server to handing out the oldest matching test.
    """

    def __init__(
        self,
        address: str,
        *,
        user_token: str,
        agent_token: str,
        http: str | None = None,
        lost_after: float,
        contact_every: float | None = None,
        lost_expiry: float | None = None,
        deletion_delay: float | None = None,
        tick_every: float | None = None,
        lateness: float = 0.5,
        clock_skew: float = 1.0,
        shared: bool = True,
        clock: Callable[[], float] | None = None,
        advance: Callable[[float], None] | None = None,
        oldest_first: bool = False,
        config_yaml: str | None = None,
        timeout: float = 10.0,
        channel: grpc.Channel | None = None,
        name: str = "",
    ) -> None:
        if (clock is None) != (advance is None):
            raise ValueError("give both clock and advance hooks, or neither")
        self.address = address
        self.user_token = user_token
        self.agent_token = agent_token
        self.http = None if http is None else http.rstrip("/")
        if self.http is not None and "://" not in self.http:
            self.http = "http://" + self.http
        self.timeout = timeout
        self._clock = clock
        self._advance = advance
        controlled = clock is not None
        self.info = TargetInfo(
            name=name or f"grpc://{address}",
            lost_after=lost_after,
            contact_every=lost_after / 10 if contact_every is None else contact_every,
            lost_expiry=lost_expiry,
            deletion_delay=deletion_delay,
            controls_time=controlled,
            tick_every=0.0
            if controlled
            else (lost_after / 4 if tick_every is None else tick_every),
            lateness=0.0 if controlled else lateness,
            clock_skew=0.0 if controlled else clock_skew,
            shared=shared,
            has_http=self.http is not None,
            checks_auth=True,
            oldest_first=oldest_first,
        )
        self._own_channel = channel is None
        self.channel = grpc.insecure_channel(address) if channel is None else channel
        ch = self.channel
        self.tests = test_service_pb2_grpc.TestServiceStub(ch)
        self.operations = operation_service_pb2_grpc.OperationServiceStub(ch)
        self.registration = agent_registration_service_pb2_grpc.AgentRegistrationServiceStub(ch)
        self.agents = agent_service_pb2_grpc.AgentServiceStub(ch)
        self.jobs = job_service_pb2_grpc.JobServiceStub(ch)
        self.agent_tests = agent_test_grpc.TestServiceStub(ch)
        self.config_id = "" if config_yaml is None else self._create_config(config_yaml)

    # --- plumbing --------------------------------------------------------------------------

    def _user(self, token: str | None = None) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.user_token if token is None else token}")]

    def _agent(self, agent: str | None = None, token: str | None = None) -> list[tuple[str, str]]:
        md = [("authorization", f"Bearer {self.agent_token if token is None else token}")]
        if agent is not None:
            md.append((AGENT_ID_METADATA, agent))
        return md

    def _rpc(self, method: Any, request: Any, metadata: list[tuple[str, str]]) -> Any:
        try:
            return method(request, metadata=metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _code(exc) from None

    def _create_config(self, yaml_string: str) -> str:
        from yandex.cloud.loadtesting.api.v1 import config_service_pb2, config_service_pb2_grpc

        stub = config_service_pb2_grpc.ConfigServiceStub(self.channel)
        op = self._rpc(
            stub.Create,
            config_service_pb2.CreateConfigRequest(yaml_string=yaml_string),
            self._user(),
        )
        meta = config_service_pb2.CreateConfigMetadata()
        op.metadata.Unpack(meta)
        return str(meta.config_id)

    # --- time ------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() if self._clock is None else self._clock()

    def advance(self, seconds: float) -> None:
        if self._advance is None:
            time.sleep(seconds)
        else:
            self._advance(seconds)

    # --- users -------------------------------------------------------------------------------

    def create(self, spec: TestSpec, *, token: str | None = None) -> Test:
        data = spec.to_data()
        configurations = data.get("configurations", [])
        if self.config_id:
            for c in configurations:
                c.setdefault("config_id", self.config_id)
        request = json_format.ParseDict(
            {
                "folder_id": data.get("folder_id", ""),
                "configurations": configurations,
                "test_details": data.get("details", {}),
            },
            test_service_pb2.CreateTestRequest(),
        )
        op = self._rpc(self.tests.Create, request, self._user(token))
        if op.HasField("error"):
            raise TargetError(Code(_code_name(op.error.code)), op.error.message)
        meta = test_service_pb2.CreateTestMetadata()
        op.metadata.Unpack(meta)
        if op.HasField("response"):
            from yandex.cloud.loadtesting.api.v1.test import test_pb2

            proto = test_pb2.Test()
            op.response.Unpack(proto)
            test: Test = _model(Test, proto, "TestService.Create")
            return test
        return self.get(meta.test_id)

    def get(self, test_id: str, *, token: str | None = None) -> Test:
        proto = self._rpc(
            self.tests.Get, test_service_pb2.GetTestRequest(test_id=test_id), self._user(token)
        )
        test: Test = _model(Test, proto, "TestService.Get")
        return test

    def list_tests(
        self, filter: str = "", page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Test], str]:
        request = test_service_pb2.ListTestsRequest(
            filter=filter, page_size=page_size, page_token=page_token
        )
        response = self._rpc(self.tests.List, request, self._user())
        tests = [_model(Test, t, "TestService.List") for t in response.tests]
        return tests, str(response.next_page_token)

    def stop(self, test_id: str, *, token: str | None = None) -> Operation:
        proto = self._rpc(
            self.tests.Stop, test_service_pb2.StopTestRequest(test_id=test_id), self._user(token)
        )
        op: Operation = _model(Operation, proto, "TestService.Stop")
        return op

    def get_operation(self, operation_id: str) -> Operation:
        request = operation_service_pb2.GetOperationRequest(operation_id=operation_id)
        proto = self._rpc(self.operations.Get, request, self._user())
        op: Operation = _model(Operation, proto, "OperationService.Get")
        return op

    def delete(self, test_id: str) -> None:
        request = test_service_pb2.DeleteTestRequest(test_id=test_id)
        op = self._rpc(self.tests.Delete, request, self._user())
        if op.HasField("error"):
            raise TargetError(Code(_code_name(op.error.code)), op.error.message)

    def stop_plans(self, body: bytes, *, token: str | None = None) -> BatchAnswer:
        if self.http is None:
            raise TargetError(Code.UNIMPLEMENTED, "no HTTP endpoint given")
        headers = {"Content-Type": "application/json"}
        sent = self.user_token if token is None else token
        if sent:
            headers["Authorization"] = f"Bearer {sent}"
        request = urllib.request.Request(
            f"{self.http}/stop/execution", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        return BatchAnswer(int(status), parsed)

    # --- agents ------------------------------------------------------------------------------

    def register_agent(self, name: str, labels: dict[str, str]) -> str:
        request = agent_registration_service_pb2.ExternalAgentRegisterRequest(
            name=name, labels=labels
        )
        op = self._rpc(self.registration.ExternalAgentRegister, request, self._agent())
        meta = agent_registration_service_pb2.ExternalAgentRegisterMetadata()
        op.metadata.Unpack(meta)
        return str(meta.agent_instance_id)

    def take_job(self, agent: str) -> str | None:
        request = job_service_pb2.GetJobRequest(agent_instance_id=agent)
        try:
            job = self._rpc(self.jobs.Get, request, self._agent(agent))
        except TargetError as exc:
            if exc.code is Code.NOT_FOUND:
                return None
            raise
        return str(job.id) or None

    def claim(self, job_id: str, agent: str | None, status: JobStatus, error: str = "") -> None:
        request = job_service_pb2.ClaimJobStatusRequest(
            job_id=job_id,
            status=job_service_pb2.ClaimJobStatusRequest.JobStatus.Value(status.value),
            error=error,
        )
        self._rpc(self.jobs.ClaimStatus, request, self._agent(agent))

    def poll(self, job_id: str, agent: str | None) -> SignalAnswer:
        request = job_service_pb2.JobSignalRequest(job_id=job_id)
        answer = self._rpc(self.jobs.GetSignal, request, self._agent(agent))
        kind = _SIGNALS.get(answer.signal)
        if kind is None:
            raise ContractViolation("§3 signal", f"GetSignal answered signal {answer.signal}")
        return SignalAnswer(kind, float(answer.run_in), float(answer.wait_duration))

    def heartbeat(self, agent: str, status: AgentStatus) -> None:
        request = _Proto(agent_instance_id=agent, status=_Proto.Status.Value(status.value))
        self._rpc(self.agents.ClaimStatus, request, self._agent(agent))

    def report_imbalance(
        self, job_id: str, agent: str | None, at: int, rps: int, comment: str = ""
    ) -> None:
        request = agent_test_pb2.UpdateTestRequest(
            test_id=job_id,
            imbalance_point=rps,
            imbalance_ts=at,
            imbalance_comment=comment,
            update_mask=field_mask_pb2.FieldMask(
                paths=["imbalance_point", "imbalance_ts", "imbalance_comment"]
            ),
        )
        self._rpc(self.agent_tests.Update, request, self._agent(agent))

    def bad_credentials(self, call: str) -> None:
        """``call`` with a wrong token, or (create, claim) with the other role's token."""
        if call == "get":
            self.get("kit-no-such-test", token=WRONG_TOKEN)
        elif call == "stop":
            self.stop("kit-no-such-test", token=WRONG_TOKEN)
        elif call == "create":
            self.create(TestSpec(), token=self.agent_token)
        elif call == "claim":
            request = job_service_pb2.ClaimJobStatusRequest(
                job_id="kit-no-such-test", status=job_service_pb2.ClaimJobStatusRequest.RUNNING
            )
            self._rpc(self.jobs.ClaimStatus, request, self._agent(token=self.user_token))
        else:
            poll = job_service_pb2.JobSignalRequest(job_id="kit-no-such-test")
            self._rpc(self.jobs.GetSignal, poll, self._agent(token=WRONG_TOKEN))

    # --- what a wire does not show -------------------------------------------------------------

    def version(self, test_id: str) -> int | None:
        return None

    def events(self, after_seq: int = 0) -> list[dict[str, Any]] | None:
        return None

    def close(self) -> None:
        if self._own_channel:
            self.channel.close()


def _code_name(number: int) -> str:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return str(code.name)
    return "UNKNOWN"
