"""Which credentials need work now. Pure: no I/O, no clock reads; the tick passes ``now`` in.

The authoritative schedule is in the database (credentials.next_due_at, the unfinished journals);
this module turns the few candidate rows the database returns into an ordered work list:
recovery of interrupted rotations first, then new rotations (inside the policy window, delayed by a
stable per-credential jitter), then the retire and delete steps whose waiting time is over.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from apscheduler.triggers.cron import CronTrigger

from rotator.domain import CredentialState, Phase, Policy
from rotator.service.ports import DueCandidate


@dataclass(frozen=True)
class RetryPauses:
    """How long a credential that did not end ok waits before the next try ([service] retry_*_after)."""

    # A human must look: every try may tell the owners on Slack again, and what held it (drift, a key still
    # in use) rarely clears within minutes.
    held: timedelta = timedelta(hours=1)
    # Any other failure (access denied, a refused request); a party that could not be reached is retried with
    # the retry_unreachable_after backoff instead.
    failed: timedelta = timedelta(minutes=15)
    # A target holds half a pair and its pipelines fail: tried again soon.
    broken: timedelta = timedelta(minutes=1)

    def after(self, state: CredentialState) -> timedelta | None:
        return {CredentialState.HELD: self.held, CredentialState.FAILED: self.failed,
                CredentialState.BROKEN: self.broken}.get(state)


class Work(StrEnum):
    RECOVER = "recover"  # an interrupted rotation before publish: resume (or roll back) it first
    ROTATE = "rotate"  # the schedule says a new rotation may be due (or the credential was never looked at)
    RETIRE = "retire"  # the grace period is over: deactivate the old key
    DELETE = "delete"  # delete_after is over: delete the old key


# Order of work inside one tick (DESIGN: recovery, then due rotations, then retire/delete steps).
WORK_ORDER = (Work.RECOVER, Work.ROTATE, Work.RETIRE, Work.DELETE)


@dataclass(frozen=True)
class DueWork:
    credential: str
    work: Work
    reason: str


def select_due(candidates: Iterable[DueCandidate], policies: Mapping[str, Policy], now: datetime,
               pauses: RetryPauses = RetryPauses()) -> list[DueWork]:
    """The work due at ``now``, in WORK_ORDER, then by credential name. Candidates whose credential is not
    configured (no policy) are skipped."""
    due: list[DueWork] = []
    for candidate in candidates:
        policy = policies.get(candidate.name)
        if policy is None:
            continue
        work = _work_for(candidate, policy, now, pauses)
        if work is not None:
            due.append(work)
    rank = {work: index for index, work in enumerate(WORK_ORDER)}
    return sorted(due, key=lambda item: (rank[item.work], item.credential))


def _work_for(candidate: DueCandidate, policy: Policy, now: datetime, pauses: RetryPauses) -> DueWork | None:
    name = candidate.name
    retry_after = pauses.after(candidate.state)
    if candidate.state is CredentialState.FAILED and candidate.retry_at is not None:
        if candidate.retry_at > now:
            return None  # an outside party was unreachable: its own backoff (unreachable_backoff) decides
    elif retry_after is not None and candidate.updated_at + retry_after > now:
        return None  # a human is looking, or the outside party is down: do not hammer it every tick
    phase = candidate.phase
    if phase in (Phase.INTENT, Phase.CREATED, Phase.VERIFIED):
        return DueWork(name, Work.RECOVER, f"rotation interrupted at phase {phase.value}")
    if phase is Phase.PUBLISHED:
        if candidate.published_at is None or candidate.published_at + policy.grace <= now:
            return DueWork(name, Work.RETIRE, "grace period over")
        return None
    if phase is Phase.RETIRED:
        if candidate.deactivated_at is None or candidate.deactivated_at + policy.delete_after <= now:
            return DueWork(name, Work.DELETE, "delete_after over")
        return None
    # No rotation in flight: anything we do may start a new one, so the window and the jitter apply.
    if candidate.next_due_at is None:
        reason = "never looked at"
    elif candidate.state is not CredentialState.OK:
        reason = f"state {candidate.state.value}, trying again"
    else:
        due_at = candidate.next_due_at + jitter_offset(name, policy.jitter)
        if due_at > now:
            return None
        reason = f"due since {due_at.isoformat()}"
    if not in_window(policy.window, now):
        return None
    return DueWork(name, Work.ROTATE, reason)


def unreachable_backoff(failures: int, first: timedelta, cap: timedelta) -> timedelta:
    """The pause before retrying a credential that failed ``failures`` times in a row because AWS, GitLab or
    Slack could not be reached: ``first``, doubling with each failure, never more than ``cap``
    ([service] retry_unreachable_after and retry_unreachable_max)."""
    if failures <= 1:
        return min(first, cap)
    doubled: timedelta = first * 2 ** min(failures - 1, 32)
    return min(doubled, cap)


def jitter_offset(name: str, jitter: timedelta) -> timedelta:
    """A delay in [0, jitter) that depends only on the credential's name: stable across restarts and
    replicas (every replica agrees when a credential is due), and spread evenly over a fleet."""
    if jitter <= timedelta(0):
        return timedelta(0)
    fraction = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2 ** 64
    return timedelta(seconds=int(jitter.total_seconds() * fraction))


# --- the policy window -------------------------------------------------------------------------------

# Standard crontab numbers the days of the week from Sunday = 0 (7 is Sunday too); APScheduler 3.x
# numbers them from Monday = 0. Day numbers are translated to names so "1-5" means Monday to Friday,
# as in crontab(5).
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day_number(token: str) -> int:
    token = token.lower()
    if token in _DAY_NAMES:
        return _DAY_NAMES.index(token)
    number = int(token)
    if not 0 <= number <= 7:
        raise ValueError(f"day of week {token!r} is out of range (0-7)")
    return number % 7


def _crontab_days(field: str) -> str:
    """A crontab day-of-week field as the list of day names APScheduler understands."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            low, high = span.split("-", 1)
            first, last = _day_number(low), _day_number(high)
            if high.strip() == "7":
                last = 7  # "5-7" is Friday to Sunday
        else:
            first = last = _day_number(span)
        if last < first:
            raise ValueError(f"day-of-week range {span!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_DAY_NAMES[day] for day in sorted(days))


@functools.lru_cache(maxsize=64)
def _window_triggers(expression: str) -> tuple[CronTrigger, ...]:
    minute, hour, day, month, weekday = expression.split()
    weekdays = _crontab_days(weekday)

    def trigger(day_field: str, weekday_field: str) -> CronTrigger:
        return CronTrigger(minute=minute, hour=hour, day=day_field, month=month, day_of_week=weekday_field,
                           timezone=UTC)

    if day != "*" and weekday != "*":
        # crontab(5): when both day fields are restricted, a time matches if EITHER matches.
        return trigger(day, "*"), trigger("*", weekdays)
    return (trigger(day, weekdays),)


def in_window(expression: str | None, now: datetime) -> bool:
    """Is ``now`` inside the 5-field cron window (evaluated in UTC, to the minute)? None: always."""
    if expression is None:
        return True
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    return any(trigger.get_next_fire_time(None, minute) == minute for trigger in _window_triggers(expression))


# --- drift checks -----------------------------------------------------------------------------------


class DriftSchedule:
    """When each credential's GitLab targets are next compared with IAM, kept in memory.

    A drift check reads GitLab and IAM, so it is rationed: each credential once per ``every``, its first
    check spread over the first period by the same stable hash as the jitter (a fresh start does not
    check the whole fleet at once), and at most ``budget`` checks per tick.
    """

    def __init__(self, names: Iterable[str], *, every: timedelta, budget: int, start: datetime) -> None:
        self.every = every
        self.budget = budget
        self._queue: list[tuple[datetime, str]] = [(start + jitter_offset(n, every), n) for n in names]
        heapq.heapify(self._queue)

    def take_due(self, now: datetime) -> list[str]:
        """Up to ``budget`` credentials whose check is due, each rescheduled one period later."""
        if self.budget <= 0:
            return []
        taken: list[tuple[datetime, str]] = []
        while self._queue and len(taken) < self.budget and self._queue[0][0] <= now:
            taken.append(heapq.heappop(self._queue))
        for at, name in taken:  # pushed back only now, so one call never returns a name twice
            following = at + self.every
            # After a long pause (a stopped tick, a suspended host) start a fresh period, not a burst.
            heapq.heappush(self._queue, (following if following > now else now + self.every, name))
        return [name for _, name in taken]

    def next_due(self) -> datetime | None:
        return self._queue[0][0] if self._queue else None
