"""loadtest_core: the lifecycle of load tests.

The public API is what this module exports; everything in ``_``-prefixed
modules is private. Optional adapters live in ``loadtest_core.grpc`` and
``loadtest_core.http``, simulation in ``loadtest_core.sim``; the core never
imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loadtest_core._auth import Role, TokenAuth
from loadtest_core._clock import Clock, ManualClock, SystemClock
from loadtest_core._configs import ConfigRecord
from loadtest_core._engine import Engine, Listener, Signal
from loadtest_core._errors import (
    Aborted,
    InvalidArgument,
    LimitExceeded,
    LoadtestError,
    NotFound,
    PermissionDenied,
    Rejected,
    StoreError,
    StoreUnavailable,
    Unauthenticated,
    Unsupported,
)
from loadtest_core._invariants import Violation, check_operation, check_state, check_step
from loadtest_core._jobs import Job
from loadtest_core._lifecycle import (
    AgentError,
    Claim,
    Contact,
    Delete,
    Event,
    Expire,
    Imbalance,
    Lose,
    Outcome,
    Purge,
    Stop,
    TestState,
    apply,
)
from loadtest_core._models import (
    AgentSelector,
    ArtifactSettings,
    Details,
    FilePointer,
    ImbalancePoint,
    Message,
    ObjectStorage,
    Operation,
    RpcStatus,
    SingleAgentConfiguration,
    StopTestMetadata,
    Summary,
    Tag,
    Test,
    TestSpec,
)
from loadtest_core._policies import Policies
from loadtest_core._query import Filter, parse_agent_filter, parse_test_filter
from loadtest_core._records import AgentRecord, LogRecord, StopOperation
from loadtest_core._sqlite import SqliteStore
from loadtest_core._status import (
    ACTIVE,
    EXECUTION,
    EXECUTION_RANK,
    FINISHED,
    TERMINAL,
    AgentStatus,
    Status,
)
from loadtest_core._store import Commit, MemoryStore, Store, VersionConflict
from loadtest_core._table import Kind, SignalKind, Trigger
from loadtest_core._uploads import Upload

if TYPE_CHECKING:
    from loadtest_core._postgres import PostgresStore

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``PostgresStore`` is imported on first use: psycopg is the optional ``postgres`` extra."""
    if name == "PostgresStore":
        from loadtest_core._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACTIVE",
    "Aborted",
    "AgentError",
    "AgentRecord",
    "AgentSelector",
    "AgentStatus",
    "ArtifactSettings",
    "Claim",
    "Clock",
    "Commit",
    "ConfigRecord",
    "Contact",
    "Delete",
    "Details",
    "EXECUTION",
    "EXECUTION_RANK",
    "Engine",
    "Event",
    "Expire",
    "FINISHED",
    "FilePointer",
    "Filter",
    "Imbalance",
    "ImbalancePoint",
    "InvalidArgument",
    "Job",
    "Kind",
    "LimitExceeded",
    "Listener",
    "LoadtestError",
    "LogRecord",
    "Lose",
    "ManualClock",
    "MemoryStore",
    "Message",
    "NotFound",
    "ObjectStorage",
    "Operation",
    "Outcome",
    "PermissionDenied",
    "Policies",
    "PostgresStore",
    "Purge",
    "Rejected",
    "Role",
    "RpcStatus",
    "Signal",
    "SignalKind",
    "SingleAgentConfiguration",
    "SqliteStore",
    "Status",
    "Stop",
    "StopOperation",
    "StopTestMetadata",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Summary",
    "SystemClock",
    "TERMINAL",
    "Tag",
    "Test",
    "TestSpec",
    "TestState",
    "TokenAuth",
    "Trigger",
    "Unauthenticated",
    "Unsupported",
    "Upload",
    "VersionConflict",
    "Violation",
    "apply",
    "check_operation",
    "check_state",
    "check_step",
    "parse_agent_filter",
    "parse_test_filter",
]
