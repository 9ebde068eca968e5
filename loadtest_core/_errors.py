"""The one error tree of loadtest_core.

Every error carries the gRPC code name and HTTP status an adapter should
answer with, so adapters map errors in a single table instead of guessing::

    LoadtestError                    INTERNAL             500
    ├── InvalidArgument              INVALID_ARGUMENT     400   bad input, names the field
    │   └── Unsupported              INVALID_ARGUMENT     400   valid but not supported yet
    ├── NotFound                     NOT_FOUND            404   unknown test, job, operation
    ├── Unauthenticated              UNAUTHENTICATED      401   missing or wrong credentials
    ├── PermissionDenied             PERMISSION_DENIED    403   right credentials, wrong side
    ├── Rejected                     FAILED_PRECONDITION  409   the lifecycle refused the event
    ├── Aborted                      ABORTED              409   concurrent updates won
    └── StoreError                   INTERNAL             500   the store failed; nothing written

Error codes are plain strings so the core imports no gRPC package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from loadtest_core._lifecycle import Outcome

__all__ = [
    "Aborted",
    "InvalidArgument",
    "LoadtestError",
    "NotFound",
    "PermissionDenied",
    "Rejected",
    "StoreError",
    "Unauthenticated",
    "Unsupported",
]


class LoadtestError(Exception):
    """Root of every error the library raises on purpose."""

    grpc_code: ClassVar[str] = "INTERNAL"
    http_status: ClassVar[int] = 500
    reason: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(LoadtestError):
    """Input that can never be accepted; ``field`` names what was wrong."""

    grpc_code = "INVALID_ARGUMENT"
    http_status = 400
    reason = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class Unsupported(InvalidArgument):
    """Well-formed input for a feature this version does not implement (multitests)."""

    reason = "UNSUPPORTED"


class NotFound(LoadtestError):
    grpc_code = "NOT_FOUND"
    http_status = 404
    reason = "NOT_FOUND"


class Unauthenticated(LoadtestError):
    grpc_code = "UNAUTHENTICATED"
    http_status = 401
    reason = "UNAUTHENTICATED"


class PermissionDenied(LoadtestError):
    grpc_code = "PERMISSION_DENIED"
    http_status = 403
    reason = "PERMISSION_DENIED"


class Rejected(LoadtestError):
    """The lifecycle refused an event as a conflict; carries the typed outcome."""

    grpc_code = "FAILED_PRECONDITION"
    http_status = 409
    reason = "FAILED_PRECONDITION"

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.describe())
        self.outcome = outcome


class Aborted(LoadtestError):
    grpc_code = "ABORTED"
    http_status = 409
    reason = "ABORTED"


class StoreError(LoadtestError):
    grpc_code = "INTERNAL"
    http_status = 500
    reason = "STORE_ERROR"
