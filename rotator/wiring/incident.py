"""Incident use cases, ready to run: the follow-up steps of `revoke` and `rotator audit`, the whole playbook as
one call, and what the service does when AWS reports a key exposed."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rotator.adapters.cloudtrail import Backoff
    from rotator.domain import CredentialSpec, KeyOwner
    from rotator.incident.audit.key_audit import KeyAuditPorts
    from rotator.incident.audit.run import AuditReport, RegionCoverage
    from rotator.incident.containment import Containment, ContainmentPorts, KeyIdentity
    from rotator.incident.exposure import ExposurePorts
    from rotator.incident.followup import FollowUpPorts, IncidentOutcome
    from rotator.incident.ports import IncidentStore
    from rotator.incident.steps import Step
    from rotator.ports import Notifier
    from rotator.wiring.root import Root

RegionCallback = Callable[["RegionCoverage"], None]


class IncidentWiring:
    def __init__(self, root: Root) -> None:
        self._root = root
        self._account_ids: dict[str, str] | None = None
        self._account_ids_lock = threading.Lock()

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

    def run_playbook(self, key_id: str, *, actor: str, reason: str, replace: bool, audit: bool = True,
                     holder: str | None = None,
                     before_follow_up: Callable[[Containment], bool] | None = None) -> IncidentOutcome:
        """`rotator revoke --key` as one call, for a process that already has its whole config (the service):
        contain first (raises NotContained when the key is not), then every follow-up, ``actor`` recorded as who
        ran it (a person, or ``aws-health:<event arn>``). ``before_follow_up(containment)``: asked once the key
        is contained; False stops there (the outcome then has no incident)."""
        from rotator.incident.containment import contain
        from rotator.incident.followup import FollowUpOptions, IncidentOutcome, follow_up

        containment = contain(key_id, self._store_containment_ports())
        if before_follow_up is not None and not before_follow_up(containment):
            return IncidentOutcome(containment, list(containment.steps))
        ports = self.follow_up_ports(holder=holder or f"incident/{uuid.uuid4().hex[:8]}", dry_run=False, actor=actor)
        return follow_up(containment, ports, FollowUpOptions(reason=reason, replace=replace, audit=audit))

    def _store_containment_ports(self) -> ContainmentPorts:
        """Containment ports whose owner lookup is the open store (the service has it already)."""
        from rotator.incident.containment import ContainmentPorts

        root = self._root

        def tracked_owner(key_id: str) -> KeyOwner | None:
            return root.store.key_owner(key_id)  # opening the store may fail: containment then asks AWS

        return ContainmentPorts(iam_for=root.aws.incident_iam, locator=root.aws.locator(),
                                tracked_owner=tracked_owner, clock=root.clock)

    def account_ids(self) -> Mapping[str, str]:
        """Every AWS account id rotator reaches → its configured account name ("default": asked of STS once)."""
        with self._account_ids_lock:
            if self._account_ids is None:
                names = ("default", *(a.name for a in self._root.settings.aws.accounts))
                self._account_ids = {self._root.aws.account_id(name): name for name in reversed(names)}
            return self._account_ids

    def exposure_ports(self, *, holder: str, specs: Sequence[CredentialSpec] | None = None) -> ExposurePorts:
        """What the service needs to act on AWS's exposure reports (events and quarantine policies). ``specs``:
        the configured credentials when the caller already built them (10,000 take most of a second)."""
        from rotator.incident.containment import identify
        from rotator.incident.exposure import ExposurePorts

        root = self._root
        settings = root.settings
        return ExposurePorts(
            clock=root.clock, holder=holder, lease_ttl=settings.service.lease_ttl, store=lambda: root.store,
            ledger=lambda: root.database.exposures, iam_for=root.aws.incident_iam,
            variables=lambda: root.gitlab.variables, notifier=lambda: root.notifier,
            security_channel=settings.slack.security_channel if settings.slack else None,
            specs=settings.credential_specs() if specs is None else specs, on_exposed=settings.on_exposed,
            overrides=any(c.on_exposed is not None for c in settings.credentials),
            # Each run holds the credential's lease as an incident of its own, never as the service: a rotation
            # of this replica must lose its lease to it like any other.
            run_playbook=lambda key_id, actor, reason, replace, before_follow_up: self.run_playbook(
                key_id, actor=actor, reason=reason, replace=replace, before_follow_up=before_follow_up),
            identify=lambda key_id: identify(key_id, self._store_containment_ports())[0],
            account_ids=self.account_ids)

    def follow_up_ports(self, *, holder: str, dry_run: bool, on_region: RegionCallback | None = None,
                        actor: str | None = None) -> FollowUpPorts:
        """Everything `revoke` does after containment, each part built only when its step runs. ``actor``: who
        runs it, when not this process's own actor (an AWS report)."""
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
            clock=root.clock, actor=actor or root.actor, holder=holder, lease_ttl=settings.service.lease_ttl,
            store=store,
            notifier=notifier, security_channel=settings.slack.security_channel if settings.slack else None,
            configured=configured, replace=replace, audit=audit,
        )
