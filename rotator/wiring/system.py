"""The process's own facts: the wall clock and who it acts as."""

from __future__ import annotations

import getpass
import socket
import time
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

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
