"""Child process for the crash test: drives an engine on SQLite, printing each ack."""

from __future__ import annotations

import sys

from loadtest_core import Engine, SqliteStore, Status


def main(path: str, round_no: int) -> None:
    engine = Engine(SqliteStore(path), ids=lambda kind: f"{kind}-{round_no}-{next(counter)}")
    spec = {"configurations": [{"agent_selector": {"agent_id": "agent-1"}}]}
    stages = (Status.INITIATED, Status.PREPARING, Status.RUNNING, Status.FINISHING, Status.DONE)
    while True:
        test = engine.create(spec)
        print(f"{test.id} 1", flush=True)
        job = engine.next_job("agent-1")
        assert job is not None
        for stage in stages:
            engine.claim(job.id, "agent-1", stage)
            print(f"{job.id} {engine.state(job.id).version}", flush=True)


counter = iter(range(10**9))

if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
