"""The engine: the commands of users, agents and time, over a store and a clock.

What a server embeds. One class assembled from one module per concern:

- :mod:`~loadtest_core._engine_core` — time, listeners, the row memory and
  the one compare-and-set write path every command goes through;
- :mod:`~loadtest_core._engine_tests` — users' commands on tests and stop operations;
- :mod:`~loadtest_core._engine_agents` — hand-outs, claims, polls, heartbeats, identity;
- :mod:`~loadtest_core._engine_configs` — load generator configs;
- :mod:`~loadtest_core._engine_uploads` — trails, monitoring and event logs;
- :mod:`~loadtest_core._engine_deadlines` — deadlines firing on ``tick``.

None of them decides a status: the lifecycle table (:mod:`loadtest_core._table`)
does, through ``apply``; liveness times come from :mod:`loadtest_core._liveness`,
which agent takes which job from :mod:`loadtest_core._jobs`, paging from
:mod:`loadtest_core._paging`, replay from :mod:`loadtest_core._replay`.
"""

from __future__ import annotations

from loadtest_core._engine_agents import AgentCommands, Signal, anonymous_holder
from loadtest_core._engine_configs import ConfigCommands
from loadtest_core._engine_core import Listener
from loadtest_core._engine_deadlines import DeadlineCommands
from loadtest_core._engine_tests import TestCommands
from loadtest_core._engine_uploads import UploadCommands
from loadtest_core._replay import replay

__all__ = ["Engine", "Listener", "Signal", "anonymous_holder"]


class Engine(TestCommands, AgentCommands, ConfigCommands, UploadCommands, DeadlineCommands):
    """The lifecycle engine over a store, a clock and policies (see the module docstring)."""

    replay = staticmethod(replay)
