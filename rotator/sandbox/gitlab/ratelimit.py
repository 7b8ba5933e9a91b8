"""Rack::Attack-style throttling: fixed windows aligned on the epoch, one counter per caller.

GitLab reports the limit per minute in ``RateLimit-Limit`` whatever the configured period, and
``RateLimit-Reset`` as the Unix time the window ends.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from email.utils import formatdate


@dataclass(frozen=True)
class RateDecision:
    name: str
    limit: int
    observed: int
    period: float
    window_end: float
    now: float

    @property
    def allowed(self) -> bool:
        return self.observed <= self.limit

    @property
    def retry_after(self) -> int:
        return max(0, math.ceil(self.window_end - self.now))

    def headers(self) -> dict[str, str]:
        per_minute = math.ceil(self.limit * 60 / self.period)
        headers = {
            "RateLimit-Name": self.name,
            "RateLimit-Limit": str(per_minute),
            "RateLimit-Observed": str(self.observed),
            "RateLimit-Remaining": str(max(self.limit - self.observed, 0)),
            "RateLimit-Reset": str(math.ceil(self.window_end)),
        }
        if not self.allowed:
            headers["RateLimit-ResetTime"] = formatdate(math.ceil(self.window_end), usegmt=True)
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimiter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, caller: str, *, name: str, limit: int, period: float, now: float) -> RateDecision:
        """Count one request of ``caller`` (throttled ones count too, as in Rack::Attack)."""
        window_start = math.floor(now / period) * period
        with self._lock:
            start, count = self._windows.get(caller, (window_start, 0))
            if start != window_start:
                count = 0
            count += 1
            self._windows[caller] = (window_start, count)
        return RateDecision(name=name, limit=limit, observed=count, period=period,
                            window_end=window_start + period, now=now)

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
