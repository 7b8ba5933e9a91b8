"""What the long-running service asks of the database beyond ports.Store: cheap, fleet-wide reads.

A tick must decide "nothing is due" for 10,000 credentials in well under 100 ms, so it cannot walk
every credential through the Store one by one: it asks for the few rows that may need work. /metrics
and /readyz need a snapshot of the fleet and a liveness probe of the database.

The notification outbox is here too: every command keeps what Slack did not take in it, and the service
delivers it (rotator.service.outbox).

Kept apart from ports.py (which the rotation and incident use cases share) because the use cases never
see these; the types here depend on rotator.domain and rotator.ports alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from rotator.domain import CredentialState, Phase
from rotator.ports import Store


@dataclass(frozen=True)
class DueCandidate:
    """A configured credential that may need work now: never looked at, due by the stored schedule,
    not in the ok state, or with an unfinished rotation. The scheduler makes the final decision."""

    name: str
    state: CredentialState
    updated_at: datetime
    next_due_at: datetime | None = None
    phase: Phase | None = None  # of the unfinished rotation, if any
    published_at: datetime | None = None
    deactivated_at: datetime | None = None
    held: bool = False  # the unfinished rotation carries a hold reason
    retry_at: datetime | None = None  # failed because a party was unreachable: not before this


@dataclass(frozen=True)
class FleetSnapshot:
    """What /metrics reports about every configured credential, read in one go."""

    key_created_at: Mapping[str, datetime | None] = field(default_factory=dict)
    states: Mapping[CredentialState, int] = field(default_factory=dict)
    incidents: int = 0
    broken_targets: int = 0  # GitLab targets holding half a pair (the new secret, the old key id)


class ServiceQueries(Protocol):
    def due_candidates(self, now: datetime) -> list[DueCandidate]:
        """Credentials that may need work at ``now``; an idle fleet returns an empty list from an index."""
        ...

    def fleet_snapshot(self) -> FleetSnapshot: ...

    def ping(self) -> None:
        """Raise StoreError unless the database answers a trivial query."""
        ...

    def note_unreachable(self, name: str, now: datetime, delay_for: Callable[[int], timedelta]) -> datetime:
        """The one write: a credential failed because a party could not be reached. Counts the failure (in a
        row) and sets its retry time to ``now + delay_for(failures in a row)``, which it returns. Any later
        status change that is not such a failure resets the count."""
        ...


@dataclass(frozen=True)
class QueuedNotification:
    """A Slack message Slack did not answer for, kept until it can be delivered."""

    channel: str
    title: str
    lines: tuple[str, ...]
    severity: str
    queued_at: datetime
    thread: str | None = None
    attempts: int = 0
    last_error: str | None = None
    id: int | None = None  # assigned by the outbox


class NotificationOutbox(Store, Protocol):
    """Where undelivered notifications wait, oldest first; a Store, for the lease that lets one sender at a
    time deliver them."""

    def queue_notification(self, message: QueuedNotification) -> None: ...

    def queued_notifications(self, limit: int = 100) -> list[QueuedNotification]:
        """The oldest ``limit`` waiting messages, oldest first."""
        ...

    def queued_count(self) -> int: ...

    def notification_delivered(self, message_id: int) -> None: ...

    def notification_failed(self, message_id: int, error: str) -> None:
        """One more attempt that Slack did not answer."""
        ...
