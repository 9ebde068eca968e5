"""The kit's strategies give what they promise: valid inputs accepted, invalid ones refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given

import loadtest_core.testing as kit
from loadtest_core import Engine, InvalidArgument, NotFound, Status, TestSpec
from loadtest_core.http._app import BadRequest, parse_plans
from loadtest_core.testing import (
    agent_behaviours,
    claims,
    ids,
    imbalance_times,
    invalid_ids,
    invalid_imbalance_times,
    invalid_list_filters,
    invalid_specs,
    invalid_stop_bodies,
    list_filters,
    specs,
    statuses,
    stop_bodies,
)
from tests.engine.conftest import running


def test_the_kit_exports_a_sorted_public_surface() -> None:
    """``loadtest_core.testing.__all__`` is sorted, unique and importable."""
    names = kit.__all__
    assert names == sorted(names) and len(names) == len(set(names))
    for name in names:
        assert hasattr(kit, name) and not name.startswith("_")


def test_hypothesis_is_imported_only_by_the_kit() -> None:
    """The core and its adapters never import hypothesis (it is the testing extra)."""
    import subprocess
    import sys

    code = (
        "import sys, loadtest_core, loadtest_core.grpc, loadtest_core.http, loadtest_core.cli; "
        "print(any(m.split('.')[0] == 'hypothesis' for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@given(spec=specs())
def test_valid_specs_are_created(spec: TestSpec) -> None:
    """Every spec ``specs()`` draws is accepted as CREATED."""
    test = Engine().create(spec)
    assert test.summary is not None and test.summary.status is Status.CREATED


@given(data=invalid_specs())
def test_invalid_specs_are_refused(data: dict[str, object]) -> None:
    """Every spec ``invalid_specs()`` draws is INVALID_ARGUMENT and stores nothing."""
    engine = Engine()
    with pytest.raises(InvalidArgument):
        engine.create(data)
    assert engine.list_tests()[0] == []


@given(test_id=ids())
def test_valid_ids_are_well_formed(test_id: str) -> None:
    """A well-formed id of no test is NOT_FOUND, never INVALID_ARGUMENT."""
    with pytest.raises(NotFound):
        Engine().get(test_id)


@given(test_id=invalid_ids())
def test_invalid_ids_are_refused(test_id: str) -> None:
    """A malformed id is INVALID_ARGUMENT."""
    with pytest.raises(InvalidArgument):
        Engine().get(test_id)


@given(flt=list_filters())
def test_valid_filters_list(flt: str) -> None:
    """Every filter ``list_filters()`` draws is accepted by List."""
    Engine().list_tests(filter=flt)


@given(flt=invalid_list_filters())
def test_invalid_filters_are_refused(flt: str) -> None:
    """Every filter ``invalid_list_filters()`` draws is INVALID_ARGUMENT, times out of range too."""
    with pytest.raises(InvalidArgument):
        Engine().list_tests(filter=flt)


@given(body=stop_bodies())
def test_valid_stop_bodies_parse(body: bytes) -> None:
    """A valid batch-stop body parses to its distinct plan ids."""
    assert parse_plans(body, 1000) == list(dict.fromkeys(json.loads(body)["plans"]))


@given(body=invalid_stop_bodies())
def test_invalid_stop_bodies_are_refused(body: bytes) -> None:
    """Every body ``invalid_stop_bodies()`` draws is a 400."""
    with pytest.raises(BadRequest):
        parse_plans(body, 1000)


@given(at=imbalance_times())
def test_valid_imbalance_times_are_stored(at: int) -> None:
    """An imbalance point at any time in 0001-9999 is recorded and readable."""
    engine = Engine()
    test_id = running(engine)
    engine.report_imbalance(test_id, "agent-1", at=float(at), rps=1)
    point = engine.get(test_id).summary.imbalance_point  # type: ignore[union-attr]
    assert point is not None and point.at is not None and round(point.at.timestamp()) == at


@given(at=invalid_imbalance_times())
def test_invalid_imbalance_times_are_refused(at: int) -> None:
    """An imbalance point outside 0001-9999 is INVALID_ARGUMENT, and the test stays readable."""
    engine = Engine()
    test_id = running(engine)
    with pytest.raises(InvalidArgument):
        engine.report_imbalance(test_id, "agent-1", at=float(at), rps=1)
    engine.get(test_id)


@given(script=agent_behaviours(), claim=claims(), status=statuses())
def test_agent_behaviours_and_claims_are_well_typed(
    script: list[tuple[str, object]], claim: tuple[kit.JobStatus, str], status: Status
) -> None:
    """Behaviour steps are known kinds; a claim without a status always carries an error."""
    assert {kind for kind, _ in script} <= {"claim", "poll", "heartbeat", "imbalance", "sleep"}
    job, error = claim
    assert job is not kit.JobStatus.JOB_STATUS_UNSPECIFIED or error
    assert status is not Status.STATUS_UNSPECIFIED
