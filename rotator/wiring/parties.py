"""What the composition root needs of each outside party. The real parties (``AwsParty``, ``GitLabParty``,
``SlackParty``, ``Database``) build adapters over the SDKs; unit tests hand the root fakes of the same shape,
so every use case is assembled by the same code in both."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rotator.incident.exposure import ExposureLedger
    from rotator.incident.ports import CloudTrail, IncidentIam, IncidentStore
    from rotator.inventory.discover import Inventory
    from rotator.inventory.least_privilege import PrivilegeReads
    from rotator.inventory.locate import KeyLocator
    from rotator.oidc.ports import OidcIam, ProtectedRefs
    from rotator.ports import CiVariables, Iam, Notifier, Sts
    from rotator.service.ports import EventQueue, NotificationOutbox, ServiceQueries


class AwsAccess(Protocol):
    def client(self, service: str, account: str = "default") -> Any: ...

    def iam(self, account: str = "default") -> Iam: ...

    def incident_iam(self, account: str = "default") -> IncidentIam: ...

    def sts_for(self, account: str = "default") -> Sts: ...

    def locator(self, *, paced: bool = False) -> KeyLocator: ...

    def account_id(self, account: str = "default") -> str: ...

    def caller_account_id(self, account: str = "default") -> str:
        """sts:GetCallerIdentity with that account's own credentials (its role assumed, for a named account)."""
        ...

    def cloudtrail(self, account: str = "default", *, backoff: Any = None) -> CloudTrail: ...

    def oidc_iam(self, account: str = "default") -> OidcIam: ...

    def privilege_reads(self, account: str = "default") -> PrivilegeReads: ...

    def queue(self, queue_url: str, account: str = "default") -> EventQueue: ...


class GitLabAccess(Protocol):
    @property
    def client(self) -> Any: ...

    @property
    def variables(self) -> CiVariables: ...

    @property
    def inventory(self) -> Inventory: ...

    @property
    def protected_refs(self) -> ProtectedRefs: ...


class SlackAccess(Protocol):
    @property
    def notifier(self) -> Notifier | None: ...

    def whoami(self) -> str:
        """Slack's auth.test, as one line."""
        ...


class DatabaseAccess(Protocol):
    @property
    def store(self) -> IncidentStore: ...

    @property
    def service_queries(self) -> ServiceQueries: ...

    @property
    def outbox(self) -> NotificationOutbox:
        """Where Slack messages wait while Slack does not answer (the store's table)."""
        ...

    @property
    def exposures(self) -> ExposureLedger: ...

    def read_only_store(self) -> IncidentStore:
        """The store of a database that already exists, for dry runs: nothing is created or migrated."""
        ...

    def close(self) -> None: ...
