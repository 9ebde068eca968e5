"""``loadtest-core serve`` as a child process, for tests of the process, the CLI and the page."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

USER = "u1"
AGENT = "a1"


@dataclass
class Served:
    proc: subprocess.Popen[str]
    grpc: str
    http: str | None
    stderr: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines ``serve`` wrote to stderr so far (the human lines left out)."""
        out = []
        for line in self.stderr.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def wait_for_log(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_lines():
                if predicate(line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no such log line; got {self.log_lines()[-5:]}")


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "loadtest_core.cli", "serve", *args]


def launch(tmp_path: Path, *args: str, tokens: bool = True) -> tuple[subprocess.Popen[str], Path]:
    """Start ``serve`` with ``args`` (and the test tokens); stdout piped, stderr to a file."""
    stderr = tmp_path / f"serve-{time.monotonic_ns()}.err"
    auth = ("--user-token", USER, "--agent-token", AGENT) if tokens else ()
    with stderr.open("w") as sink:
        proc = subprocess.Popen(
            serve_command(*args, *auth),
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return proc, stderr


def await_ready(proc: subprocess.Popen[str], stderr: Path, http: bool) -> Served:
    """Read stdout until serve announced its ports; fail if it exits first."""
    assert proc.stdout is not None
    events: list[dict[str, Any]] = []
    grpc_at = http_at = None
    while grpc_at is None or (http and http_at is None):
        line = proc.stdout.readline()
        if not line:
            proc.wait(10)
            raise AssertionError(f"serve exited early: {stderr.read_text()}")
        event = json.loads(line)
        events.append(event)
        if event["event"] == "grpc_listening":
            grpc_at = event["address"]
        if event["event"] == "http_listening":
            http_at = event["address"]
    return Served(proc, grpc_at, http_at, stderr, events)


def stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(20)


@contextmanager
def serving(tmp_path: Path, *args: str, http: bool = True, tokens: bool = True) -> Iterator[Served]:
    """A running ``serve`` on free loopback ports (``:memory:`` unless ``--db`` is given)."""
    base = ["--grpc", "127.0.0.1:0"]
    base += ["--http", "127.0.0.1:0"] if http else ["--no-http"]
    if "--db" not in args:
        base += ["--db", ":memory:"]
    proc, stderr = launch(tmp_path, *base, *args, tokens=tokens)
    try:
        yield await_ready(proc, stderr, http)
    finally:
        stop(proc)
