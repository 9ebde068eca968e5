"""Start ``tests.stores._child`` processes, release them together, collect their results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0


class Child:
    """One child process: ``ready()`` waits for it to be set up, ``go()`` releases it."""

    def __init__(self, role: str, kind: str, target: str, args: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.stores._child", role, kind, target, json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self._lines: list[str] = []
        self._got = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._got:
                self._lines.append(line)
                self._got.notify_all()
        with self._got:
            self._lines.append("")
            self._got.notify_all()

    def _line(self, n: int) -> dict[str, Any]:
        with self._got:
            if not self._got.wait_for(lambda: len(self._lines) > n, TIMEOUT):
                self.proc.kill()
                raise TimeoutError(f"child gave no line {n} in {TIMEOUT} s")
            line = self._lines[n]
        assert line, f"child exited with {self.proc.wait(10)} before line {n}"
        out: dict[str, Any] = json.loads(line)
        return out

    def ready(self) -> None:
        assert self._line(0) == {"ready": True}

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        out = self._line(1)
        assert self.proc.wait(TIMEOUT) == 0
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_together(children: list[Child]) -> list[dict[str, Any]]:
    """Wait until every child is ready, release them at once, and return their results."""
    try:
        for child in children:
            child.ready()
        for child in children:
            child.go()
        return [child.result() for child in children]
    finally:
        for child in children:
            child.kill()
