#!/usr/bin/env python3
"""Install the real Yandex load testing agent (``ulta``) in a venv and run it against ``serve``.

Nothing of the agent is copied into this repository: it is installed from a
checkout (or bare git directory) of the public ``yandex/ulta`` repository that
you give with ``--ulta-src`` (PyPI's ``ulta`` is an unrelated project), into a
venv outside the repository (``--venv``, default ``~/.cache/loadtest-core/ulta-venv``).

    python tools/real_agent.py install --ulta-src ~/src/ulta
    python tools/real_agent.py example-config --out /tmp/gen.yaml --target 127.0.0.1:18081
    python tools/real_agent.py run --serve --config /tmp/gen.yaml --target 127.0.0.1:18081

``run --serve`` starts ``loadtest-core serve`` over TLS with a fresh
certificate (``loadtest-core cert``), creates a test from ``--config`` through
the user API, starts the agent (``--mode serve``: a persistent agent with a
name, the test selects it by id; ``--mode run``: ``ulta run <test_id>``, an
anonymous agent), waits for a terminal status, stops everything it started and
prints one JSON summary. Without ``--serve`` it talks to a running server
(``--grpc``, ``--ca``, ``--user-token``, ``--agent-token``); ``--plaintext``
reaches a plaintext server through an agent transport plugin written to the
work directory (the agent's own factory always dials TLS).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_VENV = Path.home() / ".cache" / "loadtest-core" / "ulta-venv"
# yandextank 2.0.12 imports pkg_resources (gone from setuptools 81) and its BFG
# results reader calls a pandas 1.x signature (str.rsplit(pat, n, ...)).
CONSTRAINTS = ["setuptools<81", "pandas<2"]
TERMINAL = {"DONE", "FAILED", "STOPPED", "AUTOSTOPPED", "CANCELLED"}
"""Where a run ends; LOST ends it only once the agent process is gone (it may come back)."""
PLAIN_PLUGIN = '''"""Agent transport for a plaintext server: ulta.yc's factory, plain channels."""
import grpc
from ulta.yc.factory import ChannelFactory, YCFactory, _TrackersInterceptor


class _PlainChannels(ChannelFactory):
    def get_channel(self, url, channel_options=None, insecure_connection=False):
        return grpc.intercept_channel(grpc.insecure_channel(url), _TrackersInterceptor())


class InsecureFactory(YCFactory):
    def __init__(self, config):
        super().__init__(config)
        self.channels = _PlainChannels()
'''


def log(message: str) -> None:
    print(f"[real_agent] {message}", file=sys.stderr, flush=True)


# --- install ------------------------------------------------------------------------


def ulta_bin(venv: Path) -> Path:
    return venv / "bin" / "ulta"


def _source_tree(src: Path, scratch: Path) -> Path:
    """A directory with setup.py: ``src`` itself, or ``git archive HEAD`` of a (bare) git dir."""
    if (src / "setup.py").is_file():
        return src
    if (src / "HEAD").is_file() or (src / ".git").exists():
        out = scratch / "ulta-src"
        out.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(src), "archive", "HEAD"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
        return out
    raise SystemExit(f"--ulta-src {src}: neither a source tree with setup.py nor a git directory")


def install(venv: Path, src: Path | None, python: str) -> float:
    """Create ``venv`` with the agent unless it is there; returns the seconds spent."""
    if ulta_bin(venv).exists():
        return 0.0
    if src is None:
        raise SystemExit(
            f"no agent in {venv}: give --ulta-src (a checkout or git dir of yandex/ulta)"
        )
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        tree = _source_tree(src, Path(scratch))
        constraints = Path(scratch) / "constraints.txt"
        constraints.write_text("\n".join(CONSTRAINTS) + "\n")
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(constraints)]
        subprocess.run([*pip, *CONSTRAINTS], check=True)
        # ulta says python_requires>=3.12 but runs on 3.11.
        subprocess.run([*pip, "--ignore-requires-python", str(tree)], check=True)
    return time.monotonic() - started


# --- what the agent shoots at -------------------------------------------------------


def example_config(
    target: str, ammo: Path, seconds: int, rps: int, autostop: bool = False
) -> dict[str, Any]:
    """A yandextank config for the pure-Python BFG generator: GET / at ``rps`` for ``seconds``.

    ``autostop`` adds an autostop criterion on 4xx answers (the ammo then also
    asks for ``/missing``, which the ``--target`` server answers 404).
    """
    config: dict[str, Any] = {
        "bfg": {
            "enabled": True,
            "package": "yandextank.plugins.Bfg",
            "address": target,
            "gun_type": "http",
            "gun_config": {"base_address": f"http://{target}"},
            "ammo_type": "line",
            "ammofile": str(ammo),
            "instances": 2,
            "load_profile": {"load_type": "rps", "schedule": f"const({rps}, {seconds}s)"},
        },
        "phantom": {"enabled": False, "package": "yandextank.plugins.Phantom"},
        "telegraf": {"enabled": False, "package": "yandextank.plugins.Telegraf"},
        "console": {"enabled": False, "package": "yandextank.plugins.Console"},
    }
    if autostop:
        config["autostop"] = {
            "enabled": True,
            "package": "yandextank.plugins.Autostop",
            "autostop": ["http(4xx,25%,3s)"],
        }
    return config


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404 if self.path.startswith("/missing") else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def http_target(address: str | None) -> Iterator[None]:
    if not address:
        yield
        return
    host, _, port = address.rpartition(":")
    server = http.server.ThreadingHTTPServer((host, int(port)), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()


# --- serve ------------------------------------------------------------------------------


@contextlib.contextmanager
def local_serve(
    work: Path, lost_after: float, extra: tuple[str, ...] = ()
) -> Iterator[dict[str, str]]:
    """``loadtest-core serve`` over TLS on 127.0.0.1 with a fresh certificate, plus ``extra``."""
    cert, key = work / "serve-cert.pem", work / "serve-key.pem"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest_core.cli",
            "cert",
            "--force",
            "--cert",
            str(cert),
            "--key",
            str(key),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    rpc_log = (work / "serve-rpc.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadtest_core.cli",
            "serve",
            "--grpc",
            "127.0.0.1:0",
            "--no-http",
            "--db",
            str(work / "serve.db"),
            "--user-token",
            "user-token",
            "--agent-token",
            "agent-token",
            "--lost-after",
            str(lost_after),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=rpc_log,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("loadtest-core serve did not start (see serve-rpc.log)")
    port = json.loads(line)["address"].rsplit(":", 1)[1]
    try:
        yield {
            "grpc": f"localhost:{port}",
            "ca": str(cert),
            "user_token": "user-token",
            "agent_token": "agent-token",
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        rpc_log.close()


# --- the user side (official stubs) ------------------------------------------------


class User:
    def __init__(self, address: str, ca: str | None, token: str) -> None:
        import grpc
        from yandex.cloud.loadtesting.api.v1 import test_service_pb2_grpc

        if ca is None:
            self.channel = grpc.insecure_channel(address)
        else:
            roots = Path(ca).read_bytes()
            self.channel = grpc.secure_channel(
                address, grpc.ssl_channel_credentials(root_certificates=roots)
            )
        self.tests = test_service_pb2_grpc.TestServiceStub(self.channel)
        self.md = (("authorization", f"Bearer {token}"),)

    def create_config(self, yaml_text: str) -> str | None:
        """ConfigService.Create, or None where the server has no ConfigService yet."""
        import grpc
        from yandex.cloud.loadtesting.api.v1 import config_service_pb2, config_service_pb2_grpc

        stub = config_service_pb2_grpc.ConfigServiceStub(self.channel)
        try:
            op = stub.Create(
                config_service_pb2.CreateConfigRequest(yaml_string=yaml_text),
                metadata=self.md,
                timeout=30,
            )
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise
        meta = config_service_pb2.CreateConfigMetadata()
        op.metadata.Unpack(meta)
        return str(meta.config_id)

    def create_test(self, config_id: str, agent_id: str | None) -> str:
        from yandex.cloud.loadtesting.api.v1 import test_service_pb2
        from yandex.cloud.loadtesting.api.v1.test import (
            agent_selector_pb2,
            single_agent_configuration_pb2,
        )

        selector = (
            agent_selector_pb2.AgentSelector(anonymous_agent=True)
            if agent_id is None
            else agent_selector_pb2.AgentSelector(agent_id=agent_id)
        )
        op = self.tests.Create(
            test_service_pb2.CreateTestRequest(
                configurations=[
                    single_agent_configuration_pb2.SingleAgentConfiguration(
                        config_id=config_id, agent_selector=selector
                    )
                ]
            ),
            metadata=self.md,
            timeout=30,
        )
        meta = test_service_pb2.CreateTestMetadata()
        op.metadata.Unpack(meta)
        return str(meta.test_id)

    def imbalance(self, test_id: str) -> dict[str, Any] | None:
        from google.protobuf import json_format
        from yandex.cloud.loadtesting.api.v1 import test_service_pb2

        test = self.tests.Get(
            test_service_pb2.GetTestRequest(test_id=test_id), metadata=self.md, timeout=30
        )
        if not test.summary.HasField("imbalance_point"):
            return None
        point: dict[str, Any] = json_format.MessageToDict(test.summary.imbalance_point)
        return point

    def status(self, test_id: str) -> tuple[str, str]:
        from yandex.cloud.loadtesting.api.v1 import test_service_pb2
        from yandex.cloud.loadtesting.api.v1.test import status_pb2

        test = self.tests.Get(
            test_service_pb2.GetTestRequest(test_id=test_id), metadata=self.md, timeout=30
        )
        return status_pb2.Status.Name(test.summary.status), test.summary.error

    def uploads(self, test_id: str) -> dict[str, int]:
        """Items stored per upload kind (``loadtest_core.v1.UploadService``), or {} without it."""
        import grpc

        from loadtest_core.grpc import ListUploadsRequest, UploadServiceStub

        stub = UploadServiceStub(self.channel)
        out: dict[str, int] = {}
        for kind in ("trails", "metrics", "events"):
            try:
                reply = stub.List(
                    ListUploadsRequest(test_id=test_id, kind=kind, page_size=1),
                    metadata=self.md,
                    timeout=30,
                )
            except grpc.RpcError:
                return {}
            out[kind] = int(reply.stored_items)
        return out

    def stop(self, test_id: str) -> None:
        from yandex.cloud.loadtesting.api.v1 import test_service_pb2

        self.tests.Stop(test_service_pb2.StopTestRequest(test_id=test_id), metadata=self.md)


# --- the agent ------------------------------------------------------------------------


def start_agent(
    venv: Path,
    work: Path,
    server: dict[str, str],
    *,
    name: str | None,
    test_id: str | None,
    plaintext: bool,
) -> tuple[subprocess.Popen[bytes], Path]:
    """The unmodified agent with a config file, its token and trust anchor in the environment."""
    config = {
        "load_testing_url": server["grpc"],
        "client_workdir": str(work / "agent"),
        "lock_dir": str(work / "agent-lock"),
        "log_level": "INFO",
    }
    if name:
        config.update(agent_name=name, folder_id="loadtest-core")
    (work / "agent-lock").mkdir(exist_ok=True)
    config_path = work / "agent.yaml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADTESTING_", "GRPC_"))}
    env["LOADTESTING_YC_TOKEN"] = server["agent_token"]
    if plaintext:
        (work / "plugins").mkdir(exist_ok=True)
        (work / "plugins" / "ulta_plain_transport.py").write_text(PLAIN_PLUGIN)
        env["PYTHONPATH"] = str(work / "plugins")
        env["LOADTESTING_TRANSPORT_FACTORY"] = "ulta_plain_transport"
    else:
        env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = server["ca"]
    command = [str(ulta_bin(venv)), "-c", str(config_path)]
    command += ["run", test_id] if test_id else ["serve"]
    agent_log = work / "agent.log"
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=agent_log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, agent_log


def stop_agent(proc: subprocess.Popen[bytes], grace: float = 30.0) -> int:
    """SIGTERM the agent's process group (load generator children too), SIGKILL after ``grace``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(what)


def agent_errors(path: Path, keep: int = 8) -> list[str]:
    """The distinct exception lines of the agent's log (``SomeError: text``), last ``keep``."""
    pattern = re.compile(r"^[\w.]+(Error|Exception|Unavailable|NotFound|Precondition)\b.*: ")
    seen: dict[str, None] = {}
    for line in path.read_text(errors="replace").splitlines():
        if pattern.match(line):
            seen.pop(line, None)
            seen[line[:300]] = None
    return list(seen)[-keep:]


def rpc_counts(path: Path) -> dict[str, int]:
    """``method code`` -> calls, from serve's one-JSON-line-per-RPC stderr."""
    counts: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, KeyError):
            entry = json.loads(line)
            key = f"{entry['rpc']} {entry['code']}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def run(args: argparse.Namespace) -> int:
    venv = Path(args.venv).expanduser()
    spent = install(venv, Path(args.ulta_src).expanduser() if args.ulta_src else None, args.python)
    if spent:
        log(f"installed the agent in {venv} in {spent:.0f} s")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="real-agent-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"workdir": str(work), "mode": args.mode, "statuses": []}
    with contextlib.ExitStack() as stack:
        stack.enter_context(http_target(args.target))
        if args.serve:
            extra = ("--ready-heartbeats-keep-jobs",) if args.ready_keeps_jobs else ()
            server = stack.enter_context(local_serve(work, args.lost_after, extra))
            summary["serve_rpc_log"] = str(work / "serve-rpc.log")
        else:
            if not (args.grpc and args.user_token and args.agent_token):
                raise SystemExit("without --serve give --grpc, --user-token and --agent-token")
            if not args.plaintext and not args.ca:
                raise SystemExit("give --ca (the certificate serve uses) or --plaintext")
            server = {
                "grpc": args.grpc,
                "ca": args.ca,
                "user_token": args.user_token,
                "agent_token": args.agent_token,
            }
        user = User(server["grpc"], None if args.plaintext else server["ca"], server["user_token"])
        config_id = "unresolved"
        if args.config:
            made = user.create_config(Path(args.config).read_text())
            if made is None:
                log("the server has no ConfigService: the test names a config it cannot resolve")
            else:
                config_id = made
        summary["config_id"] = config_id
        agent_id: str | None = None
        proc = None
        if args.mode == "serve":
            proc, agent_log = start_agent(
                venv, work, server, name=args.agent_name, test_id=None, plaintext=args.plaintext
            )
            id_file = work / "agent" / "agentid"
            try:
                agent_id = wait_for(
                    lambda: proc.poll() is None and id_file.exists() and id_file.read_text(),
                    args.start_timeout,
                    "agent registration",
                )
            except TimeoutError:
                summary["error"] = "the agent did not register"
        test_id = args.test_id or (
            None if "error" in summary else user.create_test(config_id, agent_id)
        )
        summary.update(test_id=test_id, agent_id=agent_id)
        if args.mode == "run" and test_id:
            proc, agent_log = start_agent(
                venv, work, server, name=None, test_id=test_id, plaintext=args.plaintext
            )
        if proc is None:
            raise SystemExit("no test to run")
        started = time.monotonic()
        running_since: float | None = None
        stopped = False
        last = None
        while test_id and time.monotonic() - started < args.timeout:
            status, error = user.status(test_id)
            if status != last:
                summary["statuses"].append([round(time.monotonic() - started, 1), status])
                log(f"{test_id}: {status} {error}")
                last = status
            if status == "RUNNING" and running_since is None:
                running_since = time.monotonic()
            due = running_since is not None and args.stop_after is not None
            ran = 0.0 if running_since is None else time.monotonic() - running_since
            if due and not stopped and ran >= args.stop_after:
                user.stop(test_id)
                stopped = True
            if status in TERMINAL or (status == "LOST" and proc.poll() is not None):
                summary["error_text"] = error
                break
            if args.mode == "run" and proc.poll() is not None and status == last:
                summary["agent_exit_code_seen"] = proc.returncode
                time.sleep(2)  # a last status may still be on its way
                status, error = user.status(test_id)
                summary["statuses"].append([round(time.monotonic() - started, 1), status])
                summary["error_text"] = error
                break
            time.sleep(0.5)
        summary["final_status"] = last
        if test_id:
            summary["uploads"] = user.uploads(test_id)
            summary["imbalance_point"] = user.imbalance(test_id)
        summary["agent_exit_code"] = stop_agent(proc)
        summary["agent_log"] = str(agent_log)
    summary["agent_errors"] = agent_errors(agent_log)
    if args.serve:
        summary["rpc_counts"] = rpc_counts(work / "serve-rpc.log")
    print(json.dumps(summary, indent=2))
    return 0 if summary.get("final_status") in TERMINAL | {"LOST"} else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=os.environ.get("ULTA_VENV", str(DEFAULT_VENV)))
    parser.add_argument(
        "--ulta-src", default=os.environ.get("ULTA_SRC"), help="yandex/ulta checkout or git dir"
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter for the venv")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="install the agent into --venv if it is not there")
    ex = sub.add_parser("example-config", help="write a BFG generator config and its ammo")
    ex.add_argument("--out", required=True)
    ex.add_argument("--target", default="127.0.0.1:18081")
    ex.add_argument("--seconds", type=int, default=30)
    ex.add_argument("--rps", type=int, default=5)
    ex.add_argument("--autostop", action="store_true", help="an autostop on 4xx, half of them 404")
    r = sub.add_parser("run", help="run the agent against serve and report the test's outcome")
    r.add_argument("--serve", action="store_true", help="start a local TLS serve for this run")
    r.add_argument("--grpc", help="serve's address as the agent dials it (e.g. localhost:50051)")
    r.add_argument("--ca", help="the certificate the agent trusts (serve's --tls-cert)")
    r.add_argument("--plaintext", action="store_true", help="reach a plaintext serve (plugin)")
    r.add_argument("--user-token")
    r.add_argument("--agent-token")
    r.add_argument("--config", help="generator config YAML for a new test")
    r.add_argument("--test-id", help="run this existing test instead of creating one")
    r.add_argument("--mode", choices=("serve", "run"), default="serve")
    r.add_argument("--agent-name", default="real-agent")
    r.add_argument("--target", help="also serve HTTP 200s on HOST:PORT for the generator")
    r.add_argument("--stop-after", type=float, help="Stop the test this long after RUNNING")
    r.add_argument("--lost-after", type=float, default=30.0, help="for --serve")
    r.add_argument(
        "--ready-keeps-jobs",
        action="store_true",
        help="for --serve: serve --ready-heartbeats-keep-jobs",
    )
    r.add_argument("--timeout", type=float, default=300.0)
    r.add_argument("--start-timeout", type=float, default=120.0)
    r.add_argument("--workdir", help="where the agent's files and logs go (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.command == "install":
        src = Path(args.ulta_src).expanduser() if args.ulta_src else None
        spent = install(Path(args.venv).expanduser(), src, args.python)
        print(json.dumps({"venv": args.venv, "installed_seconds": round(spent, 1)}))
        return 0
    if args.command == "example-config":
        out = Path(args.out).resolve()
        ammo = out.with_suffix(".ammo")
        ammo.write_text("/\n/missing\n" if args.autostop else "/\n")
        config = example_config(args.target, ammo, args.seconds, args.rps, args.autostop)
        out.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
        print(json.dumps({"config": str(out), "ammo": str(ammo)}))
        return 0
    return run(args)


if __name__ == "__main__":
    if shutil.which("git") is None:
        log("git is not on PATH: --ulta-src must then be a source tree")
    raise SystemExit(main())
