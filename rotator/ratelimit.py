"""Pacing outside parties: a thread-safe, adaptive token bucket per party (GitLab, each AWS account's IAM,
Slack), and the bounded retry budget of one request to a party that does not answer.

Callers take a slot with :meth:`AdaptiveTokenBucket.acquire` before every request. Slots are handed out
in arrival order at the current rate, and up to ``burst`` of them may be taken at once after a quiet
spell (GCRA-style "virtual scheduling": the bucket remembers when the next slot is free, not a count, so
waiting happens outside the lock and threads never queue on it).

When the other side pushes back (GitLab 429, AWS Throttling) the adapter calls
:meth:`AdaptiveTokenBucket.throttled`: the rate is halved (never below ``floor``), and a Retry-After pauses
every caller, not only the one that was refused. The rate then climbs back linearly to the configured
rate over ``recovery`` seconds without further pushback. Several refusals of requests already in flight
count as one (``cooldown``), as TCP halves its window once per round trip, so a burst of 429s does not
crush the rate to the floor.

A party that does not answer at all (connection refused, DNS, timeout, 5xx) is retried within a
:class:`RetryBudget`: a few retries, 2, 4, 8… seconds apart, none starting later than the party's configured
timeout after the first attempt, each one logged. So one request gives up within twice that timeout (the
retry window, plus one last attempt), never silently and never for minutes.

Some requests must leave together: the two PUTs of one key pair (a pipeline starting between them reads half
a pair). :meth:`AdaptiveTokenBucket.reserved` takes all their slots before the first one goes out, waiting once
up front; inside it, the caller thread's next requests never wait, not even for a Retry-After another caller
received meanwhile.

Standard library only at import (`revoke` imports this before containment, where nothing slow may load):
use cases and adapters may both hold one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol


class Pacer(Protocol):
    """What an adapter needs from a rate limiter."""

    def acquire(self) -> float:
        """Block until the caller may send one request; returns the seconds waited."""
        ...

    def throttled(self, retry_after: float | None = None) -> None:
        """The other side refused a request for its rate (429, Throttling): slow down."""
        ...

    def reserved(self, count: int, *, wait: bool = True) -> AbstractContextManager[float]:
        """Take ``count`` slots now; inside the block the calling thread's next ``count`` ``acquire()`` calls
        return at once. Yields the seconds waited. ``wait=False`` takes the slots without waiting (the
        callers after it pay for them): for a request that must not wait at all."""
        ...


@dataclass(frozen=True)
class BucketStats:
    name: str
    configured_rate: float
    current_rate: float
    acquired: int
    waited_seconds: float
    throttled: int


class AdaptiveTokenBucket:
    def __init__(self, rate: float, *, burst: float | None = None, name: str = "", floor_fraction: float = 1 / 16,
                 recovery: float = 10.0, cooldown: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not rate > 0 or rate == float("inf"):
            raise ValueError(f"rate must be a finite number > 0 per second, not {rate!r}")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least 1 request")
        if not 0 < floor_fraction <= 1:
            raise ValueError("floor_fraction must be in (0, 1]")
        self.name = name
        self.configured_rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self.floor = self.configured_rate * floor_fraction
        self.recovery = recovery
        self.cooldown = cooldown
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free = clock()  # when the next slot is due at the current rate (before burst credit)
        self._paused_until = 0.0
        # The rate right after the last slow-down, and when that was: the rate recovers linearly from there.
        self._reduced_rate = self.configured_rate
        self._reduced_at: float | None = None
        self._acquired = 0
        self._waited = 0.0
        self._throttled = 0
        self._prepaid = threading.local()  # slots a thread reserved and has not used yet

    # --- the calls adapters make ----------------------------------------------------------------------
    def acquire(self) -> float:
        prepaid = getattr(self._prepaid, "count", 0)
        if prepaid > 0:
            self._prepaid.count = prepaid - 1
            return 0.0
        return self._take(1, wait=True)

    @contextmanager
    def reserved(self, count: int, *, wait: bool = True) -> Iterator[float]:
        if count < 1:
            raise ValueError("reserve at least one slot")
        waited = self._take(count, wait=wait)
        before = getattr(self._prepaid, "count", 0)
        self._prepaid.count = before + count
        try:
            yield waited
        finally:
            # Slots reserved and not used are dropped: they were counted, and nobody else can use them now.
            self._prepaid.count = min(self._prepaid.count, before)

    def _take(self, count: int, *, wait: bool) -> float:
        """Hand out ``count`` consecutive slots; sleep until the last one is due (unless ``wait`` is False)."""
        with self._lock:
            now = self._clock()
            interval = 1.0 / self._rate_at(now)
            due = max(self._next_free, now)
            last_due = due + (count - 1) * interval
            # Up to `burst` slots may be taken at once: a slot may come (burst-1) intervals before it is due.
            slot = max(now, last_due - (self.burst - 1) * interval, self._paused_until) if wait else now
            self._next_free = max(last_due, slot) + interval
            delay = slot - now
            self._acquired += count
            self._waited += delay
        if delay > 0:
            self._sleep(delay)
        return delay

    def throttled(self, retry_after: float | None = None) -> None:
        with self._lock:
            now = self._clock()
            self._throttled += 1
            if retry_after is not None and retry_after > 0:
                self._paused_until = max(self._paused_until, now + retry_after)
            if self._reduced_at is not None and now - self._reduced_at < self.cooldown:
                return  # the same wave of refusals: one slow-down is enough
            self._reduced_rate = max(self.floor, self._rate_at(now) / 2)
            self._reduced_at = now
            # No bursting right after a refusal: the saved-up credit is spent, and the next slot is one
            # interval away at the new rate.
            interval = 1.0 / self._reduced_rate
            self._next_free = max(self._next_free, now + self.burst * interval, self._paused_until)

    # --- observation ----------------------------------------------------------------------------------
    @property
    def current_rate(self) -> float:
        with self._lock:
            return self._rate_at(self._clock())

    def stats(self) -> BucketStats:
        with self._lock:
            return BucketStats(self.name, self.configured_rate, self._rate_at(self._clock()), self._acquired,
                               self._waited, self._throttled)

    def _rate_at(self, now: float) -> float:
        if self._reduced_at is None:
            return self.configured_rate
        calm = now - self._reduced_at
        if self.recovery <= 0 or calm >= self.recovery:
            self._reduced_at = None
            self._reduced_rate = self.configured_rate
            return self.configured_rate
        return self._reduced_rate + (self.configured_rate - self._reduced_rate) * calm / self.recovery


class Unlimited:
    """A Pacer that never waits: for parties the caller chose not to limit."""

    def acquire(self) -> float:
        return 0.0

    def throttled(self, retry_after: float | None = None) -> None:
        return None

    @contextmanager
    def reserved(self, count: int, *, wait: bool = True) -> Iterator[float]:
        yield 0.0

@dataclass(frozen=True)
class RetryBudget:
    """How long to keep trying one request to a party that does not answer.

    Retries wait ``first_wait``, then twice as long each time, as many as fit strictly inside ``window``
    (30 s: 3 retries, after 2, 4 and 8 s; 15 s: the same; 6 s: one), and none starts later than ``window``
    seconds after the first attempt began: an attempt that hangs until its own timeout uses the window up.
    So a request ends within about ``window`` + one attempt's timeout.
    """

    party: str  # as the operator knows it: "GitLab", "Slack"
    window: float  # seconds; the party's configured timeout
    first_wait: float = 2.0

    @property
    def planned(self) -> int:
        """Retries when every attempt fails at once (connection refused): the most there can be."""
        count, spent = 0, 0.0
        while spent + self.first_wait * 2 ** count < self.window:
            spent += self.first_wait * 2 ** count
            count += 1
        return count

    def next_wait(self, retries_done: int, elapsed: float) -> float | None:
        """Seconds to wait before the next retry, or None when the budget is spent."""
        wait = float(self.first_wait * 2 ** retries_done)
        if retries_done >= self.planned or elapsed + wait > self.window:
            return None
        return wait

    def announce(self, retry: int, wait: float, reason: str, **context: object) -> None:
        """One log line per retry, e.g. "GitLab unreachable, retry 2/4 in 4 s"."""
        import structlog  # only once a party fails: loading it costs `revoke` time before containment

        structlog.get_logger("rotator.retry").warning(
            f"{self.party} {reason}, retry {retry}/{self.planned} in {wait:.0f} s", party=self.party, retry=retry,
            retries=self.planned, wait_seconds=wait, **context)
