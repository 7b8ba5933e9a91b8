"""The process's own facts: the wall clock and who it acts as."""

from __future__ import annotations

import getpass
import os
import socket
import time
from datetime import UTC, datetime, timedelta

from rotator.errors import ConfigError

# Seconds (may be negative) added to this process's clock: rehearses replicas on hosts whose clocks disagree.
# Nothing that decides who holds a lease reads this clock: the database judges leases by its own.
CLOCK_OFFSET_ENV = "ROTATOR_CLOCK_OFFSET"


class SystemClock:
    def __init__(self, offset: timedelta | None = None) -> None:
        self._offset = offset if offset is not None else _offset_from_environment()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def default_actor(configured: str | None = None) -> str:
    """Who history events name: [service] actor, else user@host."""
    if configured:
        return configured
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _offset_from_environment() -> timedelta:
    text = os.environ.get(CLOCK_OFFSET_ENV, "").strip()
    if not text:
        return timedelta(0)
    try:
        return timedelta(seconds=float(text))
    except (ValueError, OverflowError):
        raise ConfigError(CLOCK_OFFSET_ENV, "", f"{text!r} is not a number of seconds",
                          hint=f"unset {CLOCK_OFFSET_ENV} or give it seconds, e.g. 600 or -600") from None
