"""Incident use cases, ready to run: the follow-up steps of `revoke`, the re-audit of an open incident (`rotator
run`, `rotator audit --incident`), `rotator audit --key`, the whole playbook as one call, and what the service does
when AWS reports a key exposed."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rotator.adapters.cloudtrail import Backoff
    from rotator.domain import CredentialSpec, Incident, KeyOwner
    from rotator.incident.audit.key_audit import KeyAuditPorts
    from rotator.incident.audit.run import AuditedKey, AuditReport, RegionCoverage
    from rotator.incident.containment import Containment, ContainmentPorts, KeyIdentity
    from rotator.incident.exposure import ExposurePorts
    from rotator.incident.followup import FollowUpPorts, FollowUpSchedule, IncidentOutcome, SessionSink
    from rotator.incident.ports import CloudTrail, IncidentStore
    from rotator.incident.reaudit import ReauditPorts
    from rotator.incident.sessions import CutPorts, RevokeRules
    from rotator.incident.steps import Step
    from rotator.ports import Notifier
    from rotator.wiring.root import Root

RegionCallback = Callable[["RegionCoverage"], None]


class IncidentWiring:
    def __init__(self, root: Root) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._account_ids: dict[str, str | None] | None = None
        self.account_notes: list[str] = []  # how each account id was learnt, when it could not be
        # One CloudTrail per account, so its per-region pace (2 LookupEvents a second) holds for every key looked
        # up there at once.
        self._trails: dict[tuple[str, int], CloudTrail] = {}

    # --- settings ---------------------------------------------------------------------------------------
    def rules(self) -> RevokeRules:
        from rotator.incident.sessions import RevokeRules

        revoke = self._root.settings.revoke
        return RevokeRules(revoke.deny_sessions, revoke.role_session_revocation, revoke.role_paths)

    def schedule(self) -> FollowUpSchedule:
        from rotator.incident.followup import FollowUpSchedule

        revoke = self._root.settings.revoke
        return FollowUpSchedule(revoke.follow_up, revoke.delivery_delay)

    def cut_ports(self, *, dry_run: bool = False) -> CutPorts:
        from rotator.incident.sessions import CutPorts

        return CutPorts(self._root.aws.incident_iam, self.rules(), self._root.clock.sleep, dry_run)

    # --- accounts ---------------------------------------------------------------------------------------
    def account_ids(self) -> dict[str, str | None]:
        """Every configured account's 12-digit id, resolved once, before any audit, all at once: sts:GetCallerIdentity
        through each account's own session (which also has that account's role assumed by the time a session
        there must be cut). A named account whose role cannot be assumed keeps the id of its role ARN; the ambient
        ("default") one is None then. Without these ids a session in another account could not be told from one
        in the key's own account."""
        from rotator.errors import AwsError

        with self._lock:
            if self._account_ids is not None:
                return dict(self._account_ids)
            root = self._root
            from_arn = root.settings.account_ids()

            def resolve(name: str) -> str | None:
                try:
                    return root.aws.caller_account_id(name)
                except AwsError as exc:
                    self.account_notes.append(f"account {name!r}: {exc.message}")
                    return from_arn.get(name)

            with ThreadPoolExecutor(max_workers=max(1, len(from_arn)), thread_name_prefix="account") as pool:
                self._account_ids = dict(zip(from_arn, pool.map(resolve, from_arn), strict=True))
            return dict(self._account_ids)

    def prefetch_account_ids(self) -> None:
        """Start resolving the account ids now, on a thread; account_ids() then waits only for what is left."""
        threading.Thread(target=self.account_ids, name="account-ids", daemon=True).start()

    def account_named(self, account_id: str | None) -> str | None:
        """The configured account that reaches ``account_id`` (a named one before "default"); None if none."""
        if account_id is None:
            return None
        names = [name for name, known in self.account_ids().items() if known == account_id]
        return next((name for name in names if name != "default"), names[0] if names else None)

    def trail_for(self, account_id: str, *, backoff: Backoff | None = None) -> CloudTrail | None:
        name = self.account_named(account_id)
        return None if name is None else self.trail(name, backoff=backoff)

    def trail(self, account: str, *, backoff: Backoff | None = None) -> CloudTrail:
        with self._lock:
            key = (account, id(backoff))
            if key not in self._trails:
                self._trails[key] = self._root.aws.cloudtrail(account, backoff=backoff)
            return self._trails[key]

    # --- the audit ----------------------------------------------------------------------------------------
    def audit(self, key_id: str, identity: KeyIdentity, start: datetime, end: datetime, *,
              backoff: Backoff | None = None, on_region: RegionCallback | None = None,
              on_session: SessionSink | None = None, seeds: Sequence[AuditedKey] = (),
              cover_until: datetime | None = None, follow_up_at: datetime | None = None) -> AuditReport:
        """The audit of a key in its own account, following its sessions into every configured account."""
        from dataclasses import replace

        from rotator.incident.audit.run import run_audit

        settings = self._root.settings
        usual = {settings.aws.region, *(a.region for a in settings.aws.accounts if a.region)}
        self.prefetch_account_ids()
        account_id = identity.account_id or self.account_ids().get(identity.account)
        principal = replace(identity.as_principal(), account_id=account_id)
        return run_audit(self.trail(identity.account, backoff=backoff), key_id, start=start, end=end,
                         regions=settings.aws.audit_regions, account_id=account_id,
                         known_cidrs=settings.aws.known_cidrs, usual_regions=usual, on_region=on_region,
                         trail_for=lambda other: self.trail_for(other, backoff=backoff), principal=principal,
                         seeds=seeds, on_session=on_session, delivery_delay=settings.revoke.delivery_delay,
                         now=self._root.clock.now(), cover_until=cover_until, follow_up_at=follow_up_at,
                         name_account=self.account_named)

    # --- use cases ----------------------------------------------------------------------------------------
    def containment_ports(self) -> ContainmentPorts:
        """For identifying a key without changing anything (`rotator audit`)."""
        from rotator.adapters.db.key_index import tracked_key_owner
        from rotator.incident.containment import ContainmentPorts

        url = self._root.settings.service.database_url
        return ContainmentPorts(iam_for=self._root.aws.incident_iam, locator=self._root.aws.locator(),
                                tracked_owner=lambda key_id: tracked_key_owner(url, key_id), clock=self._root.clock,
                                rules=self.rules(), consistency_margin=self._root.settings.revoke.consistency_margin)

    def key_audit_ports(self) -> KeyAuditPorts:
        from rotator.incident.audit.key_audit import KeyAuditPorts
        from rotator.incident.containment import identify

        root = self._root

        def created_at(identity: KeyIdentity, key_id: str) -> datetime | None:
            assert identity.user_name is not None
            keys = root.aws.incident_iam(identity.account).list_access_keys(identity.user_name)
            return next((k.created_at for k in keys if k.key_id == key_id), None)

        def audit(key_id: str, identity: KeyIdentity, start: datetime, end: datetime) -> AuditReport:
            return self.audit(key_id, identity, start, end)

        return KeyAuditPorts(identify=lambda key_id: identify(key_id, self.containment_ports()),
                             key_created_at=created_at, audit=audit, store=lambda: root.store, clock=root.clock)

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
                                tracked_owner=tracked_owner, clock=root.clock, rules=self.rules(),
                                consistency_margin=root.settings.revoke.consistency_margin)

    def account_names_by_id(self) -> Mapping[str, str]:
        """Every AWS account id rotator reaches → the configured account that reaches it (a named one before
        "default"), for telling which of our accounts an AWS report is about."""
        return {account_id: name for account_id in {i for i in self.account_ids().values() if i}
                if (name := self.account_named(account_id)) is not None}

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
            account_ids=self.account_names_by_id)

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

        def audit(containment: Containment, follow_up_at: datetime | None,
                  on_session: SessionSink | None) -> AuditReport:
            assert containment.identity is not None
            start, end = key_window(root.clock.now(), key_created_at=containment.key_created_at,
                                    temporary=containment.temporary)
            return self.audit(containment.key_id, containment.identity, start, end, on_region=on_region,
                              on_session=on_session, cover_until=containment.t0, follow_up_at=follow_up_at)

        def notifier() -> Notifier | None:
            return root.notifier

        return FollowUpPorts(
            clock=root.clock, actor=actor or root.actor, holder=holder, lease_ttl=settings.service.lease_ttl,
            store=store,
            notifier=notifier, security_channel=settings.slack.security_channel if settings.slack else None,
            configured=configured, replace=replace, audit=audit, cut_ports=self.cut_ports(dry_run=dry_run),
            iam_for=root.aws.incident_iam, schedule=self.schedule(),
        )

    def reaudit_ports(self, *, holder: str) -> ReauditPorts:
        """The follow-up of an open incident (the service's, and `rotator audit --incident`)."""
        from rotator.incident.containment import KeyIdentity
        from rotator.incident.reaudit import ReauditPorts

        root = self._root
        schedule = self.schedule()

        def audit(incident: Incident, seeds: Sequence[AuditedKey], start: datetime,
                  on_session: SessionSink) -> AuditReport:
            identity = KeyIdentity(incident.key_id, incident.account or "default", incident.account_id,
                                   incident.user_name, "store", incident.credential, incident.role_name)
            now = root.clock.now()
            return self.audit(incident.key_id, identity, start, now, on_session=on_session, seeds=seeds,
                              cover_until=incident.t0, follow_up_at=schedule.next_after(incident.t0, now))

        def notifier() -> Notifier | None:
            return root.notifier

        return ReauditPorts(clock=root.clock, actor=root.actor, holder=holder,
                            lease_ttl=root.settings.service.lease_ttl, store=lambda: root.store, notifier=notifier,
                            audit=audit, cut_ports=self.cut_ports(), schedule=schedule)
