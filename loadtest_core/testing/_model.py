"""The reference model: the lifecycle contract written out again, independently.

Nothing here reads the engine's table or lifecycle code: every rule is taken
from the contract (``shared/spec/lifecycle.md`` §2, §3, §5), so a mistake in
the engine's rules cannot hide in the model too.

The model is *nondeterministic*. Deadlines fire when the target's ticker
runs, a lease may lapse or not, a server may answer either of two allowed
codes, so each test is a set of *possibilities*. Every call and every
observation keeps the possibilities consistent with what the target answered
and pins what it showed (a timestamp, an error text); when none is left, the
target broke the contract, and ``ContractViolation`` says which clause. The
same step functions check concurrent histories for linearizability.

Times are windows ``[lo, hi]`` of the target's clock: a point when the target's
clock is controlled, the span of the call when time is real.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from loadtest_core import AgentStatus, Operation, SignalKind, Status, Test
from loadtest_core.testing._target import Code, JobStatus, TargetInfo

__all__ = [
    "ANY_ERROR",
    "Branch",
    "ContractViolation",
    "ModelTest",
    "OpModel",
    "ReferenceModel",
    "Window",
    "snapshot_violations",
]

# --- the vocabulary of the contract (§1, §2), restated --------------------------

RANK: dict[Status, int] = {
    Status.INITIATED: 1,
    Status.PREPARING: 2,
    Status.WAITING: 3,
    Status.RUNNING: 4,
    Status.FINISHING: 5,
    Status.POST_PROCESSING: 6,
}
STAGE_OF_RANK: dict[int, Status] = {r: s for s, r in RANK.items()}
TERMINAL = frozenset(
    {Status.DONE, Status.FAILED, Status.STOPPED, Status.AUTOSTOPPED, Status.CANCELLED}
)
ACTIVE = frozenset(RANK) | {Status.STOPPING}
FINISHED = TERMINAL | {Status.DELETING}
OUTCOMES = frozenset({Status.DONE, Status.FAILED, Status.STOPPED, Status.AUTOSTOPPED})
NOT_FOUND_ERROR = "agent could not find the job"
JOB_TO_STATUS: dict[JobStatus, Status] = {
    JobStatus.INITIATED: Status.INITIATED,
    JobStatus.PREPARING: Status.PREPARING,
    JobStatus.WAITING_FOR_A_COMMAND_TO_RUN: Status.WAITING,
    JobStatus.RUNNING: Status.RUNNING,
    JobStatus.FINISHING: Status.FINISHING,
    JobStatus.POST_PROCESS: Status.POST_PROCESSING,
    JobStatus.FINISHED: Status.DONE,
    JobStatus.STOPPED: Status.STOPPED,
    JobStatus.FAILED: Status.FAILED,
    JobStatus.AUTOSTOPPED: Status.AUTOSTOPPED,
    JobStatus.NOT_FOUND: Status.FAILED,
}
BUSY = frozenset({AgentStatus.PREPARING_TEST, AgentStatus.TESTING, AgentStatus.UPLOADING_ARTIFACTS})
MIN_UNIX = -62135596800  # 0001-01-01T00:00:00Z
MAX_UNIX = 253402300799  # 9999-12-31T23:59:59Z

ANY_ERROR = "\x00any non-empty error"
"""The expected ``error`` when the contract says only that it is non-empty."""

EPS = 1e-6
NEW_OP = "?new"
ANONYMOUS_HOLDER = "?anonymous"  # the holder a server names for an agent that sends no id
OK = frozenset({Code.OK})
CONFLICT = frozenset({Code.FAILED_PRECONDITION, Code.NOT_FOUND})
FAILED_PRECONDITION = frozenset({Code.FAILED_PRECONDITION})
NOT_FOUND = frozenset({Code.NOT_FOUND})
INVALID = frozenset({Code.INVALID_ARGUMENT})

# (accepted records, other records) a call may leave in the event log
NO_LOG = frozenset({(0, 0)})
ONE_ACCEPTED = frozenset({(1, 0)})
ONE_REJECTED = frozenset({(0, 1)})
NOTED = frozenset({(0, 1)})
MAYBE_REJECTED = frozenset({(0, 0), (0, 1)})


class ContractViolation(AssertionError):
    """The target did something the contract forbids; ``clause`` names the rule (e.g. §4.10)."""

    def __init__(self, clause: str, message: str) -> None:
        super().__init__(f"{clause}: {message}")
        self.clause = clause
        self.message = message


@dataclass(frozen=True, slots=True)
class Window:
    """A time of the target's clock known to lie in ``[lo, hi]``."""

    lo: float
    hi: float

    @staticmethod
    def at(t: float) -> Window:
        return Window(t, t)

    def holds(self, t: float, tolerance: float) -> bool:
        return self.lo - tolerance - EPS <= t <= self.hi + tolerance + EPS

    def __str__(self) -> str:
        return f"{self.lo:.6f}" if self.lo == self.hi else f"[{self.lo:.6f}, {self.hi:.6f}]"


@dataclass(frozen=True, slots=True)
class OpModel:
    """One stop operation as the model expects it."""

    id: str
    created_at: float
    created_by: str
    done: bool = False
    result: str = ""  # "" pending, "response", or "either" (error or response)
    status: Status | None = None  # the response's test status, when known
    done_at: Window | None = None


@dataclass(frozen=True, slots=True)
class ModelTest:
    """One possibility for one test: every field the contract constrains."""

    id: str
    seq: int
    selector: tuple[str, str]
    created_at: float
    created_by: str | None
    status: Status = Status.CREATED
    rank: int = 0
    remembered: Status | None = None
    started_at: Window | None = None
    finished_at: Window | None = None
    error: str = ""
    imbalance: tuple[int, int, str] | None = None
    agent: str | None = None
    holder: str | None = None
    version: int = 1
    contact: Window | None = None
    lost_at: Window | None = None
    deleting_at: Window | None = None
    gone: bool = False
    ops: tuple[OpModel, ...] = ()

    @property
    def owner(self) -> str | None:
        return self.agent or self.holder

    def inflight(self) -> OpModel | None:
        return next((op for op in self.ops if not op.done), None)

    def describe(self) -> str:
        status = "gone" if self.gone else self.status.name
        if self.status is Status.LOST and self.remembered is not None:
            status += f"@{self.remembered.name}"
        if self.status in ACTIVE or self.status is Status.LOST:
            status += f" rank {self.rank}"
        return f"{status} v{self.version}"


@dataclass(frozen=True, slots=True)
class Branch:
    """One way a call may go: the test after it, the answers allowed, why."""

    after: ModelTest
    codes: frozenset[Code]
    why: str
    logs: frozenset[tuple[int, int]] = NO_LOG
    signals: frozenset[SignalKind] | None = None
    op: OpModel | None = None  # a stop's answer: an existing op (same id) or a new one
    new_op: bool = False  # the answer's id must be one the kit has not seen
    at: Window | None = None  # when a new operation was created
    pin_id: str | None = None  # the placeholder id the answer's id replaces


def _dedup(items: Iterable[ModelTest]) -> list[ModelTest]:
    return list(dict.fromkeys(items))


def _seconds(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()


# --- snapshot invariants (§4), on what a target shows ---------------------------


def snapshot_violations(snap: Test, before: Test | None) -> list[tuple[str, str]]:
    """The §4 invariants one snapshot, and its step from the previous one, must satisfy."""
    out: list[tuple[str, str]] = []
    s = snap.summary
    if s is None:
        return [("§4.1", "the test has no summary (so no status)")]
    status = s.status
    if status is Status.STATUS_UNSPECIFIED:
        out.append(("§4.1", "status is STATUS_UNSPECIFIED"))
    finished = status in FINISHED
    if s.is_finished != finished or (s.finished_at is not None) != finished:
        out.append(
            (
                "§4.2",
                f"{status.name} with is_finished={s.is_finished}, finished_at={s.finished_at}",
            )
        )
    if status is Status.CREATED and s.started_at is not None:
        out.append(("§4.3", "CREATED with started_at set"))
    if (status in ACTIVE or status is Status.LOST) and s.started_at is None:
        out.append(("§4.3", f"{status.name} without started_at"))
    times = [t for t in (s.created_at, s.started_at, s.finished_at) if t is not None]
    if s.created_at is None:
        out.append(("§4.4", "created_at is not set"))
    if times != sorted(times):
        out.append(("§4.4", f"timestamps out of order: {[str(t) for t in times]}"))
    if s.imbalance_point is not None and s.started_at is None:
        out.append(("§4.5", "an imbalance point on a test that never started"))
    if status is not Status.DELETING and (status is Status.FAILED) != bool(s.error):
        out.append(("§4.6", f"{status.name} with error={s.error!r}"))
    if before is not None and before.summary is not None:
        b = before.summary
        for name in ("created_at", "started_at", "finished_at"):
            old, new = getattr(b, name), getattr(s, name)
            if old is not None and new != old:
                out.append(("§4.4", f"{name} moved from {old} to {new}"))
        if b.assigned_agent_id and s.assigned_agent_id != b.assigned_agent_id:
            out.append(
                (
                    "§4.7",
                    f"assigned_agent_id changed {b.assigned_agent_id!r} -> {s.assigned_agent_id!r}",
                )
            )
        if b.status in TERMINAL and status not in (b.status, Status.DELETING):
            out.append(("§4.8", f"left terminal {b.status.name} for {status.name}"))
        if b.status is Status.DELETING and status is not Status.DELETING:
            out.append(("§3", f"left DELETING for {status.name}"))
    return out


# --- agent filters, restated (match_by_filter: field = "value" AND ...) ----------

_CLAUSE = re.compile(r'\s*([A-Za-z0-9_.\-]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*')


def filter_matches(text: str, agent_id: str, name: str, labels: dict[str, str]) -> bool | None:
    """Whether an agent matches a ``field = "value" AND ...`` filter; None if not that form."""
    clauses = re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE)
    for clause in clauses:
        m = _CLAUSE.fullmatch(clause)
        if m is None:
            return None
        key, value = m.group(1), re.sub(r"\\(.)", r"\1", m.group(2))
        if key == "id":
            actual: str | None = agent_id
        elif key == "name":
            actual = name
        elif key.startswith("labels."):
            actual = labels.get(key[len("labels.") :])
        else:
            return None
        if actual != value:
            return False
    return True


@dataclass
class AgentInfo:
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    registered: bool = True


# --- the model ------------------------------------------------------------------


class ReferenceModel:
    """Every test of one run as a set of possibilities, stepped by what the target answers."""

    def __init__(self, info: TargetInfo, *, track_version: bool) -> None:
        self.info = info
        self.track_version = track_version
        self.tests: dict[str, list[ModelTest]] = {}
        self.agents: dict[str, AgentInfo] = {}
        self.life: dict[str, Window] = {}
        self.seen: dict[str, Test] = {}
        self.max_rank: dict[str, int] = {}
        self.principal: str | None = None
        self.checked: Counter[str] = Counter()
        self._seq = 0
        self._since = 0.0
        self._batch = 0

    # --- bookkeeping -------------------------------------------------------------

    def _v(self, p: ModelTest, by: int = 1) -> int:
        return p.version + by if self.track_version else 0

    def possible(self, test_id: str) -> list[ModelTest]:
        return self.tests[test_id]

    def certainly_gone(self, test_id: str) -> bool:
        return all(p.gone for p in self.tests[test_id])

    def op_ids(self) -> dict[str, str]:
        """Every stop operation id the target has shown, with its test."""
        return {
            op.id: p.id
            for ps in self.tests.values()
            for p in ps
            for op in p.ops
            if not _unseen(op.id)
        }

    def _matches(self, agent: str, selector: tuple[str, str]) -> bool | None:
        kind, value = selector
        known = self.agents.get(agent)
        registered = known is not None and known.registered
        if kind == "agent":
            return agent == value
        if kind == "anonymous":
            return not registered
        if not registered or known is None:
            return False
        return filter_matches(value, agent, known.name, known.labels)

    def _fail(self, clause: str, message: str, options: Iterable[str] = ()) -> ContractViolation:
        shown = list(options)
        if shown:
            message += "\n  the contract allows:\n    " + "\n    ".join(shown)
        return ContractViolation(clause, message)

    # --- time: deadlines the target may or must have fired ---------------------------

    def settle(self, lo: float, hi: float, *, at_tick: bool) -> None:
        """Branch every test on the deadlines that may have fired by ``hi`` (must, by ``lo``).

        ``at_tick`` is a controlled target's ``tick()`` at exactly ``lo == hi``;
        for a real-time target every call settles with the ticker's slack.
        """
        since = min(self._since, lo)
        for test_id, ps in self.tests.items():
            self.tests[test_id] = self.settle_possibilities(
                ps, lo, hi, at_tick=at_tick, since=since
            )
        self._since = max(self._since, hi) if self.info.controls_time else lo

    def settle_possibilities(
        self, ps: Iterable[ModelTest], lo: float, hi: float, *, at_tick: bool, since: float
    ) -> list[ModelTest]:
        """``settle`` for one test's possibilities; deadlines fired no earlier than ``since``."""
        info = self.info
        if info.controls_time:
            must, slack = at_tick, 0.0
        else:
            must, slack = True, info.tick_every + info.lateness
        out: list[ModelTest] = []
        for p in ps:
            out.extend(self._fire(p, lo, hi, since, must, slack, depth=3))
        return _dedup(out)

    def _fire(
        self, p: ModelTest, lo: float, hi: float, since: float, must: bool, slack: float, depth: int
    ) -> list[ModelTest]:
        if p.gone or depth == 0:
            return [p]
        info = self.info
        fired: ModelTest | None = None
        required = False
        if p.status in ACTIVE and p.contact is not None:
            if hi - p.contact.lo >= info.lost_after - EPS:
                required = must and lo - p.contact.hi >= (
                    info.lost_after + info.contact_every + slack + EPS
                )
                start = min(max(p.contact.lo + info.lost_after, since), hi)
                fired = replace(
                    p,
                    status=Status.LOST,
                    remembered=p.status,
                    lost_at=Window(start, hi),
                    version=self._v(p),
                )
        elif p.status is Status.LOST and info.lost_expiry is not None and p.lost_at is not None:
            expiry = info.lost_expiry
            if hi - p.lost_at.lo >= expiry - EPS:
                required = must and lo - p.lost_at.hi >= expiry + info.contact_every + slack + EPS
                start = min(max(p.lost_at.lo + expiry, since), hi)
                fired = self._finish(p, Status.FAILED, Window(start, hi), ANY_ERROR)
        elif p.status is Status.DELETING and p.deleting_at is not None:
            delay = info.deletion_delay
            if delay is None or hi - p.deleting_at.lo >= delay - EPS:
                required = must and delay is not None and lo - p.deleting_at.hi >= delay + slack
                fired = replace(p, gone=True, ops=_complete(p.ops, Window(since, hi), None))
        elif p.status is Status.CREATED and p.holder is not None:
            life = self.life.get(p.holder)
            if life is None or hi - life.lo >= info.lease - EPS:
                fired = replace(p, holder=None)
        if fired is None:
            return [p]
        after = self._fire(fired, lo, hi, since, must, slack, depth - 1)
        return after if required else [p, *after]

    def _finish(self, p: ModelTest, status: Status, w: Window, error: str = "") -> ModelTest:
        finished = p.finished_at if p.finished_at is not None else w
        return replace(
            p,
            status=status,
            remembered=None,
            finished_at=finished,
            error=error if status is Status.FAILED else p.error,
            version=self._v(p),
            ops=_complete(p.ops, w, status),
        )

    # --- calls on one test -------------------------------------------------------------

    def step(
        self,
        test_id: str,
        branches_of: Callable[[ModelTest], list[Branch]],
        *,
        code: Code,
        what: str,
        logs: tuple[int, int] | None = None,
        signal: SignalKind | None = None,
        op: Operation | None = None,
    ) -> None:
        """Keep the possibilities of ``test_id`` that allow what the target answered."""
        kept, options = self.answer_possibilities(
            self.tests[test_id], branches_of, code=code, logs=logs, signal=signal, op=op
        )
        if not kept:
            got = code.value
            if signal is not None:
                got += f" signal {signal.value}"
            if logs is not None:
                got += f" and {logs[0]} accepted + {logs[1]} other log records"
            if op is not None:
                got += f" operation {op.id} done={op.done}"
            clause = "§7" if options and all("§7" in o for o in options) else _clause_for(what)
            raise self._fail(clause, f"{what} answered {got}", options)
        self.tests[test_id] = kept

    def answer_possibilities(
        self,
        ps: Iterable[ModelTest],
        branches_of: Callable[[ModelTest], list[Branch]],
        *,
        code: Code,
        logs: tuple[int, int] | None = None,
        signal: SignalKind | None = None,
        op: Operation | None = None,
    ) -> tuple[list[ModelTest], list[str]]:
        """The possibilities after a call that answered ``code`` (and ``signal``, ``op``).

        The second item says, for an empty first one, what the contract allowed instead.
        """
        kept: list[ModelTest] = []
        options: list[str] = []
        skew = self.info.clock_skew
        for p in ps:
            for b in branches_of(p):
                ok = code in b.codes
                ok = ok and (logs is None or logs in b.logs)
                ok = ok and (signal is None or b.signals is None or signal in b.signals)
                ok = ok and (op is None or b.op is None or _op_answer_fits(b, p, op, skew))
                if ok:
                    kept.append(_with_op(b, op) if b.op is not None and op is not None else b.after)
                else:
                    codes = "/".join(sorted(c.value for c in b.codes))
                    extra = "" if b.signals is None else f" signal {_names(b.signals)}"
                    extra += "" if logs is None else f" log {sorted(b.logs)}"
                    options.append(f"from {p.describe()}: {codes}{extra} ({b.why})")
        return _dedup(kept), options

    # claims --------------------------------------------------------------------------

    def claim_branches(
        self, p: ModelTest, agent: str | None, job: JobStatus, error: str, w: Window
    ) -> list[Branch]:
        """§2, §3: JobService.ClaimStatus for the job of ``p``."""
        if job is JobStatus.JOB_STATUS_UNSPECIFIED and not error:
            valid = self.claim_branches(p, agent, job, "error", w)
            other = frozenset().union(*(b.codes for b in valid)) - OK
            why = "a claim without a status needs an error text"
            return [Branch(p, INVALID | other, why, MAYBE_REJECTED)]
        if p.gone:
            return [Branch(p, NOT_FOUND, "the test is gone")]
        taken = _taken_anonymously(p, agent)
        if taken is not None:
            untaken = [Branch(p, CONFLICT, "the job was not handed out", MAYBE_REJECTED)]
            return untaken + self.claim_branches(taken, None, job, error, w)
        actor = agent if agent is not None else p.owner
        if actor is None:
            return [Branch(p, CONFLICT, "the job was not handed out", MAYBE_REJECTED)]
        if p.agent is not None and actor != p.agent:
            return [Branch(p, CONFLICT, "another agent's job: never reassigned", ONE_REJECTED)]
        if p.holder is not None and actor != p.holder:
            return [Branch(p, CONFLICT, "the job was handed to another agent", ONE_REJECTED)]
        out: list[Branch] = []
        if p.owner is None:  # never handed out, or the hand-out was forgotten when it finished
            out.append(Branch(p, CONFLICT, "the job was never handed to this agent", ONE_REJECTED))
            if p.status is Status.CREATED and not self._matches(actor, p.selector):
                return out
        touched = self._contact(p, w)
        if job is JobStatus.JOB_STATUS_UNSPECIFIED:
            out.append(Branch(touched, OK, "an error note: recorded, changes nothing", NOTED))
            return out
        claimed = JOB_TO_STATUS[job]
        text = NOT_FOUND_ERROR if job is JobStatus.NOT_FOUND and not error else error
        out.extend(self._claim(p, touched, actor, claimed, text or ANY_ERROR, w))
        return out

    def _contact(self, p: ModelTest, w: Window) -> ModelTest:
        return replace(p, contact=w) if p.status in ACTIVE or p.status is Status.LOST else p

    def _claim(
        self, p: ModelTest, touched: ModelTest, actor: str, claimed: Status, error: str, w: Window
    ) -> list[Branch]:
        status = p.status
        name = claimed.name
        if status is Status.CREATED:
            if claimed in RANK:
                after = replace(
                    p,
                    status=claimed,
                    rank=RANK[claimed],
                    started_at=w,
                    agent=actor,
                    holder=None,
                    contact=w,
                    version=self._v(p),
                )
                return [Branch(after, OK, f"CREATED + claim {name} -> {name}", ONE_ACCEPTED)]
            if claimed is Status.FAILED:
                after = replace(
                    p,
                    status=Status.FAILED,
                    finished_at=w,
                    error=error,
                    agent=actor,
                    holder=None,
                    version=self._v(p),
                    ops=_complete(p.ops, w, Status.FAILED),
                )
                return [Branch(after, OK, "CREATED + claim FAILED -> FAILED", ONE_ACCEPTED)]
            why = f"CREATED + claim {name}: rejected, nothing ran"
            return [Branch(p, OK | FAILED_PRECONDITION, why, ONE_REJECTED)]
        if status in FINISHED:
            if status is claimed:
                why = f"{name} again on {name}: a duplicate (stale) or a conflict"
                return [Branch(p, OK | CONFLICT, why, ONE_REJECTED)]
            why = f"{status.name} + claim {name}: terminal statuses are absorbing"
            return [Branch(p, CONFLICT, why, ONE_REJECTED)]
        if claimed in OUTCOMES:
            after = self._finish(
                replace(p, contact=w), claimed, w, error if claimed is Status.FAILED else ""
            )
            why = f"{status.name} + claim {name} -> {name}: the agent is authoritative"
            return [Branch(after, OK, why, ONE_ACCEPTED)]
        rank = RANK[claimed]
        if rank < p.rank:
            why = f"{status.name} (rank {p.rank}) + claim {name}: stale, acknowledged"
            return [Branch(touched, OK, why, ONE_REJECTED)]
        if status is Status.LOST:
            back = p.remembered
            assert back is not None
            to = back if rank == p.rank else Status.STOPPING if back is Status.STOPPING else claimed
            after = replace(p, status=to, remembered=None, rank=rank, contact=w, version=self._v(p))
            why = f"LOST@{back.name} + claim {name} -> {to.name}: one event"
            return [Branch(after, OK, why, ONE_ACCEPTED)]
        if rank == p.rank:
            return [Branch(touched, OK, f"{status.name} + claim {name}: contact only")]
        to = Status.STOPPING if status is Status.STOPPING else claimed
        after = replace(p, status=to, rank=rank, contact=w, version=self._v(p))
        return [Branch(after, OK, f"{status.name} + claim {name} -> {to.name}", ONE_ACCEPTED)]

    # polls, imbalance --------------------------------------------------------------------

    def poll_branches(self, p: ModelTest, agent: str | None, w: Window) -> list[Branch]:
        """§3: JobService.GetSignal; a poll by the holder is contact and recovers LOST."""
        if p.gone:
            return [Branch(p, OK, "unknown job: STOP", signals=frozenset({SignalKind.STOP}))]
        anything = frozenset(SignalKind)
        taken = _taken_anonymously(p, agent)
        if taken is not None:
            untaken = Branch(p, OK, "not handed out: changes nothing", MAYBE_REJECTED, anything)
            return [untaken, *self.poll_branches(taken, None, w)]
        actor = agent if agent is not None else p.owner
        if actor is None or actor != p.owner:
            return [
                Branch(p, OK, "not this agent's job: changes nothing", MAYBE_REJECTED, anything)
            ]
        after = self._contact(p, w)
        logs = NO_LOG
        why = "a poll is contact"
        if p.status is Status.LOST:
            assert p.remembered is not None
            after = replace(after, status=p.remembered, remembered=None, version=self._v(p))
            logs, why = ONE_ACCEPTED, f"a poll recovers LOST -> {p.remembered.name}"
        status = after.status
        if status in FINISHED or status is Status.STOPPING:
            signals = frozenset({SignalKind.STOP})
        elif status is Status.WAITING:
            signals = frozenset({SignalKind.RUN_IN})
        else:
            signals = frozenset({SignalKind.NONE})
        return [Branch(after, OK, why, logs, signals)]

    def imbalance_branches(
        self, p: ModelTest, agent: str | None, at: int, rps: int, comment: str, w: Window
    ) -> list[Branch]:
        """§2, §3: agent TestService.Update with an imbalance point."""
        if not MIN_UNIX <= at <= MAX_UNIX or not 0 <= rps < 2**63:
            valid = self.imbalance_branches(p, agent, MIN_UNIX, 0, comment, w)
            other = frozenset().union(*(b.codes for b in valid)) - OK
            why = "§7: an input the engine cannot represent"
            return [Branch(p, INVALID | other, why, MAYBE_REJECTED if other else NO_LOG)]
        if p.gone:
            return [Branch(p, NOT_FOUND, "the test is gone")]
        taken = _taken_anonymously(p, agent)
        if taken is not None:
            untaken = [Branch(p, CONFLICT, "not the assigned agent", MAYBE_REJECTED)]
            return untaken + self.imbalance_branches(taken, None, at, rps, comment, w)
        actor = agent if agent is not None else p.owner
        if actor is None or (p.agent is not None and actor != p.agent):
            return [Branch(p, CONFLICT, "not the assigned agent", MAYBE_REJECTED)]
        if p.started_at is None or p.status is Status.DELETING:
            why = f"no imbalance point for a {p.status.name} test that never ran"
            if p.status is Status.DELETING:
                why = "no imbalance point for a DELETING test"
            codes = CONFLICT | (OK if actor == p.holder else frozenset())
            return [Branch(p, codes, why, MAYBE_REJECTED)]
        point = (at, rps, comment)
        after = replace(self._contact(p, w), imbalance=point, version=self._v(p))
        if p.status is not Status.LOST:
            return [Branch(after, OK, "imbalance point recorded", ONE_ACCEPTED)]
        assert p.remembered is not None
        back = replace(after, status=p.remembered, remembered=None)
        why = f"an Update recovers LOST -> {p.remembered.name} and records the point"
        return [
            Branch(back, OK, why, ONE_ACCEPTED),
            Branch(replace(back, version=self._v(p, 2)), OK, why, frozenset({(2, 0)})),
        ]

    # user commands -------------------------------------------------------------------------

    def stop_branches(self, p: ModelTest, w: Window) -> list[Branch]:
        """§3, §5: TestService.Stop."""
        if p.gone:
            return [Branch(p, NOT_FOUND, "the test is gone")]
        status = p.status
        principal = self.principal or ""
        fresh = OpModel(NEW_OP, w.lo, principal)
        if status is Status.CREATED:
            op = replace(fresh, done=True, result="response", status=Status.CANCELLED, done_at=w)
            why = "CREATED + stop -> CANCELLED; the operation is done at once"
            out = []
            for holder in _kept_or_forgotten(p.holder):  # a hand-out may outlive its test
                after = self._finish(replace(p, holder=holder), Status.CANCELLED, w)
                after = replace(after, ops=(*after.ops, op))
                out.append(
                    Branch(after, OK, why, ONE_ACCEPTED, op=op, new_op=True, at=w, pin_id=NEW_OP)
                )
            return out
        if status in RANK:
            after = replace(p, status=Status.STOPPING, version=self._v(p))
            after = replace(after, ops=(*after.ops, fresh))
            why = f"{status.name} + stop -> STOPPING; the operation is pending"
            return [
                Branch(after, OK, why, ONE_ACCEPTED, op=fresh, new_op=True, at=w, pin_id=NEW_OP)
            ]
        if status is Status.STOPPING:
            current = p.inflight()
            why = "STOPPING + stop: the same in-flight operation again"
            if current is None:  # pragma: no cover - STOPPING always has one
                return [Branch(p, OK, why, op=fresh, new_op=True, at=w, pin_id=NEW_OP)]
            unseen = _unseen(current.id)
            pin = current.id if unseen else None
            return [Branch(p, OK, why, op=current, new_op=unseen, pin_id=pin)]
        if status is Status.LOST:
            after = self._finish(p, Status.STOPPED, w)
            done = replace(fresh, done=True, result="response", status=Status.STOPPED, done_at=w)
            why = "LOST + stop -> STOPPED; the operation is done at once"
            current = p.inflight()
            out = [
                Branch(
                    replace(after, ops=(*after.ops, done)),
                    OK,
                    why,
                    ONE_ACCEPTED,
                    op=done,
                    new_op=True,
                    at=w,
                    pin_id=NEW_OP,
                )
            ]
            if current is not None:
                finished = next(op for op in after.ops if op.id == current.id)
                unseen = _unseen(current.id)
                out.append(
                    Branch(
                        after,
                        OK,
                        why + " (the in-flight one)",
                        ONE_ACCEPTED,
                        op=finished,
                        new_op=unseen,
                        pin_id=current.id if unseen else None,
                    )
                )
            return out
        return [Branch(p, FAILED_PRECONDITION, f"{status.name} + stop: not running", ONE_REJECTED)]

    def delete_branches(self, p: ModelTest, w: Window) -> list[Branch]:
        """§3: TestService.Delete."""
        if p.gone:
            return [Branch(p, NOT_FOUND, "the test is gone")]
        status = p.status
        if status is Status.DELETING:
            return [Branch(p, OK, "DELETING + delete: idempotent")]
        if status in ACTIVE:
            why = f"{status.name} + delete: stop it first"
            return [Branch(p, FAILED_PRECONDITION, why, ONE_REJECTED)]
        finished = p.finished_at if p.finished_at is not None else w
        return [
            Branch(
                replace(
                    p,
                    status=Status.DELETING,
                    remembered=None,
                    finished_at=finished,
                    deleting_at=w,
                    holder=holder,
                    version=self._v(p),
                    ops=_complete(p.ops, w, None),
                ),
                OK,
                f"{status.name} + delete -> DELETING",
                ONE_ACCEPTED,
            )
            for holder in _kept_or_forgotten(p.holder)
        ]

    # calls on every test -------------------------------------------------------------------

    def created(self, snap: Test, selector: tuple[str, str], w: Window) -> None:
        """A create answered with ``snap``: a new CREATED test, version 1."""
        s = snap.summary
        if s is None or s.created_at is None:
            raise self._fail("§3", f"create answered a test without a summary: {snap}")
        if s.status is not Status.CREATED:
            raise self._fail("§3", f"create answered {s.status.name}, not CREATED")
        created_at = s.created_at.timestamp()
        tolerance = self.info.clock_skew
        if not w.holds(created_at, tolerance):
            raise self._fail("§2", f"created_at {created_at} is outside the call {w}")
        if snap.id in self.tests:
            raise self._fail("§3", f"create answered the id of an existing test {snap.id}")
        if self.principal is None and s.created_by:
            self.principal = s.created_by
        self._seq += 1
        p = ModelTest(
            snap.id,
            self._seq,
            selector,
            created_at,
            self.principal,
            version=1 if self.track_version else 0,
        )
        self.tests[snap.id] = [p]
        self.seen[snap.id] = snap

    def heartbeat(self, agent: str, status: AgentStatus, w: Window) -> None:
        """§2: AgentService.ClaimStatus; busy keeps the assigned agent's active tests alive."""
        self.life[agent] = w
        if status not in BUSY:
            return
        for test_id, ps in self.tests.items():
            self.tests[test_id] = _dedup(
                replace(p, contact=w) if p.agent == agent and p.status in ACTIVE else p for p in ps
            )

    def alive(self, agent: str | None, test_id: str | None, w: Window) -> None:
        """Any call by an agent is a sign of life for its hand-outs (§2's lease)."""
        if agent is None and test_id is not None:
            # a call without an agent id is the holder's only where the server still knows it
            ps = self.tests.get(test_id, [])
            owners = {None if p.gone else p.owner for p in ps}
            agent = owners.pop() if len(owners) == 1 else None
        if agent is not None:
            self.life[agent] = w

    def handed_out(self, agent: str, job: str | None) -> None:
        """§2: JobService.Get gives a matching CREATED test not held by another agent.

        With ``TargetInfo.oldest_first`` (a promise of this engine, not of the
        contract) it must be the oldest such test.
        """

        def fresh(p: ModelTest) -> bool:
            return (
                not p.gone
                and p.status is Status.CREATED
                and p.holder is None
                and self._matches(agent, p.selector) is not False
            )

        def certain(p: ModelTest) -> bool:
            return fresh(p) and self._matches(agent, p.selector) is True

        if job is not None and job not in self.tests:
            if self.info.shared:
                return  # another run's test on a shared server
            raise self._fail("§2", f"JobService.Get handed out {job}, a test never created")
        created = None
        if job is not None:
            ps = self.tests[job]
            keep = [
                p
                for p in ps
                if not p.gone
                and p.status is Status.CREATED
                and p.holder in (None, agent)
                and self._matches(agent, p.selector) is not False
            ]
            if not keep:
                options = [p.describe() + f" held by {p.holder}" for p in ps]
                raise self._fail(
                    "§2",
                    f"JobService.Get handed {job} to {agent}: not a CREATED test for it, "
                    "or held by another agent",
                    options,
                )
            self.tests[job] = _dedup(replace(p, holder=agent) for p in keep)
            created = keep[0].created_at
        if job is not None and not self.info.oldest_first:
            return
        for test_id, ps in self.tests.items():
            if test_id == job:
                continue
            if created is not None and not ps[0].created_at < created - EPS:
                continue
            keep = [p for p in ps if not certain(p)]
            if not keep:
                what = "no job" if job is None else f"{job}, created later"
                raise self._fail(
                    "§2",
                    f"JobService.Get gave {agent} {what}, while {test_id} "
                    f"(created {ps[0].created_at:.6f}) was a CREATED test waiting for it",
                )
            self.tests[test_id] = keep

    def stop_plans(
        self, plans: list[int], tagged: dict[int, list[str]], w: Window
    ) -> dict[int, frozenset[str | None]]:
        """§6: stop every non-terminal test of each plan; the error codes each plan may get.

        A plan answers NOT_FOUND when none of its tests exists, ACTION_NOT_AVAILABLE
        when none is stoppable, and no error when one was stopped or is STOPPING.
        """
        allowed: dict[int, frozenset[str | None]] = {}
        for plan in dict.fromkeys(plans):
            ids = tagged.get(plan, [])
            all_may_be_gone = all(any(p.gone for p in self.tests[t]) for t in ids)
            some_may_stop = False
            none_may_stop = True
            some_may_be_finished = False
            for t in ids:
                new: list[ModelTest] = []
                may_not_stop = False
                for p in self.tests[t]:
                    if p.gone or p.status in FINISHED:
                        may_not_stop = True
                        some_may_be_finished |= not p.gone
                        new.append(p)
                        continue
                    some_may_stop = True
                    self._batch += 1
                    for b in self.stop_branches(p, w):
                        new.append(_rename(b.after, NEW_OP, f"?batch{self._batch}"))
                none_may_stop &= may_not_stop
                self.tests[t] = _dedup(new)
            codes: set[str | None] = set()
            if all_may_be_gone:
                codes.add("NOT_FOUND")
            if none_may_stop and some_may_be_finished:
                codes.add("ACTION_NOT_AVAILABLE")
            if some_may_stop:
                codes.add(None)
            allowed[plan] = frozenset(codes)
            self.checked["§6 batch stop"] += 1
        return allowed

    # observations ------------------------------------------------------------------------------

    def observe(self, test_id: str, snap: Test | None, version: int | None) -> None:
        """Keep the possibilities a Get (or a List entry) shows; pin what it shows."""
        ps = self.tests[test_id]
        if snap is None:
            keep = [p for p in ps if p.gone]
            if not keep:
                raise self._fail(
                    "§3",
                    f"{test_id} is gone (NOT_FOUND) but was {_names_of(ps)}",
                    [p.describe() for p in ps],
                )
            self.tests[test_id] = keep[:1]
            self.checked["§3 gone"] += 1
            return
        before = self.seen.get(test_id)
        for clause, message in snapshot_violations(snap, before):
            raise self._fail(clause, f"{test_id}: {message}")
        self.checked["§4.1-§4.8 snapshot"] += 1
        s = snap.summary
        assert s is not None
        rank = RANK.get(s.status, 0)
        if rank and rank < self.max_rank.get(test_id, 0):
            raise self._fail(
                "§4.9",
                f"{test_id} is {s.status.name} (rank {rank}) after reaching rank "
                f"{self.max_rank[test_id]}",
            )
        self.max_rank[test_id] = max(rank, self.max_rank.get(test_id, 0))
        self.seen[test_id] = snap
        kept, reasons = self.shown_possibilities(ps, snap, version)
        if not kept:
            raise self._fail(
                _clause_for_observation(ps, snap, reasons),
                f"{test_id} shows {_show(snap, version)}",
                reasons,
            )
        self.tests[test_id] = kept
        self.checked["§3 status and fields"] += 1

    def shown_possibilities(
        self, ps: Iterable[ModelTest], snap: Test, version: int | None
    ) -> tuple[list[ModelTest], list[str]]:
        """The possibilities a snapshot agrees with, pinned to it; else why each disagrees."""
        kept: list[ModelTest] = []
        reasons: list[str] = []
        for p in ps:
            why = self._mismatch(p, snap, version)
            if why is None:
                kept.append(self._pin(p, snap))
            else:
                reasons.append(f"{p.describe()}: {why}")
        return _dedup(kept), reasons

    def _mismatch(self, p: ModelTest, snap: Test, version: int | None) -> str | None:
        s = snap.summary
        assert s is not None
        tolerance = self.info.clock_skew
        if p.gone:
            return "the test should be gone"
        if s.status is not p.status:
            if s.status is Status.LOST:
                return "LOST is not allowed here (§4.10: the agent kept contact within lost_after)"
            if p.status is Status.LOST:
                return f"should be LOST (silent since {p.contact})"
            return f"status should be {p.status.name}"
        if version is not None and self.track_version and version != p.version:
            return f"version should be {p.version} (§4.12)"
        for name, expected in (("started_at", p.started_at), ("finished_at", p.finished_at)):
            actual = _seconds(getattr(s, name))
            if (actual is None) != (expected is None):
                return f"{name} should be {'unset' if expected is None else expected}"
            if (
                actual is not None
                and expected is not None
                and not expected.holds(actual, tolerance)
            ):
                return f"{name} {actual:.6f} should be in {expected}"
        created = _seconds(s.created_at)
        if created is None or abs(created - p.created_at) > EPS:
            return f"created_at should be {p.created_at:.6f}"
        if p.created_by is not None and s.created_by != p.created_by:
            return f"created_by should be {p.created_by!r}"
        if p.error == ANY_ERROR:
            if not s.error:
                return "error should be non-empty"
        elif s.error != p.error:
            return f"error should be {p.error!r}"
        shown_agent = s.assigned_agent_id or None
        if shown_agent != p.agent and not (p.agent == ANONYMOUS_HOLDER and shown_agent):
            return f"assigned_agent_id should be {p.agent!r}"
        point = s.imbalance_point
        if (point is None) != (p.imbalance is None):
            return f"imbalance_point should be {p.imbalance}"
        if point is not None and p.imbalance is not None:
            at = _seconds(point.at)
            shown = (None if at is None else round(at), point.rps, point.comment)
            if shown != p.imbalance:
                return f"imbalance_point should be {p.imbalance}, not {shown}"
        return None

    def _pin(self, p: ModelTest, snap: Test) -> ModelTest:
        s = snap.summary
        assert s is not None
        started = _seconds(s.started_at)
        finished = _seconds(s.finished_at)
        return replace(
            p,
            started_at=None if started is None else Window.at(started),
            finished_at=None if finished is None else Window.at(finished),
            error=s.error if p.error == ANY_ERROR else p.error,
            agent=s.assigned_agent_id if p.agent == ANONYMOUS_HOLDER else p.agent,
        )

    def observe_operation(self, op_id: str, test_id: str, op: Operation | None) -> None:
        """§4.11, §5: an operation's current state, as OperationService.Get shows it."""
        ps = self.tests[test_id]
        if op is None:
            raise self._fail("§5", f"OperationService.Get does not find stop operation {op_id}")
        kept: list[ModelTest] = []
        reasons: list[str] = []
        for p in ps:
            expected = next((o for o in p.ops if o.id == op_id), None)
            if expected is None:
                reasons.append(f"{p.describe()}: no such operation")
                continue
            why = _op_mismatch(expected, p, op, test_id, self.info.clock_skew)
            if why is None:
                kept.append(p)
            else:
                reasons.append(f"{p.describe()}: {why}")
        if not kept:
            clause = "§4.11" if any("done" in r or "result" in r for r in reasons) else "§5"
            raise self._fail(
                clause,
                f"operation {op_id} of {test_id} shows done={op.done}"
                f" error={op.error is not None} response={op.response is not None}",
                reasons,
            )
        self.tests[test_id] = _dedup(kept)
        self.checked["§4.11 stop operations"] += 1


def _taken_anonymously(p: ModelTest, agent: str | None) -> ModelTest | None:
    """A job call without an agent id on an unheld CREATED anonymous test may take its job.

    The anonymous agent (``ulta run <test_id>``) sends no heartbeat, so its lease
    may lapse while it prepares; a server may let its next call take the job
    back, for an anonymous holder the server names.
    """
    if (
        agent is None
        and p.status is Status.CREATED
        and p.owner is None
        and p.selector[0] == "anonymous"
    ):
        return replace(p, holder=ANONYMOUS_HOLDER)
    return None


def _kept_or_forgotten(holder: str | None) -> tuple[str | None, ...]:
    """A finished test's hand-out: the contract does not say whether a server forgets it."""
    return (None,) if holder is None else (holder, None)


def _complete(ops: tuple[OpModel, ...], w: Window, status: Status | None) -> tuple[OpModel, ...]:
    """Complete the in-flight stop operation: its test is terminal (``status``) or deleted."""
    out = []
    for op in ops:
        if not op.done:
            result = "response" if status is not None else "either"
            op = replace(op, done=True, result=result, status=status, done_at=w)
        out.append(op)
    return tuple(out)


def _op_answer_fits(b: Branch, p: ModelTest, op: Operation, tolerance: float) -> bool:
    expected = b.op
    assert expected is not None
    if b.new_op:
        if any(o.id == op.id for o in p.ops) or not op.id or _unseen(op.id):
            return False
        created = _seconds(op.created_at)
        if b.at is not None and (created is None or not b.at.holds(created, tolerance)):
            return False
    elif op.id != expected.id:
        return False
    return op.done == expected.done


def _with_op(b: Branch, op: Operation) -> ModelTest:
    """Pin a stop answer's id, created_at and created_by into the operation it names."""
    if b.pin_id is None:
        return b.after
    created = _seconds(op.created_at)
    ops = tuple(
        replace(
            o,
            id=op.id,
            created_at=o.created_at if created is None or not b.new_op else created,
            created_by=o.created_by or op.created_by,
        )
        if o.id == b.pin_id
        else o
        for o in b.after.ops
    )
    return replace(b.after, ops=ops)


def _rename(p: ModelTest, old: str, new: str) -> ModelTest:
    if not any(o.id == old for o in p.ops):
        return p
    return replace(p, ops=tuple(replace(o, id=new) if o.id == old else o for o in p.ops))


def _unseen(op_id: str) -> bool:
    """Placeholder ids stand for operations whose id the kit has not been shown yet."""
    return op_id.startswith("?")


def _op_mismatch(
    expected: OpModel, p: ModelTest, op: Operation, test_id: str, tolerance: float
) -> str | None:
    if op.id != expected.id:
        return f"id {op.id} should be {expected.id}"
    if op.metadata is None or op.metadata.test_id != test_id:
        return f"metadata should be StopTestMetadata(test_id={test_id!r})"
    created = _seconds(op.created_at)
    if created is None or abs(created - expected.created_at) > tolerance + EPS:
        return f"created_at should be {expected.created_at:.6f}"
    if expected.created_by and op.created_by != expected.created_by:
        return f"created_by should be {expected.created_by!r}"
    modified = _seconds(op.modified_at)
    if modified is None or modified < created - EPS:
        return "modified_at should be set, not before created_at"
    if op.done != expected.done:
        state = "terminal or gone" if expected.done else f"{p.describe()}: not finished"
        return f"done should be {expected.done} (the test is {state})"
    if op.done:
        if (op.error is None) == (op.response is None):
            return "a done operation has exactly one of error or response"
        if op.response is not None:
            if expected.result == "" or op.response.id != test_id:
                return "the response should be the stopped test"
            summary = op.response.summary
            if expected.status is not None and (
                summary is None or summary.status is not expected.status
            ):
                shown = None if summary is None else summary.status.name
                return f"the response should show {expected.status.name}, not {shown}"
        elif expected.result != "either":
            return "the result should be the test's snapshot (response), not an error"
        done_at = expected.done_at
        if done_at is not None and modified is not None and not done_at.holds(modified, tolerance):
            return f"modified_at {modified:.6f} should be when it finished, {expected.done_at}"
    return None


def _names(kinds: Iterable[SignalKind]) -> str:
    return "/".join(sorted(k.value for k in kinds))


def _names_of(ps: list[ModelTest]) -> str:
    return " or ".join(p.describe() for p in ps)


def _show(snap: Test, version: int | None) -> str:
    s = snap.summary
    assert s is not None
    parts = [s.status.name]
    if version is not None:
        parts.append(f"v{version}")
    parts.append(f"agent={s.assigned_agent_id!r}")
    if s.error:
        parts.append(f"error={s.error!r}")
    if s.imbalance_point is not None:
        parts.append("with an imbalance point")
    return " ".join(parts)


def _clause_for(what: str) -> str:
    if what.startswith("Stop"):
        return "§5"
    if what.startswith("GetSignal"):
        return "§3 signal"
    return "§3"


def _clause_for_observation(ps: list[ModelTest], snap: Test, reasons: list[str]) -> str:
    text = " ".join(reasons)
    if "§4.10" in text:
        return "§4.10"
    if "should be LOST" in text and all("should be LOST" in r for r in reasons):
        return "§4.10"
    if all("§4.12" in r for r in reasons):
        return "§4.12"
    return "§3"
