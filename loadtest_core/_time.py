"""Timestamps the engine can represent: the protobuf ``Timestamp`` range, years 0001-9999.

An input outside it is refused before anything is stored (spec §7), so every
stored test can always be formatted and read back.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from loadtest_core._errors import InvalidArgument

__all__ = ["MAX_TIME", "MIN_TIME", "check_time", "format_datetime", "format_time"]

MIN_TIME = datetime(1, 1, 1, tzinfo=UTC).timestamp()
MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC).timestamp()
"""The last millisecond of 9999: a float this large keeps no finer fraction reliably."""


def check_time(value: object, field: str) -> float:
    """``value`` as float seconds since the epoch, or InvalidArgument naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"{field}: must be a number of seconds", field=field)
    t = float(value) if not isinstance(value, int) or abs(value) < 2**62 else math.inf
    if not MIN_TIME <= t <= MAX_TIME:
        raise InvalidArgument(
            f"{field}: {value!r} seconds is outside the years 0001-9999", field=field
        )
    return t


def format_datetime(dt: datetime) -> str:
    """RFC 3339 UTC with a ``Z``, a four-digit year, microseconds only when non-zero."""
    dt = dt.astimezone(UTC)
    text = (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    )
    return f"{text}.{dt.microsecond:06d}Z" if dt.microsecond else f"{text}Z"


def format_time(t: float) -> str:
    """``format_datetime`` of float seconds since the epoch."""
    return format_datetime(datetime.fromtimestamp(t, UTC))
