"""What the long-running service asks of the database beyond ports.Store: cheap, fleet-wide reads.

A tick must decide "nothing is due" for 10,000 credentials in well under 100 ms, so it cannot walk
every credential through the Store one by one: it asks for the few rows that may need work. /metrics
and /readyz need a snapshot of the fleet and a liveness probe of the database.

Kept apart from ports.py (which the rotation and incident use cases share) because only the service
uses these; the types here depend on rotator.domain alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from rotator.domain import CredentialState, Phase


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
