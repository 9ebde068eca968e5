"""The metrics observer over a real engine, and LOST and recovery seen from a real serve."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from yandex.cloud.loadtesting.agent.v1 import (
    agent_registration_service_pb2,
    agent_registration_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
)
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc
from yandex.cloud.loadtesting.api.v1.test import agent_selector_pb2, single_agent_configuration_pb2

from loadtest_core import Engine, ManualClock, MemoryStore, SqliteStore, Status
from loadtest_core.client import channel
from loadtest_core.server._metrics import Observer, status_line
from tests.engine.conftest import EXACT, counter_ids, running, spec
from tests.serving import AGENT, USER, serving


def _samples(observer: Observer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(observer.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _engine(store: MemoryStore | SqliteStore | None = None) -> tuple[Engine, ManualClock]:
    clock = ManualClock(1_700_000_000.0)
    engine = Engine(store or MemoryStore(), clock=clock, policies=EXACT, ids=counter_ids())
    return engine, clock


def test_tests_by_status_come_from_the_store(tmp_path: Path) -> None:
    """loadtest_tests counts the stored tests per status, written by any engine on the store."""
    db = tmp_path / "m.db"
    other, _ = _engine(SqliteStore(db))
    running(other)
    other.create(spec())
    engine, _ = _engine(SqliteStore(db))
    samples = _samples(Observer(engine))
    assert samples[("loadtest_tests", (("status", "RUNNING"),))] == 1
    assert samples[("loadtest_tests", (("status", "CREATED"),))] == 1
    assert samples[("loadtest_tests", (("status", "LOST"),))] == 0
    assert samples[("loadtest_tests_active", ())] == 1


def test_transitions_lost_recoveries_and_rejections_are_counted() -> None:
    """Each status change counts once by (from, to); LOST, its recovery and refusals too."""
    engine, clock = _engine()
    observer = Observer(engine)
    observer.attach()
    test_id = running(engine)
    clock.advance(31)
    engine.tick()
    engine.signal(test_id, "agent-1")  # the agent is back
    engine.claim(test_id, "agent-1", Status.PREPARING)  # stale
    samples = _samples(observer)
    assert samples[("loadtest_transitions_total", (("from", "RUNNING"), ("to", "LOST")))] == 1
    assert samples[("loadtest_transitions_total", (("from", "LOST"), ("to", "RUNNING")))] == 1
    assert samples[("loadtest_transitions_total", (("from", "NONE"), ("to", "CREATED")))] == 1
    assert samples[("loadtest_lost_total", ())] == 1
    assert samples[("loadtest_recoveries_total", ())] == 1
    assert samples[("loadtest_rejected_events_total", (("kind", "stale"),))] == 1


def test_a_stop_while_lost_is_no_recovery() -> None:
    """LOST -> STOPPED by a user's stop counts as a transition, not as the agent coming back."""
    engine, clock = _engine()
    observer = Observer(engine)
    observer.attach()
    test_id = running(engine)
    clock.advance(31)
    engine.tick()
    engine.stop(test_id)
    samples = _samples(observer)
    assert samples[("loadtest_recoveries_total", ())] == 0
    assert samples[("loadtest_transitions_total", (("from", "LOST"), ("to", "STOPPED")))] == 1


def test_stop_latency_runs_from_the_stop_to_the_final_status() -> None:
    """A stop that takes 7 s lands in the 10 s bucket; a CREATED test's cancel is 0 s."""
    engine, clock = _engine()
    observer = Observer(engine)
    observer.attach()
    test_id = running(engine)
    engine.stop(test_id)
    clock.advance(7)
    engine.claim(test_id, "agent-1", Status.STOPPED)
    engine.stop(engine.create(spec()).id)
    samples = _samples(observer)
    bucket = "loadtest_stop_latency_seconds_bucket"
    assert samples[(bucket, (("le", "0.0"),))] == 1
    assert samples[(bucket, (("le", "5.0"),))] == 1
    assert samples[(bucket, (("le", "10.0"),))] == 2
    assert samples[("loadtest_stop_latency_seconds_count", ())] == 2
    assert samples[("loadtest_stop_latency_seconds_sum", ())] == 7


def test_rpcs_and_commits_are_timed() -> None:
    """on_rpc fills a histogram and a counter by method and code; every commit is timed."""
    engine, _ = _engine()
    commits: list[object] = []
    store: Any = engine.store
    write = store.commit

    def counted(change: object) -> None:
        commits.append(change)
        write(change)

    store.commit = counted
    observer = Observer(engine)
    observer.attach()
    observer.on_rpc("TestService.Stop", "OK", 0.002)
    observer.on_rpc("TestService.Stop", "OK", 0.2)
    observer.on_rpc("TestService.Stop", "NOT_FOUND", 0.0001)
    running(engine)
    samples = _samples(observer)
    ok = (("code", "OK"), ("method", "TestService.Stop"))
    assert samples[("loadtest_grpc_requests_total", ok)] == 2
    assert (
        samples[
            ("loadtest_grpc_request_duration_seconds_bucket", (*ok[:1], ("le", "0.0025"), ok[1]))
        ]
        == 1
    )
    assert len(commits) >= 3  # at least a create and two claims
    timed = samples[("loadtest_store_commit_seconds_count", (("operation", "commit"),))]
    assert timed == len(commits)


def test_status_line_names_test_from_to_and_cause() -> None:
    """A status change's log line is one JSON object with the test, from, to, cause and actor."""
    engine, _ = _engine()
    lines: list[str] = []
    Observer(engine, lines.append).attach()
    test_id = running(engine)
    engine.claim(test_id, "agent-1", Status.INITIATED)  # stale: no status change, no line
    parsed = [json.loads(x) for x in lines]
    assert [(x["from"], x["to"], x["cause"]) for x in parsed] == [
        (None, "CREATED", "create"),
        ("CREATED", "INITIATED", "claim_INITIATED"),
        ("INITIATED", "RUNNING", "claim_RUNNING"),
    ]
    assert all(x["test_id"] == test_id and x["event"] == "status" for x in parsed)
    assert parsed[1]["actor"] == "agent-1" and parsed[1]["at"].endswith("Z")
    assert status_line(engine.events()[0]) == lines[0]


def test_lost_and_recovery_are_logged_and_counted_by_serve(tmp_path: Path) -> None:
    """A silent agent's test goes LOST (a log line, a metric); a poll brings it back."""
    with serving(tmp_path, "--lost-after", "0.4") as served:
        user, agent = channel(served.grpc, USER), channel(served.grpc, AGENT)
        op = agent_registration_service_pb2_grpc.AgentRegistrationServiceStub(
            agent
        ).ExternalAgentRegister(agent_registration_service_pb2.ExternalAgentRegisterRequest())
        meta = agent_registration_service_pb2.ExternalAgentRegisterMetadata()
        op.metadata.Unpack(meta)
        tests = test_service_pb2_grpc.TestServiceStub(user)
        selector = agent_selector_pb2.AgentSelector(agent_id=meta.agent_instance_id)
        tests.Create(
            test_service_pb2.CreateTestRequest(
                configurations=[
                    single_agent_configuration_pb2.SingleAgentConfiguration(agent_selector=selector)
                ]
            )
        )
        jobs = job_service_pb2_grpc.JobServiceStub(agent)
        job = jobs.Get(job_service_pb2.GetJobRequest(agent_instance_id=meta.agent_instance_id))
        claim = job_service_pb2.ClaimJobStatusRequest
        jobs.ClaimStatus(claim(job_id=job.id, status=claim.RUNNING))
        lost = served.wait_for_log(lambda x: x.get("to") == "LOST")
        assert (lost["test_id"], lost["from"], lost["cause"]) == (job.id, "RUNNING", "lose")
        jobs.GetSignal(job_service_pb2.JobSignalRequest(job_id=job.id))
        back = served.wait_for_log(lambda x: x.get("from") == "LOST")
        assert (back["to"], back["cause"]) == ("RUNNING", "contact")
        deadline = time.monotonic() + 5
        values: dict[str, float] = {}
        while time.monotonic() < deadline:
            text = httpx.get(f"http://{served.http}/metrics", timeout=5).text
            values = {
                s.name: s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name in ("loadtest_lost_total", "loadtest_recoveries_total")
            }
            if values.get("loadtest_recoveries_total", 0) >= 1:
                break
            time.sleep(0.1)
        # the agent stays silent after its one poll, so the test may go LOST again
        assert values["loadtest_lost_total"] >= 1 and values["loadtest_recoveries_total"] >= 1
        user.close()
        agent.close()


@given(
    at=st.floats(min_value=0, max_value=253_402_300_799, allow_nan=False),
    actor=st.text(max_size=40),
)
def test_status_line_is_json_with_an_exact_time(at: float, actor: str) -> None:
    """Any actor text stays valid JSON; the time is RFC 3339 UTC within a microsecond."""
    from datetime import datetime

    from loadtest_core import Kind, LogRecord

    record = LogRecord(
        1, "t-1", at, actor, "stop", {}, Status.RUNNING, Status.STOPPING, Kind.ACCEPTED, "", 2
    )
    line = json.loads(status_line(record))
    assert line["actor"] == actor
    when = datetime.fromisoformat(line["at"].replace("Z", "+00:00")).timestamp()
    assert abs(when - at) <= 1e-6 + at * 1e-15
