"""`rotator audit --key ID`: identify the key's owner, audit CloudTrail over the key's life, and attach the
report to the key's incident when there is one. Written against callables the composition root provides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from rotator.domain import is_temporary_key_id
from rotator.errors import AwsError, RotatorError
from rotator.incident.audit.run import AuditReport, key_window
from rotator.incident.containment import KeyIdentity, NotContained
from rotator.incident.ports import IncidentStore
from rotator.incident.report import with_new_audit
from rotator.ports import Clock


@dataclass(frozen=True)
class KeyAuditPorts:
    identify: Callable[[str], tuple[KeyIdentity, list[str]]]  # raises NotContained when no account knows it
    key_created_at: Callable[[KeyIdentity, str], datetime | None]  # IAM ListAccessKeys; may raise AwsError
    audit: Callable[[str, KeyIdentity, datetime, datetime], AuditReport]  # key, owner, start, end
    store: Callable[[], IncidentStore]
    clock: Clock


@dataclass
class KeyAudit:
    report: AuditReport
    identity: KeyIdentity
    identified_by: list[str]
    incident_id: str | None = None
    problems: list[str] = field(default_factory=list)  # what was not done: the report not saved, ...
    notes: list[str] = field(default_factory=list)  # what the operator should know: a window guessed, ...

    @property
    def covered(self) -> bool:
        """Nothing failed: every region, account and stretch of the window was looked at (the last minutes,
        still inside CloudTrail's delivery delay, are pending, which is not a failure)."""
        return not self.report.failed and not self.problems


def audit_key(ports: KeyAuditPorts, key_id: str, *, since: datetime | None = None) -> KeyAudit:
    try:
        identity, tried = ports.identify(key_id)
    except NotContained as exc:
        # Only the owning account's CloudTrail has the key's calls: without it there is nothing to look at.
        raise RotatorError(f"cannot audit {key_id}: {exc.message} ({'; '.join(exc.tried)})", hint=exc.hint) from None
    now = ports.clock.now()
    notes: list[str] = []
    created = None
    if since is None and identity.user_name is not None:
        try:
            created = ports.key_created_at(identity, key_id)
        except AwsError as exc:
            notes.append(f"cannot read when {key_id} was created ({exc.message}): auditing 90 days")
    start, end = key_window(now, key_created_at=created, temporary=is_temporary_key_id(key_id), since=since)
    outcome = KeyAudit(ports.audit(key_id, identity, start, end), identity, tried, notes=notes)
    _attach_to_incident(ports, outcome)
    return outcome


def _attach_to_incident(ports: KeyAuditPorts, outcome: KeyAudit) -> None:
    try:
        store = ports.store()
        incidents = store.incidents_for_key(outcome.report.key_id)
        if not incidents:
            return
        latest = with_new_audit(incidents[-1], outcome.report)
        store.save_incident(latest)
    except RotatorError as exc:
        outcome.problems.append(f"the report was not saved to the store: {exc}")
        return
    outcome.incident_id = latest.incident_id
