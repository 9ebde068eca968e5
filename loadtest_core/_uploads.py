"""What agents upload while they run a job: event logs, trails, monitoring metrics (spec §8).

Uploads are stored per test and kind, each item as the agent sent it (its
protobuf message as proto3 JSON), up to ``Policies.upload_limit`` bytes per
test and kind: past it an upload is refused whole (``LimitExceeded``) and
nothing else is affected — the agent backs off and carries on, the test runs
on. Event logs that name no test the caller holds are kept per agent, the
newest ``Policies.agent_events_kept`` of them (older ones are dropped, like a
rotated log). A test's uploads go when the test is deleted.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from loadtest_core._errors import InvalidArgument

__all__ = ["KINDS", "Upload", "check_kind", "encode_items", "size_of"]

KINDS = ("events", "metrics", "trails")
"""Upload kinds: ReportEventLogs events, MonitoringService chunks, TrailService trails."""


class Upload(NamedTuple):
    """One stored item; ``seq`` orders a test's (or an agent's) uploads and is the read cursor.

    ``test_id`` is "" for an event kept per agent.
    """

    seq: int
    test_id: str
    agent_id: str
    kind: str
    at: float
    data: dict[str, Any]

    def to_data(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "test_id": self.test_id,
            "agent_id": self.agent_id,
            "kind": self.kind,
            "at": self.at,
            "data": self.data,
        }


def check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise InvalidArgument(f"kind: one of {', '.join(KINDS)}, got {kind!r}", field="kind")
    assert isinstance(kind, str)
    return kind


def encode_items(items: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> tuple[str, ...]:
    """Each item as compact JSON (what a store keeps, and what its size is counted on)."""
    try:
        return tuple(json.dumps(item, separators=(",", ":"), allow_nan=False) for item in items)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"data: not JSON ({exc})", field="data") from None


def size_of(items: tuple[str, ...]) -> int:
    """Bytes counted against the limit: the items' UTF-8 JSON."""
    return sum(len(item.encode("utf-8", "surrogatepass")) for item in items)
