"""The store's path under a real ``serve``: bad paths refused at start, lost files loudly."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from yandex.cloud.loadtesting.agent.v1 import job_service_pb2, job_service_pb2_grpc
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc

from tests.hostile.attacks import (
    AGENT,
    HEALTHZ,
    USER,
    Serve,
    answer,
    exchange,
    percentile,
    serve,
    stop_request,
)

SERVE = [sys.executable, "-m", "loadtest_core.cli", "serve", "--grpc", "127.0.0.1:0"]
SERVE += ["--http", "127.0.0.1:0"]
USER_MD = (("authorization", f"Bearer {USER}"),)
AGENT_MD = (("authorization", f"Bearer {AGENT}"),)


def bad_path(kind: str, tmp: Path) -> str:
    if kind == "missing directory":
        return str(tmp / "nowhere" / "x.db")
    if kind == "a directory":
        return str(tmp)
    if kind == "not a database":
        junk = tmp / "junk.db"
        junk.write_bytes(b"this is not SQLite\n" * 100)
        return str(junk)
    assert kind == "unwritable directory"
    assert not os.access("/proc/sys", os.W_OK)  # read-only even for root
    return "/proc/sys/loadtest.db"


@pytest.mark.parametrize(
    "kind", ["missing directory", "a directory", "not a database", "unwritable directory"]
)
def test_unusable_db_path_exits_2_with_one_line(kind: str, tmp_path: Path) -> None:
    """A --db that cannot be a database is one clear stderr line and exit 2, before listening."""
    db = bad_path(kind, tmp_path)
    out = subprocess.run(
        [*SERVE, "--db", db, "--user-token", USER],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"loadtest-core serve: --db {db}: ")
    assert "listening" not in out.stdout


def create(channel: grpc.Channel, plan: int) -> str:
    stub = test_service_pb2_grpc.TestServiceStub(channel)
    request = test_service_pb2.CreateTestRequest()
    request.test_details.tags.add(key="plan_id", value=str(plan))
    request.configurations.add().agent_selector.agent_id = f"agent-{plan}"
    op: Any = stub.Create(request, metadata=USER_MD, timeout=30)
    meta = test_service_pb2.CreateTestMetadata()
    op.metadata.Unpack(meta)
    return str(meta.test_id)


def start_running(channel: grpc.Channel, plan: int) -> str:
    test_id = create(channel, plan)
    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    jobs.Get(job_service_pb2.GetJobRequest(agent_instance_id=f"agent-{plan}"), metadata=AGENT_MD)
    running = job_service_pb2.ClaimJobStatusRequest.RUNNING
    jobs.ClaimStatus(
        job_service_pb2.ClaimJobStatusRequest(job_id=test_id, status=running), metadata=AGENT_MD
    )
    return test_id


def unavailable_everywhere(s: Serve, channel: grpc.Channel, plan: int) -> None:
    with pytest.raises(grpc.RpcError) as err:
        create(channel, 99)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    status, body, _ = answer(asyncio.run(exchange(s.http_port, stop_request([plan]))))
    assert status == 503 and body is not None
    assert body["data"] is None and body["errors"][0]["code"] == "SERVICE_UNAVAILABLE"
    status, body, _ = answer(asyncio.run(exchange(s.http_port, HEALTHZ)))
    assert status == 503 and body is not None
    assert body["errors"][0]["code"] == "SERVICE_UNAVAILABLE"


def test_removed_database_directory_makes_writes_unavailable(tmp_path: Path) -> None:
    """With its directory removed while serving, writes are UNAVAILABLE/503 and /healthz 503."""
    home = tmp_path / "db"
    home.mkdir()
    with serve(tmp_path, db=str(home / "x.db")) as s, grpc.insecure_channel(s.grpc) as channel:
        start_running(channel, 1)
        shutil.rmtree(home)
        unavailable_everywhere(s, channel, 1)
        assert "Traceback" not in s.log()


def test_read_only_database_refuses_writes_until_writable_again(tmp_path: Path) -> None:
    """A database file made read-only refuses writes (and /healthz) until it is writable again."""
    db = tmp_path / "x.db"
    with serve(tmp_path, db=str(db)) as s, grpc.insecure_channel(s.grpc) as channel:
        test_id = start_running(channel, 1)
        db.chmod(0o444)
        try:
            unavailable_everywhere(s, channel, 1)
        finally:
            db.chmod(0o644)
        status, body, _ = answer(asyncio.run(exchange(s.http_port, stop_request([1]))))
        assert (status, body) == (200, {"data": None, "errors": None})
        assert answer(asyncio.run(exchange(s.http_port, HEALTHZ)))[0] == 200
        stub = test_service_pb2_grpc.TestServiceStub(channel)
        test = stub.Get(test_service_pb2.GetTestRequest(test_id=test_id), metadata=USER_MD)
        assert test.summary.status == 9  # STOPPING


def test_healthz_keeps_answering_while_the_store_is_locked(tmp_path: Path) -> None:
    """While another process holds the database's write lock, /healthz answers at once."""
    db = tmp_path / "x.db"
    with serve(tmp_path, db=str(db)) as s, grpc.insecure_channel(s.grpc) as channel:
        start_running(channel, 1)
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        stopped: list[int] = []
        try:
            blocked = threading.Thread(
                target=lambda: stopped.append(
                    answer(asyncio.run(exchange(s.http_port, stop_request([1]), wait=30)))[0]
                )
            )
            blocked.start()
            times = []
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                assert answer(asyncio.run(exchange(s.http_port, HEALTHZ)))[0] == 200
                times.append(time.perf_counter() - t0)
            assert not stopped  # the stop is still waiting for the lock
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        blocked.join(30)
        assert stopped == [200]
        assert percentile(times, 0.99) < 0.5
