"""Status numbers, groups and parsing (spec §1)."""

from __future__ import annotations

import pytest
from yandex.cloud.loadtesting.api.v1.test import status_pb2

from loadtest_core import ACTIVE, EXECUTION, TERMINAL, InvalidArgument, Status


def test_numbers_are_the_protobuf_numbers() -> None:
    """Every Status value equals the generated protobuf enum's number, and none is missing."""
    proto = dict(status_pb2.Status.items())
    assert {s.name: s.value for s in Status} == proto


def test_groups_follow_the_spec() -> None:
    """Execution is ordered by rank with WAITING between PREPARING and RUNNING."""
    assert [s.name for s in EXECUTION] == [
        "INITIATED",
        "PREPARING",
        "WAITING",
        "RUNNING",
        "FINISHING",
        "POST_PROCESSING",
    ]
    assert [s.rank for s in EXECUTION] == [1, 2, 3, 4, 5, 6]
    assert frozenset(EXECUTION) | {Status.STOPPING} == ACTIVE
    assert {s.name for s in TERMINAL} == {"DONE", "FAILED", "STOPPED", "AUTOSTOPPED", "CANCELLED"}
    assert Status.WAITING.rank > Status.PREPARING.rank
    assert Status.WAITING.value > Status.RUNNING.value


@pytest.mark.parametrize("value", ["RUNNING", "running", 4, Status.RUNNING])
def test_parse_accepts_names_and_numbers(value: object) -> None:
    """Status.parse takes a name (any case), a protobuf number or a Status."""
    assert Status.parse(value) is Status.RUNNING


@pytest.mark.parametrize("value", [0, "STATUS_UNSPECIFIED", 99, "NOPE", True, None, 4.0])
def test_parse_rejects_unspecified_and_unknown(value: object) -> None:
    """UNSPECIFIED, unknown names and numbers, booleans and floats raise InvalidArgument."""
    with pytest.raises(InvalidArgument) as info:
        Status.parse(value)
    assert info.value.field == "status"
