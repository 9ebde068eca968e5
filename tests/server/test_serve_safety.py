"""``serve`` as an operator meets it: ports, startup line, warnings, mistakes (processes)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc

from loadtest_core import __version__
from loadtest_core.cli import main
from tests.serving import USER, launch, serve_command, serving, stop


def _finish(proc: subprocess.Popen[str], stderr: Path) -> tuple[int, str, str]:
    code = proc.wait(20)
    assert proc.stdout is not None
    return code, proc.stdout.read(), stderr.read_text()


def test_a_taken_grpc_port_is_refused_before_anything_listens(tmp_path: Path) -> None:
    """A second serve on a taken gRPC port exits 2 with one line and announces nothing."""
    with serving(tmp_path) as first:
        port = first.grpc.rsplit(":", 1)[1]
        proc, stderr = launch(
            tmp_path, "--db", ":memory:", "--grpc", f"127.0.0.1:{port}", "--http", "127.0.0.1:0"
        )
        code, out, err = _finish(proc, stderr)
        assert code == 2
        assert [json.loads(x)["event"] for x in out.splitlines()] == ["error"]
        (line,) = [x for x in err.splitlines() if not x.startswith("{")]
        assert "already in use" in line and "--grpc" in line and "Traceback" not in err
        with grpc.insecure_channel(first.grpc) as channel:  # the first one still serves alone
            stub = test_service_pb2_grpc.TestServiceStub(channel)
            stub.List(
                test_service_pb2.ListTestsRequest(),
                metadata=(("authorization", f"Bearer {USER}"),),
                timeout=5,
            )


def test_a_taken_http_port_stops_serve_before_grpc_listens(tmp_path: Path) -> None:
    """With the HTTP port taken, serve exits 2 and its gRPC port never accepted a connection."""
    with socket.socket() as taken, socket.socket() as probe:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
        probe.close()
        http_port = taken.getsockname()[1]
        proc, stderr = launch(
            tmp_path,
            "--db",
            ":memory:",
            "--grpc",
            f"127.0.0.1:{free}",
            "--http",
            f"127.0.0.1:{http_port}",
        )
        code, out, err = _finish(proc, stderr)
    assert code == 2
    assert [json.loads(x)["event"] for x in out.splitlines()] == ["error"]
    assert "--http" in err and "already in use" in err and "Traceback" not in err
    with socket.socket() as client:
        assert client.connect_ex(("127.0.0.1", free)) != 0


def test_startup_says_where_it_listens_and_how_to_stop(tmp_path: Path) -> None:
    """One human line on stderr names both addresses, the status page and how to stop serve."""
    with serving(tmp_path) as served:
        deadline = time.monotonic() + 10
        while "Stop with" not in served.stderr.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        human = [x for x in served.stderr.read_text().splitlines() if not x.startswith("{")]
        assert len(human) == 1
        line = human[0]
        assert f"loadtest-core {__version__}" in line
        assert served.grpc in line and f"http://{served.http}/ui/" in line
        assert f"kill {served.proc.pid}" in line and "Ctrl-C" in line
        assert [e["event"] for e in served.events] == ["grpc_listening", "http_listening"]


def test_health_and_reflection(tmp_path: Path) -> None:
    """The gRPC health service answers SERVING and reflection lists the Yandex services."""
    with serving(tmp_path, http=False) as served, grpc.insecure_channel(served.grpc) as channel:
        checker = health_pb2_grpc.HealthStub(channel)
        for service in ("", "yandex.cloud.loadtesting.api.v1.TestService"):
            reply = checker.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert "yandex.cloud.loadtesting.api.v1.TestService" in services
        assert "yandex.cloud.loadtesting.agent.v1.JobService" in services
        assert "grpc.health.v1.Health" in services


def test_every_interface_with_a_colon_port(tmp_path: Path) -> None:
    """--grpc :PORT listens on every interface (reachable on 127.0.0.1) and says so."""
    with serving(tmp_path, "--grpc", ":0", http=False) as served:
        port = served.grpc.rsplit(":", 1)[1]
        assert served.grpc == f"0.0.0.0:{port}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        deadline = time.monotonic() + 10
        while "Stop with" not in served.stderr.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"all interfaces, port {port}" in served.stderr.read_text()


@pytest.mark.parametrize(
    ("flags", "warning"),
    [
        (
            ["--user-token", "same", "--agent-token", "same"],
            "both a --user-token and an --agent-token",
        ),
        (["--insecure-no-auth"], "--insecure-no-auth: no token is checked"),
        (["--insecure-no-auth", "--user-token", "u"], "--insecure-no-auth is ignored"),
    ],
)
def test_risky_auth_is_warned_about(tmp_path: Path, flags: list[str], warning: str) -> None:
    """A shared token, no auth at all, or a no-auth flag that does nothing: one warning line."""
    proc, stderr = launch(
        tmp_path,
        "--db",
        ":memory:",
        "--grpc",
        "127.0.0.1:0",
        "--no-http",
        *flags,
        tokens=False,
    )
    try:
        assert proc.stdout is not None
        assert "grpc_listening" in proc.stdout.readline()
    finally:
        assert stop(proc) == 0
    warnings = [x for x in stderr.read_text().splitlines() if "warning:" in x]
    assert len(warnings) == 1 and warning in warnings[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--user-token", ""], "--user-token '': a token must be non-empty"),
        (["--agent-token", " padded "], "--agent-token ' padded ': a token must"),
        (["--grpc", "999.1.1.1:5000"], "'999.1.1.1' is not an IPv4 address"),
        (["--grpc", "localhost"], "has no port: give HOST:PORT"),
        (["--http", "127.0.0.1:70000"], "must be a number in 0..65535"),
        (["--grpc", "127.0.0.1:6000", "--http", "127.0.0.1:6000"], "both use port 6000"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--lost-after", "0"], "must be > 0"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each mistake exits 2 with serve's short usage at most and one error line naming the fix."""
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(["serve", "--db", ":memory:", "--user-token", "u", *argv]))
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    errors = [x for x in lines if "error:" in x]
    assert len(errors) == 1 and expected in errors[0], err
    assert errors[0].startswith("loadtest-core serve: error:")
    assert set(lines) - set(errors) <= {"usage: loadtest-core serve [options]"}


def test_a_non_local_address_is_refused_with_the_fix(tmp_path: Path) -> None:
    """An IP that is not this machine's exits 2 naming the address and what to use instead."""
    proc, stderr = launch(tmp_path, "--db", ":memory:", "--grpc", "192.0.2.1:50999", "--no-http")
    code, out, err = _finish(proc, stderr)
    assert code == 2 and "listening" not in out
    assert "not an address of this machine" in err and "Traceback" not in err


def test_version_and_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the version; the help has no reStructuredText markup and lists commands."""
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"loadtest-core {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and ":func:" not in text
    for command in ("serve", "test", "agent", "config", "simulate", "diagram"):
        assert f"    {command}" in text


def test_diagram_help_is_described(capsys: pytest.CaptureFixture[str]) -> None:
    """`diagram --help` says what it prints and describes every option."""
    with pytest.raises(SystemExit):
        main(["diagram", "--help"])
    text = capsys.readouterr().out
    assert "state diagram" in text and "Mermaid" in text
    assert "--simple" in text and "--markdown" in text


def test_serve_help_runs_as_a_process() -> None:
    """`serve --help` from the shell exits 0 and shows serve's options."""
    out = subprocess.run(serve_command("--help"), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "--grpc HOST:PORT" in out.stdout


def test_metrics_and_access_log(tmp_path: Path) -> None:
    """/metrics counts RPCs by method and code and tests by status; each HTTP request is logged."""
    with serving(tmp_path) as served:
        md = (("authorization", f"Bearer {USER}"),)
        with grpc.insecure_channel(served.grpc) as channel:
            stub = test_service_pb2_grpc.TestServiceStub(channel)
            stub.List(test_service_pb2.ListTestsRequest(), metadata=md, timeout=5)
            with pytest.raises(grpc.RpcError):
                stub.Get(test_service_pb2.GetTestRequest(test_id="nope"), metadata=md, timeout=5)
        text = httpx.get(f"http://{served.http}/metrics", timeout=5).text
        assert 'loadtest_grpc_requests_total{code="OK",method="TestService.List"} 1.0' in text
        assert 'loadtest_grpc_requests_total{code="NOT_FOUND",method="TestService.Get"} 1.0' in text
        assert 'loadtest_tests{status="RUNNING"} 0.0' in text
        line = served.wait_for_log(lambda x: x.get("path") == "/metrics")
        assert line["http"] == "GET" and line["status"] == 200 and line["ms"] >= 0
        assert line["peer"].startswith("127.0.0.1:")
