"""``LifecycleMachine``: a hypothesis state machine that drives any ``Target``.

Rules are what users and agents do (create, stop, delete, list, batch stop,
take a job, claim, poll, heartbeat, report imbalance, bad credentials, bad
input) and the passing of time. After every call the reference model keeps
the possibilities the answer allows; after every step each test and stop
operation is read back and checked against the §4 invariants and the model.
A failure is a ``ContractViolation`` naming the clause, and hypothesis shrinks
it to a short sequence of steps (arguments are plain strings and numbers, so
the printed steps run as they are).

Bind a machine to a target with :func:`machine_for`::

    TestMyServer = machine_for(lambda: GrpcTarget("127.0.0.1:50051", ...)).TestCase
"""

from __future__ import annotations

import json
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from loadtest_core import (
    AgentSelector,
    AgentStatus,
    Details,
    Operation,
    SignalKind,
    SingleAgentConfiguration,
    Status,
    Tag,
    Test,
    TestSpec,
)
from loadtest_core.testing._log import replay_log
from loadtest_core.testing._model import (
    FINISHED,
    AgentInfo,
    Branch,
    ContractViolation,
    ModelTest,
    ReferenceModel,
    Window,
)
from loadtest_core.testing._strategies import invalid_list_filters, invalid_specs
from loadtest_core.testing._target import Code, JobStatus, SignalAnswer, Target, TargetError

__all__ = ["LifecycleMachine", "Stats", "machine_for"]

T = TypeVar("T")

AGENTS = ("a1", "a2", "anon")
WORKERS = ("a1", "a2", "a1", "a2", "anon")
AGENT_OR_HOLDER = st.sampled_from([None, "a1", "a2", "anon"])
SELECTORS = ("pool-any", "a1", "pool-any", "pool-a", "a2", "anonymous")
CLAIMED = [j.value for j in JobStatus if j is not JobStatus.JOB_STATUS_UNSPECIFIED]
ADVANCES = (0.01, 0.5, 0.99, 1.0, 1.01, 1.11, 1.5, 2.2)
STAGES = (
    JobStatus.INITIATED,
    JobStatus.PREPARING,
    JobStatus.WAITING_FOR_A_COMMAND_TO_RUN,
    JobStatus.RUNNING,
    JobStatus.FINISHING,
    JobStatus.POST_PROCESS,
)
OUTCOME_MOVES = {
    "end": JobStatus.FINISHED,
    "fail": JobStatus.FAILED,
}
MOVES = (
    "next",
    "poll",
    "next",
    "wait",
    "poll",
    "heartbeat",
    "same",
    "skip",
    "stop",
    "back",
    "end",
    "fail",
)
WORK = st.lists(st.sampled_from(MOVES), min_size=1, max_size=4)
LIST_FILTERS = (
    "",
    'summary.status = "RUNNING"',
    'summary.status IN ("STOPPING", "LOST")',
    "summary.is_finished = true",
    "plan 1",
    "plan 2",
)


def _has_tests(machine: LifecycleMachine) -> bool:
    return bool(machine.model.tests)


class Stats:
    """Counts across every example of a run: steps, examples, checks by clause."""

    def __init__(self) -> None:
        self.examples = 0
        self.steps = 0
        self.checked: Counter[str] = Counter()
        self.on_step: Callable[[Stats], None] | None = None


class LifecycleMachine(RuleBasedStateMachine):
    """The lifecycle contract as a state machine over ``target_factory()``'s target."""

    target_factory: ClassVar[Callable[[], Target]]
    stats: ClassVar[Stats | None] = None
    max_tests: ClassVar[int] = 8
    tests = Bundle("tests")

    def __init__(self) -> None:
        super().__init__()
        self.target = type(self).target_factory()
        self.info = self.target.info
        self.model = ReferenceModel(self.info, track_version=self.info.shows_version)
        self.run = uuid.uuid4().hex[:10]
        self.plan_base = (uuid.uuid4().int % 2**40 + 1) * 10
        self.plans: dict[int, list[str]] = {}
        self.agent_ids: dict[str, str] = {}
        self.log_seq = 0
        self.log_version: dict[str, int] = {}
        self.steps = 0
        self.jobs: dict[str, str] = {}
        self.job_rank: dict[str, int] = {}
        self.told_to_stop: set[str] = set()
        for name, labels in (("a1", {"pool": f"a-{self.run}"}), ("a2", {"pool": f"b-{self.run}"})):
            labels = {**labels, "kit": self.run}
            agent_name = f"{name}-{self.run}"
            real = self._required("AgentRegistrationService", self.target.register_agent)(
                agent_name, labels
            )
            self.agent_ids[name] = real
            self.model.agents[real] = AgentInfo(agent_name, labels)
        self.agent_ids["anon"] = f"anon-{self.run}"
        if self.stats is not None:
            self.stats.examples += 1
            self.model.checked = self.stats.checked

    # --- plumbing --------------------------------------------------------------------

    def _required(self, what: str, call: Callable[..., T]) -> Callable[..., T]:
        def wrapped(*args: Any) -> T:
            try:
                return call(*args)
            except TargetError as exc:
                raise ContractViolation("§2", f"{what} refused: {exc}") from None

        return wrapped

    def _now(self) -> float:
        return self.target.now()

    def _invoke(self, call: Callable[..., T], *args: Any) -> tuple[Code, T | None]:
        try:
            return Code.OK, call(*args)
        except TargetError as exc:
            return exc.code, None

    def _agent(self, agent: str | None) -> str | None:
        return None if agent is None else self.agent_ids[agent]

    def _settle(self, lo: float, hi: float) -> None:
        self.model.settle(lo, hi, at_tick=False)

    def _step_done(self) -> None:
        self.steps += 1
        if self.stats is not None:
            self.stats.steps += 1
            if self.stats.on_step is not None:
                self.stats.on_step(self.stats)

    def _read_log(self) -> list[dict[str, Any]]:
        """New event-log records; every accepted one must be its test's next version (§4.12)."""
        if not self.info.has_log:
            return []
        new: list[dict[str, Any]] = self.target.events(self.log_seq) or []
        for r in new:
            self.log_seq = max(self.log_seq, int(r["seq"]))
            if r["outcome"] == "accepted":
                test_id = r["test_id"]
                expected = self.log_version.get(test_id, 0) + 1
                if int(r["version"]) != expected:
                    raise ContractViolation(
                        "§4.12",
                        f"log record {r['seq']} ({r['event']} on {test_id}) has version "
                        f"{r['version']}, the previous accepted one {expected - 1}",
                    )
                self.log_version[test_id] = expected
        self.model.checked["§4.12 log versions"] += len(new)
        return new

    def _log_counts(self, test_id: str) -> tuple[int, int] | None:
        """(accepted, other) records a call left for its test; a hidden LOST is §4.10."""
        if not self.info.has_log:
            return None
        mine = [r for r in self._read_log() if r["test_id"] == test_id]
        if any(r.get("from") == "LOST" for r in mine) and not any(
            p.status is Status.LOST for p in self.model.possible(test_id)
        ):
            shown = ", ".join(f"{r['event']} {r['from']} -> {r['to']}" for r in mine)
            raise ContractViolation(
                "§4.10",
                f"{test_id} was LOST (its log shows {shown}) although its agent was in contact "
                f"within lost_after: it may be LOST only from "
                f"{' or '.join(p.describe() for p in self.model.possible(test_id))} after "
                f"{self.info.lost_after:g} s of silence",
            )
        accepted = sum(1 for r in mine if r["outcome"] == "accepted")
        return accepted, len(mine) - accepted

    def _job_call(
        self,
        test: str,
        agent: str | None,
        what: str,
        call: Callable[[], T],
        branches: Callable[[ModelTest, Window], list[Branch]],
    ) -> tuple[Code, T | None]:
        lo = self._now()
        code, value = self._invoke(call)
        hi = self._now()
        w = Window(lo, hi)
        self._settle(lo, hi)
        signal = value.kind if isinstance(value, SignalAnswer) else None
        op = value if isinstance(value, Operation) else None
        self.model.step(
            test,
            lambda p: branches(p, w),
            code=code,
            what=what,
            logs=self._log_counts(test),
            signal=signal,
            op=op,
        )
        self.model.alive(agent, test, w)
        self.model.checked[f"§3 {what.split('(')[0]}"] += 1
        self._step_done()
        return code, value

    # --- users --------------------------------------------------------------------------

    def _selector(self, kind: str) -> tuple[AgentSelector, tuple[str, str]]:
        if kind in ("a1", "a2"):
            real = self.agent_ids[kind]
            return AgentSelector(agent_id=real), ("agent", real)
        if kind == "pool-a":
            text = f'labels.pool = "a-{self.run}"'
        elif kind == "pool-any":
            text = f'labels.kit = "{self.run}"'
        else:
            return AgentSelector(anonymous_agent=True), ("anonymous", "")
        return AgentSelector(match_by_filter=text), ("filter", text)

    def _tags(self, plan: int) -> tuple[Tag, ...]:
        return (
            Tag(key=self.info.tag_key, value=str(self.plan_base + plan)),
            Tag(key="kit_run", value=self.run),
        )

    @initialize(target=tests, selector=st.sampled_from(SELECTORS), plan=st.sampled_from([1, 2]))
    def first_test(self, selector: str, plan: int) -> str:
        return self._create(selector, plan)

    @precondition(lambda self: len(self.model.tests) < self.max_tests)
    @rule(target=tests, selector=st.sampled_from(SELECTORS), plan=st.sampled_from([1, 2]))
    def create(self, selector: str, plan: int) -> str:
        return self._create(selector, plan)

    def _create(self, selector: str, plan: int) -> str:
        chosen, key = self._selector(selector)
        name = f"kit-{self.run}-{len(self.model.tests) + 1}"
        spec = TestSpec(
            configurations=(SingleAgentConfiguration(agent_selector=chosen),),
            details=Details(name=name, tags=self._tags(plan)),
        )
        lo = self._now()
        code, snap = self._invoke(lambda: self.target.create(spec))
        hi = self._now()
        if snap is None:
            raise ContractViolation("§2", f"TestService.Create of a valid test answered {code}")
        self._settle(lo, hi)
        self.model.created(snap, key, Window(lo, hi))
        self.plans.setdefault(self.plan_base + plan, []).append(snap.id)
        self._read_log()
        self._step_done()
        return snap.id

    @rule(test=tests)
    def stop(self, test: str) -> None:
        _code, op = self._job_call(
            test,
            None,
            "Stop",
            lambda: self.target.stop(test),
            lambda p, w: self.model.stop_branches(p, w),
        )
        if op is not None and (op.metadata is None or op.metadata.test_id != test):
            raise ContractViolation("§5", f"Stop({test}) answered metadata {op.metadata}")

    @rule(test=tests)
    def delete(self, test: str) -> None:
        self._job_call(
            test,
            None,
            "Delete",
            lambda: self.target.delete(test),
            lambda p, w: self.model.delete_branches(p, w),
        )

    def _matches(self, p: ModelTest, flt: str) -> bool:
        if p.gone:
            return False
        if flt == "":
            return True
        if flt == 'summary.status = "RUNNING"':
            return p.status is Status.RUNNING
        if flt == 'summary.status IN ("STOPPING", "LOST")':
            return p.status in (Status.STOPPING, Status.LOST)
        if flt == "summary.is_finished = true":
            return p.status in FINISHED
        plan = self.plan_base + int(flt.split()[1])
        return p.id in self.plans.get(plan, [])

    def _filter_text(self, flt: str) -> str:
        if flt.startswith("plan "):
            text = f'details.tags.{self.info.tag_key}:"{self.plan_base + int(flt.split()[1])}"'
        else:
            text = flt
        if self.info.shared:
            scope = f'details.tags.kit_run:"{self.run}"'
            text = f"{text} AND {scope}" if text else scope
        return text

    def _listed(self, text: str, page_size: int = 0) -> list[Test]:
        out: list[Test] = []
        token = ""
        for _ in range(200):
            code, page = self._invoke(self.target.list_tests, text, page_size, token)
            if page is None:
                raise ContractViolation("§3", f"List({text!r}) answered {code.value}")
            tests, token = page
            if page_size and len(tests) > page_size:
                raise ContractViolation("§3", f"List page of {len(tests)} > page_size {page_size}")
            out.extend(tests)
            if not token:
                return out
        raise ContractViolation("§3", f"List({text!r}) never ended (200 pages)")

    @rule(flt=st.sampled_from(LIST_FILTERS), page_size=st.sampled_from([0, 1, 3]))
    def list_tests(self, flt: str, page_size: int) -> None:
        text = self._filter_text(flt)
        lo = self._now()
        listed = self._listed(text, page_size)
        hi = self._now()
        self._settle(lo, hi)
        ids = [t.id for t in listed]
        if len(ids) != len(set(ids)):
            raise ContractViolation("§3", f"List({text!r}) repeated a test: {ids}")
        created = [t.summary.created_at for t in listed if t.summary and t.summary.created_at]
        if created != sorted(created, reverse=True):
            raise ContractViolation("§3", f"List({text!r}) is not newest first")
        shown = {t.id: t for t in listed}
        for test_id in list(self.model.tests):
            snap = shown.pop(test_id, None)
            if snap is not None:
                self.model.observe(test_id, snap, None)
                ps = self.model.possible(test_id)
                if not any(self._matches(p, flt) for p in ps):
                    raise ContractViolation(
                        "§3", f"List({text!r}) shows {test_id}, which does not match it"
                    )
                continue
            ps = self.model.possible(test_id)
            keep = [p for p in ps if not self._matches(p, flt)]
            if not keep:
                raise ContractViolation(
                    "§3", f"List({text!r}) leaves out {test_id} ({ps[0].describe()})"
                )
            self.model.tests[test_id] = keep
        if shown and not self.info.shared:
            raise ContractViolation("§3", f"List shows tests never created: {sorted(shown)}")
        self.model.checked["§3 List"] += 1
        self._step_done()

    @rule(
        what=st.one_of(
            st.tuples(st.just("create"), invalid_specs()),
            st.tuples(st.just("list"), invalid_list_filters()),
            st.tuples(
                st.sampled_from(["stop", "get", "delete"]),
                st.sampled_from(["", "not an id!", "x" * 129, "unknown"]),
            ),
        )
    )
    def bad_input(self, what: tuple[str, Any]) -> None:
        """Refused input changes nothing: INVALID_ARGUMENT, or NOT_FOUND for an unknown id."""
        kind, value = what
        if kind == "create":
            self._create_invalid(value)
        elif kind == "list":
            code, _ = self._invoke(lambda: self.target.list_tests(value, 0, ""))
            if code is not Code.INVALID_ARGUMENT:
                raise ContractViolation(
                    "§7", f"List with filter {value!r} answered {code.value}, not INVALID_ARGUMENT"
                )
            self.model.checked["§7 bad filters"] += 1
        else:
            self._unknown_test(kind, value)
        self._read_log()
        self._step_done()

    def _create_invalid(self, spec: dict[str, Any]) -> None:
        data = {**spec, "details": {"tags": [t.to_data() for t in self._tags(9)]}}
        code, _snap = self._invoke(lambda: self.target.create(TestSpec.from_data(data)))
        if code is not Code.INVALID_ARGUMENT:
            raise ContractViolation(
                "§3",
                f"Create of an invalid test {spec} answered {code.value}, not INVALID_ARGUMENT",
            )
        stored = self._listed(f'details.tags.kit_run:"{self.run}"')
        unknown = [t.id for t in stored if t.id not in self.model.tests]
        if unknown:
            raise ContractViolation("§3", f"a refused Create stored {unknown}")
        self.model.checked["§3 bad input changes nothing"] += 1

    def _unknown_test(self, call: str, test_id: str) -> None:
        if test_id == "unknown":
            test_id = f"kit-{self.run}-no-such-test"
            allowed = {Code.NOT_FOUND}
        elif test_id == "":
            allowed = {Code.INVALID_ARGUMENT}
        else:
            allowed = {Code.INVALID_ARGUMENT, Code.NOT_FOUND}
        fn: Callable[[str], Any] = getattr(self.target, call)
        code, _ = self._invoke(fn, test_id)
        if code not in allowed:
            shown = "/".join(sorted(c.value for c in allowed))
            raise ContractViolation("§5", f"{call}({test_id!r}) answered {code.value}, not {shown}")
        self.model.checked["§5 bad ids"] += 1

    @precondition(lambda self: self.info.has_http)
    @rule(plans=st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=4))
    def stop_plans(self, plans: list[int]) -> None:
        real = [self.plan_base + p for p in plans]
        body = json.dumps({"plans": real}).encode()
        lo = self._now()
        answer = self.target.stop_plans(body)
        hi = self._now()
        self._settle(lo, hi)
        before = {
            plan: "; ".join(
                f"{t}: {' or '.join(p.describe() for p in self.model.possible(t))}"
                for t in self.plans.get(plan, [])
            )
            for plan in real
        }
        allowed = self.model.stop_plans(real, self.plans, Window(lo, hi))
        self._read_log()
        where = f"POST /stop/execution {{plans: {plans}}}"
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise ContractViolation("§6", f"{where} answered HTTP {answer.status} {answer.body}")
        if answer.body.get("data") is not None:
            raise ContractViolation("§6", f"{where}: data should be null, is {answer.body}")
        errors = answer.body.get("errors")
        if errors is not None and (not isinstance(errors, list) or not errors):
            raise ContractViolation("§6", f"{where}: errors should be null or a list: {errors}")
        got: dict[int, str] = {}
        for e in errors or []:
            plan = e.get("planId") if isinstance(e, dict) else None
            if plan not in allowed or plan in got or not isinstance(e.get("message"), str):
                raise ContractViolation("§6", f"{where}: unexpected error entry {e}")
            got[plan] = e.get("code")
        for plan, codes in allowed.items():
            code = got.get(plan)
            if code not in codes:
                options = sorted("no error" if c is None else c for c in codes)
                raise ContractViolation(
                    "§6",
                    f"{where}: plan {plan - self.plan_base} answered "
                    f"{code or 'no error'}, the contract allows {options} "
                    f"(its tests: {before[plan] or 'none'})",
                )
        self._step_done()

    @precondition(lambda self: self.info.has_http)
    @rule(
        body=st.sampled_from(
            [b"", b"not json", b"{}", b'{"plans": []}', b'{"plans": ["1"]}', b'{"plans": [1.5]}']
        ),
        token=st.sampled_from(["user", "wrong", "none"]),
    )
    def stop_plans_invalid(self, body: bytes, token: str) -> None:
        sent = None if token == "user" else ("" if token == "none" else "kit-wrong-token")
        answer = self.target.stop_plans(body, token=sent)
        expected = (400, "INVALID_REQUEST") if token == "user" else (401, "UNAUTHORIZED")
        errors = answer.body.get("errors") if isinstance(answer.body, dict) else None
        code = errors[0].get("code") if isinstance(errors, list) and errors else None
        if (answer.status, code) != expected:
            raise ContractViolation(
                "§6",
                f"POST /stop/execution {body!r} with {token} token answered "
                f"{answer.status} {answer.body}, not {expected[0]} {expected[1]}",
            )
        self.model.checked["§6 refusals"] += 1
        self._step_done()

    @precondition(lambda self: self.info.checks_auth)
    @rule(call=st.sampled_from(["get", "stop", "create", "claim", "poll"]))
    def bad_credentials(self, call: str) -> None:
        code, _ = self._invoke(lambda: self.target.bad_credentials(call))
        if code not in (Code.UNAUTHENTICATED, Code.PERMISSION_DENIED):
            raise ContractViolation(
                "§5", f"{call} with bad credentials answered {code.value}, not UNAUTHENTICATED"
            )
        self.model.checked["§5 credentials"] += 1
        self._step_done()

    # --- agents ---------------------------------------------------------------------------

    @precondition(_has_tests)
    @rule(agent=st.sampled_from(AGENTS))
    def take_job(self, agent: str) -> None:
        self._take_job(agent)
        self._step_done()

    def _take_job(self, agent: str) -> str | None:
        real = self.agent_ids[agent]
        lo = self._now()
        code, job = self._invoke(lambda: self.target.take_job(real))
        hi = self._now()
        if code is not Code.OK:
            raise ContractViolation("§2", f"JobService.Get for {agent} answered {code.value}")
        self._settle(lo, hi)
        self.model.handed_out(real, job)
        self.model.alive(real, None, Window(lo, hi))
        self._read_log()
        self.model.checked["§2 hand-out"] += 1
        if job is not None and job in self.model.tests:
            self.jobs[agent] = job
            self.job_rank[job] = 0
            self.told_to_stop.discard(job)
        return job

    @precondition(_has_tests)
    @rule(agent=st.sampled_from(WORKERS), moves=WORK)
    def work(self, agent: str, moves: list[str]) -> None:
        """An agent doing what the real one does with its job, a few calls in a row."""
        for move in moves:
            self._work(agent, move)

    @precondition(_has_tests)
    @rule(agent=st.sampled_from(WORKERS), moves=WORK)
    def keep_working(self, agent: str, moves: list[str]) -> None:
        """``work`` again: agents send most of the calls a control plane gets."""
        for move in moves:
            self._work(agent, move)

    def _could_take(self, agent: str) -> bool:
        real = self.agent_ids[agent]
        return any(
            p.status is Status.CREATED and not p.gone and self.model._matches(real, p.selector)
            for ps in self.model.tests.values()
            for p in ps
        )

    def _work(self, agent: str, move: str) -> None:
        if agent not in self.jobs and not self._could_take(agent):
            busy = [a for a in AGENTS if a in self.jobs or self._could_take(a)]
            agent = busy[0] if busy else agent
        job = self.jobs.get(agent)
        if job is None:
            self._take_job(agent)
            self._step_done()
            return
        rank = self.job_rank.get(job, 0)
        if move == "wait":
            self._advance(0.5)
            return
        if move == "stop":  # its user stops the test
            self._job_call(
                job,
                None,
                "Stop",
                lambda: self.target.stop(job),
                lambda p, w: self.model.stop_branches(p, w),
            )
            return
        if move == "poll":
            _, signal = self._job_call(
                job,
                None,
                "GetSignal",
                lambda: self.target.poll(job, None),
                lambda p, w: self.model.poll_branches(p, None, w),
            )
            if signal is not None and signal.kind is SignalKind.STOP:
                self.told_to_stop.add(job)
            return
        if move == "heartbeat":
            self._heartbeat(agent, "TESTING" if rank else "PREPARING_TEST")
            self._step_done()
            return
        if job in self.told_to_stop and move in ("next", "end"):
            job_status = JobStatus.STOPPED
        elif move in OUTCOME_MOVES:
            job_status = OUTCOME_MOVES[move]
        else:
            step = {"next": 1, "same": 0, "skip": 2, "back": -1}[move]
            target_rank = max(1, rank + step)
            job_status = (
                STAGES[target_rank - 1] if target_rank <= len(STAGES) else JobStatus.FINISHED
            )
        code, _ = self._job_call(
            job,
            None,
            f"ClaimStatus({job_status.value})",
            lambda: self.target.claim(job, None, job_status, ""),
            lambda p, w: self.model.claim_branches(p, None, job_status, "", w),
        )
        if code is not Code.OK or job_status not in STAGES:
            self.jobs.pop(agent, None)
        elif job_status in STAGES:
            self.job_rank[job] = max(rank, STAGES.index(job_status) + 1)

    @rule(
        test=tests,
        agent=AGENT_OR_HOLDER,
        status=st.sampled_from(CLAIMED),
        error=st.sampled_from(["", "boom"]),
    )
    def claim(self, test: str, agent: str | None, status: str, error: str) -> None:
        real = self._agent(agent)
        job = JobStatus(status)
        self._job_call(
            test,
            real,
            f"ClaimStatus({status})",
            lambda: self.target.claim(test, real, job, error),
            lambda p, w: self.model.claim_branches(p, real, job, error, w),
        )

    @rule(test=tests, agent=AGENT_OR_HOLDER, error=st.sampled_from(["upload failed", ""]))
    def note(self, test: str, agent: str | None, error: str) -> None:
        real = self._agent(agent)
        job = JobStatus.JOB_STATUS_UNSPECIFIED
        self._job_call(
            test,
            real,
            "ClaimStatus(JOB_STATUS_UNSPECIFIED)",
            lambda: self.target.claim(test, real, job, error),
            lambda p, w: self.model.claim_branches(p, real, job, error, w),
        )

    @rule(test=tests, agent=AGENT_OR_HOLDER)
    def poll(self, test: str, agent: str | None) -> None:
        real = self._agent(agent)
        _code, signal = self._job_call(
            test,
            real,
            "GetSignal",
            lambda: self.target.poll(test, real),
            lambda p, w: self.model.poll_branches(p, real, w),
        )
        if (
            signal is not None
            and signal.kind is SignalKind.RUN_IN
            and not 0 <= signal.run_in <= max(signal.wait, 1.0)
        ):
            raise ContractViolation(
                "§3 signal", f"RUN_IN in {signal.run_in} s is longer than the agent's poll interval"
            )

    @precondition(_has_tests)
    @rule(agent=st.sampled_from(AGENTS), status=st.sampled_from([s.value for s in AgentStatus]))
    def heartbeat(self, agent: str, status: str) -> None:
        self._heartbeat(agent, status)
        self._step_done()

    def _heartbeat(self, agent: str, status: str) -> None:
        real = self.agent_ids[agent]
        lo = self._now()
        code, _ = self._invoke(lambda: self.target.heartbeat(real, AgentStatus(status)))
        hi = self._now()
        if code is not Code.OK:
            raise ContractViolation("§2", f"AgentService.ClaimStatus({status}) answered {code}")
        self._settle(lo, hi)
        self.model.heartbeat(real, AgentStatus(status), Window(lo, hi))
        self._read_log()
        self.model.checked["§2 heartbeats"] += 1

    @rule(
        test=tests,
        agent=AGENT_OR_HOLDER,
        at=st.sampled_from([0, -60, 3600, 1_700_000_000_000, 2**62, -(2**62)]),
        rps=st.sampled_from([0, 1000]),
        comment=st.sampled_from(["", "autostop"]),
    )
    def imbalance(self, test: str, agent: str | None, at: int, rps: int, comment: str) -> None:
        real = self._agent(agent)
        when = int(self._now()) + at if abs(at) <= 3600 else at
        self._job_call(
            test,
            real,
            "TestService.Update(imbalance)",
            lambda: self.target.report_imbalance(test, real, when, rps, comment),
            lambda p, w: self.model.imbalance_branches(p, real, when, rps, comment, w),
        )

    @rule(
        test=tests,
        via=st.sampled_from(["poll", "heartbeat", "update", "claim"]),
        rounds=st.sampled_from([2, 3]),
    )
    def stay_in_contact(self, test: str, via: str, rounds: int) -> None:
        """Its agent keeps a test alive for longer than lost_after, in pauses shorter than it."""
        for _ in range(rounds):
            self._advance(0.6)
            self._contact(test, via)

    def _contact(self, test: str, via: str) -> None:
        if via == "heartbeat":
            agents = {p.agent for p in self.model.possible(test)}
            agent = agents.pop() if len(agents) == 1 else None
            name = next((k for k, v in self.agent_ids.items() if v == agent), None)
            if name is not None:
                self._heartbeat(name, "TESTING")
                self._step_done()
        elif via == "poll":
            self._job_call(
                test,
                None,
                "GetSignal",
                lambda: self.target.poll(test, None),
                lambda p, w: self.model.poll_branches(p, None, w),
            )
        elif via == "update":
            at = int(self._now())
            self._job_call(
                test,
                None,
                "TestService.Update(imbalance)",
                lambda: self.target.report_imbalance(test, None, at, 1, ""),
                lambda p, w: self.model.imbalance_branches(p, None, at, 1, "", w),
            )
        else:
            top = max(p.rank for p in self.model.possible(test))
            stage = STAGES[top - 1] if top else JobStatus.INITIATED
            self._job_call(
                test,
                None,
                f"ClaimStatus({stage.value})",
                lambda: self.target.claim(test, None, stage, ""),
                lambda p, w: self.model.claim_branches(p, None, stage, "", w),
            )

    # --- time -------------------------------------------------------------------------------

    @rule(fraction=st.sampled_from(ADVANCES))
    def advance(self, fraction: float) -> None:
        self._advance(fraction)

    def _advance(self, fraction: float) -> None:
        self.target.advance(fraction * self.info.lost_after)
        if self.info.controls_time:
            t = self._now()
            self.model.settle(t, t, at_tick=True)
        self._read_log()
        self._step_done()

    # --- after every step ---------------------------------------------------------------------

    @invariant()
    def every_test_and_operation_agrees(self) -> None:
        for test_id in list(self.model.tests):
            if self.model.certainly_gone(test_id):
                continue
            lo = self._now()
            code, snap = self._invoke(self.target.get, test_id)
            version = self.target.version(test_id) if self.info.shows_version else None
            hi = self._now()
            if code not in (Code.OK, Code.NOT_FOUND):
                raise ContractViolation("§7", f"Get({test_id}) answered {code.value}")
            self._settle(lo, hi)
            self.model.observe(test_id, snap, version)
            if version is not None and self.info.has_log and test_id in self.log_version:
                self._read_log()
                if self.log_version[test_id] != version:
                    raise ContractViolation(
                        "§4.12",
                        f"{test_id} is version {version} but its log's last accepted "
                        f"record is version {self.log_version[test_id]}",
                    )
        for op_id, test_id in self.model.op_ids().items():
            lo = self._now()
            code, op = self._invoke(self.target.get_operation, op_id)
            hi = self._now()
            if code not in (Code.OK, Code.NOT_FOUND):
                raise ContractViolation("§5", f"OperationService.Get({op_id}) answered {code}")
            self._settle(lo, hi)
            self.model.observe_operation(op_id, test_id, op)

    def teardown(self) -> None:
        failing = sys.exc_info()[0] is not None  # hypothesis tears down in a ``finally``
        try:
            if self.info.has_log and self.steps and not failing:
                self._replay()
            if self.info.shared:
                for test_id, ps in self.model.tests.items():
                    if any(p.status is Status.CREATED and not p.gone for p in ps):
                        self._invoke(self.target.stop, test_id)
        finally:
            self.target.close()

    def _replay(self) -> None:
        """§4.12: replaying the whole log from empty gives every test and operation."""
        self._read_log()
        all_records = self.target.events(0) or []
        report = replay_log(all_records)
        if report.violations:
            clause, seq, message = report.violations[0]
            raise ContractViolation(clause, f"event log record {seq}: {message}")
        for test_id in self.model.tests:
            replayed = report.tests.get(test_id)
            _, snap = self._invoke(self.target.get, test_id)
            if snap is None or snap.summary is None:
                if replayed is not None and not replayed.gone:
                    raise ContractViolation(
                        "§4.12", f"{test_id} is gone but the log replays it as {replayed.status}"
                    )
                continue
            s = snap.summary
            version = self.target.version(test_id)
            if replayed is None or replayed.gone:
                raise ContractViolation("§4.12", f"{test_id} exists but its log replays nothing")
            got = (
                s.status,
                version,
                s.started_at.timestamp() if s.started_at else None,
                s.finished_at.timestamp() if s.finished_at else None,
                s.assigned_agent_id or None,
                bool(s.error),
                s.imbalance_point is not None,
            )
            want = (
                replayed.status,
                replayed.version,
                replayed.started_at,
                replayed.finished_at,
                replayed.agent,
                bool(replayed.error),
                replayed.imbalance is not None,
            )
            if not _same(got, want):
                raise ContractViolation(
                    "§4.12", f"{test_id}: the target shows {got}, its log replays to {want}"
                )
        for op_id, replayed_op in report.operations.items():
            _code, op = self._invoke(self.target.get_operation, op_id)
            if op is None or op.done != replayed_op.done:
                raise ContractViolation(
                    "§4.12",
                    f"operation {op_id}: the target shows done={None if op is None else op.done}, "
                    f"its log replays done={replayed_op.done}",
                )
        self.model.checked["§4.12 replay"] += 1


def _same(got: tuple[Any, ...], want: tuple[Any, ...]) -> bool:
    for a, b in zip(got, want, strict=True):
        if isinstance(a, float) and isinstance(b, float):
            if abs(a - b) > 1e-5:
                return False
        elif a != b:
            return False
    return True


def machine_for(
    factory: Callable[[], Target],
    *,
    settings: Settings | None = None,
    name: str = "LifecycleMachineFor",
    stats: Stats | None = None,
) -> type[LifecycleMachine]:
    """A ``LifecycleMachine`` subclass bound to ``factory`` (called once per example).

    ``settings`` applies to its ``TestCase``; ``stats`` collects counts across examples.
    """
    cls: type[LifecycleMachine] = type(
        name,
        (LifecycleMachine,),
        {"target_factory": staticmethod(factory), "stats": stats, "__module__": __name__},
    )
    if settings is not None:
        cls.TestCase.settings = settings
    return cls
