"""A child process of the several-processes tests: one engine over a shared store, one role.

``python -m tests.stores._child ROLE KIND TARGET ARGS_JSON``. The child opens
its store, prints ``{"ready": true}``, waits for a line on stdin (so every
child starts together), does its role and prints one JSON line of results.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import sys
import time
from typing import Any

from loadtest_core import Engine, LoadtestError, ManualClock, Policies, Status
from tests.stores._backings import PG_DSN, open_target

EXACT = Policies(lost_after=30, contact_every=0)


def _go() -> None:
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()


def _ids(tag: str) -> Any:
    numbers = iter(range(1, 10**9))
    return lambda kind: f"{kind}-{tag}-{next(numbers)}"


def migrate(kind: str, target: str, args: dict[str, Any]) -> dict[str, Any]:
    """Open (and so migrate) the store at the same moment as the others, then write a test."""
    _go()
    engine = Engine(open_target(kind, target), ids=_ids(args["name"]))
    test_id = engine.create({"configurations": [{"agent_selector": {"agent_id": "a"}}]}).id
    return {"version": engine.store.schema_version, "test": test_id}  # type: ignore[attr-defined]


def stops(kind: str, target: str, args: dict[str, Any]) -> dict[str, Any]:
    """Send the agent's final claim for this child's share of tests and stop all the others."""
    engine = Engine(open_target(kind, target), ids=_ids(f"p{args['n']}"))
    rng = random.Random(args["n"])
    order = list(args["ids"])
    rng.shuffle(order)
    _go()
    claims, ops = 0, {}
    for test_id in order:
        if args["owner"][test_id] == args["n"]:
            final = rng.choice([Status.DONE, Status.STOPPED, Status.FAILED])
            claims += engine.claim(test_id, "agent-1", final, "boom").ok
        else:
            with contextlib.suppress(LoadtestError):
                ops[test_id] = engine.stop(test_id, principal=f"user-{args['n']}").id
    return {"claims": claims, "ops": ops}


def hand_outs(kind: str, target: str, args: dict[str, Any]) -> dict[str, Any]:
    """Take jobs as one agent until none is left, claiming each one INITIATED."""
    engine = Engine(open_target(kind, target))
    agent = args["agent"]
    _go()
    jobs, outcomes = [], []
    while True:
        job = engine.next_job(agent)
        if job is None:
            break
        jobs.append(job.id)
        outcomes.append(engine.claim(job.id, agent, Status.INITIATED).kind.value)
    return {"jobs": jobs, "outcomes": outcomes}


def ticks(kind: str, target: str, args: dict[str, Any]) -> dict[str, Any]:
    """Fire every deadline due at ``now`` (the others fire the same ones)."""
    engine = Engine(open_target(kind, target), clock=ManualClock(args["now"]), policies=EXACT)
    _go()
    return {"fired": engine.tick()}


def hold_lock(kind: str, target: str, args: dict[str, Any]) -> dict[str, Any]:
    """Hold a write lock (PostgreSQL: one test row; SQLite: the file) until told to let go."""
    if kind == "sqlite":
        db = sqlite3.connect(target, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        _go()
        db.execute("ROLLBACK")
        return {"held": True}
    import psycopg

    with psycopg.connect(PG_DSN) as pg:
        pg.execute(
            f'SELECT id FROM "{target}".tests WHERE id = %s FOR UPDATE'.encode(), (args["id"],)
        )
        _go()
        pg.rollback()
    return {"held": True}


ROLES = {f.__name__: f for f in (migrate, stops, hand_outs, ticks, hold_lock)}

if __name__ == "__main__":
    role, kind, target, raw = sys.argv[1:5]
    started = time.monotonic()
    result = ROLES[role](kind, target, json.loads(raw))
    result["seconds"] = time.monotonic() - started
    print(json.dumps(result), flush=True)
