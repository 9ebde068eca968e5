"""The real agent's calls, in its order and timing (tests/agents/_model.py), against a real server.

Each scenario asserts the test's final status and that no job call for a job
the agent held was answered FAILED_PRECONDITION or NOT_FOUND (the answers that
make the real agent abandon its job).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import grpc
import pytest

from loadtest_core import (
    Engine,
    ManualClock,
    Policies,
    SqliteStore,
    Status,
    TokenAuth,
)
from tests.adapters.conftest import AGENT, USER, grpc_server
from tests.agents._model import Agent, Killed, Plan, World
from tests.agents.conftest import LOST_AFTER
from tests.engine.conftest import counter_ids

USER_MD = (("authorization", f"Bearer {USER}"),)


def started(world: World, tmp_path: Path) -> Agent:
    agent = Agent(world, AGENT, cache=tmp_path / "agentid")
    agent.start()
    return agent


def test_natural_run_ends_done(world: World, tmp_path: Path) -> None:
    """A 20 s run: register, fetch, RUN_IN, a claim every second, drain, FINISHED → DONE."""
    agent = started(world, tmp_path)
    test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD)
    job = agent.wait_for_job()
    assert job == test_id
    assert agent.run_job(job, Plan(shoot=20)) == "FINISHED"
    assert world.status(test_id) is Status.DONE
    assert Status.LOST not in world.statuses(test_id)
    assert agent.abandoning_answers() == []
    claims = [c for c in agent.calls if c.method == "JobClaimStatus"]
    assert len(claims) >= 20  # the agent claims on every poll, not only on change
    assert {c.code for c in claims} == {grpc.StatusCode.OK}


def test_user_stop_with_a_slow_generator_ends_stopped(world: World, tmp_path: Path) -> None:
    """Stop while RUNNING: GetSignal says STOP, the generator takes 45 s to stop, then STOPPED."""
    agent = started(world, tmp_path)
    test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD)
    job = agent.wait_for_job()
    world.every(8.0, lambda: world.stop_test(test_id, USER_MD))  # a user, 8 s in
    assert agent.run_job(job, Plan(shoot=120, stop_shutdown=45)) == "STOPPED"
    assert world.status(test_id) is Status.STOPPED
    assert Status.STOPPING in world.statuses(test_id)
    assert Status.LOST not in world.statuses(test_id)  # TESTING heartbeats during shutdown
    assert agent.abandoning_answers() == []


def test_autostop_ends_autostopped_with_its_imbalance(world: World, tmp_path: Path) -> None:
    """An autostop: the imbalance Update, then AUTOSTOPPED; the test keeps the imbalance point."""
    agent = started(world, tmp_path)
    test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD)
    job = agent.wait_for_job()
    plan = Plan(shoot=6, post_process=1, outcome="AUTOSTOPPED", imbalance_rps=5)
    assert agent.run_job(job, plan) == "AUTOSTOPPED"
    summary = world.engine.get(test_id).summary
    assert summary is not None
    assert summary.status is Status.AUTOSTOPPED
    assert summary.imbalance_point is not None
    assert summary.imbalance_point.rps == 5
    assert agent.abandoning_answers() == []


def test_killed_agent_leaves_its_test_lost(world: World, tmp_path: Path) -> None:
    """SIGKILL while RUNNING: no call at all any more; LOST after lost_after (+ contact_every)."""
    agent = started(world, tmp_path)
    test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD)
    job = agent.wait_for_job()
    world.every(10.0, agent.kill)
    with pytest.raises(Killed):
        agent.run_job(job, Plan(shoot=3600))
    assert world.status(test_id) is Status.RUNNING
    world.sleep(LOST_AFTER * 1.1 + 1)  # contact is written coalesced: up to lost_after / 10 late
    assert world.status(test_id) is Status.LOST
    assert agent.abandoning_answers() == []


def test_restart_with_a_cached_id_does_not_register_again(world: World, tmp_path: Path) -> None:
    """A restarted agent takes its id from the cache file, skips registration, runs a test."""
    first = started(world, tmp_path)
    world.create_test(agent_id=first.agent_id, user_md=USER_MD)
    assert first.run_job(first.wait_for_job(), Plan(shoot=5)) == "FINISHED"
    first.kill()
    again = started(world, tmp_path)
    assert again.agent_id == first.agent_id
    assert "ExternalAgentRegister" not in {c.method for c in again.calls}
    test_id = world.create_test(agent_id=again.agent_id, user_md=USER_MD)
    assert again.run_job(again.wait_for_job(), Plan(shoot=5)) == "FINISHED"
    assert world.status(test_id) is Status.DONE
    assert again.abandoning_answers() == []


def test_an_idle_agent_polls_every_second_and_beats_every_ten(world: World, tmp_path: Path) -> None:
    """Idle for a minute: JobService.Get about once a second, a READY_FOR_TEST beat every 10 s."""
    agent = started(world, tmp_path)
    with pytest.raises(TimeoutError):
        agent.wait_for_job(limit=60)
    gets = [c for c in agent.calls if c.method == "JobGet"]
    beats = [c for c in agent.calls if c.method == "AgentClaimStatus"]
    assert 59 <= len(gets) <= 61
    assert {c.code for c in gets} == {grpc.StatusCode.NOT_FOUND}
    assert 6 <= len(beats) <= 7
    assert {c.code for c in beats} == {grpc.StatusCode.OK}


def test_slow_preparation_keeps_the_job(world: World, tmp_path: Path) -> None:
    """A 45 s test-data download (> lost_after; READY_FOR_TEST beats only) keeps the job."""
    agent = started(world, tmp_path)
    test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD)
    job = agent.wait_for_job()
    assert agent.run_job(job, Plan(download=45, shoot=10)) == "FINISHED"
    assert not agent.stopped_by_server
    assert agent.abandoning_answers() == []
    assert world.status(test_id) is Status.DONE


def test_serve_restart_between_hand_out_and_first_claim(tmp_path: Path) -> None:
    """serve restarts on the same SQLite file while the agent downloads; the job stays its own."""
    clock = ManualClock(1_700_000_000.0)
    db = str(tmp_path / "serve.db")
    auth = TokenAuth([USER], [AGENT])
    ids = counter_ids()
    policies = Policies(lost_after=LOST_AFTER)
    with contextlib.ExitStack() as second:
        with contextlib.ExitStack() as first:
            engine = Engine(SqliteStore(db), clock=clock, policies=policies, ids=ids)
            first.callback(engine.store.close)
            port = first.enter_context(grpc_server("aio-offload", engine, auth))
            channel = first.enter_context(grpc.insecure_channel(f"127.0.0.1:{port}"))
            world = World(engine, clock, channel)
            agent = started(world, tmp_path)
            test_id = world.create_test(agent_id=agent.agent_id, user_md=USER_MD)
            job = agent.wait_for_job()
            world.sleep(5)  # downloading test data when serve goes down
        restarted = Engine(SqliteStore(db), clock=clock, policies=policies, ids=ids)
        second.callback(restarted.store.close)
        port = second.enter_context(grpc_server("aio-offload", restarted, auth))
        world.engine = restarted
        world.connect(second.enter_context(grpc.insecure_channel(f"127.0.0.1:{port}")))
        assert agent.run_job(job, Plan(shoot=10)) == "FINISHED"
        assert not agent.stopped_by_server
        assert agent.abandoning_answers() == []
        assert world.status(test_id) is Status.DONE
