"""Several `serve` processes over one store behave as one engine, through a SIGKILL and a restart.

No balancer: every client call picks a replica at random (and another one when
the one it picked is down). Agents register, heartbeat, take jobs, claim and
poll; users create tests and stop them through gRPC and HTTP. One replica is
SIGKILLed mid-run and started again on the same ports. Afterwards the store
must hold every acknowledged change, no test may have gone LOST while its
agent was polling, no test may have two stop operations, and the event log
must replay to exactly the stored tests and operations.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from yandex.cloud.loadtesting.agent.v1 import (
    agent_registration_service_pb2 as reg_pb2,
)
from yandex.cloud.loadtesting.agent.v1 import (
    agent_registration_service_pb2_grpc,
    agent_service_pb2,
    agent_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
)
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc
from yandex.cloud.loadtesting.api.v1.common import tag_pb2
from yandex.cloud.loadtesting.api.v1.test import (
    agent_selector_pb2,
    details_pb2,
    single_agent_configuration_pb2,
    status_pb2,
)

from loadtest_core import Engine, SqliteStore, Status, check_operation, check_state
from loadtest_core._store import Store

USER, AGENT = "replica-user-token", "replica-agent-token"
JS = job_service_pb2.ClaimJobStatusRequest
SIG = job_service_pb2.JobSignalResponse
LOST_AFTER = 3.0
AGENTS = 6
TESTS_PER_AGENT = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Replica:
    db: str
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "loadtest_core.cli",
            "serve",
            "--db",
            self.db,
            "--grpc",
            f"127.0.0.1:{self.grpc_port}",
            "--http",
            f"127.0.0.1:{self.http_port}",
            "--user-token",
            USER,
            "--agent-token",
            AGENT,
            "--lost-after",
            str(LOST_AFTER),
        ]
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.process.stdout is not None
        ready: set[str] = set()
        deadline = time.monotonic() + 30
        while ready != {"grpc_listening", "http_listening"}:
            assert time.monotonic() < deadline, "serve did not start"
            line = self.process.stdout.readline()
            assert line, f"serve exited with {self.process.wait()}"
            if line.startswith("{"):
                ready.add(json.loads(line).get("event", ""))
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)


class Cluster:
    """Clients that pick a replica at random for every call and retry another when it is down."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas
        self.channels = [grpc.insecure_channel(f"127.0.0.1:{r.grpc_port}") for r in replicas]
        self.rng = random.Random(7)
        self.lock = threading.Lock()

    def call(
        self, stub: Callable[[grpc.Channel], Any], method: str, request: Any, token: str
    ) -> Any:
        metadata = [("authorization", f"Bearer {token}")]
        for attempt in range(60):
            with self.lock:
                channel = self.rng.choice(self.channels)
            try:
                return getattr(stub(channel), method)(request, metadata=metadata, timeout=5)
            except grpc.RpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    raise
                time.sleep(0.05 * (attempt % 4))
        raise AssertionError(f"{method}: no replica answered")

    def http_stop(self, plans: list[int]) -> dict[str, Any]:
        body = json.dumps({"plans": plans}).encode()
        for _ in range(60):
            with self.lock:
                replica = self.rng.choice(self.replicas)
            request = urllib.request.Request(
                f"http://127.0.0.1:{replica.http_port}/stop/execution",
                data=body,
                headers={"Authorization": f"Bearer {USER}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as reply:
                    result: dict[str, Any] = json.loads(reply.read())
                    return result
            except OSError:
                time.sleep(0.05)
        raise AssertionError("no replica answered HTTP")

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


@dataclass
class Acked:
    """What the servers acknowledged; every one of these must be in the store afterwards."""

    created: set[str] = field(default_factory=set)
    finals: dict[str, Status] = field(default_factory=dict)
    stop_ops: dict[str, set[str]] = field(default_factory=dict)
    agents: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def agent_life(cluster: Cluster, acked: Acked, index: int, stop_event: threading.Event) -> None:
    reg = agent_registration_service_pb2_grpc.AgentRegistrationServiceStub
    jobs = job_service_pb2_grpc.JobServiceStub
    agents = agent_service_pb2_grpc.AgentServiceStub
    op = cluster.call(
        reg,
        "ExternalAgentRegister",
        reg_pb2.ExternalAgentRegisterRequest(name=f"tank-{index}", labels={"pool": f"p{index}"}),
        AGENT,
    )
    meta = reg_pb2.ExternalAgentRegisterMetadata()
    op.metadata.Unpack(meta)
    agent_id = meta.agent_instance_id
    with acked.lock:
        acked.agents.append(agent_id)
    last_beat = 0.0
    try:
        while not stop_event.is_set():
            if time.monotonic() - last_beat > 1.0:
                beat = agent_service_pb2.ClaimAgentStatusRequest(
                    agent_instance_id=agent_id,
                    status=agent_service_pb2.ClaimAgentStatusRequest.READY_FOR_TEST,
                )
                cluster.call(agents, "ClaimStatus", beat, AGENT)
                last_beat = time.monotonic()
            try:
                job = cluster.call(
                    jobs, "Get", job_service_pb2.GetJobRequest(agent_instance_id=agent_id), AGENT
                )
            except grpc.RpcError as exc:
                assert exc.code() is grpc.StatusCode.NOT_FOUND, exc
                time.sleep(0.2)
                continue
            try:
                for stage in (JS.INITIATED, JS.PREPARING, JS.RUNNING):
                    cluster.call(jobs, "ClaimStatus", JS(job_id=job.id, status=stage), AGENT)
            except grpc.RpcError as exc:  # cancelled by a user between the hand-out and the claim
                assert exc.code() is grpc.StatusCode.FAILED_PRECONDITION, exc
                got = cluster.call(
                    test_service_pb2_grpc.TestServiceStub,
                    "Get",
                    test_service_pb2.GetTestRequest(test_id=job.id),
                    USER,
                )
                assert got.summary.status == status_pb2.CANCELLED, got
                continue
            final = JS.FINISHED
            until = time.monotonic() + LOST_AFTER + 1.5  # longer than lost_after: polls keep it
            while time.monotonic() < until:
                signal_reply = cluster.call(
                    jobs, "GetSignal", job_service_pb2.JobSignalRequest(job_id=job.id), AGENT
                )
                if signal_reply.signal == SIG.STOP:
                    final = JS.STOPPED
                    break
                time.sleep(0.2)
            cluster.call(jobs, "ClaimStatus", JS(job_id=job.id, status=final), AGENT)
            with acked.lock:
                acked.finals[job.id] = Status.STOPPED if final == JS.STOPPED else Status.DONE
    except Exception as exc:  # reported by the test, with the agent's index
        acked.errors.append(f"agent {index}: {exc!r}")
        raise


def create_tests(cluster: Cluster, acked: Acked, agent_ids: list[str]) -> None:
    tests = test_service_pb2_grpc.TestServiceStub
    for n in range(TESTS_PER_AGENT):
        for i, agent_id in enumerate(agent_ids):
            request = test_service_pb2.CreateTestRequest(
                configurations=[
                    single_agent_configuration_pb2.SingleAgentConfiguration(
                        agent_selector=agent_selector_pb2.AgentSelector(agent_id=agent_id)
                    )
                ],
                test_details=details_pb2.Details(
                    name=f"t{i}-{n}", tags=[tag_pb2.Tag(key="plan_id", value=str(100 + i))]
                ),
            )
            op = cluster.call(tests, "Create", request, USER)
            meta = test_service_pb2.CreateTestMetadata()
            op.metadata.Unpack(meta)
            with acked.lock:
                acked.created.add(meta.test_id)


def stopper(cluster: Cluster, acked: Acked, stop_event: threading.Event) -> None:
    tests = test_service_pb2_grpc.TestServiceStub
    rng = random.Random(3)
    while not stop_event.is_set():
        time.sleep(0.4)
        with acked.lock:
            ids = sorted(acked.created - set(acked.finals))
        if not ids:
            continue
        if rng.random() < 0.5:
            test_id = rng.choice(ids)
            try:
                op = cluster.call(
                    tests, "Stop", test_service_pb2.StopTestRequest(test_id=test_id), USER
                )
            except grpc.RpcError as exc:
                assert exc.code() is grpc.StatusCode.FAILED_PRECONDITION, exc
                continue
            with acked.lock:
                acked.stop_ops.setdefault(test_id, set()).add(op.id)
        else:
            result = cluster.http_stop([100 + rng.randrange(AGENTS)])
            assert set(result) == {"data", "errors"}


def replicas_agree(store: Store, acked: Acked) -> None:
    tests = {s.id: s for s in store.iter_tests()}
    assert acked.created <= set(tests), "an acknowledged create is missing"
    assert all(tests[t].status.is_terminal for t in acked.created)
    for test_id, status in acked.finals.items():
        assert tests[test_id].status is status, (test_id, tests[test_id].status)
    log = store.read_log()
    for record in log:
        if record.event == "lose":
            raise AssertionError(f"{record.test_id} went LOST while its agent was polling")
    ops_by_test: dict[str, list[str]] = {}
    for op in store.iter_operations():
        ops_by_test.setdefault(op.test_id, []).append(op.id)
        assert check_operation(op, tests.get(op.test_id)) == []
    assert all(len(ids) == 1 for ids in ops_by_test.values()), ops_by_test
    for test_id, ids in acked.stop_ops.items():
        assert ids <= set(ops_by_test[test_id]), (test_id, ids)
    for state in tests.values():
        assert check_state(state) == []
    replayed, ops = Engine.replay(log)
    assert {k: v.fields() for k, v in replayed.items()} == {k: v.fields() for k, v in tests.items()}
    assert ops == {op.id: op for op in store.iter_operations()}


@pytest.fixture
def sqlite_cluster(tmp_path: Path) -> Iterator[tuple[list[Replica], Callable[[], Store]]]:
    db = str(tmp_path / "shared.db")
    replicas = [Replica(db), Replica(db)]
    try:
        for replica in replicas:
            replica.start()
        yield replicas, lambda: SqliteStore(db)
    finally:
        for replica in replicas:
            replica.stop()


@pytest.fixture
def postgres_cluster(tmp_path: Path) -> Iterator[tuple[list[Replica], Callable[[], Store]]]:
    """Three replicas over one PostgreSQL schema (named by the DSN's search_path)."""
    from loadtest_core import PostgresStore
    from tests.stores._backings import pg_admin, require_pg

    dsn = require_pg()
    schema = f"lt_{uuid.uuid4().hex[:16]}"
    pg_admin(f'CREATE SCHEMA "{schema}"')
    db = f"{dsn}?options=-csearch_path%3D{schema}"
    replicas = [Replica(db), Replica(db), Replica(db)]
    try:
        for replica in replicas:
            replica.start()
        yield replicas, lambda: PostgresStore(dsn, schema=schema)
    finally:
        for replica in replicas:
            replica.stop()
        pg_admin(f'DROP SCHEMA "{schema}" CASCADE')


def run_workload(replicas: list[Replica]) -> Acked:
    cluster = Cluster(replicas)
    acked = Acked()
    stop_event = threading.Event()
    agent_threads = [
        threading.Thread(target=agent_life, args=(cluster, acked, i, stop_event))
        for i in range(AGENTS)
    ]
    try:
        for thread in agent_threads:
            thread.start()
        deadline = time.monotonic() + 20
        while len(acked.agents) < AGENTS:
            assert time.monotonic() < deadline and not acked.errors, acked.errors
            time.sleep(0.1)
        users = threading.Thread(target=stopper, args=(cluster, acked, stop_event))
        users.start()
        create_tests(cluster, acked, list(acked.agents))
        time.sleep(1.0)
        victim = replicas[-1]
        victim.kill()
        time.sleep(1.5)
        victim.start()
        wait_until_all_finished(cluster, acked)
        stop_event.set()
        users.join(30)
        for thread in agent_threads:
            thread.join(30)
    finally:
        stop_event.set()
        cluster.close()
    assert not acked.errors, acked.errors
    assert len(acked.created) == AGENTS * TESTS_PER_AGENT
    return acked


def wait_until_all_finished(cluster: Cluster, acked: Acked) -> None:
    """Until every created test is finished (the agents' own or cancelled by a stop)."""
    tests = test_service_pb2_grpc.TestServiceStub
    deadline = time.monotonic() + 90
    pending = set(acked.created)
    while pending:
        assert time.monotonic() < deadline and not acked.errors, (pending, acked.errors)
        for test_id in sorted(pending):
            got = cluster.call(tests, "Get", test_service_pb2.GetTestRequest(test_id=test_id), USER)
            if got.summary.is_finished:
                pending.discard(test_id)
        time.sleep(0.2)


@pytest.mark.slow
def test_two_replicas_over_one_sqlite_file(
    sqlite_cluster: tuple[list[Replica], Callable[[], Store]],
) -> None:
    """Two serve processes over one SQLite file, one SIGKILLed and restarted, act as one engine."""
    replicas, open_store = sqlite_cluster
    acked = run_workload(replicas)
    for replica in replicas:
        replica.stop()
    store = open_store()
    try:
        replicas_agree(store, acked)
    finally:
        store.close()
    assert os.path.exists(replicas[0].db)


@pytest.mark.slow
def test_three_replicas_over_one_postgres_database(
    postgres_cluster: tuple[list[Replica], Callable[[], Store]],
) -> None:
    """Three serve processes over one PostgreSQL schema, one SIGKILLed and restarted, act as one."""
    replicas, open_store = postgres_cluster
    acked = run_workload(replicas)
    for replica in replicas:
        replica.stop()
    store = open_store()
    try:
        replicas_agree(store, acked)
    finally:
        store.close()
