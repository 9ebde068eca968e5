"""A deterministic discrete-event simulation of agents and users over the real engine.

Agents behave like the Yandex agent: they ask for a job, claim a status only
when it changes, poll ``GetSignal`` every ``request_interval`` and send a
heartbeat every ``reporter_interval``. Polls and heartbeats that change
nothing are not simulated one by one (see docs/simulation.md for why the
outcome is the same): an agent polls for real only when the answer may differ
(after a user's stop, in WAITING, after a partition) or when its last contact
matters (a checkpoint before ``lost_after`` runs out, the last contact before
it falls silent). ``full_polling=True`` simulates every poll and heartbeat.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO

from loadtest_core import (
    AgentStatus,
    Engine,
    LoadtestError,
    LogRecord,
    ManualClock,
    MemoryStore,
    Policies,
    SignalKind,
    Status,
    TestSpec,
    check_state,
)
from loadtest_core._status import EXECUTION, TERMINAL
from loadtest_core._table import Kind
from loadtest_core.sim._scenario import Scenario

__all__ = ["Interrupted", "Metrics", "Shard", "Simulator", "plan_shards", "simulate"]

BASE = 1_700_000_000.0
INF = 2**62  # "never", in microseconds
US = 1_000_000


def _us(seconds: float) -> int:
    """Simulated time is integer microseconds: equal times are exactly equal."""
    return round(seconds * US)


_STAGES = EXECUTION  # an agent claims each in turn

_NAME: dict[Status | None, str] = {s: s.name for s in Status}
_NAME[None] = "None"
_VALUE = {k: k.value for k in Kind}
_ACCEPTED, _NOTED = Kind.ACCEPTED, Kind.NOTED

# event kinds, ordered so that simultaneous events resolve the same way every run
(
    CREATE,
    USER_STOP,
    POLL_JOB,
    STAGE_END,
    POLL,
    HEARTBEAT,
    SHUTDOWN_END,
    SILENCE,
    RETURN,
    LAST_BEAT,
) = range(10)


@dataclass
class Metrics:
    """What a run measured; shards merge with ``merge``."""

    tests: int = 0
    events: int = 0
    accepted: int = 0
    rejected: int = 0
    simulated_seconds: float = 0.0
    wall_seconds: float = 0.0
    final_status_counts: dict[str, int] = field(default_factory=dict)
    lost_true: int = 0
    lost_false: int = 0
    stop_latencies: list[float] = field(default_factory=list)
    stuck: int = 0
    invariant_violations: int = 0
    event_log_sha256: str = ""
    timeline: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_seconds if self.wall_seconds else 0.0

    def percentile(self, q: float) -> float | None:
        data = sorted(self.stop_latencies)
        if not data:
            return None
        rank = max(0, math.ceil(q / 100 * len(data)) - 1)
        return data[rank]

    def summary(self) -> dict[str, Any]:
        p50, p99 = self.percentile(50), self.percentile(99)
        return {
            "tests": self.tests,
            "events": self.events,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "events_per_s": round(self.events_per_s),
            "wall_seconds": round(self.wall_seconds, 3),
            "simulated_seconds": round(self.simulated_seconds, 3),
            "final_status_counts": dict(sorted(self.final_status_counts.items())),
            "lost_true": self.lost_true,
            "lost_false": self.lost_false,
            "stops": len(self.stop_latencies),
            "stop_latency_p50_s": None if p50 is None else round(p50, 3),
            "stop_latency_p99_s": None if p99 is None else round(p99, 3),
            "stuck": self.stuck,
            "invariant_violations": self.invariant_violations,
            "event_log_sha256": self.event_log_sha256,
        }

    @staticmethod
    def merge(parts: list[Metrics]) -> Metrics:
        """Shards in order: counts add, samples concatenate, hashes hash in shard order."""
        out = Metrics()
        digest = hashlib.sha256()
        for m in parts:
            out.tests += m.tests
            out.events += m.events
            out.accepted += m.accepted
            out.rejected += m.rejected
            out.simulated_seconds = max(out.simulated_seconds, m.simulated_seconds)
            out.wall_seconds = max(out.wall_seconds, m.wall_seconds)
            for k, v in m.final_status_counts.items():
                out.final_status_counts[k] = out.final_status_counts.get(k, 0) + v
            out.lost_true += m.lost_true
            out.lost_false += m.lost_false
            out.stop_latencies.extend(m.stop_latencies)
            out.stuck += m.stuck
            out.invariant_violations += m.invariant_violations
            digest.update(bytes.fromhex(m.event_log_sha256))
        out.event_log_sha256 = digest.hexdigest() if len(parts) > 1 else parts[0].event_log_sha256
        out.timeline = _merge_timelines([m.timeline for m in parts])
        return out


def _merge_timelines(
    timelines: list[list[tuple[float, dict[str, int]]]],
) -> list[tuple[float, dict[str, int]]]:
    """At every sample time of any shard, the sum of each shard's latest sample."""
    if len(timelines) == 1:
        return timelines[0]
    latest: list[dict[str, int]] = [{} for _ in timelines]
    at = [0] * len(timelines)
    out = []
    for t in sorted({t for timeline in timelines for t, _ in timeline}):
        total: dict[str, int] = {}
        for j, timeline in enumerate(timelines):
            while at[j] < len(timeline) and timeline[at[j]][0] <= t:
                latest[j] = timeline[at[j]][1]
                at[j] += 1
            for status, n in latest[j].items():
                total[status] = total.get(status, 0) + n
        out.append((t, total))
    return out


_Entry = tuple[int, int, int, int, Any]  # (time µs, kind, agent/test index, seq, argument)


class _Agenda:
    """Pending events in the order of one heap of ``_Entry`` tuples, as a calendar queue.

    A small heap holds the current second; later seconds are plain lists, heapified
    when reached. A million-test run keeps hundreds of thousands of events pending,
    and every pop of one heap that size walks ~18 levels of cache misses.
    """

    __slots__ = ("current", "later", "slot", "slots")
    WIDTH = 1_000_000  # µs per slot

    def __init__(self) -> None:
        self.current: list[_Entry] = []
        self.slot = -1
        self.later: dict[int, list[_Entry]] = {}
        self.slots: list[int] = []

    def push(self, entry: _Entry) -> None:
        slot = entry[0] // self.WIDTH
        if slot <= self.slot:
            heapq.heappush(self.current, entry)
            return
        bucket = self.later.get(slot)
        if bucket is None:
            self.later[slot] = [entry]
            heapq.heappush(self.slots, slot)
        else:
            bucket.append(entry)

    def first(self) -> _Entry | None:
        """The earliest entry, or None; ``pop`` then removes exactly this one."""
        if not self.current:
            if not self.slots:
                return None
            self.slot = heapq.heappop(self.slots)
            self.current = self.later.pop(self.slot)
            heapq.heapify(self.current)
        return self.current[0]

    def pop(self) -> _Entry:
        return heapq.heappop(self.current)


class _Agent:
    __slots__ = ("beat", "dead", "id", "index", "job", "phase", "silent_until", "waiting_for_job")

    def __init__(self, agent_id: str, index: int, phase: int, beat: int) -> None:
        self.id = agent_id
        self.index = index
        self.phase = phase
        self.beat = beat
        self.job: _Job | None = None
        self.dead = False
        self.silent_until = 0
        self.waiting_for_job = False


class _Job:
    __slots__ = (
        "change_at",
        "done",
        "duplicate",
        "fail_at",
        "last_poll",
        "poll_at",
        "reorder",
        "run_started",
        "silence",
        "silence_for",
        "slow",
        "stage",
        "stopping",
        "test_id",
    )

    def __init__(self, test_id: str) -> None:
        self.test_id = test_id
        self.stage = -1
        self.fail_at = -1
        self.slow = 1.0
        self.silence_for = 0
        self.duplicate = False
        self.reorder = False
        self.silence = INF
        self.stopping = False
        self.last_poll = -INF
        self.poll_at = INF
        self.change_at = INF
        self.done = False
        self.run_started = 0


class Simulator:
    """One shard: ``run()`` drives the engine until every test ends or the horizon."""

    hash_batch = 4096  # log lines hashed per sha256 update

    def __init__(
        self,
        scenario: Scenario,
        *,
        check: bool = True,
        trace: TextIO | None = None,
        progress: Callable[[int, int, float], None] | None = None,
        timeline_every: float | None = None,
        shard: int = 0,
        first_test: int = 0,
    ) -> None:
        import random

        self.sc = scenario
        self.check = check
        self.trace = trace
        self.progress = progress
        self.timeline_every = timeline_every
        self.rng = random.Random(f"{scenario.seed}/{shard}")
        self.first_test = first_test
        self.clock = ManualClock(BASE)
        self.metrics = Metrics(tests=scenario.tests)
        self._hash = hashlib.sha256()
        self._lines: list[str] = []
        self.store = MemoryStore(keep_log=False, on_log=self._on_log)
        numbers = itertools.count(1)
        prefix = f"s{shard}-"
        self.engine = Engine(
            self.store,
            clock=self.clock,
            policies=Policies(
                lost_after=scenario.lost_after,
                lost_expiry=scenario.lost_expiry,
                contact_every=scenario.contact_every,
            ),
            ids=lambda kind: f"{kind}-{prefix}{next(numbers):08d}",
        )
        st = scenario.stages
        self._stage_dists = (
            st.initiated,
            st.preparing,
            st.waiting,
            st.running,
            st.finishing,
            st.post_processing,
        )
        f = scenario.faults
        self.faulty = any((f.failure, f.slow, f.duplicate, f.reorder, f.crash, f.partition))
        ticker = (
            scenario.lost_after / 4 if scenario.tick_interval is None else scenario.tick_interval
        )
        self.tick_every = _us(ticker)
        self.interval = _us(scenario.request_interval)
        self.reporter = _us(scenario.reporter_interval)
        self.agents = [
            _Agent(
                f"agent-{shard}-{i:06d}",
                i,
                self.rng.randrange(self.interval),
                self.rng.randrange(self.reporter),
            )
            for i in range(scenario.agents)
        ]
        self.agent_of: dict[str, _Agent] = {}
        self.specs: dict[str, TestSpec] = {}
        self.stop_requested: dict[str, int] = {}
        self.terminal = 0
        self.agenda = _Agenda()
        self.seq = itertools.count()
        lost = _us(scenario.lost_after) / self.interval
        self.checkpoint = self.interval * max(1, math.ceil(lost) - 1)
        self.now = 0

    # --- bookkeeping --------------------------------------------------------------

    def _push(self, t: int, kind: int, key: int, arg: Any) -> None:
        """Order: time, kind, then agent/test index ``key``: the same in every polling mode."""
        self.agenda.push((t, kind, key, next(self.seq), arg))

    def _on_log(self, r: LogRecord) -> None:
        m = self.metrics
        m.events += 1
        outcome = r.outcome
        if outcome is _ACCEPTED:
            m.accepted += 1
        elif outcome is not _NOTED:
            m.rejected += 1
        lines = self._lines
        lines.append(
            f"{r.seq}|{r.test_id}|{r.at!r}|{r.actor}|{r.event}|{r.payload!r}|"
            f"{_NAME[r.from_status]}|{_NAME[r.to_status]}|{_VALUE[outcome]}|{r.version}\n"
        )
        if len(lines) >= self.hash_batch:
            self._flush_hash()
        if self.trace is not None:
            import json

            self.trace.write(json.dumps(r.to_data(), sort_keys=True) + "\n")
        if outcome is not _ACCEPTED:
            return
        if r.event == "lose":
            agent = self.agent_of.get(r.test_id)
            if agent is not None and agent.dead:
                m.lost_true += 1
            else:
                m.lost_false += 1
        to = r.to_status
        if to in TERMINAL and r.from_status not in TERMINAL:
            self.terminal += 1
            asked = self.stop_requested.pop(r.test_id, None)
            if asked is not None:
                m.stop_latencies.append((self.now - asked) / US)
        if self.check:
            state = self.store.get_test(r.test_id)
            if state is not None:
                m.invariant_violations += len(check_state(state))

    def _flush_hash(self) -> None:
        """Hash lines in batches: one update of many lines equals many updates."""
        self._hash.update("".join(self._lines).encode())
        self._lines.clear()

    def _poll_after(self, agent: _Agent, t: int) -> int:
        """The agent's first poll strictly after ``t``."""
        return agent.phase + ((t - agent.phase) // self.interval + 1) * self.interval

    # --- agent behaviour ------------------------------------------------------------

    def _schedule_poll(self, agent: _Agent, job: _Job, t: int) -> None:
        """Schedule the next poll that can matter (or every poll with full_polling)."""
        if job.done or job.stopping:
            return
        nxt = self._poll_after(agent, t)
        if not self.sc.full_polling:
            best = self._poll_after(agent, max(t, job.last_poll + self.checkpoint) - 1)
            if job.change_at < INF:
                best = min(best, self._poll_after(agent, job.change_at))
            if t < job.silence < INF:
                last = self._poll_after(agent, job.silence) - self.interval
                if last > t:
                    best = min(best, last)
            nxt = max(nxt, best)
        if nxt < job.poll_at or job.poll_at <= t:
            job.poll_at = nxt
            self._push(nxt, POLL, agent.index, agent)

    def _start_job(self, agent: _Agent, test_id: str, t: int) -> None:
        job = _Job(test_id)
        agent.job = job
        self.agent_of[test_id] = agent
        if self.faulty:
            self._roll_faults(agent, job, t)
        self._enter(agent, job, 0, t)
        if self.sc.full_polling:
            self._push(self._beat_after(agent, t), HEARTBEAT, agent.index, (agent, job))

    def _roll_faults(self, agent: _Agent, job: _Job, t: int) -> None:
        """Draw this job's faults (no draws at all in a fault-free scenario)."""
        sc, rng, faults = self.sc, self.rng, self.sc.faults
        if rng.random() < faults.failure:
            job.fail_at = rng.randrange(len(_STAGES))
        if rng.random() < faults.slow:
            job.slow = faults.slow_factor
        job.duplicate = rng.random() < faults.duplicate
        job.reorder = rng.random() < faults.reorder
        roll = rng.random()
        if roll < faults.crash:
            job.silence = t + _us(rng.uniform(0, sc.time_limit))
            job.silence_for = INF
        elif roll < faults.crash + faults.partition:
            job.silence = t + _us(rng.uniform(0, sc.time_limit))
            job.silence_for = _us(faults.partition_duration.sample(rng))
        if job.silence < INF:
            self._push(job.silence, SILENCE, agent.index, (agent, job))
            last_beat = self._beat_after(agent, job.silence) - self.reporter
            if last_beat > t and not sc.full_polling:  # the last contact before silence
                self._push(last_beat, LAST_BEAT, agent.index, (agent, job))

    def _beat_after(self, agent: _Agent, t: int) -> int:
        return agent.beat + ((t - agent.beat) // self.reporter + 1) * self.reporter

    def _duration(self, stage: int, job: _Job) -> int:
        return round(self._stage_dists[stage].sample(self.rng) * job.slow * US)

    def _enter(self, agent: _Agent, job: _Job, stage: int, t: int) -> None:
        """Claim stage ``stage`` (with faults) and schedule its end."""
        previous = job.stage
        job.stage = stage
        status = _STAGES[stage]
        self.engine.claim(job.test_id, agent.id, status)
        job.last_poll = max(job.last_poll, t)
        if job.duplicate:
            self.engine.claim(job.test_id, agent.id, status)
        if job.reorder and previous >= 0:
            self.engine.claim(job.test_id, agent.id, _STAGES[previous])
        if status is Status.WAITING:
            job.change_at = t  # the next poll answers RUN_IN
            self._schedule_poll(agent, job, t)
            return
        if status is Status.RUNNING:
            job.run_started = t
            length = self._duration(stage, job)
            self._push(
                t + min(length, _us(self.sc.time_limit)), STAGE_END, agent.index, (agent, job)
            )
        else:
            self._push(t + self._duration(stage, job), STAGE_END, agent.index, (agent, job))
        self._schedule_poll(agent, job, t)

    def _finish(self, agent: _Agent, job: _Job, t: int) -> None:
        job.done = True
        agent.job = None
        del self.agent_of[job.test_id]  # only active tests need it: keeps a big run small
        self._push(self._poll_after(agent, t), POLL_JOB, agent.index, agent)

    def _stage_end(self, agent: _Agent, job: _Job, t: int) -> None:
        if job.done or job.stopping:
            return
        if job.fail_at == job.stage:
            self.engine.claim(
                job.test_id,
                agent.id,
                Status.FAILED,
                f"simulated failure in {_STAGES[job.stage].name}",
            )
            self._finish(agent, job, t)
            return
        status = _STAGES[job.stage]
        if status is Status.RUNNING and t - job.run_started >= _us(self.sc.time_limit):
            self.engine.report_imbalance(
                job.test_id, agent.id, at=BASE + t / US, rps=1000, comment="time limit reached"
            )
            self.engine.claim(job.test_id, agent.id, Status.AUTOSTOPPED)
            self._finish(agent, job, t)
            return
        if job.stage + 1 < len(_STAGES):
            self._enter(agent, job, job.stage + 1, t)
            return
        self.engine.claim(job.test_id, agent.id, Status.DONE)
        self._finish(agent, job, t)

    def _poll(self, agent: _Agent, job: _Job, t: int) -> None:
        if job.done or job.stopping or job.poll_at != t:
            return
        job.poll_at = INF
        job.last_poll = t
        if t >= job.change_at:
            job.change_at = INF
        signal = self.engine.signal(job.test_id, agent.id)
        if signal.kind is SignalKind.STOP:
            job.stopping = True
            shutdown = _us(self.sc.stages.shutdown.sample(self.rng) * job.slow)
            self._push(t + shutdown, SHUTDOWN_END, agent.index, (agent, job))
            if not self.sc.full_polling:
                self._push(self._beat_after(agent, t), HEARTBEAT, agent.index, (agent, job))
            return
        if signal.kind is SignalKind.RUN_IN and _STAGES[job.stage] is Status.WAITING:
            self._push(t + self._duration(2, job), STAGE_END, agent.index, (agent, job))
            return
        self._schedule_poll(agent, job, t)

    # --- the loop -------------------------------------------------------------------

    def _handle(self, t: int, kind: int, arg: Any) -> None:
        engine = self.engine
        if kind == USER_STOP:
            test_id = arg[1]
            try:
                op = engine.stop(test_id, principal="sim-user")
            except LoadtestError:
                return
            if op.done:
                self.metrics.stop_latencies.append(0.0)  # CREATED or LOST: ended at once
            else:
                self.stop_requested[test_id] = t
                agent = self.agent_of.get(test_id)
                if agent is not None and agent.job is not None and agent.job.test_id == test_id:
                    agent.job.change_at = min(agent.job.change_at, t)
                    self._schedule_poll(agent, agent.job, t)
            return
        agent = arg[0] if isinstance(arg, tuple) else arg
        if agent.dead:
            return
        if t < agent.silent_until:
            back = agent.silent_until
            if kind == HEARTBEAT:
                back = self._beat_after(agent, back - 1)  # heartbeats keep their rhythm
            self._push(back, kind, agent.index, arg)  # delivered when the network returns
            return
        if kind == STAGE_END:
            self._stage_end(agent, arg[1], t)
        elif kind == POLL:
            if agent.job is not None:
                self._poll(agent, agent.job, t)
        elif kind == POLL_JOB:
            if agent.job is None:
                job = engine.next_job(agent.id)
                if job is None:
                    agent.waiting_for_job = True
                else:
                    self._start_job(agent, job.id, t)
        elif kind == HEARTBEAT:
            job = arg[1]
            if agent.job is job and (job.stopping or self.sc.full_polling):
                engine.agent_heartbeat(agent.id, AgentStatus.TESTING)
                self._push(t + self.reporter, HEARTBEAT, agent.index, arg)
        elif kind == LAST_BEAT:
            job = arg[1]
            if agent.job is job and not job.stopping:
                engine.agent_heartbeat(agent.id, AgentStatus.TESTING)
        elif kind == SHUTDOWN_END:
            job = arg[1]
            if not job.done:
                self.engine.claim(job.test_id, agent.id, Status.STOPPED)
                self._finish(agent, job, t)
        elif kind == SILENCE:
            job = arg[1]
            if agent.job is not job or job.done:
                return
            if job.silence_for == INF:
                agent.dead = True
            else:
                agent.silent_until = t + job.silence_for
                job.change_at = agent.silent_until  # the first poll back recovers
                job.silence = INF
                self._push(agent.silent_until, RETURN, agent.index, agent)
        elif kind == RETURN:
            job = agent.job
            if job is not None and not job.done:
                job.poll_at = INF
                self._schedule_poll(agent, job, t)

    def _create(self, index: int, t: int) -> None:
        sc = self.sc
        agent = self.agents[index % len(self.agents)]
        spec = self.specs.get(agent.id)
        if spec is None:  # validated once per agent, then shared (specs are immutable)
            spec = self.specs[agent.id] = TestSpec.from_data(
                {
                    "configurations": [{"agent_selector": {"agent_id": agent.id}}],
                    "details": {"name": f"sim-{agent.id}"},
                }
            )
        test_id = self.engine.create_id(spec, principal="sim-user")
        if self.rng.random() < sc.stop_probability:
            self._push(t + _us(sc.stop_after.sample(self.rng)), USER_STOP, index, (index, test_id))
        for at, which in sc.stop_at:
            if which == self.first_test + index:
                self._push(max(_us(at), t), USER_STOP, index, (index, test_id))
        if agent.job is None and (agent.waiting_for_job or index < len(self.agents)):
            agent.waiting_for_job = False
            self._push(self._poll_after(agent, t - 1), POLL_JOB, agent.index, agent)

    def run(self) -> Metrics:
        """Run to the end; the cyclic GC is paused meanwhile (see docs/simulation.md)."""
        import gc

        paused = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if paused:
                gc.enable()

    def _run(self) -> Metrics:
        import time

        sc = self.sc
        self._started = time.perf_counter()
        rate = sc.arrival_rate
        tests = sc.tests
        # Creations are a sorted stream merged with the agenda instead of n entries in it:
        # kind CREATE sorts first at equal times, and creations are in index order.
        created = 0
        create_t = 0
        horizon = _us(sc.horizon)
        agenda, engine, clock = self.agenda, self.engine, self.clock
        handle, create, first, pop = self._handle, self._create, agenda.first, agenda.pop
        every = _us(self.timeline_every) if self.timeline_every else INF
        next_sample = 0 if self.timeline_every else INF
        done_events = 0
        clock_at = clock.now()
        last_deadline, due = None, INF
        while True:
            head = first()
            if created < tests and (head is None or create_t <= head[0]):
                t = create_t
                from_agenda = False
            elif head is not None:
                t = head[0]
                from_agenda = True
            else:
                t = INF  # only deadlines left: silent agents' tests go LOST (or expire)
                from_agenda = True
            deadline = engine.next_deadline()
            if deadline is not None:
                if deadline != last_deadline:
                    last_deadline, due = deadline, self._tick_due(deadline)
                if due <= t and due <= horizon:
                    at = deadline if not self.tick_every else BASE + due / US
                    if at > clock_at:
                        clock_at = at
                        clock.set(at)
                    self.now = max(self.now, due)
                    engine.tick()
                    if self.terminal >= tests:
                        break
                    continue
            if t > horizon:
                break
            if t > self.now:
                self.now = t
                at = BASE + t / US
                if at > clock_at:  # the sim is the clock's only writer
                    clock_at = at
                    clock.set(at)
            while self.now >= next_sample:
                self._sample(next_sample)
                next_sample += every
            if from_agenda:
                _, kind, _, _, arg = pop()
                handle(t, kind, arg)
            else:
                create(created, t)
                created += 1
                if rate is not None:
                    create_t = _us(created / rate)
            done_events += 1
            if self.progress is not None and done_events % 20000 == 0:
                self.progress(self.terminal, tests, self.now / US)
            if self.terminal >= tests:
                break
        return self.finish()

    def finish(self) -> Metrics:
        """The metrics of the run so far: at its end, or after an interruption."""
        import time

        m = self.metrics
        m.wall_seconds = time.perf_counter() - getattr(self, "_started", time.perf_counter())
        m.simulated_seconds = self.now / US
        counts: dict[str, int] = {}
        for state in self.store.iter_tests():
            counts[state.status.name] = counts.get(state.status.name, 0) + 1
        m.final_status_counts = counts
        m.stuck = sum(v for k, v in counts.items() if Status[k] not in TERMINAL)
        self._flush_hash()
        m.event_log_sha256 = self._hash.hexdigest()
        if self.timeline_every:
            self._sample(self.now)
        if self.progress is not None:
            self.progress(self.terminal, self.sc.tests, self.now / US)
        return m

    def _tick_due(self, deadline: float) -> int:
        """When the ticker fires ``deadline``: at once, or at the ticker's next beat."""
        due = math.ceil((deadline - BASE) * US)
        every = self.tick_every
        if every:
            due = -(-due // every) * every
            while BASE + due / US < deadline:  # float rounding must not make a beat early
                due += every
        return due

    def _sample(self, t: int) -> None:
        counts: dict[str, int] = {}
        for state in self.store.iter_tests():
            counts[state.status.name] = counts.get(state.status.name, 0) + 1
        self.metrics.timeline.append((t / US, counts))


class Shard(NamedTuple):
    """One independent part of a run: its own engine, tests and agents."""

    scenario: Scenario
    number: int
    first_test: int


def plan_shards(scenario: Scenario) -> list[Shard]:
    """Split a run into shards of at most ``shard_size`` tests, each with at least one agent.

    The plan depends on the scenario only, never on the number of workers, so a
    seed gives the same event log hash however many processes run it.
    """
    count = max(1, min(-(-scenario.tests // scenario.shard_size), scenario.agents))
    if count == 1:
        return [Shard(scenario, 0, 0)]
    rate = scenario.arrival_rate
    shards, first = [], 0
    for i in range(count):
        tests = scenario.tests // count + (1 if i < scenario.tests % count else 0)
        agents = scenario.agents // count + (1 if i < scenario.agents % count else 0)
        part = scenario.with_overrides(
            tests=tests,
            agents=agents,
            arrival_rate=None if rate is None else rate * tests / scenario.tests,
        )
        shards.append(Shard(part, i, first))
        first += tests
    return shards


def _run_shard(args: tuple[Shard, bool, float | None]) -> Metrics:
    shard, check, timeline_every = args
    return Simulator(
        shard.scenario,
        check=check,
        shard=shard.number,
        first_test=shard.first_test,
        timeline_every=timeline_every,
    ).run()


class Interrupted(Exception):
    """A run stopped by Ctrl-C; ``metrics`` covers the shards that ran, the last one partly."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__("interrupted")
        self.metrics = metrics


def _ignore_sigint() -> None:
    """In pool workers: Ctrl-C is the parent's to handle (no traceback per worker)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def simulate(
    scenario: Scenario,
    *,
    workers: int = 1,
    executor: Any = None,
    check: bool = True,
    trace: TextIO | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    timeline_every: float | None = None,
) -> Metrics:
    """Run a scenario's shards (``plan_shards``) and merge their metrics.

    With ``workers <= 1`` and no ``executor`` the shards run one after another in
    this process (``trace`` gets their logs in shard order); otherwise they go to
    ``executor`` (any concurrent.futures executor, e.g. a Dask client's) or to a
    process pool of ``workers``, and ``trace`` is refused.

    Ctrl-C raises :class:`Interrupted` with the metrics of what ran: finished
    shards, and in one process the interrupted shard as far as it got.
    """
    import time

    wall = time.perf_counter()
    shards = plan_shards(scenario)
    total = scenario.tests
    parts: list[Metrics] = []
    ended = 0
    if workers <= 1 and executor is None:
        sim = None
        try:
            for shard in shards:
                report = None
                if progress is not None:
                    report = functools.partial(_offset_progress, progress, ended, total)
                sim = Simulator(
                    shard.scenario,
                    check=check,
                    trace=trace,
                    progress=report,
                    timeline_every=timeline_every,
                    shard=shard.number,
                    first_test=shard.first_test,
                )
                parts.append(sim.run())
                ended += sim.terminal
                sim = None
        except KeyboardInterrupt:
            if sim is not None:
                parts.append(sim.finish())
            raise Interrupted(_partial(parts, wall)) from None
    else:
        if trace is not None:
            raise ValueError("a trace needs the shards in one process: workers=1, no executor")
        jobs = [(shard, check, timeline_every) for shard in shards]
        pool = None
        if executor is None:
            import concurrent.futures

            pool = executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=min(workers, len(jobs)), initializer=_ignore_sigint
            )
        futures = []
        try:
            futures = [executor.submit(_run_shard, job) for job in jobs]
            for future in futures:
                part = future.result()
                parts.append(part)
                ended += part.tests - part.stuck
                if progress is not None:
                    progress(ended, total, part.simulated_seconds)
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            done = [
                f.result()
                for f in futures[len(parts) :]
                if f.done() and not f.cancelled() and f.exception() is None
            ]
            if pool is not None:  # shards still running are not waited for
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
            raise Interrupted(_partial([*parts, *done], wall)) from None
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    merged = Metrics.merge(parts)
    merged.tests = total
    merged.wall_seconds = time.perf_counter() - wall
    return merged


def _partial(parts: list[Metrics], wall: float) -> Metrics:
    import time

    merged = Metrics.merge(parts) if parts else Metrics()
    merged.wall_seconds = time.perf_counter() - wall
    return merged


def _offset_progress(
    report: Callable[[int, int, float], None], before: int, total: int, done: int, _: int, t: float
) -> None:
    report(before + done, total, t)
