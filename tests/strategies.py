"""Hypothesis strategies for the models (shared by model and adapter tests)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import strategies as st

from loadtest_core import (
    AgentSelector,
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
)

text = st.text(max_size=12)
int64 = st.integers(0, 2**63 - 1)
timestamps = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
statuses = st.sampled_from([s for s in Status if s is not Status.STATUS_UNSPECIFIED])

object_storage = st.builds(ObjectStorage, bucket=text, name=text)
file_pointer = st.one_of(
    st.builds(FilePointer), st.builds(FilePointer, object_storage=object_storage)
)
agent_selector = st.one_of(
    st.builds(AgentSelector),
    st.builds(AgentSelector, agent_id=text),
    st.builds(AgentSelector, match_by_filter=text),
    st.builds(AgentSelector, anonymous_agent=st.booleans()),
)
configuration = st.builds(
    SingleAgentConfiguration,
    config_id=text,
    agent_selector=st.none() | agent_selector,
    files=st.dictionaries(text, file_pointer, max_size=2),
)
tag = st.builds(Tag, key=text, value=text)
artifact_settings = st.builds(
    ArtifactSettings,
    object_storage_bucket=st.none() | text,
    is_archive=st.booleans(),
    filter_include=st.lists(text, max_size=2).map(tuple),
    filter_exclude=st.lists(text, max_size=2).map(tuple),
)
details = st.builds(
    Details,
    name=text,
    description=text,
    tags=st.lists(tag, max_size=3).map(tuple),
    logging_log_group_id=text,
    artifact_settings=st.none() | artifact_settings,
)
imbalance_point = st.builds(ImbalancePoint, at=st.none() | timestamps, rps=int64, comment=text)
summary = st.builds(
    Summary,
    status=statuses,
    created_at=st.none() | timestamps,
    created_by=text,
    started_at=st.none() | timestamps,
    finished_at=st.none() | timestamps,
    is_finished=st.booleans(),
    error=text,
    imbalance_point=st.none() | imbalance_point,
    assigned_agent_id=text,
    artifacts=st.none() | file_pointer,
)
test = st.builds(
    Test,
    id=text,
    configurations=st.lists(configuration, max_size=2).map(tuple),
    details=st.none() | details,
    summary=st.none() | summary,
    folder_id=text,
)
metadata = st.builds(StopTestMetadata, test_id=text)
rpc_status = st.builds(
    RpcStatus,
    code=st.integers(-(2**31), 2**31 - 1),
    message=text,
    details=st.lists(
        st.fixed_dictionaries(
            {
                "@type": st.just("type.googleapis.com/google.rpc.ErrorInfo"),
                "reason": st.text(min_size=1, max_size=8),
            }
        ),
        max_size=1,
    ).map(tuple),
)


@st.composite
def operation(draw: st.DrawFn) -> Operation:
    done = draw(st.booleans())
    result = draw(st.sampled_from(["error", "response"] if done else ["none", "error"]))
    return Operation(
        id=draw(text),
        description=draw(st.text(max_size=256)),
        created_at=draw(st.none() | timestamps),
        created_by=draw(text),
        modified_at=draw(st.none() | timestamps),
        done=done,
        metadata=draw(st.none() | metadata),
        error=draw(rpc_status) if result == "error" else None,
        response=draw(test) if result == "response" else None,
    )


ALL = {
    "ObjectStorage": object_storage,
    "FilePointer": file_pointer,
    "AgentSelector": agent_selector,
    "SingleAgentConfiguration": configuration,
    "Tag": tag,
    "ArtifactSettings": artifact_settings,
    "Details": details,
    "ImbalancePoint": imbalance_point,
    "Summary": summary,
    "Test": test,
    "StopTestMetadata": metadata,
    "RpcStatus": rpc_status,
    "Operation": operation(),
}
