"""The invariant test kit: check the lifecycle contract against any control plane.

``pip install 'loadtest-core[testing]'``. Hypothesis is imported only here.

- strategies for every model and input, valid and invalid (``ids``, ``specs``,
  ``invalid_specs``, ``claims``, ``agent_behaviours``, ``invalid_stop_bodies``, ...);
- the ``Target`` port and its implementations: ``EngineTarget`` (an in-process
  engine on a manual clock), ``GrpcTarget`` (any server speaking the Yandex
  Load Testing API, with its HTTP batch stop alongside);
- ``LifecycleMachine``: a hypothesis state machine checking every §4 invariant
  and the §5/§6 answers after every step, bound to a target by ``machine_for``;
- histories of concurrent clients and a linearizability checker;
- ``replay_log``: an exported event log checked against the invariants and replay.

See docs/testing-your-server.md.
"""

from __future__ import annotations

from loadtest_core.testing._engine_target import EngineTarget
from loadtest_core.testing._grpc_target import GrpcTarget
from loadtest_core.testing._history import (
    Call,
    History,
    Linearizability,
    check_linearizable,
    prepare_race,
    race,
)
from loadtest_core.testing._log import LogReport, read_log, replay_log
from loadtest_core.testing._machine import LifecycleMachine, Stats, machine_for
from loadtest_core.testing._model import ContractViolation, ReferenceModel
from loadtest_core.testing._run import Outcome, check_target, counterexample_script
from loadtest_core.testing._strategies import (
    agent_behaviours,
    agent_selectors,
    agent_statuses,
    claims,
    commands,
    ids,
    imbalance_times,
    invalid_ids,
    invalid_imbalance_times,
    invalid_list_filters,
    invalid_specs,
    invalid_stop_bodies,
    invalid_timestamps,
    job_statuses,
    list_filters,
    models,
    operations,
    snapshots,
    specs,
    statuses,
    stop_bodies,
    timestamps,
)
from loadtest_core.testing._target import (
    BatchAnswer,
    Code,
    JobStatus,
    SignalAnswer,
    Target,
    TargetError,
    TargetInfo,
)

__all__ = [
    "BatchAnswer",
    "Call",
    "Code",
    "ContractViolation",
    "EngineTarget",
    "GrpcTarget",
    "History",
    "JobStatus",
    "LifecycleMachine",
    "Linearizability",
    "LogReport",
    "Outcome",
    "ReferenceModel",
    "SignalAnswer",
    "Stats",
    "Target",
    "TargetError",
    "TargetInfo",
    "agent_behaviours",
    "agent_selectors",
    "agent_statuses",
    "check_linearizable",
    "check_target",
    "claims",
    "commands",
    "counterexample_script",
    "ids",
    "imbalance_times",
    "invalid_ids",
    "invalid_imbalance_times",
    "invalid_list_filters",
    "invalid_specs",
    "invalid_stop_bodies",
    "invalid_timestamps",
    "job_statuses",
    "list_filters",
    "machine_for",
    "models",
    "operations",
    "prepare_race",
    "race",
    "read_log",
    "replay_log",
    "snapshots",
    "specs",
    "statuses",
    "stop_bodies",
    "timestamps",
]
