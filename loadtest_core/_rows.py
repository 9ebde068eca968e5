"""Rows of the SQL stores: how a test, an operation and a log record become columns and back.

Shared by the SQLite and PostgreSQL stores so both keep byte-identical rows.

Two things here exist only for speed and change no result: JSON is written
by encoders built once (``json.dumps`` with options builds one per call), and
the parsed spec of every test this process inserted is kept by its JSON text
(a bounded map), so reading such a test back does not parse its spec again.
Specs are immutable; a miss parses the text on first use, as before.
"""

from __future__ import annotations

import json
from itertools import compress
from operator import ne
from typing import Any

from loadtest_core._configs import ConfigRecord
from loadtest_core._lifecycle import TestState
from loadtest_core._records import LogRecord, StopOperation
from loadtest_core._status import ACTIVE, Status
from loadtest_core._table import PHASES, Kind
from loadtest_core._uploads import Upload

__all__ = [
    "ACTIVE_VALUES",
    "CONFIG_COLUMNS",
    "INSERT_COLUMNS",
    "PER_TEST_TABLES",
    "TEST_COLUMNS",
    "UPDATE_COLUMNS",
    "UPDATE_SET",
    "changed_columns",
    "config_from",
    "config_row",
    "insert_row",
    "op_body",
    "op_from",
    "record_from",
    "record_row",
    "state_from",
    "update_row",
    "update_sql",
    "upload_from",
]

TEST_COLUMNS = (
    "id, phase, version, created_at, created_by, started_at, finished_at, error, "
    "imbalance_at, imbalance_rps, imbalance_comment, assigned_agent_id, rank, spec, "
    "stamp, holder, contact_at, entered_at, due_at"
)
"""What ``state_from`` reads, in order."""

INSERT_COLUMNS = f"{TEST_COLUMNS}, status, sel_kind, sel_value"
"""What ``insert_row`` writes, in order (22 values)."""

UPDATE_COLUMNS = (
    "phase",
    "status",
    "version",
    "started_at",
    "finished_at",
    "error",
    "imbalance_at",
    "imbalance_rps",
    "imbalance_comment",
    "assigned_agent_id",
    "rank",
    "stamp",
    "holder",
    "contact_at",
    "entered_at",
    "due_at",
)
"""The mutable columns, in ``update_row`` order."""

UPDATE_SET = ", ".join(f"{c}={{p}}" for c in UPDATE_COLUMNS)
"""Every mutable column; ``{p}`` is the driver's placeholder."""
_STAMP = UPDATE_COLUMNS.index("stamp")
_ALL = tuple(range(len(UPDATE_COLUMNS)))

_ENCODE_SORTED = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_SPECS: dict[str, Any] = {}
"""Spec JSON text -> the spec it was written from (see the module docstring)."""
_SPECS_MAX = 4096

_VALUE = {s: s.value for s in Status}
_NAME = {s: s.name for s in Status}
_KIND_VALUE = {k: k.value for k in Kind}
_KIND = {k.value: k for k in Kind}
"""Enum attributes as dict lookups: ``Enum.value`` is a descriptor call, twice per row."""

ACTIVE_VALUES = ",".join(str(s.value) for s in sorted(ACTIVE, key=lambda s: s.value))


def insert_row(s: TestState) -> tuple[Any, ...]:
    imb = s.imbalance or (None, None, None)
    spec = s.spec
    kind, value = ("none", "") if spec is None else spec.selector_key()
    text = s.spec_json
    if text is not None and text not in _SPECS:
        if len(_SPECS) >= _SPECS_MAX:
            _SPECS.clear()
        _SPECS[text] = spec
    return (
        s.id,
        s.phase.name,
        s.version,
        s.created_at,
        s.created_by,
        s.started_at,
        s.finished_at,
        s.error,
        imb[0],
        imb[1],
        imb[2],
        s.assigned_agent_id,
        s.rank,
        text,
        s.stamp,
        s.holder,
        s.contact_at,
        s.entered_at,
        s.due_at,
        _VALUE[s.phase.status],
        kind,
        value,
    )


def update_row(s: TestState) -> tuple[Any, ...]:
    """The ``UPDATE_SET`` values; the caller appends the id and the expected stamp."""
    imb = s.imbalance or (None, None, None)
    phase = s.phase
    return (
        phase.name,
        _VALUE[phase.status],
        s.version,
        s.started_at,
        s.finished_at,
        s.error,
        imb[0],
        imb[1],
        imb[2],
        s.assigned_agent_id,
        s.rank,
        s.stamp,
        s.holder,
        s.contact_at,
        s.entered_at,
        s.due_at,
    )


def changed_columns(
    before: TestState | None, after: TestState
) -> tuple[tuple[int, ...], tuple[Any, ...]]:
    """The indexes into ``UPDATE_COLUMNS`` that ``after`` changes, and their values.

    An UPDATE that names only these leaves every index on the other columns
    alone (a database maintains an index whenever a SET names its column).
    Without ``before`` every column is named.
    """
    new = update_row(after)
    if before is None:
        return _ALL, new
    changed = list(map(ne, update_row(before), new))  # C loops: this runs once per commit
    changed[_STAMP] = True
    return tuple(compress(_ALL, changed)), tuple(compress(new, changed))


def update_sql(table: str, chosen: tuple[int, ...], placeholder: str) -> str:
    """``UPDATE table SET <chosen columns> WHERE id = ? AND stamp = ?`` for one driver."""
    sets = ", ".join(f"{UPDATE_COLUMNS[i]}={placeholder}" for i in chosen)
    return f"UPDATE {table} SET {sets} WHERE id={placeholder} AND stamp={placeholder}"


def state_from(row: tuple[Any, ...] | Any) -> TestState:
    """A ``TestState`` from a ``TEST_COLUMNS`` row; its spec is parsed only when read."""
    s = TestState.__new__(TestState)
    (
        s.id,
        phase,
        s.version,
        s.created_at,
        s.created_by,
        s.started_at,
        s.finished_at,
        s.error,
        imb_at,
        imb_rps,
        imb_comment,
        s.assigned_agent_id,
        s.rank,
        spec,
        s.stamp,
        s.holder,
        s.contact_at,
        s.entered_at,
        s.due_at,
    ) = row
    s.phase = PHASES[phase]
    s.imbalance = None if imb_at is None else (imb_at, imb_rps, imb_comment)
    s._spec = None if spec is None else _SPECS.get(spec)
    s._spec_json = spec
    return s


def op_body(op: StopOperation) -> str:
    return _ENCODE(
        {
            "created_at": op.created_at,
            "created_by": op.created_by,
            "modified_at": op.modified_at,
            "error": None if op.error is None else list(op.error),
            "response": op.response,
            "description": op.description,
        }
    )


def op_from(op_id: str, test_id: str, done: Any, body: str) -> StopOperation:
    d = json.loads(body)
    error = d["error"]
    return StopOperation(
        op_id,
        test_id,
        d["created_at"],
        d["created_by"],
        d["modified_at"],
        bool(done),
        None if error is None else (int(error[0]), str(error[1])),
        d["response"],
        d["description"],
    )


def record_row(r: LogRecord) -> tuple[Any, ...]:
    """An event row without its ``seq`` (the database numbers it)."""
    return (
        r.test_id,
        r.at,
        r.actor,
        r.event,
        _ENCODE_SORTED(r.payload),
        None if r.from_status is None else _NAME[r.from_status],
        None if r.to_status is None else _NAME[r.to_status],
        _KIND_VALUE[r.outcome],
        r.reason,
        r.version,
    )


def record_from(row: tuple[Any, ...] | Any) -> LogRecord:
    seq, test_id, at, actor, event, payload, fs, ts, outcome, reason, version = row
    return LogRecord(
        seq,
        test_id,
        at,
        actor,
        event,
        json.loads(payload),
        None if fs is None else Status[fs],
        None if ts is None else Status[ts],
        _KIND[outcome],
        reason,
        version,
    )


CONFIG_COLUMNS = "id, folder_id, name, yaml, body, created_at, created_by, deleted_at"
"""The ``configs`` table's columns, in ``config_row`` order."""

PER_TEST_TABLES = ("uploads", "upload_totals", "job_bindings", "dropped_jobs")
"""Tables whose rows (``test_id``) go with their test when it is removed."""


def config_row(c: ConfigRecord) -> tuple[Any, ...]:
    return (c.id, c.folder_id, c.name, c.yaml, c.body, c.created_at, c.created_by, c.deleted_at)


def config_from(row: tuple[Any, ...] | Any) -> ConfigRecord:
    config_id, folder_id, name, yaml, body, created_at, created_by, deleted_at = row
    return ConfigRecord(
        config_id, folder_id, name, yaml, body, float(created_at), created_by,
        None if deleted_at is None else float(deleted_at),
    )  # fmt: skip


def upload_from(row: tuple[Any, ...] | Any) -> Upload:
    """An ``Upload`` from ``(seq, test_id, agent_id, kind, at, body)``."""
    seq, test_id, agent_id, kind, at, body = row
    return Upload(int(seq), test_id, agent_id, kind, float(at), json.loads(body))
