"""Incident use cases after containment, ready to run: the follow-up steps of `revoke` and `rotator audit`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rotator.adapters.cloudtrail import Backoff
    from rotator.domain import CredentialSpec
    from rotator.incident.audit.key_audit import KeyAuditPorts
    from rotator.incident.audit.run import AuditReport, RegionCoverage
    from rotator.incident.containment import Containment, ContainmentPorts, KeyIdentity
    from rotator.incident.followup import FollowUpPorts
    from rotator.incident.ports import IncidentStore
    from rotator.incident.steps import Step
    from rotator.ports import Notifier
    from rotator.wiring.root import Root

RegionCallback = Callable[["RegionCoverage"], None]


class IncidentWiring:
    def __init__(self, root: Root) -> None:
        self._root = root

    def containment_ports(self) -> ContainmentPorts:
        """For identifying a key without changing anything (`rotator audit`)."""
        from rotator.adapters.db.key_index import tracked_key_owner
        from rotator.incident.containment import ContainmentPorts

        url = self._root.settings.service.database_url
        return ContainmentPorts(iam_for=self._root.aws.incident_iam, locator=self._root.aws.locator(),
                                tracked_owner=lambda key_id: tracked_key_owner(url, key_id), clock=self._root.clock)

    def audit(self, key_id: str, identity: KeyIdentity, start: datetime, end: datetime, *,
              backoff: Backoff | None = None, on_region: RegionCallback | None = None) -> AuditReport:
        from rotator.incident.audit.run import run_audit

        settings = self._root.settings
        usual = {settings.aws.region, *(a.region for a in settings.aws.accounts if a.region)}
        return run_audit(self._root.aws.cloudtrail(identity.account, backoff=backoff), key_id, start=start, end=end,
                         regions=settings.aws.audit_regions, account_id=identity.account_id,
                         known_cidrs=settings.aws.known_cidrs, usual_regions=usual, on_region=on_region)

    def key_audit_ports(self) -> KeyAuditPorts:
        from rotator.incident.audit.key_audit import KeyAuditPorts
        from rotator.incident.containment import identify

        root = self._root

        def created_at(identity: KeyIdentity, key_id: str) -> datetime | None:
            assert identity.user_name is not None
            keys = root.aws.incident_iam(identity.account).list_access_keys(identity.user_name)
            return next((k.created_at for k in keys if k.key_id == key_id), None)

        return KeyAuditPorts(identify=lambda key_id: identify(key_id, self.containment_ports()),
                             key_created_at=created_at, audit=self.audit, store=lambda: root.store, clock=root.clock)

    def follow_up_ports(self, *, holder: str, dry_run: bool, on_region: RegionCallback | None = None) -> FollowUpPorts:
        """Everything `revoke` does after containment, each part built only when its step runs."""
        from rotator.incident.audit.run import key_window
        from rotator.incident.followup import FollowUpPorts
        from rotator.incident.replace import ReplacePorts, replace_key
        from rotator.rotation.batch import rotate_one

        root = self._root
        settings = root.settings
        configured = settings.credential_specs()

        def store() -> IncidentStore:
            return root.database.read_only_store() if dry_run else root.store

        def register(spec: CredentialSpec) -> None:
            specs = configured if any(c.name == spec.name for c in configured) else (*configured, spec)
            root.store.sync_credentials(specs, root.clock.now())

        def replace(identity: KeyIdentity, tracked: CredentialSpec | None) -> Step:
            root.resolve_secrets(slack=False, state_key=not dry_run)
            ports = ReplacePorts(
                variables=root.gitlab.variables, rotation_ports=root.rotation.ports, register=register,
                rotate=lambda rotation, spec: rotate_one(rotation, spec, holder=holder,
                                                         lease_ttl=settings.service.lease_ttl, force=True))
            return replace_key(ports, identity, tracked=tracked, configured=configured, dry_run=dry_run)

        def audit(containment: Containment) -> AuditReport:
            assert containment.identity is not None
            start, end = key_window(root.clock.now(), key_created_at=containment.key_created_at,
                                    temporary=containment.temporary)
            return self.audit(containment.key_id, containment.identity, start, end, on_region=on_region)

        def notifier() -> Notifier | None:
            return root.notifier

        return FollowUpPorts(
            clock=root.clock, actor=root.actor, holder=holder, lease_ttl=settings.service.lease_ttl, store=store,
            notifier=notifier, security_channel=settings.slack.security_channel if settings.slack else None,
            configured=configured, replace=replace, audit=audit,
        )
