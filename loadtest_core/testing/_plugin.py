"""The pytest plugin: ``pytest --loadtest-target grpc://HOST:PORT ...`` runs the kit's suite.

Registered as the ``pytest11`` entry point ``loadtest_core``, so it loads in
every pytest run where the package is installed; without ``--loadtest-target``
it does nothing. With it, the suite in ``loadtest_core/testing/_suite.py`` is
collected next to your own tests, and the fixture ``loadtest_target_factory``
makes targets for your tests too. Nothing here imports hypothesis or gRPC
until a target is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SUITE = Path(__file__).with_name("_suite.py")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loadtest", "loadtest-core: the lifecycle invariant kit")
    group.addoption(
        "--loadtest-target",
        metavar="grpc://HOST:PORT",
        help="check this server's lifecycle against the contract (adds the kit's suite)",
    )
    group.addoption("--loadtest-http", metavar="HOST:PORT", help="its POST /stop/execution")
    group.addoption("--loadtest-user-token", help="a user token (or $LOADTEST_CORE_USER_TOKENS)")
    group.addoption(
        "--loadtest-agent-token", help="an agent token (or $LOADTEST_CORE_AGENT_TOKENS)"
    )
    group.addoption(
        "--loadtest-lost-after",
        type=float,
        default=1.0,
        help="the server's lost_after in seconds (default 1: start it with a small one)",
    )
    group.addoption("--loadtest-contact-every", type=float, help="default lost_after / 10")
    group.addoption("--loadtest-lost-expiry", type=float, help="if the server has one")
    group.addoption("--loadtest-tick-every", type=float, help="its ticker period")
    group.addoption("--loadtest-deletion-delay", type=float, help="when DELETING tests go")
    group.addoption(
        "--loadtest-oldest-first",
        action="store_true",
        help="the server promises to hand out the oldest matching test",
    )
    group.addoption("--loadtest-examples", type=int, default=25, help="examples (25)")
    group.addoption("--loadtest-steps", type=int, default=25, help="steps per example (25)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--loadtest-target"):
        config.args.append(str(SUITE))


def _token(config: pytest.Config, flag: str, env: str) -> str:
    value = config.getoption(flag)
    if value:
        return str(value)
    tokens = [t.strip() for t in os.environ.get(env, "").split(",") if t.strip()]
    if not tokens:
        raise pytest.UsageError(f"{flag} (or ${env}) is required with --loadtest-target")
    return tokens[0]


@pytest.fixture(scope="session")
def loadtest_target_factory(pytestconfig: pytest.Config) -> Callable[[], Any]:
    """Makes a ``GrpcTarget`` for the ``--loadtest-target`` server (one per example)."""
    target = pytestconfig.getoption("--loadtest-target")
    if not target:
        pytest.skip("no --loadtest-target given")
    from loadtest_core.testing._grpc_target import GrpcTarget

    address = str(target).removeprefix("grpc://")
    user = _token(pytestconfig, "--loadtest-user-token", "LOADTEST_CORE_USER_TOKENS")
    agent = _token(pytestconfig, "--loadtest-agent-token", "LOADTEST_CORE_AGENT_TOKENS")
    options: dict[str, Any] = {
        "http": pytestconfig.getoption("--loadtest-http"),
        "lost_after": pytestconfig.getoption("--loadtest-lost-after"),
        "contact_every": pytestconfig.getoption("--loadtest-contact-every"),
        "lost_expiry": pytestconfig.getoption("--loadtest-lost-expiry"),
        "tick_every": pytestconfig.getoption("--loadtest-tick-every"),
        "deletion_delay": pytestconfig.getoption("--loadtest-deletion-delay"),
        "oldest_first": bool(pytestconfig.getoption("--loadtest-oldest-first")),
    }

    def factory() -> Any:
        return GrpcTarget(address, user_token=user, agent_token=agent, **options)

    return factory


@pytest.fixture(scope="session")
def loadtest_budget(pytestconfig: pytest.Config) -> tuple[int, int]:
    """``(examples, steps)`` from ``--loadtest-examples`` and ``--loadtest-steps``."""
    return (
        int(pytestconfig.getoption("--loadtest-examples")),
        int(pytestconfig.getoption("--loadtest-steps")),
    )
