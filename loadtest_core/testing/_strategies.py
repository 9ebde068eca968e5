"""Hypothesis strategies for every model and input of the contract, valid and invalid.

Each strategy is a plain function returning a ``SearchStrategy``, composable
with hypothesis' own, and built so that shrinking goes towards the simplest
value (the empty string, the first status, the smallest number). ``invalid_*``
strategies produce inputs a server must refuse with INVALID_ARGUMENT (or
HTTP 400) while changing nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from loadtest_core import (
    AgentSelector,
    AgentStatus,
    ArtifactSettings,
    Details,
    FilePointer,
    ImbalancePoint,
    ObjectStorage,
    Operation,
    RpcStatus,
    SingleAgentConfiguration,
    Status,
    StopTestMetadata,
    Summary,
    Tag,
    Test,
    TestSpec,
)
from loadtest_core.testing._target import JobStatus

__all__ = [
    "agent_behaviours",
    "agent_selectors",
    "agent_statuses",
    "claims",
    "commands",
    "ids",
    "imbalance_times",
    "invalid_ids",
    "invalid_imbalance_times",
    "invalid_list_filters",
    "invalid_specs",
    "invalid_stop_bodies",
    "invalid_timestamps",
    "job_statuses",
    "list_filters",
    "models",
    "operations",
    "snapshots",
    "specs",
    "statuses",
    "stop_bodies",
    "timestamps",
]

MIN_UNIX = -62135596800
MAX_UNIX = 253402300799
_ID_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ID_REST = _ID_FIRST + "._:-"
_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
"""Any character a model string may hold: every store refuses NUL alike."""
_text = st.text(_CHARS, max_size=12)


def ids() -> st.SearchStrategy[str]:
    """Well-formed ids: 1-128 letters, digits and ``._:-``, starting with a letter or digit."""
    return st.builds(
        lambda first, rest: first + rest,
        st.sampled_from(_ID_FIRST),
        st.text(alphabet=_ID_REST, max_size=40),
    )


def invalid_ids() -> st.SearchStrategy[str]:
    """Ids a server must answer INVALID_ARGUMENT for: empty, too long, or odd characters."""
    return st.one_of(
        st.just(""),
        st.text(alphabet=_ID_REST, min_size=129, max_size=140).map(lambda s: "a" + s),
        st.sampled_from(["-leading-dash", ".dot", " space", "tab\t", "slash/", "é", "a b"]),
    )


def timestamps() -> st.SearchStrategy[datetime]:
    """UTC datetimes a server can store (years 0001-9999)."""
    return st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    )


def invalid_timestamps() -> st.SearchStrategy[str]:
    """RFC 3339-looking texts outside what a server can represent, or not timestamps at all."""
    return st.sampled_from(
        [
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+00:01",
            "10000-01-01T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "yesterday",
        ]
    )


def imbalance_times(now: float = 1_700_000_000.0) -> st.SearchStrategy[int]:
    """Unix seconds an agent may send as ``imbalance_ts``: near ``now``, or anywhere valid."""
    return st.one_of(
        st.integers(-3600, 3600).map(lambda d: int(now) + d),
        st.integers(MIN_UNIX, MAX_UNIX),
    )


def invalid_imbalance_times() -> st.SearchStrategy[int]:
    """``imbalance_ts`` values outside 0001-9999: a millisecond timestamp, 2^62, far negative."""
    return st.one_of(
        st.sampled_from([1_700_000_000_000, 2**62, -(2**62), MAX_UNIX + 1, MIN_UNIX - 1]),
        st.integers(MAX_UNIX + 1, 2**63 - 1),
        st.integers(-(2**63), MIN_UNIX - 1),
    )


def statuses() -> st.SearchStrategy[Status]:
    """Every storable test status (never STATUS_UNSPECIFIED)."""
    return st.sampled_from([s for s in Status if s is not Status.STATUS_UNSPECIFIED])


def job_statuses(*, with_unspecified: bool = False) -> st.SearchStrategy[JobStatus]:
    """What an agent may claim, by wire name."""
    return st.sampled_from(
        [j for j in JobStatus if with_unspecified or j is not JobStatus.JOB_STATUS_UNSPECIFIED]
    )


def agent_statuses() -> st.SearchStrategy[AgentStatus]:
    """Agent-level heartbeat statuses (``AgentService.ClaimStatus``)."""
    return st.sampled_from(list(AgentStatus))


def claims() -> st.SearchStrategy[tuple[JobStatus, str]]:
    """``(job status, error)`` pairs an agent sends, error notes included."""
    return st.one_of(
        st.tuples(job_statuses(), st.sampled_from(["", "boom"])),
        st.tuples(st.just(JobStatus.JOB_STATUS_UNSPECIFIED), st.sampled_from(["upload failed"])),
    )


def agent_selectors(
    agents: tuple[str, ...] = ("agent-1",), filters: tuple[str, ...] = ('labels.pool = "a"',)
) -> st.SearchStrategy[AgentSelector]:
    """A valid selector: one of ``agents`` by id, one of ``filters``, or anonymous."""
    return st.one_of(
        st.sampled_from(agents).map(lambda a: AgentSelector(agent_id=a)),
        st.sampled_from(filters).map(lambda f: AgentSelector(match_by_filter=f)),
        st.just(AgentSelector(anonymous_agent=True)),
    )


def specs(
    selectors: st.SearchStrategy[AgentSelector] | None = None,
    *,
    tags: st.SearchStrategy[dict[str, str]] | None = None,
    config_id: str = "",
) -> st.SearchStrategy[TestSpec]:
    """Valid single-agent test specs a server must accept."""
    chosen = agent_selectors() if selectors is None else selectors
    tag_dicts = st.dictionaries(st.sampled_from(["plan_id", "team"]), _text, max_size=2)
    return st.builds(
        lambda selector, name, tags: TestSpec(
            configurations=(
                SingleAgentConfiguration(config_id=config_id, agent_selector=selector),
            ),
            details=Details(
                name=name, tags=tuple(Tag(key=k, value=v) for k, v in sorted(tags.items()))
            ),
        ),
        chosen,
        st.text(_CHARS, max_size=20),
        tag_dicts if tags is None else tags,
    )


def invalid_specs() -> st.SearchStrategy[dict[str, Any]]:
    """Create requests (as JSON data) a server must refuse: no config, a multitest, bad selector."""
    one = {"agent_selector": {"agent_id": "agent-1"}}
    return st.sampled_from(
        [
            {},
            {"configurations": []},
            {"configurations": [one, one]},
            {"configurations": [{}]},
            {"configurations": [{"agent_selector": {}}]},
            {"configurations": [{"agent_selector": {"agent_id": ""}}]},
            {"configurations": [{"agent_selector": {"anonymous_agent": False}}]},
            {"configurations": [{"agent_selector": {"match_by_filter": "labels.pool = "}}]},
            {"configurations": [{"agent_selector": {"match_by_filter": 'nope = "x"'}}]},
        ]
    )


def list_filters(statuses_: tuple[Status, ...] = tuple(Status)[1:]) -> st.SearchStrategy[str]:
    """Valid ``ListTestsRequest.filter`` texts of the contract's grammar."""
    status = st.sampled_from(statuses_)
    return st.one_of(
        st.just(""),
        status.map(lambda s: f'summary.status = "{s.name}"'),
        st.lists(status, min_size=1, max_size=3, unique=True).map(
            lambda ss: "summary.status IN (" + ", ".join(f'"{s.name}"' for s in ss) + ")"
        ),
        st.booleans().map(lambda b: f"summary.is_finished = {str(b).lower()}"),
        st.integers(1, 3).map(lambda n: f'details.tags.plan_id:"{n}"'),
    )


def invalid_list_filters() -> st.SearchStrategy[str]:
    """Filters a server must refuse with INVALID_ARGUMENT, out-of-range times included."""
    return st.one_of(
        st.sampled_from(
            [
                'summary.status = "NOPE"',
                'bogus = "x"',
                "summary.status",
                "summary.status = RUNNING",
                'summary.is_finished = "yes"',
                'details.name CONTAINS "a" AND',
            ]
        ),
        invalid_timestamps().map(lambda t: f'summary.created_at > "{t}"'),
    )


def stop_bodies(plans: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[bytes]:
    """Valid ``POST /stop/execution`` bodies: a non-empty list of plan ids (duplicates allowed)."""
    ids_ = st.integers(1, 2**63 - 1) if plans is None else plans
    return st.lists(ids_, min_size=1, max_size=5).map(lambda p: json.dumps({"plans": p}).encode())


def invalid_stop_bodies() -> st.SearchStrategy[bytes]:
    """Bodies a batch stop must answer 400 INVALID_REQUEST for, changing nothing."""
    bad_items = st.sampled_from(
        ['"1"', "1.5", "true", "null", "[1]", '{"a": 1}', "0", "-1", str(2**63), "1e3"]
    )
    return st.one_of(
        st.sampled_from(
            [b"", b"not json", b"[]", b"{}", b'{"plans": []}', b'{"plans": 1}', b'{"plans": null}']
        ),
        bad_items.map(lambda item: ('{"plans": [1, ' + item + "]}").encode()),
    )


def agent_behaviours(max_steps: int = 8) -> st.SearchStrategy[list[tuple[str, Any]]]:
    """Scripts of what an agent does with one job: claims, polls, heartbeats, pauses.

    Steps are ``("claim", JobStatus)``, ``("poll", None)``, ``("heartbeat", AgentStatus)``,
    ``("imbalance", rps)`` and ``("sleep", seconds)``; a script mostly moves forward
    through the stages, as the real agent does, with repeats and skips.
    """
    step = st.one_of(
        job_statuses().map(lambda j: ("claim", j)),
        st.just(("poll", None)),
        agent_statuses().map(lambda s: ("heartbeat", s)),
        st.integers(0, 10_000).map(lambda r: ("imbalance", r)),
        st.sampled_from([0.0, 0.001, 0.01]).map(lambda s: ("sleep", s)),
    )
    return st.lists(step, max_size=max_steps)


def commands(test_ids: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, str]]:
    """User commands ``(kind, test id)``: stop, delete, get."""
    return st.tuples(st.sampled_from(["stop", "delete", "get"]), test_ids)


# --- the models themselves (for round trips and adapters) -------------------------------

_int64 = st.integers(0, 2**63 - 1)
_times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
_object_storage = st.builds(ObjectStorage, bucket=_text, name=_text)
_file_pointer = st.one_of(
    st.builds(FilePointer), st.builds(FilePointer, object_storage=_object_storage)
)
_any_selector = st.one_of(
    st.builds(AgentSelector),
    st.builds(AgentSelector, agent_id=_text),
    st.builds(AgentSelector, match_by_filter=_text),
    st.builds(AgentSelector, anonymous_agent=st.booleans()),
)
_configuration = st.builds(
    SingleAgentConfiguration,
    config_id=_text,
    agent_selector=st.none() | _any_selector,
    files=st.dictionaries(_text, _file_pointer, max_size=2),
)
_tag = st.builds(Tag, key=_text, value=_text)
_artifacts = st.builds(
    ArtifactSettings,
    object_storage_bucket=st.none() | _text,
    is_archive=st.booleans(),
    filter_include=st.lists(_text, max_size=2).map(tuple),
    filter_exclude=st.lists(_text, max_size=2).map(tuple),
)
_details = st.builds(
    Details,
    name=_text,
    description=_text,
    tags=st.lists(_tag, max_size=3).map(tuple),
    logging_log_group_id=_text,
    artifact_settings=st.none() | _artifacts,
)
_imbalance = st.builds(ImbalancePoint, at=st.none() | _times, rps=_int64, comment=_text)
_summary = st.builds(
    Summary,
    status=statuses(),
    created_at=st.none() | _times,
    created_by=_text,
    started_at=st.none() | _times,
    finished_at=st.none() | _times,
    is_finished=st.booleans(),
    error=_text,
    imbalance_point=st.none() | _imbalance,
    assigned_agent_id=_text,
    artifacts=st.none() | _file_pointer,
)
_test = st.builds(
    Test,
    id=_text,
    configurations=st.lists(_configuration, max_size=2).map(tuple),
    details=st.none() | _details,
    summary=st.none() | _summary,
    folder_id=_text,
)
_metadata = st.builds(StopTestMetadata, test_id=_text)
_rpc_status = st.builds(
    RpcStatus,
    code=st.integers(-(2**31), 2**31 - 1),
    message=_text,
    details=st.lists(
        st.fixed_dictionaries(
            {
                "@type": st.just("type.googleapis.com/google.rpc.ErrorInfo"),
                "reason": st.text(_CHARS, min_size=1, max_size=8),
            }
        ),
        max_size=1,
    ).map(tuple),
)


@st.composite
def _operation(draw: st.DrawFn) -> Operation:
    done = draw(st.booleans())
    result = draw(st.sampled_from(["error", "response"] if done else ["none", "error"]))
    return Operation(
        id=draw(_text),
        description=draw(st.text(_CHARS, max_size=256)),
        created_at=draw(st.none() | _times),
        created_by=draw(_text),
        modified_at=draw(st.none() | _times),
        done=done,
        metadata=draw(st.none() | _metadata),
        error=draw(_rpc_status) if result == "error" else None,
        response=draw(_test) if result == "response" else None,
    )


def snapshots() -> st.SearchStrategy[Test]:
    """Any well-typed ``Test`` message (not necessarily one the lifecycle can reach)."""
    return _test


def operations() -> st.SearchStrategy[Operation]:
    """Any well-typed ``Operation`` (a done one has exactly one of error and response)."""
    return _operation()


def models() -> dict[str, st.SearchStrategy[Any]]:
    """A strategy for every message model, by class name."""
    return {
        "ObjectStorage": _object_storage,
        "FilePointer": _file_pointer,
        "AgentSelector": _any_selector,
        "SingleAgentConfiguration": _configuration,
        "Tag": _tag,
        "ArtifactSettings": _artifacts,
        "Details": _details,
        "ImbalancePoint": _imbalance,
        "Summary": _summary,
        "Test": _test,
        "StopTestMetadata": _metadata,
        "RpcStatus": _rpc_status,
        "Operation": _operation(),
    }
