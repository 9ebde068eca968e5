"""Model validation: oneofs, names, timestamps, int64, enums, immutability."""

from __future__ import annotations

from datetime import UTC, datetime

import pydantic
import pytest

from loadtest_core import (
    AgentSelector,
    ArtifactSettings,
    FilePointer,
    ImbalancePoint,
    InvalidArgument,
    Operation,
    Status,
    Summary,
    Test,
)


@pytest.mark.parametrize(
    ("cls", "data", "field"),
    [
        (AgentSelector, {"agent_id": "a", "match_by_filter": "x"}, "agent"),
        (AgentSelector, {"agent_id": "a", "anonymous_agent": False}, "agent"),
        (Operation, {"error": {"code": 1}, "response": {}}, "result"),
        (
            Test,
            {"configurations": [{"agent_selector": {"agentId": "a", "anonymousAgent": True}}]},
            "configurations[0].agent_selector.agent",
        ),
    ],
)
def test_two_oneof_members_are_rejected(cls: type, data: dict[str, object], field: str) -> None:
    """Setting two members of a oneof raises InvalidArgument naming the oneof and its fields."""
    with pytest.raises(InvalidArgument) as info:
        cls.from_data(data)  # type: ignore[attr-defined]
    assert info.value.field == field
    assert "only one of" in info.value.message


def test_which_oneof_reports_the_member_even_at_its_zero_value() -> None:
    """A oneof member set to its zero value still counts as set, as in protobuf."""
    assert AgentSelector.from_data({"anonymous_agent": False}).which_oneof("agent") == (
        "anonymous_agent"
    )
    assert AgentSelector.from_data({}).which_oneof("agent") is None
    assert FilePointer.from_data({"object_storage": {}}).which_oneof("file_pointer") == (
        "object_storage"
    )
    assert ArtifactSettings.from_data({}).which_oneof("upload_to") is None


def test_camel_case_input_and_snake_case_output() -> None:
    """lowerCamelCase names are accepted on input; output uses snake_case."""
    s = Summary.from_data({"status": "RUNNING", "assignedAgentId": "a", "isFinished": False})
    assert s.assigned_agent_id == "a"
    assert "assigned_agent_id" in s.to_data() and "assignedAgentId" not in s.to_data()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T03:00:00+03:00", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T00:00:00.123456789Z", datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_timestamps_parse_to_utc(raw: str, expected: datetime) -> None:
    """RFC 3339 timestamps with a zone are normalised to UTC (nanoseconds cut to micro)."""
    assert ImbalancePoint.from_data({"at": raw}).at == expected


@pytest.mark.parametrize("raw", ["2024-01-01T00:00:00", "2024-01-01", "yesterday", 1700000000])
def test_bad_timestamps_are_rejected(raw: object) -> None:
    """Naive, partial, non-RFC 3339 or numeric timestamps raise InvalidArgument naming `at`."""
    with pytest.raises(InvalidArgument) as info:
        ImbalancePoint.from_data({"at": raw})
    assert info.value.field == "at"


def test_timestamps_serialise_as_rfc3339_z() -> None:
    """Output timestamps are RFC 3339 UTC with a Z; microseconds only when non-zero."""
    p = ImbalancePoint.from_data({"at": "2024-01-01T00:00:00+00:00"})
    assert p.to_data()["at"] == "2024-01-01T00:00:00Z"
    q = ImbalancePoint.from_data({"at": "2024-01-01T00:00:00.5Z"})
    assert q.to_data()["at"] == "2024-01-01T00:00:00.500000Z"


@pytest.mark.parametrize("raw", [12, "12"])
def test_int64_accepts_number_or_string(raw: object) -> None:
    """int64 accepts a JSON number or a decimal string and emits a string."""
    p = ImbalancePoint.from_data({"rps": raw})
    assert p.rps == 12 and p.to_data()["rps"] == "12"


@pytest.mark.parametrize("raw", [True, 1.0, 1.5, "1e3", "12a", -1, 2**63, "9223372036854775808"])
def test_bad_int64_is_rejected(raw: object) -> None:
    """Booleans, floats, exponent strings, negatives and out-of-range values are refused."""
    with pytest.raises(InvalidArgument) as info:
        ImbalancePoint.from_data({"rps": raw})
    assert info.value.field == "rps"


@pytest.mark.parametrize("raw", [0, "STATUS_UNSPECIFIED", "NOPE", 99, None])
def test_summary_status_must_be_a_stored_status(raw: object) -> None:
    """UNSPECIFIED, unknown or missing statuses are rejected naming `status`."""
    with pytest.raises(InvalidArgument) as info:
        Summary.from_data({"status": raw})
    assert info.value.field == "status"


def test_status_serialises_by_name_and_parses_numbers() -> None:
    """Statuses go out by name and come in by name or protobuf number."""
    assert Summary.from_data({"status": 12}).status is Status.WAITING
    assert Summary.from_data({"status": "WAITING"}).to_data()["status"] == "WAITING"


def test_models_are_frozen() -> None:
    """Assigning to a snapshot raises."""
    s = Summary.from_data({"status": "DONE"})
    with pytest.raises(pydantic.ValidationError):
        s.error = "x"  # type: ignore[misc]


def test_done_operation_needs_a_result() -> None:
    """A done operation with neither error nor response is invalid."""
    with pytest.raises(InvalidArgument) as info:
        Operation.from_data({"done": True})
    assert info.value.field == "done"
    assert Operation.from_data({"done": False}).which_oneof("result") is None


def test_wrong_types_name_the_field() -> None:
    """A number where a string belongs is refused with the full dotted path."""
    with pytest.raises(InvalidArgument) as info:
        Test.from_data({"details": {"tags": [{"key": 1}]}})
    assert info.value.field == "details.tags[0].key"


def test_malformed_json_is_invalid_argument() -> None:
    """Text that is not JSON raises InvalidArgument, not a pydantic error."""
    with pytest.raises(InvalidArgument):
        Test.from_json("{not json")


def test_seed_shaped_operation_parses() -> None:
    """A complete Operation in the seed's JSON shape parses and round-trips."""
    doc = {
        "id": "op1",
        "description": "Stop test",
        "created_at": "2024-05-01T10:00:00Z",
        "created_by": "user1",
        "modified_at": "2024-05-01T10:01:00Z",
        "done": True,
        "metadata": {"test_id": "t1"},
        "response": {
            "id": "t1",
            "configurations": [
                {
                    "config_id": "c1",
                    "agent_selector": {"agent_id": "a1"},
                    "files": {"ammo.txt": {"object_storage": {"bucket": "b", "name": "n"}}},
                }
            ],
            "details": {
                "name": "n",
                "description": "d",
                "tags": [{"key": "k", "value": "v"}],
                "logging_log_group_id": "lg",
                "artifact_settings": {
                    "object_storage_bucket": "out",
                    "is_archive": True,
                    "filter_include": ["*"],
                    "filter_exclude": ["phout.log"],
                },
            },
            "summary": {
                "status": "STOPPED",
                "created_at": "2024-05-01T09:00:00Z",
                "created_by": "u",
                "started_at": "2024-05-01T09:01:00Z",
                "finished_at": "2024-05-01T10:01:00Z",
                "is_finished": True,
                "error": "",
                "imbalance_point": {"at": "2024-05-01T09:30:00Z", "rps": "1500", "comment": "c"},
                "assigned_agent_id": "a1",
                "artifacts": {"object_storage": {"bucket": "out", "name": "t1.tar"}},
            },
            "folder_id": "f1",
        },
    }
    op = Operation.from_data(doc)
    assert op.response is not None and op.response.summary is not None
    assert op.response.summary.imbalance_point is not None
    assert op.response.summary.imbalance_point.rps == 1500
    assert Operation.from_data(op.to_data()) == op
