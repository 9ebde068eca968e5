"""The Yandex API and agent protocol over a real gRPC server, through the generated stubs."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, cast

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_status import rpc_status
from yandex.cloud.loadtesting.agent.v1 import (
    agent_registration_service_pb2 as reg_pb2,
)
from yandex.cloud.loadtesting.agent.v1 import agent_service_pb2, job_service_pb2
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2 as agent_test_pb2
from yandex.cloud.loadtesting.api.v1 import test_service_pb2
from yandex.cloud.loadtesting.api.v1.test import (
    agent_selector_pb2,
    details_pb2,
    single_agent_configuration_pb2,
    status_pb2,
    test_pb2,
)
from yandex.cloud.operation import operation_service_pb2
from yandexcloud._operation_waiter import OperationWaiter

from loadtest_core._auth import principal_of
from tests.adapters.conftest import USER, Grpc, connected, new_engine

JS = job_service_pb2.ClaimJobStatusRequest
SIG = job_service_pb2.JobSignalResponse


def create(g: Grpc, agent_id: str) -> str:
    request = test_service_pb2.CreateTestRequest(
        folder_id="folder-1",
        configurations=[
            single_agent_configuration_pb2.SingleAgentConfiguration(
                agent_selector=agent_selector_pb2.AgentSelector(agent_id=agent_id)
            )
        ],
        test_details=details_pb2.Details(name="smoke"),
    )
    op = g.tests.Create(request, metadata=g.user())
    assert op.done
    meta = test_service_pb2.CreateTestMetadata()
    op.metadata.Unpack(meta)
    return meta.test_id


def register(g: Grpc) -> str:
    op = g.registration.ExternalAgentRegister(
        reg_pb2.ExternalAgentRegisterRequest(
            folder_id="folder-1", name="tank", labels={"pool": "a"}
        ),
        metadata=g.agent(),
    )
    meta = reg_pb2.ExternalAgentRegisterMetadata()
    op.metadata.Unpack(meta)
    assert meta.agent_instance_id
    return meta.agent_instance_id


def claim(g: Grpc, job_id: str, status: JS.JobStatus.ValueType, agent: str | None = None) -> None:
    reply = g.jobs.ClaimStatus(JS(job_id=job_id, status=status), metadata=g.agent(agent))
    assert reply.code == 0


def running(g: Grpc) -> tuple[str, str]:
    agent = register(g)
    test_id = create(g, agent)
    job = g.jobs.Get(job_service_pb2.GetJobRequest(agent_instance_id=agent), metadata=g.agent())
    assert job.id == test_id
    claim(g, job.id, JS.INITIATED)
    claim(g, job.id, JS.RUNNING)
    return agent, test_id


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_full_stop_round_trip(api: Grpc) -> None:
    """Create, hand out, claim, stop (pending), STOP signal, STOPPED claim, operation done."""
    agent, test_id = running(api)
    op = api.tests.Stop(test_service_pb2.StopTestRequest(test_id=test_id), metadata=api.user())
    assert not op.done
    meta = test_service_pb2.StopTestMetadata()
    op.metadata.Unpack(meta)
    assert meta.test_id == test_id
    signal = api.jobs.GetSignal(
        job_service_pb2.JobSignalRequest(job_id=test_id), metadata=api.agent()
    )
    assert signal.signal == SIG.STOP
    claim(api, test_id, JS.STOPPED)
    waiter = OperationWaiter(op.id, cast(Any, _AuthedOps(api)), timeout=5)  # a duck-typed stub
    for _ in waiter:
        pass
    final = waiter.operation
    assert final is not None and final.done and not final.HasField("error")
    test = test_pb2.Test()
    final.response.Unpack(test)
    assert test.summary.status == status_pb2.STOPPED
    assert test.summary.is_finished and test.summary.HasField("finished_at")
    assert test.summary.assigned_agent_id == agent


class _AuthedOps:
    """OperationService stub adding the user token, as the SDK's interceptor would."""

    def __init__(self, g: Grpc) -> None:
        self.g = g

    def Get(self, request: operation_service_pb2.GetOperationRequest) -> Any:
        return self.g.operations.Get(request, metadata=self.g.user())


def test_stop_of_created_test_is_cancelled_at_once(api: Grpc) -> None:
    """Stopping a CREATED test answers a done operation with a CANCELLED test."""
    test_id = create(api, "nobody")
    op = api.tests.Stop(test_service_pb2.StopTestRequest(test_id=test_id), metadata=api.user())
    assert op.done
    test = test_pb2.Test()
    op.response.Unpack(test)
    assert test.summary.status == status_pb2.CANCELLED


def test_stop_errors(api: Grpc) -> None:
    """Terminal, unknown and empty ids get their gRPC codes, with an ErrorInfo attached."""
    _, test_id = running(api)
    claim(api, test_id, JS.FINISHED)
    stop = api.tests.Stop
    md = api.user()
    assert (
        code_of(lambda: stop(test_service_pb2.StopTestRequest(test_id=test_id), metadata=md))
        is grpc.StatusCode.FAILED_PRECONDITION
    )
    assert (
        code_of(lambda: stop(test_service_pb2.StopTestRequest(test_id="nope"), metadata=md))
        is grpc.StatusCode.NOT_FOUND
    )
    malformed = test_service_pb2.StopTestRequest(test_id="no such/id")
    assert code_of(lambda: stop(malformed, metadata=md)) is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        stop(test_service_pb2.StopTestRequest(test_id=""), metadata=md)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(cast(grpc.Call, info.value))
    assert status is not None and status.details
    assert status.details[0].type_url.endswith("google.rpc.ErrorInfo")


def test_tokens_and_roles(api: Grpc) -> None:
    """No or wrong token → UNAUTHENTICATED; a token of the other role → PERMISSION_DENIED."""
    get = api.tests.Get
    req = test_service_pb2.GetTestRequest(test_id="x")
    assert code_of(lambda: get(req)) is grpc.StatusCode.UNAUTHENTICATED
    assert (
        code_of(lambda: get(req, metadata=[("authorization", "Bearer wrong")]))
        is grpc.StatusCode.UNAUTHENTICATED
    )
    assert code_of(lambda: get(req, metadata=api.agent())) is grpc.StatusCode.PERMISSION_DENIED
    jobs = api.jobs.Get
    assert (
        code_of(
            lambda: jobs(job_service_pb2.GetJobRequest(agent_instance_id="a"), metadata=api.user())
        )
        is grpc.StatusCode.PERMISSION_DENIED
    )


def test_no_job_is_not_found(api: Grpc) -> None:
    """JobService.Get answers NOT_FOUND when nothing waits for the agent."""
    agent = register(api)
    assert (
        code_of(
            lambda: api.jobs.Get(
                job_service_pb2.GetJobRequest(agent_instance_id=agent), metadata=api.agent()
            )
        )
        is grpc.StatusCode.NOT_FOUND
    )


def test_stale_claim_is_acknowledged(api: Grpc) -> None:
    """A backwards claim answers OK (code 0) and changes nothing."""
    _, test_id = running(api)
    before = api.engine.state(test_id).version
    claim(api, test_id, JS.PREPARING)
    assert api.engine.state(test_id).version == before


def test_claim_on_another_agents_job_is_refused(api: Grpc) -> None:
    """A claim naming another agent is FAILED_PRECONDITION and the owner keeps the job."""
    agent, test_id = running(api)

    def call() -> object:
        return api.jobs.ClaimStatus(
            JS(job_id=test_id, status=JS.FINISHED), metadata=api.agent("intruder")
        )

    assert code_of(call) is grpc.StatusCode.FAILED_PRECONDITION
    assert api.engine.state(test_id).assigned_agent_id == agent


def test_lost_after_silence_and_recovery_on_poll(api: Grpc) -> None:
    """Silence for lost_after makes the test LOST; the agent's next poll brings it back."""
    _, test_id = running(api)
    api.clock.advance(31)
    api.engine.tick()
    get = test_service_pb2.GetTestRequest(test_id=test_id)
    assert api.tests.Get(get, metadata=api.user()).summary.status == status_pb2.LOST
    signal = api.jobs.GetSignal(
        job_service_pb2.JobSignalRequest(job_id=test_id), metadata=api.agent()
    )
    assert signal.signal == SIG.SIGNAL_UNSPECIFIED
    assert api.tests.Get(get, metadata=api.user()).summary.status == status_pb2.RUNNING


def test_waiting_gets_run_in(api: Grpc) -> None:
    """A WAITING job is answered RUN_IN with run_in no longer than the poll interval."""
    _, test_id = running(api)
    test_id2 = create(api, api.engine.state(test_id).assigned_agent_id or "")
    job = api.jobs.Get(
        job_service_pb2.GetJobRequest(
            agent_instance_id=api.engine.state(test_id).assigned_agent_id or ""
        ),
        metadata=api.agent(),
    )
    assert job.id == test_id2
    claim(api, test_id2, JS.WAITING_FOR_A_COMMAND_TO_RUN)
    signal = api.jobs.GetSignal(
        job_service_pb2.JobSignalRequest(job_id=test_id2), metadata=api.agent()
    )
    assert signal.signal == SIG.RUN_IN and 0 <= signal.run_in <= signal.wait_duration


def test_heartbeat_and_imbalance_update(api: Grpc) -> None:
    """A TESTING heartbeat is OK; agent TestService.Update records the imbalance point."""
    agent, test_id = running(api)
    reply = api.agents.ClaimStatus(
        agent_service_pb2.ClaimAgentStatusRequest(
            agent_instance_id=agent, status=agent_service_pb2.ClaimAgentStatusRequest.TESTING
        ),
        metadata=api.agent(),
    )
    assert reply.code == 0
    api.agent_tests.Update(
        agent_test_pb2.UpdateTestRequest(
            test_id=test_id,
            imbalance_point=1500,
            imbalance_ts=1_700_000_005,
            imbalance_comment="q99 > 1s",
            update_mask=field_mask_pb2.FieldMask(
                paths=["imbalance_point", "imbalance_ts", "imbalance_comment"]
            ),
        ),
        metadata=api.agent(),
    )
    claim(api, test_id, JS.AUTOSTOPPED)
    test = api.tests.Get(test_service_pb2.GetTestRequest(test_id=test_id), metadata=api.user())
    assert test.summary.status == status_pb2.AUTOSTOPPED
    assert test.summary.imbalance_point.rps == 1500
    assert test.summary.imbalance_point.comment == "q99 > 1s"


def test_agent_error_after_the_job_is_recorded(api: Grpc) -> None:
    """JOB_STATUS_UNSPECIFIED with an error is OK after DONE; without an error it is invalid."""
    _, test_id = running(api)
    claim(api, test_id, JS.FINISHED)
    reply = api.jobs.ClaimStatus(JS(job_id=test_id, error="upload failed"), metadata=api.agent())
    assert reply.code == 0
    assert api.engine.events()[-1].payload["error"] == "upload failed"
    assert (
        code_of(lambda: api.jobs.ClaimStatus(JS(job_id=test_id), metadata=api.agent()))
        is grpc.StatusCode.INVALID_ARGUMENT
    )


def test_not_found_claim_fails_the_test(api: Grpc) -> None:
    """NOT_FOUND from the agent maps to FAILED with the documented error text."""
    agent = register(api)
    test_id = create(api, agent)
    api.jobs.Get(job_service_pb2.GetJobRequest(agent_instance_id=agent), metadata=api.agent())
    claim(api, test_id, JS.NOT_FOUND)
    state = api.engine.state(test_id)
    assert state.status.name == "FAILED" and state.error == "agent could not find the job"


def test_list_and_delete(api: Grpc) -> None:
    """List filters with the documented grammar and pages; Delete marks DELETING."""
    ids = [create(api, "a") for _ in range(3)]
    api.clock.advance(1)
    reply = api.tests.List(
        test_service_pb2.ListTestsRequest(
            folder_id="folder-1", page_size=2, filter='summary.status = "CREATED"'
        ),
        metadata=api.user(),
    )
    assert len(reply.tests) == 2 and reply.next_page_token
    rest = api.tests.List(
        test_service_pb2.ListTestsRequest(
            folder_id="folder-1",
            page_size=2,
            page_token=reply.next_page_token,
            filter='summary.status = "CREATED"',
        ),
        metadata=api.user(),
    )
    assert {t.id for t in [*reply.tests, *rest.tests]} == set(ids)
    assert (
        code_of(
            lambda: api.tests.List(
                test_service_pb2.ListTestsRequest(filter="bad ="), metadata=api.user()
            )
        )
        is grpc.StatusCode.INVALID_ARGUMENT
    )
    op = api.tests.Delete(test_service_pb2.DeleteTestRequest(test_id=ids[0]), metadata=api.user())
    assert op.done
    again = api.operations.Get(
        operation_service_pb2.GetOperationRequest(operation_id=op.id), metadata=api.user()
    )
    assert again.id == op.id


def test_other_rpcs_are_unimplemented(api: Grpc) -> None:
    """Every RPC we do not offer answers UNIMPLEMENTED, one per service."""
    calls = [
        lambda: api.operations.Cancel(
            operation_service_pb2.CancelOperationRequest(), metadata=api.user()
        ),
        lambda: api.agent_tests.Get(agent_test_pb2.GetTestRequest(), metadata=api.agent()),
    ]
    for call in calls:
        assert code_of(call) is grpc.StatusCode.UNIMPLEMENTED


def test_created_by_names_the_token_without_revealing_it(api: Grpc) -> None:
    """created_by of a test and its stop is a stable token digest, never the token itself."""
    test_id = create(api, "nobody")
    op = api.tests.Stop(test_service_pb2.StopTestRequest(test_id=test_id), metadata=api.user())
    test = api.tests.Get(test_service_pb2.GetTestRequest(test_id=test_id), metadata=api.user())
    assert test.summary.created_by == op.created_by
    assert test.summary.created_by.startswith("token:")
    assert "secret" not in test.summary.created_by


def test_one_json_log_line_per_rpc(api: Grpc, caplog: pytest.LogCaptureFixture) -> None:
    """Every served RPC logs exactly one JSON line with its method, code, duration and peer."""
    caplog.set_level(logging.INFO, logger="loadtest_core.grpc")
    test_id = create(api, "nobody")
    api.tests.Stop(test_service_pb2.StopTestRequest(test_id=test_id), metadata=api.user())
    code_of(lambda: api.tests.Get(test_service_pb2.GetTestRequest(test_id=test_id)))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "loadtest_core.grpc"]
    assert [(line["rpc"], line["code"]) for line in lines] == [
        ("TestService.Create", "OK"),
        ("TestService.Stop", "OK"),
        ("TestService.Get", "UNAUTHENTICATED"),
    ]
    for line in lines:
        assert line["ms"] >= 0 and "127.0.0.1" in line["peer"]
    assert [line.get("test_id") for line in lines] == [test_id, test_id, None]  # not parsed


@pytest.mark.parametrize("kind", ["sync", "aio"])
def test_rpc_log_sink_takes_each_line_instead_of_logging(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With an rpc_log sink, each RPC's JSON line goes to the sink and none to logging."""
    caplog.set_level(logging.INFO, logger="loadtest_core.grpc")
    lines: list[str] = []
    engine, clock = new_engine()
    with connected(kind, engine, clock, rpc_log=lines.append) as api:
        test_id = create(api, "nobody")
        api.tests.Stop(test_service_pb2.StopTestRequest(test_id=test_id), metadata=api.user())
        code_of(lambda: api.tests.Get(test_service_pb2.GetTestRequest(test_id=test_id)))
    parsed = [json.loads(line) for line in lines]
    assert [(line["rpc"], line["code"]) for line in parsed] == [
        ("TestService.Create", "OK"),
        ("TestService.Stop", "OK"),
        ("TestService.Get", "UNAUTHENTICATED"),
    ]
    assert [set(line) - {"rpc", "code", "ms", "peer"} for line in parsed] == [
        {"test_id"},
        {"test_id"},
        set(),  # unauthenticated: the request is never parsed, so it names no test
    ]
    assert all("\n" not in line for line in lines)
    assert not [r for r in caplog.records if r.name == "loadtest_core.grpc"]


def test_created_by_is_the_principal_of_the_token(api: Grpc) -> None:
    """Tests and stop operations name their caller by ``principal_of`` its token."""
    test_id = create(api, "nobody")
    op = api.tests.Stop(test_service_pb2.StopTestRequest(test_id=test_id), metadata=api.user())
    assert op.created_by == principal_of(USER.encode())
    assert api.engine.state(test_id).created_by == principal_of(USER.encode())


def test_rpc_lines_name_the_test_when_the_call_has_one() -> None:
    """Job calls carry the job's test id, registration and listing carry none."""
    lines: list[str] = []
    engine, clock = new_engine()
    with connected("aio", engine, clock, rpc_log=lines.append) as g:
        _, test_id = running(g)
        g.jobs.GetSignal(job_service_pb2.JobSignalRequest(job_id=test_id), metadata=g.agent())
        g.tests.List(test_service_pb2.ListTestsRequest(), metadata=g.user())
    by_rpc: dict[str, list[str | None]] = {}
    for line in map(json.loads, lines):
        by_rpc.setdefault(line["rpc"], []).append(line.get("test_id"))
    assert by_rpc["AgentRegistrationService.ExternalAgentRegister"] == [None]
    assert by_rpc["TestService.Create"] == [test_id]
    assert by_rpc["JobService.Get"] == [test_id]
    assert by_rpc["JobService.ClaimStatus"] == [test_id, test_id]
    assert by_rpc["JobService.GetSignal"] == [test_id]
    assert by_rpc["TestService.List"] == [None]


def test_rpc_log_quotes_a_hostile_test_id() -> None:
    """A test id with quotes and newlines stays one valid JSON line, cut to 128 characters."""
    lines: list[str] = []
    engine, clock = new_engine()
    hostile = 'x"\n}' * 100
    with connected("aio", engine, clock, rpc_log=lines.append) as g:
        code_of(
            lambda: g.tests.Get(test_service_pb2.GetTestRequest(test_id=hostile), metadata=g.user())
        )
    (line,) = lines
    assert "\n" not in line
    assert json.loads(line)["test_id"] == hostile[:128]


@pytest.mark.parametrize("kind", ["sync", "aio"])
def test_on_rpc_is_told_method_code_and_duration(kind: str) -> None:
    """on_rpc gets each finished call's method, code name and seconds, with or without a log."""
    seen: list[tuple[str, str, float]] = []
    engine, clock = new_engine()
    with connected(kind, engine, clock, on_rpc=lambda *a: seen.append(a)) as g:
        test_id = create(g, "nobody")
        code_of(lambda: g.tests.Stop(test_service_pb2.StopTestRequest(test_id=test_id)))
    assert [(m, c) for m, c, _ in seen] == [
        ("TestService.Create", "OK"),
        ("TestService.Stop", "UNAUTHENTICATED"),
    ]
    assert all(0 <= s < 10 for _, _, s in seen)


def test_api_agent_service_lists_and_gets_registered_agents(api: Grpc) -> None:
    """api.v1 AgentService.List pages through registered agents by id; Get returns one."""
    from yandex.cloud.loadtesting.api.v1 import agent_service_pb2 as api_agent_pb2

    ids = sorted(register(api) for _ in range(3))
    first = api.api_agents.List(api_agent_pb2.ListAgentsRequest(page_size=2), metadata=api.user())
    assert [a.id for a in first.agents] == ids[:2]
    rest = api.api_agents.List(
        api_agent_pb2.ListAgentsRequest(page_size=2, page_token=first.next_page_token),
        metadata=api.user(),
    )
    assert [a.id for a in rest.agents] == ids[2:] and rest.next_page_token == ""
    one = api.api_agents.Get(api_agent_pb2.GetAgentRequest(agent_id=ids[0]), metadata=api.user())
    assert (one.id, one.name, one.folder_id, dict(one.labels)) == (
        ids[0],
        "tank",
        "folder-1",
        {"pool": "a"},
    )
    other = api.api_agents.List(
        api_agent_pb2.ListAgentsRequest(folder_id="folder-2"), metadata=api.user()
    )
    assert list(other.agents) == []


def test_api_agent_service_errors(api: Grpc) -> None:
    """Unknown agent NOT_FOUND, an agent token PERMISSION_DENIED, bad input INVALID_ARGUMENT."""
    from yandex.cloud.loadtesting.api.v1 import agent_service_pb2 as api_agent_pb2

    get = api_agent_pb2.GetAgentRequest
    for bad in ({"page_size": -1}, {"page_token": "garbage!"}, {"page_token": "eHl6"}):
        request = api_agent_pb2.ListAgentsRequest(**bad)
        assert (
            code_of(lambda r=request: api.api_agents.List(r, metadata=api.user()))  # type: ignore[misc]
            is grpc.StatusCode.INVALID_ARGUMENT
        )
    assert (
        code_of(lambda: api.api_agents.Get(get(agent_id="agent-x"), metadata=api.user()))
        is grpc.StatusCode.NOT_FOUND
    )
    assert (
        code_of(lambda: api.api_agents.Get(get(agent_id=""), metadata=api.user()))
        is grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        code_of(
            lambda: api.api_agents.List(api_agent_pb2.ListAgentsRequest(), metadata=api.agent())
        )
        is grpc.StatusCode.PERMISSION_DENIED
    )
    assert (
        code_of(
            lambda: api.api_agents.List(
                api_agent_pb2.ListAgentsRequest(filter='name = "x"'), metadata=api.user()
            )
        )
        is grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        code_of(
            lambda: api.api_agents.Delete(api_agent_pb2.DeleteAgentRequest(), metadata=api.user())
        )
        is grpc.StatusCode.UNIMPLEMENTED
    )
