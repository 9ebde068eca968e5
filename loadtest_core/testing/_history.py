"""Histories of concurrent clients, and a linearizability checker over the reference model.

A ``History`` records every call several clients made against a target: who,
what, on which test, when it was invoked and when it returned (the target's
clock), and the answer. ``check_linearizable`` decides whether some order of
those calls, each taking effect at one instant between its invocation and its
return, is one the reference model allows with exactly those answers.

Tests are independent keys (a call touches one test), so the search runs per
test — the P-compositionality Porcupine and Knossos use — with the
Wing-Gong/Lowe algorithm: linearize a pending call, backtrack when a return
arrives whose call could not be placed, and remember (calls placed, model
state) pairs already explored. The model is nondeterministic, so its state is
the set of possibilities, as in the state machine.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from loadtest_core import Operation, Test
from loadtest_core.testing._model import Branch, ModelTest, ReferenceModel, Window
from loadtest_core.testing._target import Code, JobStatus, SignalAnswer, Target, TargetError

__all__ = ["Call", "History", "Linearizability", "check_linearizable", "prepare_race", "race"]


@dataclass(frozen=True, slots=True)
class Call:
    """One completed call: ``kind`` is stop, delete, get, claim, note, poll or imbalance."""

    index: int
    client: int
    kind: str
    test_id: str
    args: tuple[Any, ...]
    invoked: float
    returned: float
    code: Code
    value: Any = None

    def __str__(self) -> str:
        args = ", ".join(repr(a) for a in self.args)
        shown = self.code.value
        if isinstance(self.value, SignalAnswer):
            shown += f" {self.value.kind.value}"
        elif isinstance(self.value, Operation):
            shown += f" op {self.value.id} done={self.value.done}"
        elif isinstance(self.value, Test) and self.value.summary is not None:
            shown += f" {self.value.summary.status.name}"
        return (
            f"#{self.index} client {self.client}: {self.kind}({self.test_id}{', ' if args else ''}"
            f"{args}) -> {shown}  [{self.invoked:.6f}, {self.returned:.6f}]"
        )


class History:
    """A thread-safe log of calls against one target (clients may use targets of their own)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def call(
        self,
        client: int,
        kind: str,
        test_id: str,
        args: tuple[Any, ...],
        fn: Callable[..., Any],
        *fn_args: Any,
    ) -> tuple[Code, Any]:
        """Invoke ``fn(*fn_args)`` (which performs ``kind`` on ``test_id``) and record it."""
        invoked = self.clock()
        try:
            code, value = Code.OK, fn(*fn_args)
        except TargetError as exc:
            code, value = exc.code, None
        returned = self.clock()
        with self._lock:
            self.calls.append(
                Call(len(self.calls), client, kind, test_id, args, invoked, returned, code, value)
            )
        return code, value

    def by_test(self) -> dict[str, list[Call]]:
        out: dict[str, list[Call]] = {}
        for c in self.calls:
            out.setdefault(c.test_id, []).append(c)
        return out


@dataclass
class Linearizability:
    """The verdict: per test, whether its calls linearize, and the calls checked."""

    ok: bool = True
    calls: int = 0
    keys: int = 0
    seconds: float = 0.0
    states_explored: int = 0
    failures: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        head = (
            f"{self.calls} calls on {self.keys} tests checked in {self.seconds:.3f} s "
            f"({self.states_explored} states): "
        )
        if self.ok:
            return head + "linearizable"
        return head + "NOT linearizable\n" + "\n".join(self.failures.values())


def _branches(model: ReferenceModel, c: Call) -> Callable[[ModelTest], list[Branch]]:
    w = Window(c.invoked, c.returned)
    if c.kind == "stop":
        return lambda p: model.stop_branches(p, w)
    if c.kind == "delete":
        return lambda p: model.delete_branches(p, w)
    if c.kind == "poll":
        return lambda p: model.poll_branches(p, c.args[0], w)
    if c.kind == "imbalance":
        agent, at, rps, comment = c.args
        return lambda p: model.imbalance_branches(p, agent, at, rps, comment, w)
    if c.kind in ("claim", "note"):
        agent, job, error = c.args
        return lambda p: model.claim_branches(p, agent, JobStatus(job), error, w)
    raise ValueError(f"unknown call kind {c.kind!r}")


def _step(model: ReferenceModel, state: frozenset[ModelTest], c: Call) -> frozenset[ModelTest]:
    settled = model.settle_possibilities(
        state, c.invoked, c.returned, at_tick=False, since=c.invoked
    )
    if c.kind == "get":
        if c.code is Code.NOT_FOUND:
            return frozenset(p for p in settled if p.gone)
        if not isinstance(c.value, Test):
            return frozenset()
        kept, _ = model.shown_possibilities(settled, c.value, None)
        return frozenset(kept)
    signal = c.value.kind if isinstance(c.value, SignalAnswer) else None
    op = c.value if isinstance(c.value, Operation) else None
    kept, _ = model.answer_possibilities(
        settled, _branches(model, c), code=c.code, signal=signal, op=op
    )
    return frozenset(kept)


def _check_key(
    model: ReferenceModel, start: frozenset[ModelTest], calls: list[Call], budget: int
) -> tuple[bool, int, str]:
    """Wing-Gong/Lowe search with memoisation; (linearizable, states explored, explanation)."""
    # events in time order, a call before a return at the same instant (the permissive tie)
    events = sorted(
        [(c.invoked, 0, i) for i, c in enumerate(calls)]
        + [(c.returned, 1, i) for i, c in enumerate(calls)]
    )
    size = len(events)
    # a doubly linked list over nodes 1..size (node k is events[k - 1]); node 0 is its head
    nxt = [*range(1, size + 1), -1]
    prv = [-1, *range(size)]
    returns = {i: k for k, (_, kind, i) in enumerate(events, start=1) if kind == 1}

    def lift(k: int) -> None:
        for node in (k, returns[events[k - 1][2]]):
            nxt[prv[node]] = nxt[node]
            if nxt[node] != -1:
                prv[nxt[node]] = prv[node]

    def unlift(k: int) -> None:
        for node in (returns[events[k - 1][2]], k):
            if nxt[node] != -1:
                prv[nxt[node]] = node
            nxt[prv[node]] = node

    cache: set[tuple[int, frozenset[ModelTest]]] = set()
    stack: list[tuple[int, frozenset[ModelTest]]] = []
    linearized = 0
    state = start
    entry = nxt[0]
    explored = 0
    longest: list[int] = []  # the longest order found, and the call that could not follow it
    blocker: Call | None = None
    while nxt[0] != -1:
        if explored >= budget:
            return True, explored, "search budget exhausted (treated as linearizable)"
        _, kind, i = events[entry - 1]
        if kind == 0:
            explored += 1
            new_state = _step(model, state, calls[i])
            key = linearized | (1 << i)
            if new_state and (key, new_state) not in cache:
                cache.add((key, new_state))
                stack.append((entry, state))
                state, linearized = new_state, key
                lift(entry)
                entry = nxt[0]
            else:
                entry = nxt[entry]
            continue
        if blocker is None or len(stack) > len(longest):
            longest = [calls[events[e - 1][2]].index for e, _ in stack]
            blocker = calls[i]
        if not stack:
            assert blocker is not None
            order = ", ".join(f"#{x}" for x in longest) or "nothing"
            shown = "\n    ".join(str(c) for c in calls)
            return (
                False,
                explored,
                f"{blocker.test_id}: no order of its calls fits the contract; the longest that "
                f"does is [{order}], and #{blocker.index} ({blocker.kind} -> "
                f"{blocker.code.value}) cannot follow it.\n  calls:\n    {shown}",
            )
        entry, state = stack.pop()
        linearized &= ~(1 << events[entry - 1][2])
        unlift(entry)
        entry = nxt[entry]
    return True, explored, ""


def check_linearizable(
    history: History,
    model: ReferenceModel,
    *,
    budget: int = 200_000,
) -> Linearizability:
    """Check every test's calls in ``history`` from its possibilities in ``model``."""
    started = time.perf_counter()
    verdict = Linearizability()
    for test_id, calls in history.by_test().items():
        verdict.keys += 1
        verdict.calls += len(calls)
        start = frozenset(model.tests.get(test_id, ()))
        if not start:
            verdict.ok = False
            verdict.failures[test_id] = f"{test_id}: not a test the model knows"
            continue
        ok, explored, why = _check_key(model, start, calls, budget)
        verdict.states_explored += explored
        if not ok:
            verdict.ok = False
            verdict.failures[test_id] = why
    verdict.seconds = time.perf_counter() - started
    return verdict


_CLAIMS = (
    JobStatus.RUNNING,
    JobStatus.FINISHING,
    JobStatus.FINISHED,
    JobStatus.STOPPED,
    JobStatus.FAILED,
    JobStatus.RUNNING,
)


def race(
    targets: Iterable[Target],
    model: ReferenceModel,
    tests: dict[str, str],
    *,
    calls: int = 30,
    seed: int = 0,
    think: float = 0.0,
) -> History:
    """Clients (one per target, each on its own thread) racing stops, claims, polls and gets.

    ``tests`` maps each test id to its assigned agent; every call goes to one of them,
    claims and polls as that agent. Returns the history; check it with
    ``check_linearizable(history, model)``, ``model`` holding each test's state when
    the race began.
    """
    clients = list(targets)
    history = History(clients[0].now)
    ids = sorted(tests)
    errors: list[BaseException] = []

    def client(number: int, target: Target) -> None:
        rng = random.Random(seed * 1000 + number)
        try:
            for _ in range(calls):
                test_id = rng.choice(ids)
                agent = tests[test_id]
                kind = rng.choice(("stop", "claim", "claim", "poll", "poll", "get", "note"))
                if kind == "stop":
                    history.call(number, kind, test_id, (), target.stop, test_id)
                elif kind in ("claim", "note"):
                    job = (
                        rng.choice(_CLAIMS) if kind == "claim" else JobStatus.JOB_STATUS_UNSPECIFIED
                    )
                    error = "" if kind == "claim" else "upload failed"
                    history.call(
                        number,
                        kind,
                        test_id,
                        (agent, job.value, error),
                        target.claim,
                        test_id,
                        agent,
                        job,
                        error,
                    )
                elif kind == "poll":
                    history.call(number, kind, test_id, (agent,), target.poll, test_id, agent)
                else:
                    history.call(number, kind, test_id, (), target.get, test_id)
                if think:
                    time.sleep(rng.random() * think)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [
        threading.Thread(target=client, args=(i, t), name=f"kit-client-{i}")
        for i, t in enumerate(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    final = clients[0]
    for test_id in ids:
        history.call(-1, "get", test_id, (), final.get, test_id)
    return history


def _claimed(
    model: ReferenceModel, agent: str, stage: JobStatus, w: Window, p: ModelTest
) -> list[Branch]:
    return model.claim_branches(p, agent, stage, "", w)


def prepare_race(target: Target, *, tests: int = 4) -> tuple[ReferenceModel, dict[str, str]]:
    """Tests for a race, each handed out to one agent and claimed to a stage.

    The setup is checked like any run of the state machine (a violation raises
    ``ContractViolation``). Returns the model, holding each test's state as the
    target showed it when the race may begin, and each test's agent.
    """
    from loadtest_core import AgentSelector, Details, SingleAgentConfiguration, Tag, TestSpec

    model = ReferenceModel(target.info, track_version=False)
    run = f"race-{random.getrandbits(40):010x}"
    agent = target.register_agent(run, {"kit": run})
    stages = (JobStatus.RUNNING, JobStatus.INITIATED, JobStatus.WAITING_FOR_A_COMMAND_TO_RUN)

    def timed(call: Callable[[], Any]) -> tuple[Any, Window]:
        lo = target.now()
        value = call()
        hi = target.now()
        model.settle(lo, hi, at_tick=False)
        return value, Window(lo, hi)

    out: dict[str, str] = {}
    for n in range(tests):
        spec = TestSpec(
            configurations=(
                SingleAgentConfiguration(agent_selector=AgentSelector(agent_id=agent)),
            ),
            details=Details(name=f"{run}-{n}", tags=(Tag(key="kit_run", value=run),)),
        )
        snap, w = timed(functools.partial(target.create, spec))
        model.created(snap, ("agent", agent), w)
        job, w = timed(functools.partial(target.take_job, agent))
        model.handed_out(agent, job)
        stage = stages[n % len(stages)]
        _, w = timed(functools.partial(target.claim, snap.id, agent, stage, ""))
        model.step(
            snap.id,
            functools.partial(_claimed, model, agent, stage, w),
            code=Code.OK,
            what=f"ClaimStatus({stage.value})",
        )
        out[snap.id] = agent
    for test_id in out:
        snap, _ = timed(functools.partial(target.get, test_id))
        model.observe(test_id, snap, None)
    return model, out
