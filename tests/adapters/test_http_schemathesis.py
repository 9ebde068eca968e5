"""A schemathesis run against /openapi.json of the live server: no 5xx, schema-conformant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from loadtest_core import Engine, ManualClock, MemoryStore, TokenAuth
from loadtest_core.http import create_app
from tests.adapters.test_http_stop import AGENT, AUTH, USER, plan_test, serve_app
from tests.engine.conftest import counter_ids


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[str, Any]]:
    engine = Engine(MemoryStore(keep_log=False), clock=ManualClock(), ids=counter_ids())
    for plan in range(1, 6):
        plan_test(engine, plan, agent=f"agent-{plan}")
    server, thread, port = serve_app(create_app(engine, TokenAuth([USER], [AGENT])))
    base = f"http://127.0.0.1:{port}"
    spec = httpx.get(f"{base}/openapi.json").json()
    yield base, schemathesis.openapi.from_dict(spec)
    server.should_exit = True
    thread.join(5)


def test_schemathesis_finds_no_server_error(live: tuple[str, Any]) -> None:
    """Generated requests (valid and invalid) never get a 5xx and conform to the schema."""
    base, schema = live
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/stop/execution", "/healthz"}
    calls = 0
    for operation in operations:
        strategy = operation.as_strategy()

        @given(case=strategy)
        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def check(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(base_url=base, headers=dict(AUTH))

        check()
    assert calls >= 60
