"""POST /stop/execution over real uvicorn on 127.0.0.1, with an HTTP client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from loadtest_core import (
    Engine,
    ManualClock,
    MemoryStore,
    SqliteStore,
    Status,
    StoreError,
    StoreUnavailable,
    TokenAuth,
    check_state,
)
from loadtest_core._store import Commit
from loadtest_core.http import create_app
from tests.engine.conftest import counter_ids

USER, AGENT = "user-token", "agent-token"
AUTH = {"Authorization": f"Bearer {USER}"}


@dataclass
class Http:
    engine: Engine
    client: httpx.Client

    def post(self, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        h = {"Content-Type": "application/json", **AUTH, **(headers or {})}
        return self.client.post("/stop/execution", content=content, headers=h)


class FlakyStore(MemoryStore):
    """Fails the Nth commit, to prove a failure mid-request leaves nothing half-written."""

    fail_at: int | None = None
    fail_with: StoreError = StoreError("disk on fire")

    def __init__(self) -> None:
        super().__init__()
        self.commits = 0

    def commit(self, change: Commit) -> None:
        self.commits += 1
        if self.fail_at is not None and self.commits == self.fail_at:
            raise self.fail_with
        super().commit(change)


def serve_app(app: Any) -> tuple[uvicorn.Server, threading.Thread, int]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, port


@pytest.fixture
def http() -> Iterator[Http]:
    engine = Engine(FlakyStore(), clock=ManualClock(), ids=counter_ids())
    server, thread, port = serve_app(create_app(engine, TokenAuth([USER], [AGENT])))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield Http(engine, client)
    server.should_exit = True
    thread.join(5)


def plan_test(
    engine: Engine, plan: int, status: Status | None = Status.RUNNING, agent: str = "agent-1"
) -> str:
    test = engine.create(
        {
            "configurations": [{"agent_selector": {"agent_id": agent}}],
            "details": {"tags": [{"key": "plan_id", "value": str(plan)}]},
        }
    )
    if status is None:
        return test.id
    job = engine.next_job(agent)
    assert job is not None and job.id == test.id
    engine.claim(job.id, agent, Status.RUNNING)
    if status is not Status.RUNNING:
        engine.claim(job.id, agent, status)
    return test.id


def test_running_plan_goes_stopping(http: Http) -> None:
    """A plan with a RUNNING test answers 200 with null errors; the test is STOPPING."""
    test_id = plan_test(http.engine, 614)
    r = http.post({"plans": [614]})
    assert r.status_code == 200 and r.json() == {"data": None, "errors": None}
    assert http.engine.state(test_id).status is Status.STOPPING


def test_created_plan_is_cancelled(http: Http) -> None:
    """A plan whose test no agent has started is CANCELLED."""
    test_id = plan_test(http.engine, 7, status=None)
    assert http.post({"plans": [7]}).json()["errors"] is None
    assert http.engine.state(test_id).status is Status.CANCELLED


def test_retry_is_safe(http: Http) -> None:
    """Repeating the request while the plan is STOPPING succeeds and changes nothing."""
    test_id = plan_test(http.engine, 1)
    http.post({"plans": [1]})
    version = http.engine.state(test_id).version
    r = http.post({"plans": [1]})
    assert r.status_code == 200 and r.json()["errors"] is None
    assert http.engine.state(test_id).version == version


def test_terminal_and_unknown_plans_are_reported(http: Http) -> None:
    """Only-terminal plans are ACTION_NOT_AVAILABLE, unknown ones NOT_FOUND, others stop."""
    plan_test(http.engine, 1, Status.DONE)
    running = plan_test(http.engine, 2)
    r = http.post({"plans": [1, 2, 3, 2]})
    assert r.status_code == 200
    errors = r.json()["errors"]
    assert {(e["code"], e["planId"]) for e in errors} == {
        ("ACTION_NOT_AVAILABLE", 1),
        ("NOT_FOUND", 3),
    }
    assert all(e["message"] for e in errors)
    assert http.engine.state(running).status is Status.STOPPING


def test_mixed_plan_stops_what_it_can(http: Http) -> None:
    """A plan with a DONE and a RUNNING test stops the running one and reports success."""
    done = plan_test(http.engine, 5, Status.DONE)
    running = plan_test(http.engine, 5)
    assert http.post({"plans": [5]}).json()["errors"] is None
    assert http.engine.state(running).status is Status.STOPPING
    assert http.engine.state(done).status is Status.DONE


def test_large_batches_run_off_the_event_loop(http: Http) -> None:
    """A 30-plan request (handed to the threadpool) stops every running plan."""
    ids = [plan_test(http.engine, plan, agent=f"agent-{plan}") for plan in range(100, 130)]
    r = http.post({"plans": list(range(100, 131))})
    assert r.status_code == 200
    assert r.json()["errors"] == [
        {"code": "NOT_FOUND", "message": "plan 130 has no tests", "planId": 130}
    ]
    assert all(http.engine.state(i).status is Status.STOPPING for i in ids)


def test_unknown_fields_are_ignored(http: Http) -> None:
    """Extra fields next to plans are ignored."""
    plan_test(http.engine, 9)
    assert http.post({"plans": [9], "comment": "x"}).json()["errors"] is None


BIG = 2**63
BAD_BODIES: list[Any] = [
    {"plans": ["614"]},
    {"plans": [614.0]},
    {"plans": [1.5]},
    b'{"plans": [1e3]}',
    b'{"plans": [1E3]}',
    {"plans": [True]},
    {"plans": [False]},
    {"plans": [None]},
    {"plans": [[1]]},
    {"plans": [{"id": 1}]},
    {"plans": [BIG]},
    {"plans": [-1]},
    {"plans": [0]},
    {"plans": []},
    {},
    {"plan": [1]},
    {"plans": None},
    {"plans": 1},
    {"plans": "1"},
    {"plans": {"1": 1}},
    [1],
    [],
    "plans",
    1,
    None,
    True,
    b"",
    b"   ",
    b"{",
    b'{"plans": [1,]}',
    b'{"plans": [1] ',
    b"{'plans': [1]}",
    b'{"plans": [NaN]}',
    b'{"plans": [Infinity]}',
    b'{"plans": [1], "plans": [2]}',
    b'{"plans": [01]}',
    b'{"plans": [0x10]}',
    b'{"plans": [1]}garbage',
    b"\xff\xfe{}",
    ("[" * 5000 + "]" * 5000).encode(),
    {"plans": list(range(1, 10_001))},
    {"plans": [1], "x": "a" * 70_000},
    {"plans": [-(2**63)]},
    {"plans": [9223372036854775808]},
    b'{"plans": [1 2]}',
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_bad_bodies_are_400_and_change_nothing(http: Http, body: Any) -> None:
    """Each malformed body gets 400 INVALID_REQUEST in the envelope and stores nothing."""
    test_id = plan_test(http.engine, 1)
    before = (http.engine.state(test_id).fields(), len(http.engine.events()))
    r = http.post(body)
    assert r.status_code == 400, r.text
    payload = r.json()
    assert payload["data"] is None and payload["errors"][0]["code"] == "INVALID_REQUEST"
    assert (http.engine.state(test_id).fields(), len(http.engine.events())) == before


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
def test_wrong_content_type_is_400(http: Http, content_type: str | None) -> None:
    """Anything but application/json (utf-8) is INVALID_REQUEST."""
    plan_test(http.engine, 1)
    headers = {**AUTH}
    if content_type:
        headers["Content-Type"] = content_type
    r = http.client.post("/stop/execution", content=b'{"plans": [1]}', headers=headers)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "INVALID_REQUEST"


def test_charset_utf8_is_accepted(http: Http) -> None:
    """application/json; charset=utf-8 is fine."""
    plan_test(http.engine, 1)
    r = http.post({"plans": [1]}, {"Content-Type": "application/json; charset=UTF-8"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        f"bearer-ish {USER}",
        "Bearer wrong",
        f"Bearer {AGENT}",
        "Bearer tökén",
        "Bearer " + "x" * 1_000_000,
        f"Bearer {USER}x",
    ],
)
def test_auth_matrix(http: Http, authorization: str | None) -> None:
    """Missing, malformed, wrong, agent, non-ASCII or huge tokens never stop anything."""
    test_id = plan_test(http.engine, 1)
    before = len(http.engine.events())
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        r = http.client.post(
            "/stop/execution",
            content=b"not even json",
            headers={k: v.encode("utf-8") for k, v in headers.items()},  # type: ignore[arg-type]
        )
    except httpx.HTTPError:
        r = None  # the server may drop an oversized header; it must not answer 2xx/5xx
    if r is not None:
        assert r.status_code in (400, 401, 431), r.status_code
        if r.status_code == 401:
            assert r.headers["WWW-Authenticate"] == "Bearer"
            assert r.json() == {
                "data": None,
                "errors": [{"code": "UNAUTHORIZED", "message": r.json()["errors"][0]["message"]}],
            }
    assert http.engine.state(test_id).status is Status.RUNNING
    assert len(http.engine.events()) == before


def test_auth_is_checked_before_the_body(http: Http) -> None:
    """A bad token gets 401 even when the body is malformed."""
    r = http.client.post("/stop/execution", content=b"{", headers={"Authorization": "Bearer x"})
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/stop/execution", 405, "METHOD_NOT_ALLOWED"),
        ("POST", "/nope", 404, "NOT_FOUND"),
        ("DELETE", "/healthz", 405, "METHOD_NOT_ALLOWED"),
    ],
)
def test_routes_and_methods_answer_in_the_envelope(
    http: Http, method: str, path: str, status: int, code: str
) -> None:
    """Unknown routes and methods answer the envelope, not the framework default."""
    r = http.client.request(method, path, headers=AUTH)
    assert r.status_code == status and r.json()["errors"][0]["code"] == code
    assert r.json()["data"] is None


def test_healthz_and_openapi(http: Http) -> None:
    """/healthz answers ok; /openapi.json documents the endpoint and every error code."""
    assert http.client.get("/healthz").json() == {"status": "ok"}
    spec = http.client.get("/openapi.json").json()
    post = spec["paths"]["/stop/execution"]["post"]
    assert set(post["responses"]) == {"200", "400", "401", "500", "503"}
    codes = spec["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
    assert {
        "UNAUTHORIZED",
        "INVALID_REQUEST",
        "INTERNAL_SERVER_ERROR",
        "NOT_FOUND",
        "ACTION_NOT_AVAILABLE",
    } <= set(codes)


def test_store_failure_mid_request_is_500_and_nothing_half_written(http: Http) -> None:
    """A store failure on the second of three stops answers 500; the first stays committed."""
    ids = [plan_test(http.engine, 42, agent=f"agent-{i}") for i in range(3)]
    store = http.engine.store
    assert isinstance(store, FlakyStore)
    store.fail_at = store.commits + 2
    r = http.post({"plans": [42]})
    assert r.status_code == 500
    assert r.json() == {
        "data": None,
        "errors": [{"code": "INTERNAL_SERVER_ERROR", "message": "an unexpected error occurred"}],
    }
    statuses = [http.engine.state(i).status for i in ids]
    assert statuses == [Status.STOPPING, Status.RUNNING, Status.RUNNING]
    for state in store.iter_tests():
        assert check_state(state) == []
    tests, ops = Engine.replay(http.engine.events())
    assert {k: v.fields() for k, v in tests.items()} == {
        s.id: s.fields() for s in store.iter_tests()
    }
    assert ops == {op.id: op for op in store.iter_operations()}
    store.fail_at = None
    assert http.post({"plans": [42]}).json()["errors"] is None
    assert all(http.engine.state(i).status is Status.STOPPING for i in ids)


def test_retrying_finished_plans_costs_no_write(http: Http) -> None:
    """A batch naming plans whose tests are all finished logs nothing, however often it is sent."""
    for i in range(20):
        plan_test(http.engine, 77, Status.DONE, agent=f"done-{i}")
    logged = len(http.engine.events())
    for _ in range(3):
        r = http.post({"plans": [77]})
        assert r.json()["errors"][0]["code"] == "ACTION_NOT_AVAILABLE"
    assert len(http.engine.events()) == logged


def test_store_unavailable_is_503_in_the_envelope(http: Http) -> None:
    """A store that cannot take writes answers 503 SERVICE_UNAVAILABLE, not a 500."""
    plan_test(http.engine, 43)
    store = http.engine.store
    assert isinstance(store, FlakyStore)
    store.fail_with = StoreUnavailable("gone")
    store.fail_at = store.commits + 1
    r = http.post({"plans": [43]})
    assert r.status_code == 503
    assert r.json()["errors"][0]["code"] == "SERVICE_UNAVAILABLE"


def test_healthz_is_503_when_the_store_is_unavailable(tmp_path: Path) -> None:
    """/healthz answers 503 in the envelope while the SQLite file is read-only, ok after."""
    path = tmp_path / "x.db"
    engine = Engine(SqliteStore(path), clock=ManualClock(), ids=counter_ids())
    server, thread, port = serve_app(create_app(engine, TokenAuth([USER], [AGENT])))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            path.chmod(0o444)
            try:
                r = client.get("/healthz")
            finally:
                path.chmod(0o644)
            assert r.status_code == 503 and r.json()["data"] is None
            assert r.json()["errors"][0]["code"] == "SERVICE_UNAVAILABLE"
            assert client.get("/healthz").json() == {"status": "ok"}
    finally:
        server.should_exit = True
        thread.join(5)


def test_engine_runs_off_the_event_loop_over_a_blocking_store(tmp_path: Path) -> None:
    """Over SQLite even a one-plan stop runs on the threadpool, so the loop stays free."""
    path = tmp_path / "x.db"
    engine = Engine(SqliteStore(path), clock=ManualClock(), ids=counter_ids())
    test_id = plan_test(engine, 5)
    loop_threads: set[str] = set()
    original = engine.stop_unfinished

    def spy(*args: Any, **kwargs: Any) -> int:
        loop_threads.add(threading.current_thread().name)
        return original(*args, **kwargs)

    engine.stop_unfinished = spy  # type: ignore[method-assign]
    server, thread, port = serve_app(create_app(engine, TokenAuth([USER], [AGENT])))
    try:
        r = httpx.post(
            f"http://127.0.0.1:{port}/stop/execution",
            json={"plans": [5]},
            headers=AUTH,
        )
        assert r.json() == {"data": None, "errors": None}
    finally:
        server.should_exit = True
        thread.join(5)
    assert engine.state(test_id).status is Status.STOPPING
    assert loop_threads and thread.name not in loop_threads
