"""Issue #13's scenarios beyond the basic runs: configs, anonymous runs, uploads, the drain, tokens.

Each scenario asserts the test's final status and that no job call for a job
the agent held was answered FAILED_PRECONDITION or NOT_FOUND.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from yandex.cloud.loadtesting.agent.v1 import (
    agent_service_pb2,
    job_service_pb2,
    monitoring_service_pb2,
    trail_service_pb2,
)
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2 as agent_test_pb2

from loadtest_core import Status
from loadtest_core.grpc import ListUploadsRequest
from tests.adapters.conftest import AGENT
from tests.agents._model import (
    GENERATOR_CONFIG,
    Agent,
    ConfigCrash,
    Plan,
    World,
    read_job_config,
)
from tests.agents.conftest import LOST_AFTER, OTHER_AGENT, make_world
from tests.agents.test_agent_model import USER_MD, started


def read_uploads(world: World, test_id: str, kind: str) -> list[dict[str, Any]]:
    """Every stored upload of a test, read back page by page as a user does."""
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        page = world.uploads.List(
            ListUploadsRequest(test_id=test_id, kind=kind, after=after, page_size=50),
            metadata=USER_MD,
        )
        out += [dict(u.data) for u in page.uploads]
        if not page.uploads:
            return out
        after = page.next_after


def test_the_job_carries_the_config_the_test_names(world: World, tmp_path: Path) -> None:
    """Job.config is the stored YAML config as a JSON object; the agent runs the test to DONE."""
    agent = started(world, tmp_path)
    config_id = world.create_config(GENERATOR_CONFIG, USER_MD)
    test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD, config_id=config_id)
    job = agent.wait_for_job()
    assert agent.job_configs[job] == yaml.safe_load(GENERATOR_CONFIG)
    assert agent.run_job(job, Plan(shoot=10)) == "FINISHED"
    assert world.status(test_id) is Status.DONE
    assert agent.abandoning_answers() == []


def test_a_test_naming_an_unknown_config_is_refused(world: World) -> None:
    """TestService.Create with a config id nobody stored: NOT_FOUND, and no test exists."""
    with pytest.raises(grpc.RpcError) as caught:
        world.create_test(agent_id="agent-1", user_md=USER_MD, config_id="config-missing")
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "config-missing" in (caught.value.details() or "")
    assert list(world.engine.store.iter_tests()) == []


def test_a_config_deleted_after_create_still_reaches_the_agent(
    world: World, tmp_path: Path
) -> None:
    """Deleting a config hides it; the test that named it is still handed out with it."""
    from yandex.cloud.loadtesting.api.v1 import config_service_pb2

    agent = started(world, tmp_path)
    config_id = world.create_config(GENERATOR_CONFIG, USER_MD)
    test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD, config_id=config_id)
    world.configs.Delete(
        config_service_pb2.DeleteConfigRequest(config_id=config_id), metadata=USER_MD
    )
    job = agent.wait_for_job()
    assert agent.job_configs[job] == yaml.safe_load(GENERATOR_CONFIG)
    assert agent.run_job(job, Plan(shoot=5)) == "FINISHED"
    assert world.status(test_id) is Status.DONE
    assert agent.abandoning_answers() == []


@pytest.mark.parametrize(
    "text", ['{"config_id": "c", "test": {}}', '[{"phantom": {}}]', '{"console": null}']
)
def test_the_model_crashes_on_a_job_that_is_not_a_generator_config(text: str) -> None:
    """The model refuses what the real agent cannot run (so the config scenarios can fail)."""
    with pytest.raises(ConfigCrash):
        read_job_config(text)


def test_anonymous_run_fetches_its_job_by_id(world: World) -> None:
    """`ulta run <test_id>` without a name: Get{job_id} hands out the anonymous test; DONE."""
    test_id = world.create_test(agent_id=None, user_md=USER_MD)
    agent = Agent(world, AGENT, name=None)
    agent.start()
    assert agent.fetch(test_id) == test_id
    assert agent.run_job(test_id, Plan(shoot=10)) == "FINISHED"
    assert world.status(test_id) is Status.DONE
    assert agent.abandoning_answers() == []
    assert not {c.method for c in agent.calls} & {"AgentClaimStatus", "ReportEventLogs"}
    assert agent.codes("TrailCreate") == {grpc.StatusCode.OK}


def test_anonymous_run_with_a_slow_download_keeps_its_job(world: World) -> None:
    """No heartbeat, a 45 s download: the lease lapses, and its first poll takes the job back."""
    test_id = world.create_test(agent_id=None, user_md=USER_MD)
    agent = Agent(world, AGENT, name=None)
    assert agent.fetch(test_id) == test_id
    assert agent.run_job(test_id, Plan(download=45, shoot=5)) == "FINISHED"
    assert not agent.stopped_by_server
    assert world.status(test_id) is Status.DONE
    assert agent.abandoning_answers() == []


def test_a_test_for_a_named_agent_is_not_handed_to_an_anonymous_run(world: World) -> None:
    """Get{job_id} with no agent id for a test whose selector names an agent: NOT_FOUND."""
    test_id = world.create_test(agent_id="agent-1", user_md=USER_MD)
    agent = Agent(world, AGENT, name=None)
    assert agent.fetch(test_id) is None
    assert world.status(test_id) is Status.CREATED


def test_uploads_are_accepted_stored_and_readable(world: World, tmp_path: Path) -> None:
    """Trails, metrics and event logs are answered OK, stored per test, read back by the user."""
    agent = started(world, tmp_path)
    test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD)
    assert agent.run_job(agent.wait_for_job(), Plan(shoot=10, monitoring=True)) == "FINISHED"
    assert world.status(test_id) is Status.DONE
    assert agent.codes("TrailCreate") == {grpc.StatusCode.OK}
    assert agent.codes("AddMetric") == {grpc.StatusCode.OK}
    assert agent.codes("ReportEventLogs") == {grpc.StatusCode.OK}
    assert agent.abandoning_answers() == []
    trails = read_uploads(world, test_id, "trails")
    sent = sum(1 for c in agent.calls if c.method == "TrailCreate" and c.code is grpc.StatusCode.OK)
    assert sent >= 9 and len(trails) >= sent  # one trail a second, each kept
    assert {t["overall"] for t in trails} == {"1"}  # int64: a string in proto3 JSON
    metrics = read_uploads(world, test_id, "metrics")
    assert metrics and metrics[0]["instance_host"] == "tank-host"
    events = read_uploads(world, test_id, "events")
    assert events and all(e["metadata"]["test_id"] == test_id for e in events)
    world.sleep(12)  # idle: its log records name no test
    own = world.uploads.List(
        ListUploadsRequest(agent_id=agent.agent_id, page_size=1000), metadata=USER_MD
    )
    assert own.uploads
    assert all("metadata" not in u.data and u.data["message"] for u in own.uploads)


def test_uploads_past_the_limit_are_refused_and_the_test_runs_on(tmp_path: Path) -> None:
    """Over upload_limit: RESOURCE_EXHAUSTED (the agent backs off), nothing lost, the test DONE."""
    with make_world(upload_limit=600) as world:
        agent = started(world, tmp_path)
        test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD)
        assert agent.run_job(agent.wait_for_job(), Plan(shoot=20)) == "FINISHED"
        assert world.status(test_id) is Status.DONE
        assert agent.codes("TrailCreate") == {
            grpc.StatusCode.OK,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        }
        assert agent.abandoning_answers() == []
        usage = world.engine.upload_usage(test_id)
        assert 0 < usage["trails"][1] <= 600
        assert len(read_uploads(world, test_id, "trails")) == usage["trails"][0]


def test_long_run_with_ready_heartbeats_keeping_jobs_is_never_lost(tmp_path: Path) -> None:
    """A 70 s run, flag on: the ~60 s post-run drain (READY_FOR_TEST beats only) is not LOST."""
    with make_world(ready_keeps_jobs=True) as world:
        agent = started(world, tmp_path)
        test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD)
        assert agent.run_job(agent.wait_for_job(), Plan(shoot=70)) == "FINISHED"
        assert world.status(test_id) is Status.DONE
        assert Status.LOST not in world.statuses(test_id)
        assert agent.abandoning_answers() == []
        assert drain_gap(agent) > LOST_AFTER + 3  # the drain was longer than lost_after


def test_long_run_by_default_goes_lost_during_the_drain_then_done(
    world: World, tmp_path: Path
) -> None:
    """The same 70 s run, flag off (spec §2): LOST during the drain, DONE at the final claim."""
    agent = started(world, tmp_path)
    test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD)
    assert agent.run_job(agent.wait_for_job(), Plan(shoot=70)) == "FINISHED"
    assert world.statuses(test_id)[-2:] == [Status.LOST, Status.DONE]
    assert agent.abandoning_answers() == []


def drain_gap(agent: Agent) -> float:
    """The longest silence between two job calls of the agent (the post-run drain)."""
    times = [c.t for c in agent.calls if c.method in ("GetSignal", "JobClaimStatus")]
    return max(b - a for a, b in itertools.pairwise(times))


def test_an_agent_that_drops_its_job_loses_it_even_with_the_flag(tmp_path: Path) -> None:
    """Flag on: an agent that goes back to JobService.Get has dropped its test, which goes LOST."""
    with make_world(ready_keeps_jobs=True) as world:
        agent = started(world, tmp_path)
        test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD)
        job = agent.wait_for_job()
        for status in ("PREPARING", "RUNNING"):
            agent._claim(job, status)
        with pytest.raises(TimeoutError):  # forgets it: idle polling, READY_FOR_TEST beats
            agent.wait_for_job(limit=LOST_AFTER + 10)
        assert world.status(test_id) is Status.LOST


def test_another_token_cannot_act_for_an_agents_job(world: World, tmp_path: Path) -> None:
    """An agent token of another pool gets PERMISSION_DENIED on every call for the job; DONE."""
    agent = started(world, tmp_path)
    test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD)
    job = agent.wait_for_job()
    md = (("authorization", f"Bearer {OTHER_AGENT}"),)
    intruder_calls: list[Callable[[], Any]] = [
        lambda: world.jobs.GetSignal(job_service_pb2.JobSignalRequest(job_id=job), metadata=md),
        lambda: world.jobs.ClaimStatus(
            job_service_pb2.ClaimJobStatusRequest(
                job_id=job, status=job_service_pb2.ClaimJobStatusRequest.FAILED, error="x"
            ),
            metadata=md,
        ),
        lambda: world.agent_tests.Update(
            agent_test_pb2.UpdateTestRequest(test_id=job), metadata=md
        ),
        lambda: world.trails.Create(
            trail_service_pb2.CreateTrailRequest(job_id=job, data=[trail_service_pb2.Trail()]),
            metadata=md,
        ),
        lambda: world.monitoring.AddMetric(
            monitoring_service_pb2.AddMetricRequest(job_id=job), metadata=md
        ),
        lambda: world.jobs.GetTransientFile(
            job_service_pb2.GetJobTransientFile(job_id=job, name="ammo"), metadata=md
        ),
        lambda: world.jobs.Get(
            job_service_pb2.GetJobRequest(agent_instance_id=agent.agent_id or ""), metadata=md
        ),
        lambda: world.agents.ClaimStatus(
            agent_service_pb2.ClaimAgentStatusRequest(
                agent_instance_id=agent.agent_id or "",
                status=agent_service_pb2.ClaimAgentStatusRequest.TESTING,
            ),
            metadata=md,
        ),
        lambda: world.agents.ReportEventLogs(
            agent_service_pb2.ReportEventLogsRequest(agent_instance_id=agent.agent_id or ""),
            metadata=md,
        ),
    ]
    for call in intruder_calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert agent.run_job(job, Plan(shoot=5)) == "FINISHED"
    assert world.status(test_id) is Status.DONE
    assert agent.abandoning_answers() == []
    assert read_uploads(world, test_id, "trails")  # the owner's uploads only
    assert all(t.get("overall") == "1" for t in read_uploads(world, test_id, "trails"))


def test_an_anonymous_job_is_bound_to_the_token_that_took_it(world: World) -> None:
    """`ulta run` with another token cannot take over an anonymous job already handed out."""
    test_id = world.create_test(agent_id=None, user_md=USER_MD)
    agent = Agent(world, AGENT, name=None)
    assert agent.fetch(test_id) == test_id
    other = Agent(world, OTHER_AGENT, name=None)
    with pytest.raises(grpc.RpcError) as caught:
        other.fetch(test_id)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert agent.run_job(test_id, Plan(shoot=5)) == "FINISHED"
    assert world.status(test_id) is Status.DONE
    assert agent.abandoning_answers() == []


def test_with_one_shared_token_any_agent_can_act_for_another(world: World, tmp_path: Path) -> None:
    """One token for every agent: a second process polls and claims the first agent's job."""
    agent = started(world, tmp_path)
    test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD)
    job = agent.wait_for_job()
    stranger = Agent(world, AGENT, name=None)  # same token, no agent id: the holder's calls
    stranger._claim(job, "FAILED", "not mine, but the token lets me")
    assert world.status(test_id) is Status.FAILED
