"""Crash safety: SIGKILL a writer at random moments; every acknowledged event survives."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from loadtest_core import Engine, Kind, SqliteStore

ROOT = Path(__file__).resolve().parents[2]


def test_acknowledged_events_survive_sigkill(tmp_path: Path) -> None:
    """Over 10 kill rounds nothing acknowledged is lost, the file is sound, replay is equal."""
    path = tmp_path / "crash.db"
    rng = random.Random(7)
    acked: dict[str, int] = {}
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for round_no in range(10):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.engine._crash_writer", str(path), str(round_no)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        lines: list[str] = []
        assert child.stdout is not None
        reader = threading.Thread(
            target=lines.extend, args=(iter(child.stdout.readline, ""),), daemon=True
        )
        reader.start()
        deadline = time.monotonic() + 10
        while not lines and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.5))
        child.send_signal(signal.SIGKILL)
        child.wait()
        reader.join(5)
        for line in lines:
            test_id, text = line.split()
            acked[test_id] = max(acked.get(test_id, 0), int(text))
        store = SqliteStore(path)
        assert store.integrity_check() == "ok"
        for test_id, version in acked.items():
            state = store.get_test(test_id)
            assert state is not None, test_id
            assert state.version >= version
        store.close()
    assert len(acked) >= 10
    store = SqliteStore(path)
    log = store.read_log()
    versions: dict[str, list[int]] = {}
    for r in log:
        if r.outcome is Kind.ACCEPTED:
            versions.setdefault(r.test_id, []).append(r.version)
    for test_id, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), test_id
    tests, ops = Engine.replay(log)
    assert {k: v.fields() for k, v in tests.items()} == {
        s.id: s.fields() for s in store.iter_tests()
    }
    assert ops == {op.id: op for op in store.iter_operations()}
