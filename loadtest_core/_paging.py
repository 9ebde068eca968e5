"""``List`` over a store: filter lookups, index hints and page tokens.

A filter is a conjunction, so a clause on the status or on a tag bounds the
whole result: the store then scans that index instead of every test, and a
page costs the tests that can match.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from typing import Any, cast

from loadtest_core._errors import InvalidArgument
from loadtest_core._lifecycle import TestState
from loadtest_core._query import Filter
from loadtest_core._status import FINISHED, Status
from loadtest_core._store import Key, Store

__all__ = ["decode_token", "encode_token", "folder_of", "hints", "lookup", "newest"]

_ALL = frozenset(s for s in Status if s is not Status.STATUS_UNSPECIFIED)


def hints(query: Filter) -> tuple[frozenset[Status] | None, tuple[str, str] | None]:
    """The statuses and the tag every match must have, when the filter pins them."""
    statuses: frozenset[Status] | None = None
    tag: tuple[str, str] | None = None
    for field, op, values in query.clauses:
        allowed: frozenset[Status] | None = None
        if field == "summary.status" and op in ("=", "IN"):
            allowed = frozenset(values)
        elif field == "summary.status" and op in ("!=", "NOT IN"):
            allowed = _ALL - frozenset(values)
        elif field == "summary.is_finished" and op == "=":
            allowed = FINISHED if values[0] else _ALL - FINISHED
        elif field.startswith("details.tags.") and op == ":" and tag is None:
            tag = (field[len("details.tags.") :], str(values[0]))
        if allowed is not None:
            statuses = allowed if statuses is None else statuses & allowed
    return statuses, tag


def newest(
    store: Store,
    before: Key | None,
    statuses: frozenset[Status] | None = None,
    tag: tuple[str, str] | None = None,
) -> Iterator[TestState]:
    """``store.iter_tests_newest``, or a sort of every test for a store that predates it.

    Stores written against the first ``Store`` protocol keep working (slowly: a
    page costs a sort), rather than failing with an ``AttributeError`` at ``List``.
    """
    iterate = getattr(store, "iter_tests_newest", None)
    if iterate is not None:
        return cast("Iterator[TestState]", iterate(before, statuses=statuses, tag=tag))
    states = [s for s in store.iter_tests() if before is None or (s.created_at, s.id) < before]
    return iter(sorted(states, key=lambda s: (s.created_at, s.id), reverse=True))


def folder_of(state: TestState) -> str:
    spec = state.spec
    return "" if spec is None else str(spec.folder_id)


def lookup(state: TestState) -> Callable[[str], object]:
    """What a test filter reads of a test, field by field."""
    spec = state.spec

    def get(name: str) -> object:
        if name == "id":
            return state.id
        if name == "summary.status":
            return state.status
        if name == "summary.is_finished":
            return state.finished_at is not None
        if name == "summary.created_at":
            return state.created_at
        if name == "summary.created_by":
            return state.created_by
        details = None if spec is None else spec.details
        if name == "details.name":
            return "" if details is None else details.name
        if name.startswith("details.tags."):
            key = name[len("details.tags.") :]
            for tag in () if details is None else details.tags:
                if tag.key == key:
                    return tag.value
            return None
        return None

    return get


def encode_token(key: Key, fingerprint: str) -> str:
    raw = json.dumps({"k": [key[0], key[1]], "f": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, fingerprint: str) -> Key:
    bad = InvalidArgument("page_token: not a token this listing returned", field="page_token")
    if not isinstance(token, str) or len(token) > 1024:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data: Any = json.loads(raw)
        created_at, test_id = data["k"]
        if data["f"] != fingerprint or not isinstance(test_id, str):
            raise bad
        return float(created_at), test_id
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise bad from None
