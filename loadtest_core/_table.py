"""The lifecycle table: everything that decides a test's status lives here (spec §2, §3).

Like h11's ``_state.py``, this module is data a reader can scan, not code to
trace. Its parts:

- :data:`PHASE_LIST` — the 32 *phases*: a status plus the little memory the
  contract makes decisions depend on (the execution stage reached, whether a
  stop was requested, whether the test ever started).
- :data:`AGENT_GRID` and :data:`COMMAND_GRID` — one cell for every
  (phase, trigger) pair: where the event takes the test, or why it is refused.
- :data:`AGENT_TRIGGERS` / :data:`NOT_HOLDER` — the wrong-agent rule.
- :data:`DEADLINES` — which deadline runs in each status, what fires when it
  passes, and what it counts from.
- :data:`SIGNALS` — what ``GetSignal`` tells the agent in each status.
- :data:`HEARTBEAT_IS_CONTACT` — which agent heartbeats keep a test alive.
- :data:`HEARTBEAT_WHILE_HELD` — which more do with ``Policies.ready_keeps_jobs``.

:data:`RULES` is the grids read into one :class:`Rule` per pair; the
``transitions`` machine (:mod:`loadtest_core._machine`) is built from it, the
hot path (:mod:`loadtest_core._lifecycle`) is compiled from that machine, and
``loadtest-core diagram`` and docs/lifecycle.md are generated from it. The
engine asks these tables; it decides nothing about statuses itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from loadtest_core._status import AgentStatus, Status

__all__ = [
    "AGENT_GRID",
    "AGENT_TRIGGERS",
    "COMMAND_GRID",
    "DEADLINES",
    "HEARTBEAT_IS_CONTACT",
    "HEARTBEAT_WHILE_HELD",
    "NOT_HANDED",
    "NOT_HOLDER",
    "PHASES",
    "PHASE_LIST",
    "RULES",
    "SIGNALS",
    "Deadline",
    "Kind",
    "Phase",
    "Rule",
    "SignalKind",
    "Trigger",
    "claim_trigger",
]


class Trigger(enum.Enum):
    """Event kinds the lifecycle understands; values are ``transitions`` trigger names."""

    CLAIM_INITIATED = "claim_INITIATED"
    CLAIM_PREPARING = "claim_PREPARING"
    CLAIM_WAITING = "claim_WAITING"
    CLAIM_RUNNING = "claim_RUNNING"
    CLAIM_FINISHING = "claim_FINISHING"
    CLAIM_POST_PROCESSING = "claim_POST_PROCESSING"
    CLAIM_DONE = "claim_DONE"
    CLAIM_FAILED = "claim_FAILED"
    CLAIM_STOPPED = "claim_STOPPED"
    CLAIM_AUTOSTOPPED = "claim_AUTOSTOPPED"
    CONTACT = "contact"
    NOTE = "note"
    IMBALANCE = "imbalance"
    STOP = "stop"
    LOSE = "lose"
    EXPIRE = "expire"
    DELETE = "delete"
    PURGE = "purge"

    @property
    def claimed(self) -> Status | None:
        """The status a claim trigger reports, None for other triggers."""
        return _CLAIMED.get(self)


class Kind(enum.Enum):
    """What an event did. Only ACCEPTED bumps ``version``; UNCHANGED is not logged."""

    ACCEPTED = "accepted"
    UNCHANGED = "unchanged"
    NOTED = "noted"
    STALE = "stale"
    CONFLICT = "conflict"

    __hash__ = object.__hash__

    @property
    def ok(self) -> bool:
        return self not in (Kind.STALE, Kind.CONFLICT)


class SignalKind(enum.Enum):
    """The answer to ``JobService.GetSignal``."""

    NONE = "SIGNAL_UNSPECIFIED"
    STOP = "STOP"
    RUN_IN = "RUN_IN"


@dataclass(frozen=True, slots=True)
class Phase:
    """A status plus its memory: the stage reached, a requested stop, whether it ever started."""

    name: str
    short: str
    status: Status
    stage: Status | None
    stop_requested: bool
    started: bool

    @property
    def rank(self) -> int:
        return 0 if self.stage is None else self.stage.rank

    @property
    def remembered(self) -> Phase | None:
        """Where a LOST phase returns when its agent is back; None for other phases."""
        if self.status is not Status.LOST or self.stage is None:
            return None
        name = self.stage.name
        return PHASES[f"STOPPING@{name}" if self.stop_requested else name]


@dataclass(frozen=True, slots=True)
class Rule:
    source: Phase
    trigger: Trigger
    kind: Kind
    dest: Phase | None
    reason: str


S = Status
INI, PRE, WAI, RUN, FIN, POST = (S.INITIATED, S.PREPARING, S.WAITING, S.RUNNING, S.FINISHING,
                                 S.POST_PROCESSING)  # fmt: skip

# fmt: off
PHASE_LIST: tuple[Phase, ...] = (
    #     name                             short     status             stage stop   started
    Phase("CREATED",                       "C",      S.CREATED,         None, False, False),
    Phase("INITIATED",                     "I",      S.INITIATED,       INI,  False, True),
    Phase("PREPARING",                     "P",      S.PREPARING,       PRE,  False, True),
    Phase("WAITING",                       "W",      S.WAITING,         WAI,  False, True),
    Phase("RUNNING",                       "R",      S.RUNNING,         RUN,  False, True),
    Phase("FINISHING",                     "F",      S.FINISHING,       FIN,  False, True),
    Phase("POST_PROCESSING",               "PP",     S.POST_PROCESSING, POST, False, True),
    Phase("STOPPING@INITIATED",            "S@I",    S.STOPPING,        INI,  True,  True),
    Phase("STOPPING@PREPARING",            "S@P",    S.STOPPING,        PRE,  True,  True),
    Phase("STOPPING@WAITING",              "S@W",    S.STOPPING,        WAI,  True,  True),
    Phase("STOPPING@RUNNING",              "S@R",    S.STOPPING,        RUN,  True,  True),
    Phase("STOPPING@FINISHING",            "S@F",    S.STOPPING,        FIN,  True,  True),
    Phase("STOPPING@POST_PROCESSING",      "S@PP",   S.STOPPING,        POST, True,  True),
    Phase("LOST@INITIATED",                "L@I",    S.LOST,            INI,  False, True),
    Phase("LOST@PREPARING",                "L@P",    S.LOST,            PRE,  False, True),
    Phase("LOST@WAITING",                  "L@W",    S.LOST,            WAI,  False, True),
    Phase("LOST@RUNNING",                  "L@R",    S.LOST,            RUN,  False, True),
    Phase("LOST@FINISHING",                "L@F",    S.LOST,            FIN,  False, True),
    Phase("LOST@POST_PROCESSING",          "L@PP",   S.LOST,            POST, False, True),
    Phase("LOST@STOPPING@INITIATED",       "L@S@I",  S.LOST,            INI,  True,  True),
    Phase("LOST@STOPPING@PREPARING",       "L@S@P",  S.LOST,            PRE,  True,  True),
    Phase("LOST@STOPPING@WAITING",         "L@S@W",  S.LOST,            WAI,  True,  True),
    Phase("LOST@STOPPING@RUNNING",         "L@S@R",  S.LOST,            RUN,  True,  True),
    Phase("LOST@STOPPING@FINISHING",       "L@S@F",  S.LOST,            FIN,  True,  True),
    Phase("LOST@STOPPING@POST_PROCESSING", "L@S@PP", S.LOST,            POST, True,  True),
    Phase("DONE",                          "DONE",   S.DONE,            None, False, True),
    Phase("FAILED",                        "FAIL",   S.FAILED,          None, False, True),
    Phase("STOPPED",                       "STOP",   S.STOPPED,         None, False, True),
    Phase("AUTOSTOPPED",                   "AUTO",   S.AUTOSTOPPED,     None, False, True),
    Phase("FAILED@CREATED",                "F@C",    S.FAILED,          None, False, False),
    Phase("CANCELLED",                     "CANC",   S.CANCELLED,       None, False, False),
    Phase("DELETING",                      "DEL",    S.DELETING,        None, False, True),
)
# fmt: on

PHASES: dict[str, Phase] = {p.name: p for p in PHASE_LIST}
_BY_SHORT: dict[str, Phase] = {p.short: p for p in PHASE_LIST}

# The grids. A cell is a phase's short name (ACCEPTED: the event moves the test
# there, version + 1, one log record), GONE (ACCEPTED: the test is removed), or
# a verdict from _VERDICTS: "=" unchanged (success, nothing written), "note"
# (recorded, no version bump), "~..." stale (acknowledged, nothing changes),
# "!..." conflict (refused, nothing changes). Rejections are logged.
GONE = "gone"

# fmt: off
AGENT_GRID = """
phase                         | INITIATED PREPARING WAITING   RUNNING   FINISHING POST_PROC | DONE      FAILED    STOPPED   AUTOSTOP  | contact note imbalance
CREATED                       | I         P         W         R         F         PP        | !ran      F@C       !ran      !ran      | =       note !unstarted
INITIATED                     | =         P         W         R         F         PP        | DONE      FAIL      STOP      AUTO      | =       note I
PREPARING                     | ~old      =         W         R         F         PP        | DONE      FAIL      STOP      AUTO      | =       note P
WAITING                       | ~old      ~old      =         R         F         PP        | DONE      FAIL      STOP      AUTO      | =       note W
RUNNING                       | ~old      ~old      ~old      =         F         PP        | DONE      FAIL      STOP      AUTO      | =       note R
FINISHING                     | ~old      ~old      ~old      ~old      =         PP        | DONE      FAIL      STOP      AUTO      | =       note F
POST_PROCESSING               | ~old      ~old      ~old      ~old      ~old      =         | DONE      FAIL      STOP      AUTO      | =       note PP
STOPPING@INITIATED            | =         S@P       S@W       S@R       S@F       S@PP      | DONE      FAIL      STOP      AUTO      | =       note S@I
STOPPING@PREPARING            | ~old      =         S@W       S@R       S@F       S@PP      | DONE      FAIL      STOP      AUTO      | =       note S@P
STOPPING@WAITING              | ~old      ~old      =         S@R       S@F       S@PP      | DONE      FAIL      STOP      AUTO      | =       note S@W
STOPPING@RUNNING              | ~old      ~old      ~old      =         S@F       S@PP      | DONE      FAIL      STOP      AUTO      | =       note S@R
STOPPING@FINISHING            | ~old      ~old      ~old      ~old      =         S@PP      | DONE      FAIL      STOP      AUTO      | =       note S@F
STOPPING@POST_PROCESSING      | ~old      ~old      ~old      ~old      ~old      =         | DONE      FAIL      STOP      AUTO      | =       note S@PP
LOST@INITIATED                | I         P         W         R         F         PP        | DONE      FAIL      STOP      AUTO      | I       note I
LOST@PREPARING                | ~old      P         W         R         F         PP        | DONE      FAIL      STOP      AUTO      | P       note P
LOST@WAITING                  | ~old      ~old      W         R         F         PP        | DONE      FAIL      STOP      AUTO      | W       note W
LOST@RUNNING                  | ~old      ~old      ~old      R         F         PP        | DONE      FAIL      STOP      AUTO      | R       note R
LOST@FINISHING                | ~old      ~old      ~old      ~old      F         PP        | DONE      FAIL      STOP      AUTO      | F       note F
LOST@POST_PROCESSING          | ~old      ~old      ~old      ~old      ~old      PP        | DONE      FAIL      STOP      AUTO      | PP      note PP
LOST@STOPPING@INITIATED       | S@I       S@P       S@W       S@R       S@F       S@PP      | DONE      FAIL      STOP      AUTO      | S@I     note S@I
LOST@STOPPING@PREPARING       | ~old      S@P       S@W       S@R       S@F       S@PP      | DONE      FAIL      STOP      AUTO      | S@P     note S@P
LOST@STOPPING@WAITING         | ~old      ~old      S@W       S@R       S@F       S@PP      | DONE      FAIL      STOP      AUTO      | S@W     note S@W
LOST@STOPPING@RUNNING         | ~old      ~old      ~old      S@R       S@F       S@PP      | DONE      FAIL      STOP      AUTO      | S@R     note S@R
LOST@STOPPING@FINISHING       | ~old      ~old      ~old      ~old      S@F       S@PP      | DONE      FAIL      STOP      AUTO      | S@F     note S@F
LOST@STOPPING@POST_PROCESSING | ~old      ~old      ~old      ~old      ~old      S@PP      | DONE      FAIL      STOP      AUTO      | S@PP    note S@PP
DONE                          | !ended    !ended    !ended    !ended    !ended    !ended    | ~dup      !ended    !ended    !ended    | =       note DONE
FAILED                        | !ended    !ended    !ended    !ended    !ended    !ended    | !ended    ~dup      !ended    !ended    | =       note FAIL
STOPPED                       | !ended    !ended    !ended    !ended    !ended    !ended    | !ended    !ended    ~dup      !ended    | =       note STOP
AUTOSTOPPED                   | !ended    !ended    !ended    !ended    !ended    !ended    | !ended    !ended    !ended    ~dup      | =       note AUTO
FAILED@CREATED                | !ended    !ended    !ended    !ended    !ended    !ended    | !ended    ~dup      !ended    !ended    | =       note !unstarted
CANCELLED                     | !ended    !ended    !ended    !ended    !ended    !ended    | !ended    !ended    !ended    !ended    | =       note !unstarted
DELETING                      | !deleting !deleting !deleting !deleting !deleting !deleting | !deleting !deleting !deleting !deleting | =       note !deleting
"""

COMMAND_GRID = """
phase                         | stop        lose      expire  delete   purge
CREATED                       | CANC        !inactive !unlost DEL      !undeleted
INITIATED                     | S@I         L@I       !unlost !running !undeleted
PREPARING                     | S@P         L@P       !unlost !running !undeleted
WAITING                       | S@W         L@W       !unlost !running !undeleted
RUNNING                       | S@R         L@R       !unlost !running !undeleted
FINISHING                     | S@F         L@F       !unlost !running !undeleted
POST_PROCESSING               | S@PP        L@PP      !unlost !running !undeleted
STOPPING@INITIATED            | =           L@S@I     !unlost !running !undeleted
STOPPING@PREPARING            | =           L@S@P     !unlost !running !undeleted
STOPPING@WAITING              | =           L@S@W     !unlost !running !undeleted
STOPPING@RUNNING              | =           L@S@R     !unlost !running !undeleted
STOPPING@FINISHING            | =           L@S@F     !unlost !running !undeleted
STOPPING@POST_PROCESSING      | =           L@S@PP    !unlost !running !undeleted
LOST@INITIATED                | STOP        !inactive FAIL    DEL      !undeleted
LOST@PREPARING                | STOP        !inactive FAIL    DEL      !undeleted
LOST@WAITING                  | STOP        !inactive FAIL    DEL      !undeleted
LOST@RUNNING                  | STOP        !inactive FAIL    DEL      !undeleted
LOST@FINISHING                | STOP        !inactive FAIL    DEL      !undeleted
LOST@POST_PROCESSING          | STOP        !inactive FAIL    DEL      !undeleted
LOST@STOPPING@INITIATED       | STOP        !inactive FAIL    DEL      !undeleted
LOST@STOPPING@PREPARING       | STOP        !inactive FAIL    DEL      !undeleted
LOST@STOPPING@WAITING         | STOP        !inactive FAIL    DEL      !undeleted
LOST@STOPPING@RUNNING         | STOP        !inactive FAIL    DEL      !undeleted
LOST@STOPPING@FINISHING       | STOP        !inactive FAIL    DEL      !undeleted
LOST@STOPPING@POST_PROCESSING | STOP        !inactive FAIL    DEL      !undeleted
DONE                          | !notrunning !inactive !unlost DEL      !undeleted
FAILED                        | !notrunning !inactive !unlost DEL      !undeleted
STOPPED                       | !notrunning !inactive !unlost DEL      !undeleted
AUTOSTOPPED                   | !notrunning !inactive !unlost DEL      !undeleted
FAILED@CREATED                | !notrunning !inactive !unlost DEL      !undeleted
CANCELLED                     | !notrunning !inactive !unlost DEL      !undeleted
DELETING                      | !notrunning !inactive !unlost =        gone
"""
# fmt: on

_AGENT_COLUMNS = (
    Trigger.CLAIM_INITIATED,
    Trigger.CLAIM_PREPARING,
    Trigger.CLAIM_WAITING,
    Trigger.CLAIM_RUNNING,
    Trigger.CLAIM_FINISHING,
    Trigger.CLAIM_POST_PROCESSING,
    Trigger.CLAIM_DONE,
    Trigger.CLAIM_FAILED,
    Trigger.CLAIM_STOPPED,
    Trigger.CLAIM_AUTOSTOPPED,
    Trigger.CONTACT,
    Trigger.NOTE,
    Trigger.IMBALANCE,
)
_COMMAND_COLUMNS = (Trigger.STOP, Trigger.LOSE, Trigger.EXPIRE, Trigger.DELETE, Trigger.PURGE)

# fmt: off
_VERDICTS: dict[str, tuple[Kind, str]] = {
    "=":           (Kind.UNCHANGED, "nothing to change"),
    "note":        (Kind.NOTED,     "agent error recorded"),
    "~old":        (Kind.STALE,     "stale report: the execution rank never goes backwards"),
    "~dup":        (Kind.STALE,     "the same outcome again: a duplicate report"),
    "!ran":        (Kind.CONFLICT,  "that outcome from CREATED: nothing ran"),
    "!unstarted":  (Kind.CONFLICT,  "no imbalance point for a test that never ran"),
    "!ended":      (Kind.CONFLICT,  "terminal statuses are absorbing"),
    "!deleting":   (Kind.CONFLICT,  "the test is being deleted"),
    "!notrunning": (Kind.CONFLICT,  "not running"),
    "!inactive":   (Kind.CONFLICT,  "not active: only an active test can be lost"),
    "!unlost":     (Kind.CONFLICT,  "not lost"),
    "!running":    (Kind.CONFLICT,  "stop it first"),
    "!undeleted":  (Kind.CONFLICT,  "not being deleted"),
}

# Why an accepted event happened, by the status group it leaves and the column group.
_WHY: dict[tuple[str, str], str] = {
    ("CREATED",   "stage"):     "the agent started the test",
    ("CREATED",   "outcome"):   "the agent failed before starting",
    ("CREATED",   "stop"):      "stopped before any agent started it",
    ("CREATED",   "delete"):    "deletion requested",
    ("EXECUTION", "stage"):     "forward progress",
    ("EXECUTION", "outcome"):   "the agent reported the outcome",
    ("EXECUTION", "imbalance"): "imbalance point recorded",
    ("EXECUTION", "stop"):      "stop requested",
    ("EXECUTION", "lose"):      "no contact from the agent",
    ("STOPPING",  "stage"):     "progress while stopping",
    ("STOPPING",  "outcome"):   "the agent reported the outcome",
    ("STOPPING",  "imbalance"): "imbalance point recorded",
    ("STOPPING",  "lose"):      "no contact from the agent",
    ("LOST",      "stage"):     "the agent is back",
    ("LOST",      "outcome"):   "the agent is back with the outcome",
    ("LOST",      "contact"):   "the agent is back",
    ("LOST",      "imbalance"): "the agent is back: imbalance point recorded",
    ("LOST",      "stop"):      "stopped while lost: nobody to wait for",
    ("LOST",      "expire"):    "lost for longer than lost_expiry",
    ("LOST",      "delete"):    "deletion requested",
    ("TERMINAL",  "imbalance"): "imbalance point recorded",
    ("TERMINAL",  "delete"):    "deletion requested",
    ("DELETING",  "purge"):     "deleted",
}
# fmt: on

AGENT_TRIGGERS: frozenset[Trigger] = frozenset(_AGENT_COLUMNS)
"""Triggers only the job's holder may send (a claim, a poll, an error note, an Update)."""

NOT_HOLDER: tuple[Kind, str] = (Kind.CONFLICT, "the job belongs to another agent")
"""The verdict for an agent trigger from anyone but the job's holder, in every phase.

The holder is the assigned agent once a claim was accepted, before that the
agent the job was handed out to. A CREATED test that nobody holds is taken by
the first matching agent's claim (the claim is its hand-out).
"""

NOT_HANDED: tuple[Kind, str] = (Kind.CONFLICT, "the job was not handed to this agent")
"""The verdict for an agent trigger on a CREATED test nobody holds, from an agent its
selector does not take."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """A deadline: the trigger it fires, what it counts from, and the policy that sets its length.

    ``fires`` None means the job's hand-out lapses (no status changes).
    ``since`` is ``"contact"`` (the last recorded contact: it moves while the
    agent is in touch) or ``"entered"`` (when the test entered its status).
    """

    fires: Trigger | None
    since: str
    policy: str


_LOSE = Deadline(Trigger.LOSE, "contact", "lost_after")

# fmt: off
DEADLINES: dict[Status, Deadline | None] = {
    S.CREATED:         Deadline(None, "contact", "lease_after"),
    S.INITIATED:       _LOSE,
    S.PREPARING:       _LOSE,
    S.WAITING:         _LOSE,
    S.RUNNING:         _LOSE,
    S.FINISHING:       _LOSE,
    S.POST_PROCESSING: _LOSE,
    S.STOPPING:        _LOSE,
    S.LOST:            Deadline(Trigger.EXPIRE, "entered", "lost_expiry"),
    S.DONE:            None,
    S.FAILED:          None,
    S.STOPPED:         None,
    S.AUTOSTOPPED:     None,
    S.CANCELLED:       None,
    S.DELETING:        Deadline(Trigger.PURGE, "entered", "deletion_delay"),
}
"""The deadline running in each status.

CREATED runs one only while its job is handed out: the lease, kept by the
test's contact and by its holder's heartbeats. A policy of None (``lost_expiry``
off) runs none.
"""

SIGNALS: dict[Status | None, SignalKind] = {
    S.CREATED:         SignalKind.NONE,
    S.INITIATED:       SignalKind.NONE,
    S.PREPARING:       SignalKind.NONE,
    S.WAITING:         SignalKind.RUN_IN,
    S.RUNNING:         SignalKind.NONE,
    S.FINISHING:       SignalKind.NONE,
    S.POST_PROCESSING: SignalKind.NONE,
    S.STOPPING:        SignalKind.STOP,
    S.LOST:            SignalKind.NONE,
    S.DONE:            SignalKind.STOP,
    S.FAILED:          SignalKind.STOP,
    S.STOPPED:         SignalKind.STOP,
    S.AUTOSTOPPED:     SignalKind.STOP,
    S.CANCELLED:       SignalKind.STOP,
    S.DELETING:        SignalKind.STOP,
    None:              SignalKind.STOP,
}
"""``GetSignal`` by the test's status after the poll (None: unknown test, or not the holder).

A poll is contact: a LOST test first recovers (the grid's contact column), so
its answer is its recovered status's.
"""

HEARTBEAT_IS_CONTACT: dict[AgentStatus, bool] = {
    AgentStatus.READY_FOR_TEST:      False,
    AgentStatus.PREPARING_TEST:      True,
    AgentStatus.TESTING:             True,
    AgentStatus.UPLOADING_ARTIFACTS: True,
    AgentStatus.TANK_FAILED:         False,
    AgentStatus.STOPPED:             False,
    AgentStatus.ERROR:               False,
}
"""Whether an agent heartbeat keeps its active tests alive (never recovers a LOST one)."""

HEARTBEAT_WHILE_HELD: dict[AgentStatus, bool] = {
    AgentStatus.READY_FOR_TEST:      True,
    AgentStatus.PREPARING_TEST:      False,
    AgentStatus.TESTING:             False,
    AgentStatus.UPLOADING_ARTIFACTS: False,
    AgentStatus.TANK_FAILED:         False,
    AgentStatus.STOPPED:             False,
    AgentStatus.ERROR:               False,
}
"""Heartbeats that, with ``Policies.ready_keeps_jobs`` on, also keep the agent's active
tests alive — each only until the agent asks ``JobService.Get`` for a job again, which
is the evidence it dropped it.

The real agent says READY_FOR_TEST while it drains its uploaders after the load ends,
before its final claim, with no job call for up to ``data_upload_timeout`` (300 s);
an agent that really dropped its job goes straight back to asking for a new one.
"""
# fmt: on

_CLAIMED: dict[Trigger, Status] = {t: Status[t.value.removeprefix("claim_")] for t in Trigger
                                   if t.value.startswith("claim_")}  # fmt: skip
_CLAIM_OF: dict[Status, Trigger] = {s: t for t, s in _CLAIMED.items()}


def claim_trigger(status: Status) -> Trigger:
    """The claim trigger for a claimed test status (execution stage or outcome)."""
    try:
        return _CLAIM_OF[status]
    except KeyError:
        from loadtest_core._errors import InvalidArgument

        message = f"status: {status.name} cannot be claimed by an agent"
        raise InvalidArgument(message, field="status") from None


def _group(phase: Phase) -> str:
    status = phase.status
    if status is Status.CREATED or status is Status.STOPPING or status is Status.LOST:
        return status.name
    if status is Status.DELETING:
        return "DELETING"
    return "EXECUTION" if phase.stage is not None else "TERMINAL"


def _column_group(trigger: Trigger) -> str:
    claimed = trigger.claimed
    if claimed is None:
        return trigger.value
    return "stage" if claimed.rank else "outcome"


def _read(grid: str, columns: tuple[Trigger, ...]) -> list[Rule]:
    """One Rule per cell; fails at import on a missing phase, a bad cell or a missing reason."""
    rules: list[Rule] = []
    seen: list[str] = []
    for line in grid.strip().splitlines()[1:]:
        name, _, rest = line.partition("|")
        source = PHASES[name.strip()]
        cells = rest.replace("|", " ").split()
        if cells and cells[0].endswith(":"):
            cells = cells[1:]
        if len(cells) != len(columns):
            raise ValueError(f"{source.name}: {len(cells)} cells for {len(columns)} triggers")
        for trigger, cell in zip(columns, cells, strict=True):
            if cell == GONE:
                rules.append(
                    Rule(source, trigger, Kind.ACCEPTED, None, _WHY[(_group(source), "purge")])
                )
            elif cell in _VERDICTS:
                kind, reason = _VERDICTS[cell]
                dest = source if kind in (Kind.UNCHANGED, Kind.NOTED) else None
                rules.append(Rule(source, trigger, kind, dest, reason))
            else:
                why = _WHY[(_group(source), _column_group(trigger))]
                rules.append(Rule(source, trigger, Kind.ACCEPTED, _BY_SHORT[cell], why))
        seen.append(source.name)
    if seen != list(PHASES):
        raise ValueError("every phase needs exactly one row, in PHASE_LIST order")
    return rules


RULES: tuple[Rule, ...] = (
    *_read(AGENT_GRID, _AGENT_COLUMNS),
    *_read(COMMAND_GRID, _COMMAND_COLUMNS),
)
"""Every (phase, trigger) pair once: 32 phases x 18 triggers."""
