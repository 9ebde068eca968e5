"""`loadtest-core serve` as a real process: flags, auth refusal, restart on the same --db."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc
from yandex.cloud.loadtesting.api.v1.test import (
    agent_selector_pb2,
    single_agent_configuration_pb2,
    status_pb2,
)
from yandex.cloud.operation import operation_service_pb2, operation_service_pb2_grpc

from loadtest_core.cli import main
from loadtest_core.server._serve import db_shown
from tests.stores._backings import pg_admin, require_pg

MD = (("authorization", "Bearer u1"),)


def start(
    db: Path | str, stderr: Any = subprocess.DEVNULL
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadtest_core.cli",
            "serve",
            "--db",
            str(db),
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--user-token",
            "u1",
            "--agent-token",
            "a1",
            "--lost-after",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen: dict[str, Any] = {}
    assert proc.stdout is not None
    while "grpc" not in seen or "http" not in seen:
        line = proc.stdout.readline()
        assert line, "serve exited early"
        event = json.loads(line)
        if event["event"] == "grpc_listening":
            seen["grpc"] = event["address"]
        if event["event"] in ("http_listening", "http_disabled"):
            seen["http"] = event.get("address")
    return proc, seen


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A --db value: a SQLite file, or a postgresql:// DSN whose search_path is a fresh schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "serve.db")
        return
    schema = f"lt_{uuid.uuid4().hex[:16]}"
    pg_admin(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{require_pg()}?options=-csearch_path%3D{schema}"
    finally:
        pg_admin(f'DROP SCHEMA "{schema}" CASCADE')


def test_restart_keeps_tests_and_operations(db: str) -> None:
    """After SIGTERM and a restart on the same --db, every test and operation is still there."""
    proc, addr = start(db)
    try:
        with grpc.insecure_channel(addr["grpc"]) as channel:
            tests = test_service_pb2_grpc.TestServiceStub(channel)
            op = tests.Create(
                test_service_pb2.CreateTestRequest(
                    configurations=[
                        single_agent_configuration_pb2.SingleAgentConfiguration(
                            agent_selector=agent_selector_pb2.AgentSelector(agent_id="tank")
                        )
                    ]
                ),
                metadata=MD,
            )
            meta = test_service_pb2.CreateTestMetadata()
            op.metadata.Unpack(meta)
            stop_op = tests.Stop(
                test_service_pb2.StopTestRequest(test_id=meta.test_id), metadata=MD
            )
            assert stop_op.done
        assert httpx.get(f"http://{addr['http']}/healthz").json() == {"status": "ok"}
    finally:
        stop(proc)
    proc, addr = start(db)
    try:
        with grpc.insecure_channel(addr["grpc"]) as channel:
            tests = test_service_pb2_grpc.TestServiceStub(channel)
            test = tests.Get(test_service_pb2.GetTestRequest(test_id=meta.test_id), metadata=MD)
            assert test.summary.status == status_pb2.CANCELLED
            ops = operation_service_pb2_grpc.OperationServiceStub(channel)
            again = ops.Get(
                operation_service_pb2.GetOperationRequest(operation_id=stop_op.id), metadata=MD
            )
            assert again.done and again.id == stop_op.id
    finally:
        stop(proc)


def test_serve_refuses_to_start_without_tokens(capsys: Any) -> None:
    """With no token and no --insecure-no-auth, serve exits 2 with a clear message."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOADTEST_CORE_")}
    os.environ.clear()
    os.environ.update(env)
    assert main(["serve", "--db", ":memory:"]) == 2
    assert "no token configured" in capsys.readouterr().err


def test_one_json_line_per_rpc_on_stderr(tmp_path: Path) -> None:
    """Each RPC is one JSON line on stderr with its outcome, written while serving."""
    log = tmp_path / "stderr.log"
    with log.open("w") as sink:
        proc, addr = start(Path(":memory:"), stderr=sink)
        try:
            with grpc.insecure_channel(addr["grpc"]) as channel:
                tests = test_service_pb2_grpc.TestServiceStub(channel)
                request = test_service_pb2.StopTestRequest(test_id="t" + "0" * 20)
                for metadata in (MD, (("authorization", "Bearer nope"),)):
                    with pytest.raises(grpc.RpcError):
                        tests.Stop(request, metadata=metadata)
            deadline = time.monotonic() + 10
            while log.read_text().count('{"rpc"') < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            lines = [
                json.loads(line)
                for line in log.read_text().splitlines()
                if line.startswith('{"rpc"')  # not the startup line for people
            ]
        finally:
            stop(proc)
    assert [(line["rpc"], line["code"]) for line in lines] == [
        ("TestService.Stop", "NOT_FOUND"),
        ("TestService.Stop", "UNAUTHENTICATED"),
    ]
    assert all(line["peer"] and line["ms"] >= 0 for line in lines)


def test_batched_handler_writes_rpc_lines_and_records_in_order_on_drain(tmp_path: Path) -> None:
    """write_line and logged records share one buffer: nothing reaches the file before drain."""
    from loadtest_core.server._serve import BatchedLogHandler

    path = tmp_path / "log"
    with path.open("w") as sink:
        handler = BatchedLogHandler(sink.fileno())
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.getLogger("loadtest_core.test_batched")
        logger.propagate = False
        logger.addHandler(handler)
        try:
            handler.write_line('{"rpc": "A"}')
            logger.warning("between")
            handler.write_line('{"rpc": "B"}')
            assert path.read_text() == ""
            handler.drain()
            assert path.read_text().splitlines() == ['{"rpc": "A"}', "between", '{"rpc": "B"}']
        finally:
            logger.removeHandler(handler)
            handler.close()


TOKENS = ("--user-token", "u1", "--agent-token", "a1")


def _without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LOADTEST_CORE_") and name != "LOADTEST_CORE_TEST_PG":
            monkeypatch.delenv(name)


def test_a_database_that_does_not_answer_is_one_line_and_exit_2(
    capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A postgresql:// --db nobody answers ends serve with exit 2 and one line saying why."""
    _without_env(monkeypatch)
    dsn = "postgresql://postgres:hunter2@127.0.0.1:1/test"
    assert main(["serve", *TOKENS, "--db", dsn]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hunter2" not in err
    assert err.startswith("loadtest-core serve: --db postgresql://postgres:***@127.0.0.1:1/test: ")
    assert "cannot open the PostgreSQL store" in err and "refused" in err


def test_the_db_can_come_from_the_environment(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """LOADTEST_CORE_DB names the store when --db is not given; --db wins over it."""
    _without_env(monkeypatch)
    monkeypatch.setenv("LOADTEST_CORE_DB", "postgresql://postgres@127.0.0.1:1/test")
    assert main(["serve", *TOKENS]) == 2
    assert "PostgreSQL" in capsys.readouterr().err
    blocked = tmp_path / "file"
    blocked.write_text("")
    code = main(["serve", *TOKENS, "--db", str(blocked / "x.db")])
    err = capsys.readouterr().err
    assert code == 2 and f"--db {blocked / 'x.db'}" in err and "PostgreSQL" not in err


def test_without_the_postgres_extra_a_dsn_says_what_to_install(
    capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without psycopg a postgresql:// --db exits 2 naming the postgres extra."""
    _without_env(monkeypatch)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setitem(sys.modules, "loadtest_core._postgres", None)
    assert main(["serve", *TOKENS, "--db", "postgres://h/db"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'loadtest-core[postgres]'" in err and err.count("\n") == 1


def test_sqlite_serving_never_imports_psycopg(tmp_path: Path) -> None:
    """Opening the default SQLite store loads no PostgreSQL driver."""
    code = (
        "import sys; from loadtest_core.server._serve import open_store; "
        f"open_store({str(tmp_path / 'x.db')!r}).close(); print('psycopg' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_dsn_is_printed_without_its_password() -> None:
    """The listening line shows a DSN with its password masked, in the URL or as a parameter."""
    assert db_shown("postgresql://u:pw@h:5432/d?password=pw&sslmode=require") == (
        "postgresql://u:***@h:5432/d?password=%2A%2A%2A&sslmode=require"
    )
    assert db_shown("postgresql://u@h/d") == "postgresql://u@h/d"
    assert db_shown("/var/lib/x.db") == "/var/lib/x.db"
