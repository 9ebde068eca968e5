"""Users' commands on tests and operations: create, stop, delete, get and list."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from loadtest_core._engine_configs import check_config
from loadtest_core._engine_core import EngineCore
from loadtest_core._errors import Aborted, InvalidArgument, NotFound, Rejected
from loadtest_core._jobs import check_id, parse_spec
from loadtest_core._lifecycle import Delete, Purge, Stop, TestState
from loadtest_core._models import Operation, Test, TestSpec, check_text
from loadtest_core._paging import decode_token, encode_token, folder_of, hints, lookup, newest
from loadtest_core._query import parse_test_filter
from loadtest_core._records import LogRecord
from loadtest_core._snapshot import operation_model, test_model
from loadtest_core._status import FINISHED, Status
from loadtest_core._store import Commit, VersionConflict
from loadtest_core._table import Kind

_SPEC_CACHE_BYTES = 8 << 20  # the spec cache's bound: 8 MiB of specs (estimated), 4,096 entries


def _spec_size(data: Any) -> int:
    """An upper-bound-ish estimate of a spec's memory: its strings plus 64 bytes a value."""
    if isinstance(data, str):
        return 64 + len(data)
    if isinstance(data, dict):
        return 64 + sum(64 + len(k) + _spec_size(v) for k, v in data.items())
    if isinstance(data, list):
        return 64 + sum(_spec_size(v) for v in data)
    return 64


def _json_size(test: Test) -> int:
    return len(test.to_json())


class TestCommands(EngineCore):
    """The user side of the engine: each command is one ``_command`` on one test."""

    def create(self, spec: TestSpec | dict[str, Any], *, principal: str = "") -> Test:
        """Create a test in CREATED; it waits for a matching agent to take its job."""
        return self.snapshot(self._create(spec, principal))

    def create_id(self, spec: TestSpec | dict[str, Any], *, principal: str = "") -> str:
        """``create`` without building the returned snapshot: for simulations and bulk loads."""
        return self._create(spec, principal).id

    def _create(self, spec: TestSpec | dict[str, Any], principal: str) -> TestState:
        parsed = parse_spec(spec)
        check_text(principal, "principal")
        check_config(self.store, parsed)
        now = self.now()
        state = TestState(self._ids("test"), now, principal, parsed)
        state.stamp = 1
        record = LogRecord(
            0,
            state.id,
            now,
            principal,
            "create",
            {"spec": self._spec_data(parsed)},
            None,
            Status.CREATED,
            Kind.ACCEPTED,
            "created",
            1,
        )
        try:
            self._commit(Commit(state.id, 0, state, False, (), (record,)))
        except VersionConflict:  # the ids function repeated itself; nothing was written
            raise Aborted(f"test {state.id}: the id is already taken") from None
        return state

    def _spec_data(self, spec: TestSpec) -> dict[str, Any]:
        """``spec.to_data()``, once per spec object: specs are immutable and often shared.

        The entry holds the spec itself, so its ``id`` cannot be reused while cached.
        """
        hit = self._spec_cache.get(id(spec))
        if hit is not None and hit[0] is spec:
            return hit[1]
        data = spec.to_data()
        size = _spec_size(data)
        if size > _SPEC_CACHE_BYTES // 64:
            return data  # a large spec is rarely shared: never let one pin megabytes
        if len(self._spec_cache) >= 4096 or self._spec_cache_bytes + size > _SPEC_CACHE_BYTES:
            self._spec_cache.clear()
            self._spec_cache_bytes = 0
        self._spec_cache[id(spec)] = (spec, data)
        self._spec_cache_bytes += size
        return data

    def get(self, test_id: str) -> Test:
        return self.snapshot(self._get(test_id))

    def snapshot(self, state: TestState) -> Test:
        return test_model(state)

    def state(self, test_id: str) -> TestState:
        """A copy of the live lifecycle state (for invariant checks and tools)."""
        return self._get(test_id).copy()

    def stop(self, test_id: str, *, principal: str = "") -> Operation:
        """Stop a test (spec §3, §5); raises ``Rejected`` when it is not running."""
        check_text(principal, "principal")
        outcome, _, op = self._command(test_id, Stop(principal))
        assert outcome is not None
        if not outcome.ok:
            raise Rejected(outcome)
        assert op is not None, outcome
        return operation_model(op)

    def stop_unfinished(self, test_ids: Iterable[str], *, principal: str = "") -> int:
        """Stop each test that is not finished; how many are now stopping or stopped.

        A batch stop's path (``POST /stop/execution``): each test is read first, and
        an unknown or finished one is skipped with no rejection record, a STOPPING
        one counts with no write, so retrying a batch of finished plans costs reads.
        """
        count = 0
        for test_id in test_ids:
            state = self.store.get_test(test_id) if type(test_id) is str else None
            if state is None or state.status in FINISHED:
                continue
            if state.status is not Status.STOPPING:
                try:
                    self.stop(test_id, principal=principal)
                except (Rejected, NotFound):  # it finished or went since the read
                    continue
            count += 1
        return count

    def get_operation(self, operation_id: str) -> Operation:
        check_id(operation_id, "operation_id")
        op = self.store.get_operation(operation_id)
        if op is None:
            raise NotFound(f"operation {operation_id} not found")
        return operation_model(op)

    def delete(self, test_id: str, *, principal: str = "") -> Test:
        """Mark a test DELETING; a later tick removes it (the log keeps a tombstone)."""
        check_text(principal, "principal")
        outcome, after, _ = self._command(test_id, Delete(principal))
        assert outcome is not None
        if not outcome.ok:
            raise Rejected(outcome)
        assert after is not None
        return self.snapshot(after)

    def finish_deletion(self, test_id: str) -> None:
        """Deletion done: remove a DELETING test now."""
        outcome, _, _ = self._command(test_id, Purge())
        assert outcome is not None
        if not outcome.ok:
            raise Rejected(outcome)

    def list_tests(
        self,
        *,
        filter: str = "",
        folder_id: str | None = None,
        page_size: int = 0,
        page_token: str = "",
        max_bytes: int | None = None,
        size_of: Callable[[Test], int] | None = None,
    ) -> tuple[list[Test], str]:
        """One page of tests, newest first, and the token of the next page ("" at the end).

        With ``max_bytes`` a page also stops before the test that would take its
        size past ``max_bytes`` (each test measured by ``size_of``, by default its
        JSON length), so a page of large tests is shorter and has a next token
        instead of outgrowing a message; a page always holds at least one test.
        """
        query = parse_test_filter(filter)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 0:
            raise InvalidArgument("page_size: must be a non-negative integer", field="page_size")
        size = min(page_size or self.policies.default_page_size, self.policies.max_page_size)
        fingerprint = hashlib.sha256(f"{query}\x00{folder_id}".encode()).hexdigest()[:16]
        after = decode_token(page_token, fingerprint) if page_token else None
        statuses, tag = hints(query)
        measure = _json_size if size_of is None else size_of
        page: list[TestState] = []
        snapshots: list[Test] = []
        used = 0
        more = False
        for state in newest(self.store, after, statuses, tag):
            if folder_id is not None and folder_of(state) != folder_id:
                continue
            if not query.matches(lookup(state)):
                continue
            if len(page) == size:
                more = True
                break
            if max_bytes is not None:
                snapshot = self.snapshot(state)
                used += measure(snapshot)
                if page and used > max_bytes:
                    more = True
                    break
                snapshots.append(snapshot)
            page.append(state)
        token = encode_token((page[-1].created_at, page[-1].id), fingerprint) if more else ""
        if max_bytes is not None:
            return snapshots, token
        return [self.snapshot(s) for s in page], token

    def tests_with_tag(self, key: str, value: str) -> list[str]:
        """Ids of the tests carrying the tag ``key=value``, oldest first (an index, O(hits))."""
        return self.store.tests_with_tag(key, value)

    def count_by_status(self) -> dict[Status, int]:
        """How many stored tests are in each status."""
        return self.store.count_by_status()

    def events(
        self, after_seq: int = 0, limit: int | None = None, *, test_id: str | None = None
    ) -> list[LogRecord]:
        return self.store.read_log(after_seq, limit, test_id=test_id)
