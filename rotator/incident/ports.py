"""What the compromised-key playbook (revoke) and the CloudTrail audit ask of AWS beyond ports.Iam.

Kept in the incident package, not in rotator.ports, because only the incident use cases need these. The
types here depend on rotator.domain and rotator.ports alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from rotator.domain import Incident
from rotator.ports import Iam, Store


class IncidentIam(Iam, Protocol):
    """IAM of one account, with what containment needs besides the rotation calls."""

    def user_policy(self, user_name: str, policy_name: str) -> str | None:
        """The inline policy document (JSON text), or None when the user has no policy of that name."""
        ...

    def put_user_policy(self, user_name: str, policy_name: str, document: str) -> None: ...

    def role_policy(self, role_name: str, policy_name: str) -> str | None: ...

    def put_role_policy(self, role_name: str, policy_name: str, document: str) -> None: ...

    def login_profile_created(self, user_name: str) -> datetime | None:
        """When the user's console password was created; None when the user has none."""
        ...

    def delete_login_profile(self, user_name: str) -> None:
        """Idempotent: a user without a console password is not an error."""
        ...

    def users_with_policy(self, policy_arn: str) -> list[str]:
        """The names of the users a managed policy is attached to (iam:ListEntitiesForPolicy, every page)."""
        ...


class IncidentStore(Store, Protocol):
    def expire_lease(self, name: str) -> None:
        """End the current tenure now, whoever holds it: an incident takes precedence over a rotation."""
        ...

    def incident(self, incident_id: str) -> Incident | None: ...

    def open_incidents(self) -> list[Incident]:
        """Incidents not closed yet (their audit has not covered T0 plus CloudTrail's delivery delay), by T0."""
        ...

    def list_incidents(self, limit: int = 1000) -> list[Incident]:
        """Every incident recorded, open ones first, then newest T0 first (at most ``limit``: an open
        incident is never left out for a newer closed one)."""
        ...


@dataclass(frozen=True)
class TrailPage:
    """One LookupEvents page: the CloudTrail records (parsed CloudTrailEvent JSON) and how many
    times the request was throttled before it succeeded."""

    records: tuple[Mapping[str, Any], ...]
    throttled: int = 0


class CloudTrail(Protocol):
    """CloudTrail LookupEvents of one AWS account, paced per region."""

    def enabled_regions(self) -> list[str]:
        """ec2:DescribeRegions: every region enabled in the account."""
        ...

    def lookup_by_key(self, region: str, key_id: str, start: datetime, end: datetime) -> Iterator[TrailPage]:
        """Every event signed with ``key_id`` in ``region`` between start and end, page by page, newest
        first. Throttling is waited out; what cannot be (a region that keeps throttling or failing)
        raises an AwsError after the pages already yielded."""
        ...

    def lookup_by_event(self, region: str, event_name: str, start: datetime, end: datetime) -> Iterator[TrailPage]:
        """Every event named ``event_name`` in ``region`` between start and end, page by page, newest first;
        paced and retried as lookup_by_key."""
        ...
