"""The filter grammar of ``ListTestsRequest.filter``, also used by ``match_by_filter``.

``field OP value [AND field OP value ...]`` with ``=``, ``!=``, ``<``, ``<=``,
``>``, ``>=``, ``CONTAINS``, ``:`` and ``IN`` / ``NOT IN`` over a parenthesised
list. Strings are double-quoted (``\\"`` and ``\\\\`` escapes), booleans are
``true`` / ``false``, timestamps are quoted RFC 3339 with a time zone.
Keywords are case-insensitive. Which operators a field takes is data (a field
set), so tests and agents share one parser. Each clause is compiled to a
predicate once, at parse time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loadtest_core._errors import InvalidArgument
from loadtest_core._status import Status

__all__ = ["Filter", "parse_agent_filter", "parse_test_filter"]

MAX_FILTER = 4096
_OPERATORS = frozenset({"=", "!=", "<", "<=", ">", ">=", ":", "CONTAINS", "IN", "NOT IN"})
_EQ = frozenset({"=", "!=", "IN", "NOT IN"})
_STR_OPS = _EQ | {"CONTAINS"}

# field (or "prefix." for a family) -> (value type, allowed operators)
_TEST_FIELDS: dict[str, tuple[str, frozenset[str]]] = {
    "id": ("str", _EQ),
    "details.name": ("str", _STR_OPS),
    "details.tags.": ("str", frozenset({":"})),
    "summary.status": ("status", _EQ),
    "summary.is_finished": ("bool", frozenset({"="})),
    "summary.created_at": ("time", frozenset({"<", "<=", ">", ">="})),
    "summary.created_by": ("str", _EQ),
}
_AGENT_FIELDS: dict[str, tuple[str, frozenset[str]]] = {
    "id": ("str", _EQ),
    "name": ("str", _STR_OPS),
    "labels.": ("str", _STR_OPS | {":"}),
}

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<op><=|>=|!=|=|<|>|:|\(|\)|,)
    | (?P<word>[A-Za-z0-9_.\-/+]+)
    )""",
    re.X,
)
_TAG = re.compile(r"[A-Za-z0-9_.\-/]+\Z")


def _bad(message: str, pos: int | None = None, hint: str = "") -> InvalidArgument:
    where = "" if pos is None else f" at character {pos}"
    fix = f"; {hint}" if hint else ""
    return InvalidArgument(f"filter: {message}{where}{fix}", field="filter")


@dataclass(frozen=True)
class _Clause:
    field: str
    op: str
    values: tuple[Any, ...]
    text: str


class Filter:
    """A parsed filter: ``matches(lookup)`` with ``lookup(field) -> value``."""

    __slots__ = ("_clauses", "_predicates")

    def __init__(self, clauses: tuple[_Clause, ...]) -> None:
        self._clauses = clauses
        self._predicates = tuple(_compile(c) for c in clauses)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(c.field for c in self._clauses)

    @property
    def clauses(self) -> tuple[tuple[str, str, tuple[Any, ...]], ...]:
        """``(field, operator, values)`` of each clause, all of which must hold."""
        return tuple((c.field, c.op, c.values) for c in self._clauses)

    def matches(self, lookup: Callable[[str], object]) -> bool:
        return all(p(lookup) for p in self._predicates)

    def __str__(self) -> str:
        return " AND ".join(c.text for c in self._clauses)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __repr__(self) -> str:
        return f"Filter({str(self)!r})"


def _compile(c: _Clause) -> Callable[[Callable[[str], object]], bool]:
    field, op, values = c.field, c.op, c.values
    first = values[0]
    if op in ("=", ":"):
        return lambda get: get(field) == first
    if op == "!=":
        return lambda get: get(field) != first
    if op == "IN":
        chosen = frozenset(values)
        return lambda get: get(field) in chosen
    if op == "NOT IN":
        chosen = frozenset(values)
        return lambda get: get(field) not in chosen
    if op == "CONTAINS":
        return lambda get: isinstance(v := get(field), str) and first in v
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    cmp = compare[op]
    return lambda get: (v := get(field)) is not None and bool(cmp(v, first))


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _bad(f"unexpected {text[pos:].lstrip()[:10]!r}", pos)
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


def _unquote(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw[1:-1])


def _quote(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Status):
        return f'"{value.name}"'
    if isinstance(value, float):
        return f'"{datetime.fromtimestamp(value, UTC).isoformat()}"'
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _value(kind: str, token: tuple[str, str, int], name: str = "", op: str = "=") -> object:
    tkind, raw, pos = token
    if kind == "bool":
        if tkind == "word" and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise _bad(f"expected true or false, got {raw!r}", pos)
    if tkind == "str":
        text = _unquote(raw)
    else:
        quoted = _quote(raw)
        if op in ("IN", "NOT IN"):
            example = f"{name} {op} ({quoted}, ...)"
        else:
            example = f"{name}:{quoted}" if op == ":" else f"{name} {op} {quoted}"
        raise _bad(f"expected a quoted string, got {raw!r}", pos, f"quote it: {example}")
    if kind == "status":
        try:
            return Status.parse(text)
        except InvalidArgument:
            raise _bad(f"unknown status {text!r}", pos) from None
    if kind == "time":
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise _bad(f"bad timestamp {text!r}", pos) from None
        if dt.tzinfo is None:
            raise _bad(f"timestamp {text!r} needs a time zone", pos)
        try:
            return dt.astimezone(UTC).timestamp()
        except OverflowError:
            raise _bad(f"timestamp {text!r} is outside the years 0001-9999 in UTC", pos) from None
    return text


def _parse(text: str, fields: dict[str, tuple[str, frozenset[str]]]) -> Filter:
    if not isinstance(text, str):
        raise _bad("must be a string")
    if len(text) > MAX_FILTER:
        raise _bad(f"longer than {MAX_FILTER} characters")
    tokens = _tokens(text)
    clauses: list[_Clause] = []
    i = 0

    def take() -> tuple[str, str, int]:
        nonlocal i
        if i >= len(tokens):
            raise _bad("unexpected end of filter", len(text))
        tok = tokens[i]
        i += 1
        return tok

    while i < len(tokens):
        kind, name, pos = take()
        if kind != "word":
            raise _bad(f"expected a field name, got {name!r}", pos)
        spec = None if name.endswith(".") else fields.get(name)
        if spec is None:
            prefix = next((p for p in fields if p.endswith(".") and name.startswith(p)), None)
            if prefix is None or not _TAG.match(name[len(prefix) :]):
                raise _bad(f"unknown field {name!r}", pos)
            spec = fields[prefix]
        vtype, allowed = spec
        okind, op, opos = take()
        op = op.upper()
        if op == "NOT":
            _, nxt, _ = take()
            if nxt.upper() != "IN":
                raise _bad("expected IN after NOT", opos)
            op = "NOT IN"
        if okind == "str" or op not in _OPERATORS:
            raise _bad(f"expected an operator, got {op!r}", opos)
        if op not in allowed:
            if allowed == {":"}:
                hint = f'write {name}:"VALUE"'
            else:
                hint = "use " + ", ".join(o for o in sorted(_OPERATORS) if o in allowed)
            raise _bad(f"operator {op} is not allowed for {name}", opos, hint)
        if op in ("IN", "NOT IN"):
            if take()[1] != "(":
                raise _bad("expected '(' after IN", opos)
            values: list[object] = []
            while True:
                values.append(_value(vtype, take(), name, op))
                sep = take()
                if sep[1] == ")":
                    break
                if sep[1] != ",":
                    raise _bad(f"expected ',' or ')', got {sep[1]!r}", sep[2])
            vals = tuple(values)
            shown = f"{name} {op} ({', '.join(_quote(v) for v in vals)})"
        else:
            vals = (_value(vtype, take(), name, op),)
            sep_ = "" if op == ":" else " "
            shown = f"{name}{sep_}{op}{sep_}{_quote(vals[0])}"
        clauses.append(_Clause(name, op, vals, shown))
        if i < len(tokens):
            kind, word, pos = take()
            if word.upper() != "AND" or kind != "word":
                raise _bad(f"expected AND, got {word!r}", pos)
            if i >= len(tokens):
                raise _bad("expected a clause after AND", pos)
    return Filter(tuple(clauses))


def parse_test_filter(text: str) -> Filter:
    """Parse a ``ListTestsRequest.filter``; an empty filter matches every test."""
    return _parse(text, _TEST_FIELDS)


def parse_agent_filter(text: str) -> Filter:
    """Parse a ``match_by_filter`` over agent ``id``, ``name`` and ``labels.<key>``."""
    return _parse(text, _AGENT_FIELDS)
