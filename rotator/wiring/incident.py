"""Adapters for containment, built from the few settings read before anything slow (rotator.config.early).

The sibling of rotator.wiring.root for the one path that cannot wait for the full config: `revoke` builds
these, contains the key, and only then reads the whole file and hands its AWS sessions to a Wiring
(``Wiring.use_aws_sessions``), so an assumed role is not assumed twice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from rotator.config.early import AccountRole, ContainmentSettings
from rotator.domain import CredentialSpec, KeyOwner
from rotator.wiring.root import SystemClock

if TYPE_CHECKING:
    from rotator.adapters.aws import AwsSessions
    from rotator.adapters.aws_incident import BotoIncidentIam, StsKeyDirectory
    from rotator.adapters.cloudtrail import Backoff
    from rotator.config.settings import Settings
    from rotator.incident.audit.run import AuditReport, RegionCoverage
    from rotator.incident.containment import Containment, ContainmentPorts, KeyIdentity, Step
    from rotator.incident.followup import FollowUpPorts
    from rotator.incident.ports import IncidentStore
    from rotator.ports import Notifier
    from rotator.wiring.root import Wiring

# The longest a temporary key lives (GetSessionToken, GetFederationToken): how far back its audit looks.
TEMPORARY_KEY_LIFETIME = timedelta(hours=36)


class ContainmentWiring:
    def __init__(self, settings: ContainmentSettings, environ: Mapping[str, str] = os.environ) -> None:
        self.settings = settings
        self.clock = SystemClock()
        self._environ = environ
        self._lock = threading.Lock()
        self._iams: dict[str, BotoIncidentIam] = {}

    @cached_property
    def aws(self) -> AwsSessions:
        from rotator.adapters.aws import AwsSessions

        roles = {account.name: (account.role_arn, self.settings.external_id(account, self._environ),
                                account.session_name) for account in self.settings.accounts}
        return AwsSessions(self.settings.region, roles)

    def incident_iam(self, account: str) -> BotoIncidentIam:
        from rotator.adapters.aws_incident import BotoIncidentIam

        with self._lock:
            if account not in self._iams:
                self._iams[account] = BotoIncidentIam(self.aws.client("iam", account))
            return self._iams[account]

    @cached_property
    def directory(self) -> StsKeyDirectory:
        from rotator.adapters.aws_incident import StsKeyDirectory

        return StsKeyDirectory(self.aws.client("sts"))

    def tracked_owner(self, key_id: str) -> KeyOwner | None:
        from rotator.adapters.db.key_index import tracked_key_owner

        return tracked_key_owner(self.settings.database_url, key_id)

    def containment_ports(self) -> ContainmentPorts:
        from rotator.incident.containment import ContainmentPorts

        return ContainmentPorts(iam_for=self.incident_iam, directory=self.directory,
                                account_ids=self.settings.account_ids(), tracked_owner=self.tracked_owner,
                                clock=self.clock)


# --- after containment: the full config and a Wiring -------------------------------------------------------


def account_ids_of(settings: Settings) -> dict[str, str | None]:
    """Configured account name → AWS account id (from its role ARN); "default" → None."""
    ids: dict[str, str | None] = {"default": None}
    ids.update({account.name: AccountRole(account.name, account.role_arn).account_id
                for account in settings.aws.accounts})
    return ids


def containment_ports_of(wiring: Wiring) -> ContainmentPorts:
    """ContainmentPorts from a full Wiring (for `rotator audit`, which identifies but changes nothing)."""
    from rotator.adapters.aws_incident import StsKeyDirectory
    from rotator.adapters.db.key_index import tracked_key_owner
    from rotator.incident.containment import ContainmentPorts

    url = wiring.settings.service.database_url
    return ContainmentPorts(iam_for=wiring.incident_iam, directory=StsKeyDirectory(wiring.aws.client("sts")),
                            account_ids=account_ids_of(wiring.settings),
                            tracked_owner=lambda key_id: tracked_key_owner(url, key_id), clock=wiring.clock)


def usual_regions(settings: Settings) -> set[str]:
    """Regions rotator's accounts are configured to work in: spend elsewhere is flagged louder."""
    return {settings.aws.region, *(a.region for a in settings.aws.accounts if a.region)}


def audit_for(wiring: Wiring, key_id: str, identity: KeyIdentity, *, start: datetime, end: datetime,
              backoff: Backoff | None = None,
              on_region: Callable[[RegionCoverage], None] | None = None) -> AuditReport:
    from rotator.incident.audit.run import run_audit

    settings = wiring.settings
    return run_audit(wiring.cloudtrail(identity.account, backoff=backoff), key_id, start=start, end=end,
                     regions=settings.aws.audit_regions, account_id=identity.account_id,
                     known_cidrs=settings.aws.known_cidrs, usual_regions=usual_regions(settings),
                     on_region=on_region)


def follow_up_ports(wiring: Wiring, *, holder: str, dry_run: bool,
                    on_region: Callable[[RegionCoverage], None] | None = None) -> FollowUpPorts:
    """Everything `revoke` does after containment, each part built only when its step runs."""
    from rotator.incident.audit.run import audit_window
    from rotator.incident.followup import FollowUpPorts
    from rotator.incident.replace import ReplacePorts, replace_key
    from rotator.rotation.batch import rotate_one

    settings = wiring.settings
    configured = settings.credential_specs()

    def store() -> IncidentStore:
        if dry_run:
            from rotator.adapters.db.key_index import sqlite_path

            path = sqlite_path(settings.service.database_url) if settings.service.database_url.startswith(
                "sqlite") else None
            if path is not None and not Path(path).expanduser().is_file():
                from rotator.errors import StoreError

                raise StoreError(f"no database at {path} yet (a dry run creates none)")
            from rotator.adapters.db.store import SqlStore

            return SqlStore.from_url(settings.service.database_url)  # refuses a database not at head
        return wiring.store

    def register(spec: CredentialSpec) -> None:
        specs = configured if any(c.name == spec.name for c in configured) else (*configured, spec)
        wiring.store.sync_credentials(specs, wiring.clock.now())

    def replace(identity: KeyIdentity, tracked: CredentialSpec | None) -> Step:
        wiring.resolve_secrets(slack=False, state_key=not dry_run)
        ports = ReplacePorts(
            variables=wiring.variables, rotation_ports=wiring.rotation_ports, register=register,
            rotate=lambda rotation, spec: rotate_one(rotation, spec, holder=holder,
                                                     lease_ttl=settings.service.lease_ttl, force=True))
        return replace_key(ports, identity, tracked=tracked, configured=configured, dry_run=dry_run)

    def audit(containment: Containment) -> AuditReport:
        assert containment.identity is not None
        now = wiring.clock.now()
        created = containment.key_created_at or (now - TEMPORARY_KEY_LIFETIME if containment.temporary else None)
        start, end = audit_window(now, key_created_at=created)
        return audit_for(wiring, containment.key_id, containment.identity, start=start, end=end, on_region=on_region)

    def notifier() -> Notifier | None:
        return wiring.notifier

    return FollowUpPorts(
        clock=wiring.clock, actor=wiring.actor, holder=holder, lease_ttl=settings.service.lease_ttl, store=store,
        notifier=notifier, security_channel=settings.slack.security_channel if settings.slack else None,
        configured=configured, replace=replace, audit=audit,
    )
