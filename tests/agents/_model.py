"""A model of the real Yandex agent (``ulta`` 1.1.11) making its calls through the official stubs.

Read from the agent's source (never copied; see docs/agents.md) and checked
against the real agent run against ``serve``:

- start-up: the agent id comes from its cache file if present, else from
  ``ExternalAgentRegister``; a heartbeat (``AgentService.ClaimStatus``) at once,
  then every 10 s with the tank's status: READY_FOR_TEST with no tank (also
  while test data downloads and while uploads drain after the run),
  PREPARING_TEST, TESTING while the generator lives; no heartbeat at all for an
  anonymous agent (``ulta run`` without a name);
- ``JobService.Get`` every second while idle (NOT_FOUND = no job); by job id
  with no agent id for an anonymous agent;
- a silent gap (test data download, generator set-up) with no job call;
- then every second: ``GetSignal`` and a ``ClaimStatus`` of the tank's status
  (every cycle, not only on change); STOP stops the generator (no poll while it
  shuts down) and claims STOPPED; RUN_IN (``run_in`` at most the poll
  interval) starts shooting, nothing else does;
- ``Job.config`` is ``json.loads``-ed and every top-level value read as a
  generator section (``.get``): anything else crashes the agent before it
  claims (``ConfigCrash``);
- uploads in background threads: event logs every 5 s (one event per call,
  labelled with the test id while a job runs, none logged during the drain),
  trails every second while shooting, monitoring (empty without telegraf,
  ``Plan.monitoring``), each with the agent's back-off (2 s, doubling, max
  600 s; a round with nothing to send counts as a failure);
- at the end of the load the uploaders drain (the next allowed round of each)
  before the final claim, with the imbalance ``TestService.Update`` first after
  an autostop; after STOP the claim comes first, then the drain.

Time is virtual: the world advances the engine's ``ManualClock`` and ticks the
engine between calls, so minutes of agent life take milliseconds, while every
call is a real gRPC call to a real server on 127.0.0.1.
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf import field_mask_pb2
from yandex.cloud.loadtesting.agent.v1 import (
    agent_registration_service_pb2,
    agent_registration_service_pb2_grpc,
    agent_service_pb2,
    agent_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
    monitoring_service_pb2,
    monitoring_service_pb2_grpc,
    trail_service_pb2,
    trail_service_pb2_grpc,
)
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2 as agent_test_pb2
from yandex.cloud.loadtesting.agent.v1 import test_service_pb2_grpc as agent_test_grpc
from yandex.cloud.loadtesting.api.v1 import (
    config_service_pb2,
    config_service_pb2_grpc,
    test_service_pb2,
    test_service_pb2_grpc,
)
from yandex.cloud.loadtesting.api.v1.test import agent_selector_pb2, single_agent_configuration_pb2

from loadtest_core import Engine, ManualClock, Status
from loadtest_core.grpc import UploadServiceStub

AGENT_VERSION = "1.1.11"
# The agent retries these three times, 50 ms apart (virtual time: at once).
RETRIED = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.ABORTED,
}
# Answers to a job call that make the agent abandon the job it holds.
ABANDON = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND}
JOB_CALLS = {
    "GetSignal",
    "JobClaimStatus",
    "TestUpdate",
    "TrailCreate",
    "AddMetric",
    "ReportEventLogs",
}
GENERATOR_CONFIG = """\
pandora:
  enabled: true
  package: yandextank.plugins.Pandora
  config_content:
    pools:
      - id: HTTP
        gun: {type: http, target: "127.0.0.1:8080"}
        ammo: {type: uri, file: ammo.uri}
        schedule: [{type: const, ops: 5, duration: 20s}]
telegraf: {enabled: false, package: yandextank.plugins.Telegraf}
"""
"""A generator config as a user loads it with ``yc loadtesting test-config create``."""


T = TypeVar("T")


class Killed(Exception):
    """The agent process is gone: it makes no call any more."""


class ConfigCrash(Exception):
    """What the real agent does with a ``Job.config`` that is not a mapping of sections."""


@dataclass
class CallRecord:
    t: float
    method: str
    code: grpc.StatusCode
    job_id: str = ""
    detail: str = ""


@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    run: Callable[[], float | None] = field(compare=False)
    alive: list[bool] = field(compare=False, default_factory=lambda: [True])


class World:
    """The server side and virtual time: a clock, an engine, stubs on a real channel."""

    def __init__(self, engine: Engine, clock: ManualClock, channel: grpc.Channel) -> None:
        self.engine, self.clock = engine, clock
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self.history: dict[str, list[tuple[float, Status]]] = {}
        self.connect(channel)

    def connect(self, channel: grpc.Channel) -> None:
        """(Re)point every stub at ``channel`` (a restarted server listens elsewhere)."""
        self.registration = agent_registration_service_pb2_grpc.AgentRegistrationServiceStub(
            channel
        )
        self.agents = agent_service_pb2_grpc.AgentServiceStub(channel)
        self.jobs = job_service_pb2_grpc.JobServiceStub(channel)
        self.trails = trail_service_pb2_grpc.TrailServiceStub(channel)
        self.monitoring = monitoring_service_pb2_grpc.MonitoringServiceStub(channel)
        self.agent_tests = agent_test_grpc.TestServiceStub(channel)
        self.tests = test_service_pb2_grpc.TestServiceStub(channel)
        self.configs = config_service_pb2_grpc.ConfigServiceStub(channel)
        self.uploads = UploadServiceStub(channel)

    @property
    def now(self) -> float:
        return self.clock.now()

    def every(self, first: float, run: Callable[[], float | None]) -> list[bool]:
        """Call ``run`` at now+``first``, then after each delay it returns (None: no more)."""
        timer = _Timer(self.now + first, next(self._seq), run)
        heapq.heappush(self._timers, timer)
        return timer.alive

    def sleep(self, seconds: float) -> None:
        """Let virtual time pass: background calls and engine deadlines fire on the way."""
        end = self.now + seconds
        while self._timers and self._timers[0].due <= end:
            timer = heapq.heappop(self._timers)
            if not timer.alive[0]:
                continue
            self._advance_to(timer.due)
            delay = timer.run()
            if delay is not None and timer.alive[0]:
                timer.due = self.now + delay
                timer.seq = next(self._seq)
                heapq.heappush(self._timers, timer)
        self._advance_to(end)

    def _advance_to(self, t: float) -> None:
        if t > self.now:
            self.clock.set(t)
        self.engine.tick()
        self.observe()

    def observe(self) -> None:
        """Note each watched test's status when it changed since the last look."""
        for test_id, seen in self.history.items():
            status = self.status(test_id)
            if not seen or seen[-1][1] is not status:
                seen.append((self.now, status))

    def statuses(self, test_id: str) -> list[Status]:
        return [status for _, status in self.history[test_id]]

    # --- the user side ------------------------------------------------------------

    def create_config(self, yaml_text: str, user_md: Any) -> str:
        """``ConfigService.Create``, as ``yc loadtesting test-config create`` does; its id."""
        op = self.configs.Create(
            config_service_pb2.CreateConfigRequest(
                folder_id="folder-1", yaml_string=yaml_text, name="generator"
            ),
            metadata=user_md,
        )
        meta = config_service_pb2.CreateConfigMetadata()
        op.metadata.Unpack(meta)
        return str(meta.config_id)

    def create_test(
        self, *, agent_id: str | None, user_md: Any, config_id: str | None = None
    ) -> str:
        """A test for one agent (``None``: any anonymous agent) naming a stored config."""
        selector = (
            agent_selector_pb2.AgentSelector(anonymous_agent=True)
            if agent_id is None
            else agent_selector_pb2.AgentSelector(agent_id=agent_id)
        )
        if config_id is None:
            config_id = self.create_config(GENERATOR_CONFIG, user_md)
        op = self.tests.Create(
            test_service_pb2.CreateTestRequest(
                configurations=[
                    single_agent_configuration_pb2.SingleAgentConfiguration(
                        config_id=config_id, agent_selector=selector
                    )
                ]
            ),
            metadata=user_md,
        )
        meta = test_service_pb2.CreateTestMetadata()
        op.metadata.Unpack(meta)
        self.history[meta.test_id] = []
        self.observe()
        return str(meta.test_id)

    def status(self, test_id: str) -> Status:
        summary = self.engine.get(test_id).summary
        assert summary is not None
        return summary.status

    def stop_test(self, test_id: str, user_md: Any) -> None:
        self.tests.Stop(test_service_pb2.StopTestRequest(test_id=test_id), metadata=user_md)


def read_job_config(text: str) -> dict[str, Any]:
    """``Job.config`` as the agent reads it: ``json.loads``, then ``.get`` on every section."""
    config = json.loads(text)
    if not isinstance(config, dict) or not all(isinstance(v, dict) for v in config.values()):
        raise ConfigCrash(f"AttributeError: the job's config {text[:60]!r} has no sections")
    return config


@dataclass
class Plan:
    """What the agent's load generator does with a job (seconds of virtual time)."""

    download: float = 0.0
    prepare: float = 1.0
    shoot: float = 20.0
    finishing: float = 1.0
    post_process: float = 0.0
    outcome: str = "FINISHED"
    imbalance_rps: int | None = None
    stop_shutdown: float = 2.0
    monitoring: bool = False


class _Uploader(Generic[T]):
    """One of the agent's ``Reporter`` threads: a queue, a round interval, back-off."""

    def __init__(self, send: Callable[[list[T]], bool], interval: float) -> None:
        self.send, self.interval = send, interval
        self.queue: list[T] = []
        self.next_attempt = 0.0
        self.delay = 2.0
        self.end_marker = False
        self.drained = False

    def round(self, now: float, force: bool = False) -> None:
        if not force and now < self.next_attempt:
            return
        items, self.queue = self.queue, []
        ok = bool(items) and self.send(items)
        if self.end_marker:
            self.drained = True  # the marker is handled even when the send fails
        if not ok and items:
            self.queue = items + self.queue
        if ok:
            self.next_attempt, self.delay = 0.0, 2.0
        else:  # an empty round counts as a failure too (the agent's own accounting)
            self.next_attempt = now + self.delay
            self.delay = min(self.delay * 2, 600.0)


class Agent:
    """One ``ulta`` process: start it, let it fetch and run jobs, kill it."""

    def __init__(
        self,
        world: World,
        token: str,
        *,
        name: str | None = "tank-1",
        folder_id: str = "folder-1",
        cache: Path | None = None,
        request_interval: float = 1.0,
        reporter_interval: float = 10.0,
    ) -> None:
        self.world, self.token = world, token
        self.name, self.folder_id, self.cache = name, folder_id, cache
        self.request_interval, self.reporter_interval = request_interval, reporter_interval
        self.agent_id: str | None = None
        self.calls: list[CallRecord] = []
        self.tank: str | None = None  # the generator's status, None without a tank
        self.draining = False
        self.held: set[str] = set()
        self.job_configs: dict[str, dict[str, Any]] = {}
        self.current: str | None = None  # the job in the agent's log labels
        self.stopped_by_server = False
        self.killed = False
        self._timers: list[list[bool]] = []
        self._event_logs: _Uploader[str] = _Uploader(self._send_events, 5.0)

    # --- plumbing -------------------------------------------------------------------

    def _md(self, version: bool = True) -> list[tuple[str, str]]:
        md = [("authorization", f"Bearer {self.token}")]
        if version:
            md.append(("agent-version", AGENT_VERSION))
        return md

    def _call(self, method: str, fn: Any, request: Any, job_id: str = "", **kw: Any) -> Any:
        """One agent call, retried like the agent does; every attempt is recorded."""
        if self.killed:
            raise Killed
        for attempt in range(3):
            try:
                response = fn(request, timeout=30, **kw)
            except grpc.RpcError as exc:
                code = exc.code()
                self.calls.append(
                    CallRecord(self.world.now, method, code, job_id, exc.details() or "")
                )
                if code in RETRIED and attempt < 2:
                    continue
                raise
            self.calls.append(CallRecord(self.world.now, method, grpc.StatusCode.OK, job_id))
            return response
        raise AssertionError("unreachable")

    # --- start, heartbeat, event logs ----------------------------------------------------

    @property
    def anonymous(self) -> bool:
        return not self.name

    def start(self) -> None:
        """Cached id or registration, then the heartbeat and event-log threads."""
        if self.anonymous:
            return
        if self.cache is not None and self.cache.exists():
            self.agent_id = self.cache.read_text()[:50]
        else:
            op = self._call(
                "ExternalAgentRegister",
                self.world.registration.ExternalAgentRegister,
                agent_registration_service_pb2.ExternalAgentRegisterRequest(
                    folder_id=self.folder_id, name=self.name or "", agent_version=AGENT_VERSION
                ),
                metadata=self._md(version=False),
            )
            meta = agent_registration_service_pb2.ExternalAgentRegisterMetadata()
            op.metadata.Unpack(meta)
            self.agent_id = meta.agent_instance_id
            if self.cache is not None:
                self.cache.write_text(self.agent_id)
        self._timers.append(self.world.every(0.0, self._heartbeat))
        self._timers.append(self.world.every(5.0, self._event_round))

    def heartbeat_status(self) -> str:
        if self.tank is None or self.draining:
            return "READY_FOR_TEST"
        return "PREPARING_TEST" if self.tank == "PREPARING" else "TESTING"

    def _heartbeat(self) -> float | None:
        if self.killed:
            return None
        with suppress(grpc.RpcError):
            self._call(
                "AgentClaimStatus",
                self.world.agents.ClaimStatus,
                agent_service_pb2.ClaimAgentStatusRequest(
                    agent_instance_id=self.agent_id or "",
                    status=agent_service_pb2.ClaimAgentStatusRequest.Status.Value(
                        self.heartbeat_status()
                    ),
                ),
                metadata=self._md(),
            )
        return self.reporter_interval

    def _event_round(self) -> float | None:
        if self.killed:
            return None
        if not self.draining:  # nothing is logged while the uploaders drain (seen)
            self._event_logs.queue.extend([self.current or ""] * 3)
        self._event_logs.round(self.world.now)
        return self._event_logs.interval

    def _send_events(self, items: list[str]) -> bool:
        ok = True
        for test_id in items:  # log_max_chunk_size unset: one event per call
            labels = {"test_id": test_id} if test_id else {}
            try:
                self._call(
                    "ReportEventLogs",
                    self.world.agents.ReportEventLogs,
                    agent_service_pb2.ReportEventLogsRequest(
                        agent_instance_id=self.agent_id or "",
                        events=[agent_service_pb2.EventLog(message="log line", metadata=labels)],
                    ),
                    test_id,
                    metadata=self._md(version=False),
                )
            except grpc.RpcError:
                ok = False
        return ok

    def kill(self) -> None:
        """SIGKILL: nothing more is sent, by any thread."""
        self.killed = True
        for alive in self._timers:
            alive[0] = False
        self._timers.clear()

    # --- jobs ---------------------------------------------------------------------------

    def fetch(self, job_id: str | None = None) -> str | None:
        """``JobService.Get``: the job's id, or None (NOT_FOUND: no job yet)."""
        request = job_service_pb2.GetJobRequest(agent_instance_id=self.agent_id or "")
        if job_id:
            request.job_id = job_id
        try:
            job = self._call(
                "JobGet", self.world.jobs.Get, request, job_id or "", metadata=self._md()
            )
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise
        if not job.id:
            return None
        self.job_configs[job.id] = read_job_config(job.config)
        self.held.add(job.id)
        return str(job.id)

    def wait_for_job(self, limit: float = 120.0) -> str:
        """The idle loop: ask every ``request_interval`` until a job comes."""
        deadline = self.world.now + limit
        while self.world.now < deadline:
            job = self.fetch()
            if job is not None:
                return job
            self.world.sleep(self.request_interval)
        raise TimeoutError("no job handed out")

    def _claim(self, job_id: str, status: str, error: str = "") -> None:
        self._call(
            "JobClaimStatus",
            self.world.jobs.ClaimStatus,
            job_service_pb2.ClaimJobStatusRequest(
                job_id=job_id,
                status=job_service_pb2.ClaimJobStatusRequest.JobStatus.Value(status),
                error=error,
            ),
            job_id,
            metadata=self._md(),
        )

    def _signal(self, job_id: str) -> Any:
        return self._call(
            "GetSignal",
            self.world.jobs.GetSignal,
            job_service_pb2.JobSignalRequest(job_id=job_id),
            job_id,
            metadata=self._md(),
        )

    def _send_metrics(self, job_id: str, items: list[int]) -> bool:
        try:
            self._call(
                "AddMetric",
                self.world.monitoring.AddMetric,
                monitoring_service_pb2.AddMetricRequest(
                    agent_instance_id=self.agent_id or "",
                    job_id=job_id,
                    chunks=[
                        monitoring_service_pb2.MetricChunk(
                            timestamp=i,
                            instance_host="tank-host",
                            data=[
                                monitoring_service_pb2.Metric(
                                    metric_type="CPU", metric_name="idle", metric_value=50.0
                                )
                            ],
                        )
                        for i in items
                    ],
                ),
                job_id,
                metadata=self._md(),
            )
        except grpc.RpcError:
            return False
        return True

    def _send_trails(self, job_id: str, items: list[int]) -> bool:
        try:
            self._call(
                "TrailCreate",
                self.world.trails.Create,
                trail_service_pb2.CreateTrailRequest(
                    agent_instance_id=self.agent_id or "",
                    job_id=job_id,
                    data=[trail_service_pb2.Trail(overall=1, time=str(i), reqps=5) for i in items],
                ),
                job_id,
                metadata=self._md(),
            )
        except grpc.RpcError:
            return False
        return True

    def run_job(self, job_id: str, plan: Plan) -> str:
        """From the hand-out to the final claim and the drain; returns the final claimed status."""
        self.world.sleep(plan.download)
        self.tank = "PREPARING"
        tank_t = 0.0
        run_at: float | None = None
        self.current = job_id
        trails: _Uploader[int] = _Uploader(lambda items: self._send_trails(job_id, items), 1.0)
        monitoring: _Uploader[int] = _Uploader(lambda items: self._send_metrics(job_id, items), 1.0)
        uploaders = [trails, monitoring]
        stop_uploaders = [False]

        def upload_round() -> float | None:
            if stop_uploaders[0] or self.killed:
                return None
            if self.tank == "RUNNING":
                trails.queue.append(int(self.world.now))
                if plan.monitoring:
                    monitoring.queue.append(int(self.world.now))
            for uploader in uploaders:
                uploader.round(self.world.now)
            return 1.0

        def tank_status() -> str:
            assert self.tank is not None
            if self.tank == "PREPARING" and tank_t >= plan.prepare:
                self.tank = "WAITING_FOR_A_COMMAND_TO_RUN"
            if run_at is not None:
                ran = self.world.now - run_at
                self.tank = "RUNNING"
                if ran >= plan.shoot:
                    self.tank = "FINISHING"
                if ran >= plan.shoot + plan.finishing:
                    self.tank = "POST_PROCESS"
                if ran >= plan.shoot + plan.finishing + plan.post_process:
                    self.tank = plan.outcome
            return self.tank

        def drain() -> None:
            """``tank_client.finish()``: wait for each uploader's next allowed round."""
            self.draining = True
            for uploader in uploaders:
                uploader.end_marker = True
            while not all(u.drained for u in uploaders):
                self.world.sleep(1.0)
            stop_uploaders[0] = True

        started = self.world.now
        final: str | None = None
        while final is None:
            signal = self._signal(job_id)
            kind = job_service_pb2.JobSignalResponse.Signal.Name(signal.signal)
            if kind == "STOP":
                self.stopped_by_server = True
                self.world.sleep(plan.stop_shutdown)  # join(): no poll while it shuts down
                self._claim(job_id, "STOPPED")
                final = "STOPPED"
                if run_at is not None:
                    drain()
                break
            if kind == "RUN_IN" and signal.run_in <= self.request_interval and run_at is None:
                self.world.sleep(signal.run_in)
                run_at = self.world.now
                self.world.every(1.0, upload_round)
            tank_t = self.world.now - started
            status = tank_status()
            if status in ("FINISHED", "AUTOSTOPPED", "FAILED"):
                if run_at is not None:
                    drain()
                if status == "AUTOSTOPPED" and plan.imbalance_rps is not None:
                    self._call(
                        "TestUpdate",
                        self.world.agent_tests.Update,
                        agent_test_pb2.UpdateTestRequest(
                            test_id=job_id,
                            imbalance_point=plan.imbalance_rps,
                            imbalance_ts=int(self.world.now) - 3,
                            imbalance_comment="4xx codes count higher than 25.0% for 3s",
                            update_mask=field_mask_pb2.FieldMask(
                                paths=["imbalance_point", "imbalance_comment", "imbalance_ts"]
                            ),
                        ),
                        job_id,
                        metadata=self._md(),
                    )
                final = status
            self._claim(job_id, status)
            self.world.sleep(self.request_interval)
        self.tank = None
        self.draining = False
        self.current = None
        stop_uploaders[0] = True
        return final

    # --- what the tests assert -----------------------------------------------------------

    def abandoning_answers(self) -> list[CallRecord]:
        """Job calls for a job this agent held that were answered FAILED_PRECONDITION/NOT_FOUND."""
        return [
            c
            for c in self.calls
            if c.method in JOB_CALLS and c.job_id in self.held and c.code in ABANDON
        ]

    def codes(self, method: str) -> set[grpc.StatusCode]:
        return {c.code for c in self.calls if c.method == method}
