"""Checking an exported event log: replay it from empty, independently, against §3 and §4.

The log is JSON lines, one ``LogRecord.to_data()`` object a line (``seq``,
``test_id``, ``at``, ``actor``, ``event``, ``payload``, ``from``, ``to``,
``outcome``, ``reason``, ``version``) — what ``loadtest-core export-log`` and
``Engine.events()`` give. The replay here is the kit's own (the contract's
transitions, not the engine's table): every accepted record must move its test
where the contract says, with ``version`` + 1; every other record must leave it
alone; and after every record the §4 invariants must hold. The replayed tests
and operations can then be compared with what a live target shows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from loadtest_core import Status
from loadtest_core.testing._model import ACTIVE as _ACTIVE
from loadtest_core.testing._model import FINISHED as _FINISHED
from loadtest_core.testing._model import OUTCOMES as _OUTCOMES
from loadtest_core.testing._model import RANK as _RANK
from loadtest_core.testing._model import TERMINAL as _TERMINAL

__all__ = ["LogReport", "ReplayedOperation", "ReplayedTest", "read_log", "replay_log"]

_KINDS = frozenset({"accepted", "unchanged", "noted", "stale", "conflict"})


@dataclass
class ReplayedTest:
    """A test as the log says it is."""

    id: str
    created_at: float
    created_by: str
    status: Status = Status.CREATED
    rank: int = 0
    remembered: Status | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str = ""
    imbalance: tuple[float, int, str] | None = None
    agent: str | None = None
    version: int = 1
    gone: bool = False


@dataclass
class ReplayedOperation:
    """A stop operation as the log says it is; ``result`` is "", "response" or "error"."""

    id: str
    test_id: str
    done: bool = False
    result: str = ""
    status: Status | None = None


@dataclass
class LogReport:
    """What a replay found: the tests and operations, and every violation with its record."""

    tests: dict[str, ReplayedTest] = field(default_factory=dict)
    operations: dict[str, ReplayedOperation] = field(default_factory=dict)
    violations: list[tuple[str, int, str]] = field(default_factory=list)
    records: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    checked: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        lines = [
            f"{self.records} records, {len(self.tests)} tests, "
            f"{len(self.operations)} stop operations",
            "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
            "checked: " + ", ".join(f"{k} {v}" for k, v in sorted(self.checked.items())),
        ]
        if self.violations:
            lines.append(f"{len(self.violations)} violations:")
            lines.extend(f"  seq {seq}: {clause}: {msg}" for clause, seq, msg in self.violations)
        else:
            lines.append("no violations")
        return "\n".join(lines)


def read_log(lines: Iterable[str] | IO[str]) -> Iterator[dict[str, Any]]:
    """Records from JSON lines; blank lines are skipped, a bad line raises ValueError."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"line {number}: not a JSON object")
        yield record


def _status(value: object) -> Status | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in Status.__members__:
        raise ValueError(f"unknown status {value!r}")
    return Status[value]


def replay_log(records: Iterable[dict[str, Any]]) -> LogReport:
    """Replay records in ``seq`` order; violations are collected, never raised."""
    report = LogReport()
    last_seq = 0
    for r in records:
        report.records += 1
        try:
            seq = int(r["seq"])
            test_id = str(r["test_id"])
            event = str(r["event"])
            outcome = str(r["outcome"])
            at = float(r["at"])
            version = int(r["version"])
            payload = dict(r.get("payload") or {})
            to = _status(r.get("to"))
            source = _status(r.get("from"))
        except (KeyError, TypeError, ValueError) as exc:
            report.violations.append(("format", int(r.get("seq", 0) or 0), f"bad record: {exc}"))
            continue
        report.outcomes[outcome] += 1

        def bad(clause: str, message: str, seq: int = seq) -> None:
            report.violations.append((clause, seq, message))

        if seq <= last_seq:
            bad("log", f"seq {seq} after {last_seq}: the log is not in order")
        last_seq = seq
        if outcome not in _KINDS:
            bad("format", f"unknown outcome {outcome!r}")
            continue
        test = report.tests.get(test_id)
        if event == "create":
            if outcome != "accepted" or test is not None:
                bad("§3", f"create of {test_id} {outcome} (exists: {test is not None})")
                continue
            if version != 1 or to is not Status.CREATED:
                bad("§4.12", f"create must be version 1 in CREATED, is v{version} {to}")
            report.tests[test_id] = ReplayedTest(test_id, at, str(r.get("actor", "")))
            report.checked["§3 create"] += 1
            continue
        if test is None or test.gone:
            bad("§3", f"{event} for {test_id}, which does not exist")
            continue
        if source is not None and source is not test.status:
            bad("§3", f"{event} recorded from {source.name}, the test is {test.status.name}")
        if outcome != "accepted":
            if version != test.version:
                bad(
                    "§4.12",
                    f"a {outcome} {event} recorded version {version}, test is v{test.version}",
                )
            report.checked["§3 rejected events change nothing"] += 1
            continue
        before = _copy(test)
        why = _apply(test, event, payload, at, report.operations)
        if why is not None:
            bad("§3", f"{event} from {before.status.name}: {why}")
            _restore(test, before)
            continue
        test.version += 1
        if version != test.version:
            bad("§4.12", f"{event} recorded version {version}, should be {test.version}")
            test.version = version
        computed = None if test.gone else test.status
        if to != computed:
            shown = "removed" if computed is None else computed.name
            bad(
                "§3",
                f"{event} from {before.status.name} recorded -> {to}, the contract gives {shown}",
            )
        for clause, message in _invariants(before, test, report.operations):
            bad(clause, message)
        report.checked["§3 accepted events"] += 1
        report.checked["§4 invariants"] += 1
    return report


def _copy(t: ReplayedTest) -> ReplayedTest:
    return ReplayedTest(**{k: getattr(t, k) for k in ReplayedTest.__dataclass_fields__})


def _restore(t: ReplayedTest, saved: ReplayedTest) -> None:
    for k in ReplayedTest.__dataclass_fields__:
        setattr(t, k, getattr(saved, k))


def _finish(t: ReplayedTest, status: Status, at: float, ops: dict[str, ReplayedOperation]) -> None:
    t.status, t.remembered = status, None
    if t.finished_at is None:
        t.finished_at = at
    for op in ops.values():
        if op.test_id == t.id and not op.done:
            op.done = True
            if status in _TERMINAL:
                op.result, op.status = "response", status
            else:
                op.result = "either"


def _apply(
    t: ReplayedTest, event: str, p: dict[str, Any], at: float, ops: dict[str, ReplayedOperation]
) -> str | None:
    """Apply one accepted event by the contract's table; a reason when it may not be accepted."""
    status = t.status
    if event.startswith("claim_"):
        try:
            claimed = Status[event.removeprefix("claim_")]
        except KeyError:
            return f"unknown claim {event}"
        agent = p.get("agent_id")
        if t.agent is not None and agent != t.agent:
            return f"a claim from {agent}, not the assigned agent {t.agent}"
        if status in _FINISHED:
            return "terminal statuses are absorbing"
        if status is Status.CREATED:
            if claimed in _RANK:
                t.status, t.rank, t.started_at, t.agent = claimed, _RANK[claimed], at, agent
                return None
            if claimed is Status.FAILED:
                t.agent = agent
                t.error = str(p.get("error") or "") or "\x00"
                _finish(t, Status.FAILED, at, ops)
                return None
            return f"{claimed.name} from CREATED: nothing ran"
        if claimed in _OUTCOMES:
            if claimed is Status.FAILED:
                t.error = str(p.get("error") or "") or "\x00"
            _finish(t, claimed, at, ops)
            return None
        rank = _RANK.get(claimed)
        if rank is None:
            return f"{claimed.name} cannot be claimed"
        if rank < t.rank or (rank == t.rank and status is not Status.LOST):
            return f"rank {rank} after {t.rank}: stale or contact only, never accepted"
        if status is Status.LOST:
            back = t.remembered
            t.status = (
                back
                if rank == t.rank and back is not None
                else (Status.STOPPING if back is Status.STOPPING else claimed)
            )
            t.remembered = None
        elif status is not Status.STOPPING:
            t.status = claimed
        t.rank = rank
        return None
    if event == "contact":
        if status is not Status.LOST or t.remembered is None:
            return "only a LOST test changes on contact"
        t.status, t.remembered = t.remembered, None
        return None
    if event == "imbalance":
        if t.started_at is None or status is Status.DELETING:
            return "an imbalance point needs a started test that is not DELETING"
        t.imbalance = (float(p.get("at", 0.0)), int(p.get("rps", 0)), str(p.get("comment", "")))
        if status is Status.LOST and t.remembered is not None:  # an Update is contact: recovery
            t.status, t.remembered = t.remembered, None
        return None
    if event == "stop":
        op_id = p.get("operation_id")
        pending = next((o for o in ops.values() if o.test_id == t.id and not o.done), None)
        if status is Status.CREATED:
            _new_op(ops, op_id, t.id, pending)
            _finish(t, Status.CANCELLED, at, ops)
        elif status in _RANK:
            _new_op(ops, op_id, t.id, pending)
            t.status = Status.STOPPING
        elif status is Status.LOST:
            _new_op(ops, op_id, t.id, pending)
            _finish(t, Status.STOPPED, at, ops)
        else:
            return "only CREATED, executing or LOST tests are stopped"
        return None
    if event == "delete":
        if status in _ACTIVE or status is Status.DELETING:
            return "an active or DELETING test is not deleted"
        _finish(t, Status.DELETING, at, ops)
        return None
    if event == "lose":
        if status not in _ACTIVE:
            return "§4.10: LOST only from an active status"
        t.status, t.remembered = Status.LOST, status
        return None
    if event == "expire":
        if status is not Status.LOST:
            return "only a LOST test expires"
        t.error = str(p.get("error") or "") or "\x00"
        _finish(t, Status.FAILED, at, ops)
        return None
    if event == "purge":
        if status is not Status.DELETING:
            return "only a DELETING test is removed"
        t.gone = True
        for op in ops.values():
            if op.test_id == t.id and not op.done:
                op.done, op.result = True, "either"
        return None
    if event == "note":
        return "an error note is recorded as noted, never accepted"
    return f"unknown event {event!r}"


def _new_op(
    ops: dict[str, ReplayedOperation],
    op_id: object,
    test_id: str,
    pending: ReplayedOperation | None,
) -> None:
    if isinstance(op_id, str) and op_id and op_id not in ops:
        ops[op_id] = ReplayedOperation(op_id, test_id)


def _invariants(
    before: ReplayedTest, t: ReplayedTest, ops: dict[str, ReplayedOperation]
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    where = t.id
    if t.gone:
        return out
    s = t.status
    finished = s in _FINISHED
    if (t.finished_at is not None) != finished:
        out.append(("§4.2", f"{where}: {s.name} with finished_at={t.finished_at}"))
    if s is Status.CREATED and t.started_at is not None:
        out.append(("§4.3", f"{where}: CREATED with started_at"))
    if (s in _ACTIVE or s is Status.LOST) and t.started_at is None:
        out.append(("§4.3", f"{where}: {s.name} without started_at"))
    times = [x for x in (t.created_at, t.started_at, t.finished_at) if x is not None]
    if times != sorted(times):
        out.append(("§4.4", f"{where}: timestamps out of order {times}"))
    if t.imbalance is not None and t.started_at is None:
        out.append(("§4.5", f"{where}: an imbalance point without started_at"))
    if s is not Status.DELETING and (s is Status.FAILED) != bool(t.error):
        out.append(("§4.6", f"{where}: {s.name} with error {t.error!r}"))
    if before.agent is not None and t.agent != before.agent:
        out.append(("§4.7", f"{where}: assigned agent changed"))
    if before.status in _TERMINAL and s not in (before.status, Status.DELETING):
        out.append(("§4.8", f"{where}: left {before.status.name} for {s.name}"))
    if t.rank < before.rank:
        out.append(("§4.9", f"{where}: rank went from {before.rank} to {t.rank}"))
    inflight = [o for o in ops.values() if o.test_id == t.id and not o.done]
    if len(inflight) > 1:
        out.append(("§4.11", f"{where}: {len(inflight)} stop operations in flight"))
    if inflight and s in _TERMINAL:
        out.append(("§4.11", f"{where}: {s.name} with an operation still in flight"))
    return out
