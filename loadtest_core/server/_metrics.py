"""Prometheus metrics of ``serve`` and its one-line-per-status-change log.

Everything is read from three places, so the engine and the servicers stay
unaware of Prometheus: the engine's log listener (transitions, LOST,
recoveries, stop latency, a JSON line per status change), the servicers'
``on_rpc`` hook (RPC counts and latency by method and code), and a timer
around the store's ``commit``. Tests by status are a store query at scrape
time, so every replica over one database reports the same figures.

The per-RPC and per-commit paths are plain dict and list arithmetic under a
lock (about a microsecond); they become Prometheus samples only when scraped.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from loadtest_core import ACTIVE, TERMINAL, Engine, Kind, LogRecord, Status

__all__ = ["CONTENT_TYPE", "Histograms", "Observer", "status_line"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
STOP_BUCKETS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_NOT_RECOVERY = frozenset({"stop", "expire", "delete"})
_STOP_MEMORY = 100_000


class Histograms:
    """Histograms keyed by a label tuple, kept as bucket counts until a scrape reads them."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._series: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()

    def observe(self, key: tuple[str, ...], value: float) -> None:
        i = bisect.bisect_left(self.bounds, value)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0.0] * (len(self.bounds) + 2)
            series[i] += 1  # the last bucket is +Inf; series[-1] is the sum
            series[-1] += value

    def families(
        self, name: str, doc: str, labels: tuple[str, ...], total: str | None = None
    ) -> Iterator[Metric]:
        """The histogram family, and a counter family of the counts when ``total`` names one."""
        hist = HistogramMetricFamily(name, doc, labels=list(labels))
        counter = None if total is None else CounterMetricFamily(total, doc, labels=list(labels))
        with self._lock:
            snapshot = [(k, list(v)) for k, v in sorted(self._series.items())]
        for key, series in snapshot:
            cumulative, buckets = 0.0, []
            for bound, n in zip((*self.bounds, float("inf")), series[:-1], strict=True):
                cumulative += n
                buckets.append((_le(bound), cumulative))
            hist.add_metric(list(key), buckets, series[-1])
            if counter is not None:
                counter.add_metric(list(key), cumulative)
        yield hist
        if counter is not None:
            yield counter


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


_NAMES: dict[Status | None, str] = {s: s.name for s in Status}
_JSON_NAMES: dict[Status | None, str] = {None: "null", **{s: f'"{s.name}"' for s in Status}}
_seconds: list[Any] = [None, ""]  # the last whole second formatted, and its text


def _rfc3339(at: float) -> str:
    whole = math.floor(at)
    micros = round((at - whole) * 1e6)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    if _seconds[0] != whole:  # most lines share their second with the previous one
        _seconds[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _seconds[0] = whole
    return f"{_seconds[1]}.{micros:06d}Z"


def status_line(record: LogRecord) -> str:
    """The JSON log line of a status change: test, from, to, cause, actor, time, version.

    Built by hand (it is written for every status change): test ids and event
    names are plain ASCII by construction; the actor is JSON-escaped.
    """
    return (
        f'{{"event": "status", "test_id": "{record.test_id}", '
        f'"from": {_JSON_NAMES[record.from_status]}, "to": {_JSON_NAMES[record.to_status]}, '
        f'"cause": "{record.event}", "actor": {json.dumps(record.actor)}, '
        f'"at": "{_rfc3339(record.at)}", "version": {record.version}}}'
    )


class Observer(Collector):
    """The metrics registry of one ``serve`` and the hooks that feed it."""

    def __init__(self, engine: Engine, log_line: Callable[[str], None] | None = None) -> None:
        self.engine = engine
        self.log_line = log_line
        self.rpcs = Histograms(RPC_BUCKETS)
        self.commits = Histograms(COMMIT_BUCKETS)
        self.stops = Histograms(STOP_BUCKETS)
        self._lock = threading.Lock()
        self._transitions: dict[tuple[str, str], int] = {}
        self._rejections: dict[str, int] = {}
        self._lost = 0
        self._recovered = 0
        self._stopping: dict[str, float] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # --- hooks --------------------------------------------------------------------

    def attach(self) -> None:
        """Listen to the engine's log and time the store's commits."""
        self.engine.add_listener(self.on_record)
        store: Any = self.engine.store
        for name in ("commit", "append_log"):
            setattr(store, name, self._timed(getattr(store, name), name))

    def _timed(self, write: Callable[[Any], None], name: str) -> Callable[[Any], None]:
        observe, key, clock = self.commits.observe, (name,), time.perf_counter

        def timed(change: Any) -> None:
            started = clock()
            try:
                write(change)
            finally:
                observe(key, clock() - started)

        return timed

    def on_rpc(self, method: str, code: str, seconds: float) -> None:
        self.rpcs.observe((method, code), seconds)

    def on_record(self, record: LogRecord) -> None:
        """One committed log record: count it, and log it if it changed a status."""
        if record.outcome is not Kind.ACCEPTED:
            if record.outcome is not Kind.NOTED:
                with self._lock:
                    kind = record.outcome.value
                    self._rejections[kind] = self._rejections.get(kind, 0) + 1
            return
        before, after = record.from_status, record.to_status
        if before is after:
            return
        with self._lock:
            key = (_NAMES.get(before, ""), _NAMES.get(after, ""))
            self._transitions[key] = self._transitions.get(key, 0) + 1
            if after is Status.LOST:
                self._lost += 1
            elif before is Status.LOST and record.event not in _NOT_RECOVERY:
                self._recovered += 1
            if record.event == "stop":
                if after is Status.STOPPING:
                    if len(self._stopping) >= _STOP_MEMORY:
                        del self._stopping[next(iter(self._stopping))]
                    self._stopping[record.test_id] = record.at
                else:  # done at once: CREATED -> CANCELLED, LOST -> STOPPED
                    self.stops.observe((), 0.0)
            elif after is None or after in TERMINAL or after is Status.DELETING:
                asked = self._stopping.pop(record.test_id, None)
                if asked is not None and after in TERMINAL:
                    self.stops.observe((), max(0.0, record.at - asked))
        if self.log_line is not None:
            self.log_line(status_line(record))

    # --- scrape -------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        counts = self.engine.count_by_status()
        tests = GaugeMetricFamily("loadtest_tests", "Stored tests by status.", labels=["status"])
        for status in Status:
            if status is not Status.STATUS_UNSPECIFIED:
                tests.add_metric([status.name], counts.get(status, 0))
        yield tests
        active = GaugeMetricFamily(
            "loadtest_tests_active",
            "Tests an agent is expected to report on (execution stages and STOPPING).",
            value=sum(n for s, n in counts.items() if s in ACTIVE),
        )
        yield active
        with self._lock:
            transitions = sorted(self._transitions.items())
            rejections = sorted(self._rejections.items())
            lost, recovered = self._lost, self._recovered
        family = CounterMetricFamily(
            "loadtest_transitions",
            "Status changes committed by this process.",
            labels=["from", "to"],
        )
        for (a, b), n in transitions:
            family.add_metric([a or "NONE", b or "REMOVED"], n)
        yield family
        refused = CounterMetricFamily(
            "loadtest_rejected_events",
            "Events refused by the lifecycle (stale or conflict).",
            labels=["kind"],
        )
        for kind, n in rejections:
            refused.add_metric([kind], n)
        yield refused
        yield CounterMetricFamily(
            "loadtest_lost", "Tests that went LOST (no contact for lost_after).", value=lost
        )
        yield CounterMetricFamily(
            "loadtest_recoveries",
            "LOST tests whose agent came back (a poll or a claim).",
            value=recovered,
        )
        yield from self.stops.families(
            "loadtest_stop_latency_seconds",
            "From a stop command to the test's final status (0 when done at once).",
            (),
        )
        yield from self.rpcs.families(
            "loadtest_grpc_request_duration_seconds",
            "gRPC requests by method and status code.",
            ("method", "code"),
            total="loadtest_grpc_requests",
        )
        yield from self.commits.families(
            "loadtest_store_commit_seconds",
            "Store writes: commit (an accepted event) and append_log (a refusal or a note).",
            ("operation",),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
