"""The one error tree of loadtest_core.

Every error the library raises on purpose is a :class:`LoadtestError`::

    LoadtestError                    the root; anything unexpected
    ├── InvalidArgument              bad input, names the field
    │   └── Unsupported              valid but not supported yet (a multitest)
    ├── NotFound                     unknown test, job, operation, agent
    ├── Unauthenticated              missing or wrong credentials
    ├── PermissionDenied             right credentials, wrong side
    ├── Rejected                     the lifecycle refused the event (carries the outcome)
    ├── Aborted                      concurrent updates won every retry
    ├── LimitExceeded                a stored bound was reached; the input was refused
    └── StoreError                   the store failed; nothing was written
        ├── StoreUnavailable         the store cannot make writes durable now
        └── VersionConflict          (in ``_store``) a compare-and-set lost its race

The core knows no wire: each adapter maps these classes to its own codes in
one table (``loadtest_core.grpc._mapping.ERROR_CODES``, the HTTP adapter's
``ERROR_STATUS``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loadtest_core._lifecycle import Outcome

__all__ = [
    "Aborted",
    "InvalidArgument",
    "LimitExceeded",
    "LoadtestError",
    "NotFound",
    "PermissionDenied",
    "Rejected",
    "StoreError",
    "StoreUnavailable",
    "Unauthenticated",
    "Unsupported",
]


class LoadtestError(Exception):
    """Root of every error the library raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(LoadtestError):
    """Input that can never be accepted; ``field`` names what was wrong."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class Unsupported(InvalidArgument):
    """Well-formed input for a feature this version does not implement (multitests)."""


class NotFound(LoadtestError):
    """An id that names nothing stored."""


class Unauthenticated(LoadtestError):
    """Missing or wrong credentials."""


class PermissionDenied(LoadtestError):
    """Valid credentials for the other side (a user token on an agent call, or another agent's)."""


class Rejected(LoadtestError):
    """The lifecycle refused an event as a conflict; carries the typed outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.describe())
        self.outcome = outcome


class Aborted(LoadtestError):
    """Concurrent updates won every compare-and-set retry; the caller may try again."""


class LimitExceeded(LoadtestError):
    """A bound on what is stored was reached: this input was refused, nothing else changed."""


class StoreError(LoadtestError):
    """The store failed; the change was not written."""


class StoreUnavailable(StoreError):
    """The store cannot make a write durable now (its file is gone, read-only, or locked).

    Nothing was acknowledged; the same call may succeed once an operator fixes the
    store. Adapters map it in their own tables (gRPC UNAVAILABLE, HTTP 503).
    """
