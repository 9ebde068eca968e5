"""Event logs: the kit's own replay, ``check-log`` and ``export-log``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtest_core import Engine, ManualClock, SqliteStore, Status
from loadtest_core.cli import main
from loadtest_core.testing import read_log, replay_log
from tests.engine.conftest import counter_ids, running, spec


def busy_engine(engine: Engine) -> Engine:
    """An engine that went through most transitions: done, stopped, lost, deleted, cancelled."""
    clock = engine.clock
    assert isinstance(clock, ManualClock)
    done = running(engine)
    engine.report_imbalance(done, "agent-1", at=clock.now(), rps=10)
    engine.claim(done, "agent-1", Status.DONE)
    stopped = running(engine, status=Status.FINISHING)
    engine.stop(stopped, principal="u")
    engine.claim(stopped, "agent-1", Status.STOPPED)
    lost = running(engine, "agent-2")
    clock.advance(40)  # past lost_after + contact_every
    engine.tick()
    engine.signal(lost, "agent-2")
    cancelled = engine.create(spec()).id
    engine.stop(cancelled, principal="u")
    engine.delete(cancelled, principal="u")
    engine.claim(done, "agent-1", Status.RUNNING)  # a conflict, logged as rejected
    engine.claim(stopped, "agent-1", None, "upload failed")  # an error note
    engine.tick()
    return engine


def records(engine: Engine) -> list[dict[str, Any]]:
    return [r.to_data() for r in engine.events()]


def test_replay_of_an_engines_log_gives_its_tests(engine: Engine) -> None:
    """The kit's replay of a real log finds no violation and reproduces status, version, times."""
    report = replay_log(records(busy_engine(engine)))
    assert report.ok, report.summary()
    assert report.outcomes["conflict"] >= 1 and report.outcomes["noted"] == 1
    for test_id, t in report.tests.items():
        if t.gone:
            continue
        state = engine.state(test_id)
        assert (t.status, t.version, t.started_at, t.finished_at, t.agent) == (
            state.status,
            state.version,
            state.started_at,
            state.finished_at,
            state.assigned_agent_id,
        )
    assert all(op.done for op in report.operations.values())


def tamper(data: list[dict[str, Any]], which: str, **changes: Any) -> list[dict[str, Any]]:
    """The log with the first accepted ``which`` record changed."""
    out = [dict(r) for r in data]
    victim = next(r for r in out if r["event"] == which and r["outcome"] == "accepted")
    victim.update(changes)
    return out


@pytest.mark.parametrize(
    ("event", "changes", "clause"),
    [
        ("claim_DONE", {"version": 9}, "§4.12"),
        ("claim_DONE", {"to": "STOPPED"}, "§3"),
        ("claim_INITIATED", {"event": "claim_DONE"}, "§3"),
        ("stop", {"from": "CREATED"}, "§3"),
        ("lose", {"test_id": "test-000001", "from": "DONE"}, "§3"),
        ("purge", {"seq": 1}, "log"),
    ],
)
def test_a_tampered_log_is_caught(
    engine: Engine, event: str, changes: dict[str, Any], clause: str
) -> None:
    """A record that disagrees with the contract's replay is reported with its clause."""
    report = replay_log(tamper(records(busy_engine(engine)), event, **changes))
    assert not report.ok
    assert clause in [c for c, _, _ in report.violations], report.summary()


def test_bad_lines_are_refused() -> None:
    """A line that is not a JSON object is a ValueError naming the line."""
    with pytest.raises(ValueError, match="line 2"):
        list(read_log(['{"seq": 1}', "[1, 2]"]))


def test_export_log_then_check_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """export-log writes a SQLite store's log as JSON lines; check-log accepts it (exit 0)."""
    db = tmp_path / "serve.db"
    store = SqliteStore(db)
    busy_engine(Engine(store, clock=ManualClock(1_700_000_000.0), ids=counter_ids()))
    store.close()
    out = tmp_path / "log.jsonl"
    assert main(["export-log", "--db", str(db), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) > 10 and json.loads(lines[0])["event"] == "create"
    assert main(["check-log", str(out)]) == 0
    assert "no violations" in capsys.readouterr().out
    assert main(["check-log", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_check_log_reports_violations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-log exits 1 and names the clause and record of each violation."""
    engine = busy_engine(Engine(clock=ManualClock(1_700_000_000.0), ids=counter_ids()))
    bad = tamper(records(engine), "claim_DONE", version=9)
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    assert main(["check-log", str(path)]) == 1
    assert "§4.12" in capsys.readouterr().out


def test_export_and_check_log_refuse_missing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing database or log file exits 2 with a message, no traceback."""
    assert main(["export-log", "--db", str(tmp_path / "none.db")]) == 2
    assert main(["check-log", str(tmp_path / "none.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "no database" in err and "none.jsonl" in err
