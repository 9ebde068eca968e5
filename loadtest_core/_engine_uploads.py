"""What agents upload for a job (trails, monitoring, event logs), bounded per test."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loadtest_core._engine_core import EngineCore
from loadtest_core._errors import InvalidArgument, LimitExceeded, NotFound, Rejected
from loadtest_core._jobs import check_id
from loadtest_core._lifecycle import Contact, Outcome
from loadtest_core._table import NOT_HOLDER, Kind
from loadtest_core._uploads import Upload, check_kind, encode_items


class UploadCommands(EngineCore):
    """Uploads are job-scoped contact first, then items kept under ``upload_limit``."""

    def upload(self, job_id: str, agent_id: str, kind: str, items: Sequence[dict[str, Any]]) -> int:
        """Store an agent's upload for a job it holds; returns the first item's seq (0: none).

        Job-scoped contact first (a LOST test recovers), whatever happens to
        the items: ``LimitExceeded`` when they would pass ``upload_limit``
        (nothing of them is stored), ``Rejected`` when the caller does not hold
        the job.
        """
        check_kind(kind)
        encoded = encode_items(tuple(items))
        state = self._get(job_id)
        if state.owner != agent_id:
            outcome = Outcome(Kind.CONFLICT, "upload", state.status, state.status, NOT_HOLDER[1])
            raise Rejected(outcome)
        self._command(job_id, Contact(agent_id), first=state, contact=True)
        if not encoded:
            return 0
        limit = self.policies.upload_limit
        seq = self.store.add_uploads(job_id, agent_id, kind, self.now(), encoded, limit)
        if seq is None:
            raise LimitExceeded(
                f"test {job_id}: its {kind} uploads reached the limit of {limit} bytes; "
                "this upload was refused, the test is not affected"
            )
        if seq == 0:
            raise NotFound(f"test {job_id} not found")
        return seq

    def report_events(self, agent_id: str, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """``ReportEventLogs``: ``(test_id, event)`` pairs from one agent.

        Events naming a test the agent holds are that test's uploads (and its
        contact); the others (no test, or one it does not hold) are kept per
        agent, the newest ``agent_events_kept``. ``LimitExceeded`` once the rest
        is stored when a test's events are over its limit.
        """
        if not isinstance(agent_id, str) or not agent_id:
            raise InvalidArgument("agent_id: must be a non-empty string", field="agent_id")
        by_test: dict[str, list[dict[str, Any]]] = {}
        own: list[dict[str, Any]] = []
        for test_id, event in events:
            if test_id:
                by_test.setdefault(test_id, []).append(event)
            else:
                own.append(event)
        refused: LimitExceeded | None = None
        for test_id, items in by_test.items():
            state = self.store.get_test(test_id) if isinstance(test_id, str) else None
            if state is None or state.owner != agent_id:
                own.extend(items)
                continue
            try:
                self.upload(test_id, agent_id, "events", items)
            except LimitExceeded as exc:
                refused = refused or exc
            except NotFound:  # removed meanwhile
                own.extend(items)
        encoded = encode_items(tuple(own))
        if encoded and self.policies.agent_events_kept:
            self.store.add_agent_events(
                agent_id, self.now(), encoded, self.policies.agent_events_kept
            )
        if refused is not None:
            raise refused

    def uploads(self, test_id: str, kind: str, *, after: int = 0, limit: int = 100) -> list[Upload]:
        """A test's uploads of ``kind`` after the cursor ``after`` (a seq), oldest first."""
        check_kind(kind)
        after, limit = _cursor(after, limit, self.policies.max_page_size)
        self._get(test_id)
        return self.store.read_uploads(test_id, kind, after, limit)

    def upload_usage(self, test_id: str) -> dict[str, tuple[int, int]]:
        """``kind -> (items, bytes)`` stored for a test (the limit is ``upload_limit`` a kind)."""
        self._get(test_id)
        return self.store.upload_usage(test_id)

    def agent_events(self, agent_id: str, *, after: int = 0, limit: int = 100) -> list[Upload]:
        """An agent's event logs that named no test it held, after the cursor ``after``."""
        check_id(agent_id, "agent_id")
        after, limit = _cursor(after, limit, self.policies.max_page_size)
        return self.store.read_agent_events(agent_id, after, limit)


def _cursor(after: object, limit: object, most: int) -> tuple[int, int]:
    if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < 2**63:
        raise InvalidArgument("after: must be a seq (an integer >= 0)", field="after")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= most:
        raise InvalidArgument(f"limit: must be an integer in 1..{most}", field="limit")
    return after, limit
