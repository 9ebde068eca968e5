"""Jobs: which agent a test's job goes to, and what a job is.

A test's agent selector names one agent (``agent_id``), any registered agent
a filter matches (``match_by_filter``), or an agent that never registered
(``anonymous_agent``). The store indexes pending tests by selector, so a
hand-out reads the tests that can go to the asking agent, plus one filter
evaluation per distinct filter text, never every pending test.
"""

from __future__ import annotations

import functools
import re
import uuid
from pathlib import PurePosixPath
from typing import Any

from loadtest_core._errors import InvalidArgument, Unsupported
from loadtest_core._lifecycle import TestState
from loadtest_core._models import Test, TestSpec
from loadtest_core._query import Filter, parse_agent_filter
from loadtest_core._records import AgentRecord
from loadtest_core._snapshot import test_model
from loadtest_core._store import Store

__all__ = ["Job", "candidates", "check_id", "default_ids", "matches", "parse_spec"]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
_BATCH = 16


class Job:
    """One agent's assignment to one test; a single-agent test's job id is the test id.

    ``test`` is the test as handed out, built on first use: most callers (a
    simulated agent, a job poll that only needs the id) never read it.
    """

    __slots__ = ("_state", "_test", "id")

    def __init__(self, id: str, state: TestState) -> None:
        self.id = id
        self._state = state
        self._test: Test | None = None

    @property
    def test(self) -> Test:
        if self._test is None:
            self._test = test_model(self._state)
        return self._test

    @property
    def holder(self) -> str | None:
        """The agent the job was handed to."""
        return self._state.holder

    def __repr__(self) -> str:
        return f"Job(id={self.id!r})"


def check_id(value: object, field: str) -> None:
    """Ids are 1-128 characters of letters, digits and ``._:-``; anything else is malformed."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{field}: must be a non-empty string", field=field)
    if not _ID.match(value):
        raise InvalidArgument(f"{field}: malformed id {value[:40]!r}", field=field)


def default_ids(kind: str) -> str:
    return kind + uuid.uuid4().hex[:20]


def parse_spec(spec: TestSpec | dict[str, Any]) -> TestSpec:
    """A creation spec the engine can run: one configuration with an agent selector."""
    if isinstance(spec, dict):
        spec = TestSpec.from_data(spec)
    configs = spec.configurations
    if not configs:
        raise InvalidArgument("configurations: at least one is required", field="configurations")
    if len(configs) > 1:
        raise Unsupported(
            "configurations: a multitest (several configurations) is not supported yet",
            field="configurations",
        )
    selector = configs[0].agent_selector
    field = "configurations[0].agent_selector"
    which = None if selector is None else selector.which_oneof("agent")
    if selector is None or which is None:
        raise InvalidArgument(
            f"{field}: choose agent_id, match_by_filter or anonymous_agent", field=field
        )
    if which == "agent_id" and not selector.agent_id:
        raise InvalidArgument(f"{field}.agent_id: must not be empty", field=f"{field}.agent_id")
    if which == "anonymous_agent" and not selector.anonymous_agent:
        raise InvalidArgument(
            f"{field}.anonymous_agent: must be true", field=f"{field}.anonymous_agent"
        )
    if which == "match_by_filter":
        try:
            compiled_filter(selector.match_by_filter or "")
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"{field}.match_by_filter: {exc.message}", field=f"{field}.match_by_filter"
            ) from exc
    for name in configs[0].files:
        _check_file_name(name)
    return spec


def _check_file_name(name: str) -> None:
    """A test data file lands in the agent's data directory under this name: keep it there."""
    path = PurePosixPath(name)
    if not name or "\x00" in name or "\\" in name or path.is_absolute() or ".." in path.parts:
        raise InvalidArgument(
            f"configurations[0].files: {name[:60]!r} must be a relative path inside "
            "the agent's test data directory",
            field="configurations[0].files",
        )


@functools.lru_cache(maxsize=1024)
def compiled_filter(text: str) -> Filter:
    """A ``match_by_filter`` parsed once per distinct text (a pure function of it)."""
    return parse_agent_filter(text)


def matches(state: TestState, agent_id: str, agent: AgentRecord | None) -> bool:
    """Whether the test's selector takes ``agent_id`` (``agent`` None: never registered)."""
    kind, value = state.spec.selector_key()
    if kind == "agent":
        return bool(value == agent_id)
    if kind == "anonymous":
        return agent is None
    if kind == "filter" and agent is not None:
        return compiled_filter(value).matches(agent.lookup)
    return False


def candidates(store: Store, agent_id: str, agent: AgentRecord | None) -> list[TestState]:
    """Pending tests the agent may take, oldest first, whichever selector took it."""
    mine = store.pending_tests("agent", agent_id, agent_id, _BATCH)
    others: list[TestState] = []
    if agent is None:
        others = store.pending_tests("anonymous", "", agent_id, _BATCH)
    else:
        for text in store.pending_filters():
            if compiled_filter(text).matches(agent.lookup):
                others += store.pending_tests("filter", text, agent_id, _BATCH)
    merged = mine + others
    merged.sort(key=lambda s: (s.created_at, s.id))
    return merged
