"""Durable accepted events/s and Stop latency through ``serve`` replicas, beside each floor.

R real ``loadtest-core serve`` processes run over ONE store: a SQLite file in
a temporary directory, or one PostgreSQL schema (named by the DSN's
``search_path``, dropped afterwards). Clients are separate processes, each a
closed loop with the generated gRPC stubs, spread evenly over the replicas
(client ``i`` talks to replica ``i % R``). Two levels: one replica with one
client (**one writer**), and ``--replicas`` replicas with ``--clients``
clients each.

**Events.** Before the clock starts, each client registers an agent and
creates its tests for it (as a user). Timed: the client does what an agent
does with each test: ``JobService.Get`` (the hand-out) and ``ClaimStatus``
INITIATED, PREPARING, RUNNING, FINISHING, FINISHED, each answered OK. The
rate is the events the store logged as accepted between the start and the
end (counted in the database, and checked against the OK answers the clients
counted) over the wall time from the first client's start to the last one's
end. The hand-out is a durable write as well but not a logged event, so it
is timed and not counted (as in ``engine.py``).

**The floor**, measured in the same round on the same machine: the bare
database doing one transaction per event with no engine, server or gRPC
around it (``benchmarks/engine.py``'s ``sqlite_floor`` and one-statement
``postgres_floor``), one writer, as many events over as many tests as the
one-writer level committed. ``ratio_to_floor`` is the median over rounds of
the level's rate over the floor of its round.

**Stop.** Before the clock starts, each client creates its tests and takes
them to RUNNING as their agent. Timed: users' ``TestService.Stop`` of each
(a pending Operation, the test STOPPING), latency per call; p50 and p99 over
all the level's calls of a round, median over rounds.

**CPU**: the serve processes' CPU (from ``/proc``) and the clients' over the
timed part, per counted call (a claim, with its share of the hand-out; a
Stop), and ``cpus_busy``, both over the wall time: how many of the machine's
CPUs the servers and clients kept busy (the database server's own processes
not included).

Rounds alternate the order of the stores; every figure is the median over
rounds. The machine's load average is reported at the start and the end:
the 2 vCPUs are shared by the R servers, the clients, the database and
whatever else runs.

Run: ``python benchmarks/replicas.py --json``
(PostgreSQL at ``--pg``, default ``$LOADTEST_CORE_TEST_PG`` or
``postgresql://postgres@127.0.0.1:5432/test``.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import DEFAULT_PG, pg_problem, postgres_floor, schema, sqlite_floor

USER, AGENT = "bench-user-token", "bench-agent-token"
LOST_AFTER = 600.0
"""Long enough that no deadline fires during a run: the ticker stays out of the figures."""
CPU_KEYS = ("server_cpu_us_per_call", "client_cpu_us_per_call", "cpus_busy")
STOP_KEYS = ("p50_ms", "p99_ms", "stops_per_s", *CPU_KEYS)
EVENTS_PER_TEST = 5
"""Five accepted claims; the hand-out before them is a durable write too, but not an event."""


# --- the servers ------------------------------------------------------------------------


class Replica:
    """One ``loadtest-core serve`` process; its RPC log (stderr) goes to a file."""

    def __init__(self, db: str, log: Path) -> None:
        cmd = [
            sys.executable, "-m", "loadtest_core.cli", "serve",
            "--db", db, "--grpc", "127.0.0.1:0", "--no-http",
            "--user-token", USER, "--agent-token", AGENT,
            "--lost-after", str(LOST_AFTER),
        ]  # fmt: skip
        self._log = log.open("wb")
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True)
        try:
            self.port = self._listening(log)
        except BaseException:
            self.stop()
            raise
        assert self.process.stdout is not None
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def _listening(self, log: Path) -> int:
        """The gRPC port from serve's ``grpc_listening`` line."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise SystemExit(f"serve exited with {self.process.wait()}: see {log}")
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == "grpc_listening":
                    return int(event["address"].rsplit(":", 1)[1])
        raise SystemExit("serve did not start within 60 s")

    def cpu_seconds(self) -> float:
        """User and system CPU this server has used so far (Linux ``/proc``)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


class Backing:
    """One store shared by the replicas, and a way to count its accepted events."""

    def __init__(self, kind: str, tmp: Path, pg: str, stack: ExitStack) -> None:
        self.kind = kind
        self.tmp = tmp
        self.pg = pg
        if kind == "sqlite":
            self.path = tmp / "serve.db"
            self.db = str(self.path)
        else:
            import psycopg

            self.schema = stack.enter_context(schema(pg))
            with psycopg.connect(pg, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{self.schema}"'.encode())
            sep = "&" if "?" in pg else "?"
            self.db = f"{pg}{sep}options=-csearch_path%3D{self.schema}"

    def accepted(self) -> int:
        """Events the store logged as accepted so far."""
        query = "SELECT count(*) FROM events WHERE outcome = 'accepted'"
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(self.path)) as db:
                return int(db.execute(query).fetchone()[0])
        import psycopg

        with psycopg.connect(self.pg) as conn:
            row = conn.execute(
                f"SELECT count(*) FROM \"{self.schema}\".events WHERE outcome = 'accepted'".encode()
            ).fetchone()
            assert row is not None
            return int(row[0])

    def floor(self, tests: int, events: int, n: int) -> float:
        """The bare database's events/s, one writer, one transaction per event."""
        if self.kind == "sqlite":
            return float(sqlite_floor(self.tmp / f"floor-{n}.db", tests, events, "NORMAL"))
        return float(postgres_floor(self.pg, tests, events, True))


# --- the clients (separate processes) ---------------------------------------------------


class _Quit(Exception):
    """The parent sent no "go": it is shutting down."""


def _client(conn: Connection) -> None:
    """A client process; a failure goes back to the parent, which stops the run with it."""
    try:
        _client_loop(conn)
    except _Quit:
        pass
    except Exception:
        conn.send(("error", traceback.format_exc()))


def _client_loop(conn: Connection) -> None:
    """Takes one job at a time from the pipe, prepares, waits for go, runs, answers."""
    import grpc
    from yandex.cloud.loadtesting.agent.v1 import agent_registration_service_pb2 as reg_pb2
    from yandex.cloud.loadtesting.agent.v1 import (
        agent_registration_service_pb2_grpc,
        job_service_pb2,
        job_service_pb2_grpc,
    )
    from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc
    from yandex.cloud.loadtesting.api.v1.test import (
        agent_selector_pb2,
        details_pb2,
        single_agent_configuration_pb2,
    )

    js = job_service_pb2.ClaimJobStatusRequest
    life = (js.INITIATED, js.PREPARING, js.RUNNING, js.FINISHING, js.FINISHED)
    user_md = (("authorization", f"Bearer {USER}"),)
    agent_md = (("authorization", f"Bearer {AGENT}"),)
    channels: dict[int, Any] = {}

    def ready() -> None:
        conn.send("ready")
        if conn.recv() != "go":
            raise _Quit

    while True:
        job = conn.recv()
        if job is None:
            break
        if job[0] == "floor":  # one of the parallel floor's writers
            _, dsn, tests, events = job
            rate = postgres_floor(dsn, tests, events, True, ready)
            conn.send((events, events / rate))
            continue
        kind, port, tests = job
        if port not in channels:
            channels[port] = grpc.insecure_channel(f"127.0.0.1:{port}")
        channel = channels[port]
        users = test_service_pb2_grpc.TestServiceStub(channel)
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        reg = agent_registration_service_pb2_grpc.AgentRegistrationServiceStub(channel)
        op = reg.ExternalAgentRegister(
            reg_pb2.ExternalAgentRegisterRequest(name=f"bench-{uuid.uuid4().hex[:8]}"),
            metadata=agent_md,
        )
        meta = reg_pb2.ExternalAgentRegisterMetadata()
        op.metadata.Unpack(meta)
        agent_id = meta.agent_instance_id
        config = single_agent_configuration_pb2.SingleAgentConfiguration(
            agent_selector=agent_selector_pb2.AgentSelector(agent_id=agent_id)
        )
        ids = []
        for n in range(tests):
            created = users.Create(
                test_service_pb2.CreateTestRequest(
                    configurations=[config], test_details=details_pb2.Details(name=f"b{n}")
                ),
                metadata=user_md,
            )
            cmeta = test_service_pb2.CreateTestMetadata()
            created.metadata.Unpack(cmeta)
            ids.append(cmeta.test_id)
        get = job_service_pb2.GetJobRequest(agent_instance_id=agent_id)
        if kind == "stops":  # every test RUNNING before the clock starts
            for _ in ids:
                job_id = jobs.Get(get, metadata=agent_md).id
                for stage in life[:3]:
                    jobs.ClaimStatus(js(job_id=job_id, status=stage), metadata=agent_md)
        ready()
        answers = 0
        latencies: list[float] = []
        cpu, start = time.process_time(), time.monotonic()
        if kind == "events":
            for _ in ids:
                job_id = jobs.Get(get, metadata=agent_md).id
                for stage in life:
                    reply = jobs.ClaimStatus(js(job_id=job_id, status=stage), metadata=agent_md)
                    answers += reply.code == 0
        else:
            for test_id in ids:
                t0 = time.perf_counter()
                op = users.Stop(test_service_pb2.StopTestRequest(test_id=test_id), metadata=user_md)
                latencies.append(time.perf_counter() - t0)
                assert not op.done, "a stop of a RUNNING test is a pending operation"
                answers += 1
        end = time.monotonic()
        conn.send((answers, start, end, latencies, time.process_time() - cpu))
    for channel in channels.values():
        channel.close()


class Clients:
    """A pool of client processes, started once (spawning one costs more than a round)."""

    def __init__(self, n: int) -> None:
        ctx = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs = []
        for _ in range(n):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_client, args=(theirs,), daemon=True)
            proc.start()
            self.conns.append(mine)
            self.procs.append(proc)

    def run(
        self, kind: str, servers: list[Replica], clients: int, tests: int, backing: Backing
    ) -> dict[str, Any]:
        """``clients`` clients per server, ``tests`` tests each; the timed part's figures."""
        used = self.conns[: clients * len(servers)]
        for i, conn in enumerate(used):
            conn.send((kind, servers[i % len(servers)].port, tests))
        for conn in used:
            _expect(conn, "ready")
        before = backing.accepted()
        server_cpu = sum(s.cpu_seconds() for s in servers)
        for conn in used:
            conn.send("go")
        replies = [_reply(conn) for conn in used]
        server_cpu = sum(s.cpu_seconds() for s in servers) - server_cpu
        durable = backing.accepted() - before
        answers = sum(r[0] for r in replies)
        wall = max(r[2] for r in replies) - min(r[1] for r in replies)
        latencies = sorted(x for r in replies for x in r[3])
        client_cpu = sum(r[4] for r in replies)
        out: dict[str, Any] = {
            "answers": answers,
            "durable_events": durable,
            "wall_s": wall,
            "server_cpu_us_per_call": server_cpu / answers * 1e6,
            "client_cpu_us_per_call": client_cpu / answers * 1e6,
            "cpus_busy": (server_cpu + client_cpu) / wall,
        }
        if kind == "events":
            out["events_per_s"] = durable / wall
        else:
            out["stops_per_s"] = len(latencies) / wall
            out["p50_ms"] = statistics.median(latencies) * 1000
            out["p99_ms"] = latencies[int(0.99 * (len(latencies) - 1))] * 1000
        return out

    def floor(self, dsn: str, writers: int, tests: int, events: int) -> float:
        """PostgreSQL's floor with ``writers`` writers at once, each in its own schema."""
        used = self.conns[:writers]
        for conn in used:
            conn.send(("floor", dsn, max(1, tests // writers), max(1, events // writers)))
        for conn in used:
            _expect(conn, "ready")
        for conn in used:
            conn.send("go")
        replies = [_reply(conn) for conn in used]
        return float(sum(r[0] for r in replies) / max(r[1] for r in replies))

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()


def _reply(conn: Connection) -> Any:
    """A client's answer; a client's failure ends the run with its traceback."""
    reply = conn.recv()
    if isinstance(reply, tuple) and reply and reply[0] == "error":
        raise SystemExit(f"a client failed:\n{reply[1]}")
    return reply


def _expect(conn: Connection, what: str) -> None:
    reply = _reply(conn)
    if reply != what:
        raise SystemExit(f"a client answered {reply!r}, expected {what!r}")


# --- the run ----------------------------------------------------------------------------


@contextmanager
def cluster(backing: Backing, replicas: int) -> Iterator[list[Replica]]:
    """``replicas`` serve processes over ``backing``, started one after another."""
    started: list[Replica] = []
    try:
        for i in range(replicas):
            started.append(Replica(backing.db, backing.tmp / f"serve-{backing.kind}-{i}.log"))
        yield started
    finally:
        for replica in started:
            replica.stop()


def measure(
    clients: Clients,
    backing: Backing,
    servers: list[Replica],
    levels: list[tuple[int, int]],
    args: argparse.Namespace,
    r: int,
) -> dict[tuple[str, ...], Any]:
    """One round on one store: events at each level, the floors, then Stop at each level."""
    out: dict[tuple[str, ...], Any] = {}
    sizes = []
    for reps, per in levels:
        n = reps * per
        tests = max(1, round(args.events / EVENTS_PER_TEST / n))
        got = clients.run("events", servers[:reps], per, tests, backing)
        out["events", f"r{reps}_c{per}"] = got
        sizes.append((n * tests, got["durable_events"]))
    floor = backing.floor(*sizes[0], r)
    out["floor", "one_writer"] = floor
    level_floors = [floor] * len(levels)
    if backing.kind == "postgres":  # SQLite has one writer at a time, at any level
        writers = levels[-1][0] * levels[-1][1]
        level_floors[-1] = clients.floor(args.pg, writers, *sizes[-1])
        out["floor", f"{writers}_writers"] = level_floors[-1]
    for (reps, per), level_floor in zip(levels, level_floors, strict=True):
        name = f"r{reps}_c{per}"
        out["ratio", name] = out["events", name]["events_per_s"] / level_floor
    for reps, per in levels:
        tests = max(1, round(args.stops / (reps * per)))
        out["stops", f"r{reps}_c{per}"] = clients.run("stops", servers[:reps], per, tests, backing)
    return out


def _median(rounds: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """Medians over rounds (and the per-round values of the headline figures)."""
    out: dict[str, Any] = {}
    for key in keys:
        digits = 3 if key.endswith("_ms") else 2 if key == "cpus_busy" else 0
        values = [round(r[key], digits) for r in rounds]
        out[key] = round(statistics.median(values), digits)
        if key not in CPU_KEYS:
            out[f"{key}_per_round"] = values
    out["answers"] = sum(r["answers"] for r in rounds)
    out["durable_events"] = sum(r["durable_events"] for r in rounds)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--replicas", type=int, default=3, help="serve processes at the second level")
    ap.add_argument("--clients", type=int, default=8, help="clients per replica there")
    ap.add_argument(
        "--events", type=int, default=2400, help="accepted events per level and round (about)"
    )
    ap.add_argument("--stops", type=int, default=480, help="stops per level and round (about)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL DSN")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.replicas < 1 or args.clients < 1 or args.replicas * args.clients == 1:
        ap.error("--replicas times --clients is the second level: it must be more than one writer")
    kinds = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    if "postgres" in kinds and (problem := pg_problem(args.pg)) is not None:
        raise SystemExit(f"PostgreSQL at {args.pg}: {problem}")
    levels = [(1, 1), (args.replicas, args.clients)]
    names = [f"r{r}_c{c}" for r, c in levels]
    load_start = os.getloadavg()
    per_round: dict[tuple[str, ...], list[Any]] = {}
    clients = Clients(args.replicas * args.clients)
    try:
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            backings = {k: Backing(k, Path(tmp) / k, args.pg, stack) for k in kinds}
            for b in backings.values():
                b.tmp.mkdir()
            servers = {
                k: stack.enter_context(cluster(b, args.replicas)) for k, b in backings.items()
            }
            for r in range(args.rounds):
                for kind in kinds if r % 2 == 0 else kinds[::-1]:
                    one = measure(clients, backings[kind], servers[kind], levels, args, r)
                    for key, value in one.items():
                        per_round.setdefault((kind, *key), []).append(value)
    finally:
        clients.close()
    result: dict[str, Any] = {
        "replicas": args.replicas,
        "clients_per_replica": args.clients,
        "levels": names,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    for kind in kinds:
        part: dict[str, Any] = {}
        for (k, what, name), values in per_round.items():
            if k == kind and what == "floor":
                part[f"floor_{name}_events_per_s"] = round(statistics.median(values))
                part[f"floor_{name}_per_round"] = [round(v) for v in values]
        for name in names:
            level = _median(per_round[kind, "events", name], ("events_per_s", *CPU_KEYS))
            level["ratio_to_floor"] = round(statistics.median(per_round[kind, "ratio", name]), 3)
            level["stop"] = _median(per_round[kind, "stops", name], STOP_KEYS)
            part[name] = level
        many, one = part[names[1]], part[names[0]]
        part["scaling"] = round(many["events_per_s"] / one["events_per_s"], 2)
        result[kind] = part
    if len(kinds) == 2:
        result["postgres_vs_sqlite"] = {
            name: round(
                result["postgres"][name]["events_per_s"] / result["sqlite"][name]["events_per_s"],
                3,
            )
            for name in names
        }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
