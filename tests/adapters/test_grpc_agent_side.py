"""ConfigService, the job an agent gets, GetTransientFile, uploads and UploadService over gRPC."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from yandex.cloud.loadtesting.agent.v1 import (
    agent_service_pb2,
    job_service_pb2,
    monitoring_service_pb2,
    monitoring_service_pb2_grpc,
    trail_service_pb2,
    trail_service_pb2_grpc,
)
from yandex.cloud.loadtesting.api.v1 import config_service_pb2, config_service_pb2_grpc
from yandex.cloud.loadtesting.api.v1.config import config_pb2

from loadtest_core import Engine, ManualClock, MemoryStore, Policies, Status
from loadtest_core.grpc import ListUploadsRequest, UploadServiceStub
from tests.adapters.conftest import Grpc, connected
from tests.adapters.test_grpc_api import code_of
from tests.engine.conftest import counter_ids

USER = (("authorization", "Bearer user-secret"),)
AGENT = (("authorization", "Bearer agent-secret"),)
YAML = "phantom:\n  enabled: true\n  address: 127.0.0.1:80\ntelegraf: {enabled: false}\n"


@pytest.fixture
def configs(api: Grpc) -> Any:
    return config_service_pb2_grpc.ConfigServiceStub(api.channel)


def create_config(api: Grpc, configs: Any, text: str = YAML, **kw: str) -> Any:
    op = configs.Create(
        config_service_pb2.CreateConfigRequest(yaml_string=text, **kw), metadata=USER
    )
    return op


def test_config_create_is_a_done_operation_with_the_config(api: Grpc, configs: Any) -> None:
    """Create: done, CreateConfigMetadata{config_id}, response Config; Get returns the same."""
    op = create_config(api, configs, name="smoke", folder_id="f1")
    assert op.done and op.description == "Create config"
    meta = config_service_pb2.CreateConfigMetadata()
    op.metadata.Unpack(meta)
    config = config_pb2.Config()
    op.response.Unpack(config)
    assert config.id == meta.config_id and config.yaml_string == YAML
    assert (config.name, config.folder_id) == ("smoke", "f1")
    assert config.created_by.startswith("token:") and config.created_at.seconds > 0
    got = configs.Get(config_service_pb2.GetConfigRequest(config_id=config.id), metadata=USER)
    assert got == config


def test_config_list_pages_and_delete(api: Grpc, configs: Any) -> None:
    ids = []
    for _ in range(3):
        op = create_config(api, configs)
        meta = config_service_pb2.CreateConfigMetadata()
        op.metadata.Unpack(meta)
        ids.append(meta.config_id)
        api.clock.advance(1)
    first = configs.List(config_service_pb2.ListConfigsRequest(page_size=2), metadata=USER)
    rest = configs.List(
        config_service_pb2.ListConfigsRequest(page_size=2, page_token=first.next_page_token),
        metadata=USER,
    )
    assert [c.id for c in [*first.configs, *rest.configs]] == ids[::-1]
    assert rest.next_page_token == ""
    op = configs.Delete(config_service_pb2.DeleteConfigRequest(config_id=ids[0]), metadata=USER)
    assert op.done and op.response.Is(empty_pb2.Empty.DESCRIPTOR)
    deleted = config_service_pb2.DeleteConfigMetadata()
    op.metadata.Unpack(deleted)
    assert deleted.config_id == ids[0]
    request = config_service_pb2.GetConfigRequest(config_id=ids[0])
    assert code_of(lambda: configs.Get(request, metadata=USER)) is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("phantom: {}\nconsole: null\n", "line 2"),
        ("phantom:\n  x: [1\n", "line 3"),
        ("- a\n- b\n", "line 1"),
    ],
)
def test_a_bad_config_is_invalid_argument_naming_the_line(
    api: Grpc, configs: Any, text: str, words: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        create_config(api, configs, text)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert words in (caught.value.details() or "")


def test_configs_are_a_user_service(api: Grpc, configs: Any) -> None:
    """An agent token cannot manage configs; List with a filter is refused, not ignored."""
    request = config_service_pb2.CreateConfigRequest(yaml_string=YAML)
    assert (
        code_of(lambda: configs.Create(request, metadata=AGENT))
        is grpc.StatusCode.PERMISSION_DENIED
    )
    filtered = config_service_pb2.ListConfigsRequest(filter="name = 'x'")
    assert (
        code_of(lambda: configs.List(filtered, metadata=USER)) is grpc.StatusCode.INVALID_ARGUMENT
    )


def test_the_job_carries_config_and_test_data_as_given(api: Grpc, configs: Any) -> None:
    """Job.config is the config's JSON; files are data_payload (and test_data for one file)."""
    op = create_config(api, configs)
    meta = config_service_pb2.CreateConfigMetadata()
    op.metadata.Unpack(meta)
    api.engine.register_agent(agent_id="agent-1")
    api.engine.create(
        {
            "configurations": [
                {
                    "config_id": meta.config_id,
                    "agent_selector": {"agent_id": "agent-1"},
                    "files": {"ammo.txt": {"object_storage": {"bucket": "b", "name": "k/ammo"}}},
                }
            ],
            "details": {"logging_log_group_id": "group-1"},
        }
    )
    job = api.jobs.Get(job_service_pb2.GetJobRequest(agent_instance_id="agent-1"), metadata=AGENT)
    assert json.loads(job.config) == {
        "phantom": {"enabled": True, "address": "127.0.0.1:80"},
        "telegraf": {"enabled": False},
    }
    assert [(e.name, e.is_transient) for e in job.data_payload] == [("ammo.txt", False)]
    entry = job.data_payload[0].storage_object
    assert (entry.object_storage_bucket, entry.object_storage_filename) == ("b", "k/ammo")
    assert job.test_data == entry
    assert job.logging_log_group_id == "" and not job.HasField("ammo")


def test_a_file_name_leaving_the_data_directory_is_refused(api: Grpc) -> None:
    from loadtest_core import InvalidArgument

    for name in ("../etc/passwd", "/abs", ""):
        with pytest.raises(InvalidArgument, match="relative path"):
            api.engine.create(
                {"configurations": [{"agent_selector": {"agent_id": "a"}, "files": {name: {}}}]}
            )


def test_get_by_job_id_alone_is_an_anonymous_hand_out(api: Grpc) -> None:
    """Get{job_id} hands out an anonymous test; Get{} names neither: INVALID_ARGUMENT."""
    test = api.engine.create({"configurations": [{"agent_selector": {"anonymous_agent": True}}]})
    job = api.jobs.Get(job_service_pb2.GetJobRequest(job_id=test.id), metadata=AGENT)
    assert job.id == test.id and json.loads(job.config) == {}
    empty = job_service_pb2.GetJobRequest()
    assert code_of(lambda: api.jobs.Get(empty, metadata=AGENT)) is grpc.StatusCode.INVALID_ARGUMENT


def test_get_transient_file_is_unimplemented_and_contact(api: Grpc) -> None:
    """For the holder: UNIMPLEMENTED (serve stores no transient files), and the lease is kept."""
    test = api.engine.create({"configurations": [{"agent_selector": {"anonymous_agent": True}}]})
    api.jobs.Get(job_service_pb2.GetJobRequest(job_id=test.id), metadata=AGENT)
    request = job_service_pb2.GetJobTransientFile(job_id=test.id, name="ammo")
    for _ in range(4):
        api.clock.advance(20)
        with pytest.raises(grpc.RpcError) as caught:
            api.jobs.GetTransientFile(request, metadata=AGENT)
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert "object storage" in (caught.value.details() or "")
        api.engine.tick()
    assert api.engine.job_holder(test.id) == f"anonymous-{test.id}"


def held_job(api: Grpc) -> str:
    api.engine.register_agent(agent_id="agent-1")
    test = api.engine.create({"configurations": [{"agent_selector": {"agent_id": "agent-1"}}]})
    api.jobs.Get(job_service_pb2.GetJobRequest(agent_instance_id="agent-1"), metadata=AGENT)
    return test.id


def test_trails_and_metrics_are_stored_and_read_back(api: Grpc) -> None:
    job = held_job(api)
    trails = trail_service_pb2_grpc.TrailServiceStub(api.channel)
    metrics = monitoring_service_pb2_grpc.MonitoringServiceStub(api.channel)
    reply = trails.Create(
        trail_service_pb2.CreateTrailRequest(
            job_id=job, data=[trail_service_pb2.Trail(time="1", reqps=5, q50=1.5)]
        ),
        metadata=AGENT,
    )
    assert reply.code == 0 and reply.trail_id
    added = metrics.AddMetric(
        monitoring_service_pb2.AddMetricRequest(
            job_id=job, agent_instance_id="agent-1", chunks=[monitoring_service_pb2.MetricChunk()]
        ),
        metadata=AGENT,
    )
    assert added.code == 0
    uploads = UploadServiceStub(api.channel)
    page = uploads.List(ListUploadsRequest(test_id=job), metadata=USER)
    assert [dict(u.data) for u in page.uploads] == [{"time": "1", "reqps": "5", "q50": 1.5}]
    assert page.next_after == page.uploads[0].seq and page.stored_items == 1
    assert page.limit_bytes == api.engine.policies.upload_limit
    metric_page = uploads.List(ListUploadsRequest(test_id=job, kind="metrics"), metadata=USER)
    assert len(metric_page.uploads) == 1
    nothing = uploads.List(ListUploadsRequest(test_id=job, after=page.next_after), metadata=USER)
    assert not nothing.uploads and nothing.next_after == page.next_after


def test_an_upload_for_a_job_the_caller_does_not_hold_is_refused(api: Grpc) -> None:
    job = held_job(api)
    trails = trail_service_pb2_grpc.TrailServiceStub(api.channel)
    foreign = trail_service_pb2.CreateTrailRequest(job_id=job, agent_instance_id="agent-2")
    assert (
        code_of(lambda: trails.Create(foreign, metadata=AGENT))
        is grpc.StatusCode.FAILED_PRECONDITION
    )
    unknown = trail_service_pb2.CreateTrailRequest(job_id="test-nope")
    assert code_of(lambda: trails.Create(unknown, metadata=AGENT)) is grpc.StatusCode.NOT_FOUND


def test_an_upload_over_the_limit_is_resource_exhausted() -> None:
    """LimitExceeded maps to RESOURCE_EXHAUSTED (the agent backs off and keeps its job)."""
    clock = ManualClock(1_700_000_000.0)
    policies = Policies(lost_after=30, contact_every=0, upload_limit=10)
    engine = Engine(MemoryStore(), clock=clock, policies=policies, ids=counter_ids())
    with connected("aio", engine, clock) as api:
        job = held_job(api)
        trails = trail_service_pb2_grpc.TrailServiceStub(api.channel)
        request = trail_service_pb2.CreateTrailRequest(
            job_id=job, data=[trail_service_pb2.Trail(time="1700000000")]
        )
        with pytest.raises(grpc.RpcError) as caught:
            trails.Create(request, metadata=AGENT)
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit of 10 bytes" in (caught.value.details() or "")


def test_event_logs_are_stored_by_the_test_they_name(api: Grpc) -> None:
    job = held_job(api)
    api.agents.ReportEventLogs(
        agent_service_pb2.ReportEventLogsRequest(
            agent_instance_id="agent-1",
            events=[
                agent_service_pb2.EventLog(message="a", metadata={"test_id": job}),
                agent_service_pb2.EventLog(message="b"),
            ],
        ),
        metadata=AGENT,
    )
    uploads = UploadServiceStub(api.channel)
    mine = uploads.List(ListUploadsRequest(test_id=job, kind="events"), metadata=USER)
    assert [u.data["message"] for u in mine.uploads] == ["a"]
    own = uploads.List(ListUploadsRequest(agent_id="agent-1"), metadata=USER)
    assert [u.data["message"] for u in own.uploads] == ["b"]
    missing = agent_service_pb2.ReportEventLogsRequest()
    assert (
        code_of(lambda: api.agents.ReportEventLogs(missing, metadata=AGENT))
        is grpc.StatusCode.INVALID_ARGUMENT
    )


@pytest.mark.parametrize(
    "request_",
    [
        ListUploadsRequest(),
        ListUploadsRequest(test_id="t", agent_id="a"),
        ListUploadsRequest(test_id="t", kind="logs"),
        ListUploadsRequest(agent_id="agent-1", kind="trails"),
        ListUploadsRequest(test_id="t", after=-1),
        ListUploadsRequest(test_id="t", page_size=-5),
    ],
)
def test_upload_reads_refuse_bad_requests(api: Grpc, request_: Any) -> None:
    uploads = UploadServiceStub(api.channel)
    assert (
        code_of(lambda: uploads.List(request_, metadata=USER)) is grpc.StatusCode.INVALID_ARGUMENT
    )


def test_upload_reads_are_for_users(api: Grpc) -> None:
    job = held_job(api)
    uploads = UploadServiceStub(api.channel)
    request = ListUploadsRequest(test_id=job)
    assert (
        code_of(lambda: uploads.List(request, metadata=AGENT)) is grpc.StatusCode.PERMISSION_DENIED
    )
    assert api.engine.get(job).summary.status is Status.CREATED  # type: ignore[union-attr]


def test_an_event_time_proto3_json_cannot_write_is_invalid(api: Grpc) -> None:
    """A timestamp before year 1: INVALID_ARGUMENT naming the event, nothing stored."""
    held_job(api)
    event = agent_service_pb2.EventLog(message="x")
    event.timestamp.seconds = -62135596801
    request = agent_service_pb2.ReportEventLogsRequest(agent_instance_id="agent-1", events=[event])
    with pytest.raises(grpc.RpcError) as caught:
        api.agents.ReportEventLogs(request, metadata=AGENT)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "events[0]" in (caught.value.details() or "")
    assert api.engine.agent_events("agent-1") == []
