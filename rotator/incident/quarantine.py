"""The quarantine signal: on each tick, the tracked users that carry an AWS quarantine policy.

AWS attaches ``AWSCompromisedKeyQuarantine`` (V1, V2 or V3) to a user whose key it found exposed, within about
a minute of the leak, and leaves the key Active. The policy names no key id: rotator takes the key the user's
GitLab targets hold as the exposed one (and says so in every message), and acts per ``on_exposed`` through the
same ``handle_exposure`` as an AWS Health event. One ``iam:ListEntitiesForPolicy`` call per policy and account
finds every quarantined user, whatever the size of the fleet.

A quarantined user is acted on once: the record stays "attached" while the policy stays, and an incident
opened by an AWS Health event on the user's key "expects" the policy, so the key that replaced the exposed one
is never taken for it. Once a human removes the policy, attaching it again is a new signal. rotator never
detaches it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import structlog

from rotator.domain import CredentialSpec, KeyStatus
from rotator.errors import AwsError, RotatorError
from rotator.incident.events import (
    QUARANTINE,
    QUARANTINE_POLICY_ARNS,
    ExposureRecord,
    Outcome,
    QuarantineState,
    quarantine_actor,
    quarantine_is_news,
    quarantine_signal_id,
)
from rotator.incident.exposure import NOTIFY, Exposure, ExposurePorts, ExposureResult, handle_exposure
from rotator.rotation.targets import assess_targets

log = structlog.get_logger("rotator.incident.quarantine")


def check_quarantines(ports: ExposurePorts) -> list[ExposureResult]:
    """One look per account at which tracked users carry an AWS quarantine policy; act on the new ones."""
    specs = ports.specs
    if not specs:
        return []
    ledger = ports.ledger()
    now = ports.clock.now()
    records = {r.signal_id: r for r in ledger.quarantines()}
    tracked = {(s.account, s.iam_user): s for s in specs}
    results: list[ExposureResult] = []
    for account in sorted({s.account for s in specs}):
        iam = ports.iam_for(account)
        try:
            attached: dict[str, str] = {}
            for arn in QUARANTINE_POLICY_ARNS:  # iam:ListEntitiesForPolicy: one call per policy, not per user
                for user in iam.users_with_policy(arn):
                    attached.setdefault(user, arn)
        except AwsError as exc:
            log.error("cannot list the users carrying an AWS quarantine policy", account=account, error=str(exc))
            results.append(ExposureResult(None, Outcome.FAILED, "-", f"account {account}: {exc}", source=QUARANTINE))
            continue
        for known in records.values():
            if known.account == account and known.quarantine is QuarantineState.ATTACHED \
                    and known.user_name not in attached:
                ledger.save(replace(known, quarantine=QuarantineState.DETACHED, last_seen_at=now,
                                    detail=f"{known.detail}; the policy was removed"))
        for user, arn in sorted(attached.items()):
            spec = tracked.get((account, user))
            if spec is None:
                continue  # not a user rotator tracks: AWS Health's event (if any) covers its key
            record = records.get(quarantine_signal_id(account, user))
            if not quarantine_is_news(record, now):
                if record is not None and record.quarantine is QuarantineState.EXPECTED:
                    ledger.save(replace(record, quarantine=QuarantineState.ATTACHED, last_seen_at=now))
                continue
            results += _act_on_quarantine(ports, spec, arn, record, now)
    return results


def _act_on_quarantine(ports: ExposurePorts, spec: CredentialSpec, policy_arn: str, record: ExposureRecord | None,
                       now: datetime) -> list[ExposureResult]:
    user, account = spec.iam_user, spec.account
    signal_id = quarantine_signal_id(account, user)
    name = policy_arn.rsplit("/", 1)[-1]
    reason = f"AWS attached its quarantine policy {name} to user {user}: AWS found a key of this user exposed"
    actor = quarantine_actor(account, user)
    try:
        keys = {k.key_id: k for k in ports.iam_for(account).list_access_keys(user)}
        assessment = assess_targets(ports.variables(), spec.targets, set(keys))
    except RotatorError as exc:
        return [ExposureResult(None, Outcome.FAILED, "-", f"user {user}: {exc}", source=QUARANTINE)]
    active = {k for k, key in keys.items() if key.status is KeyStatus.ACTIVE}
    held = sorted(assessment.held & active)
    if held:
        how = f"the key the targets of {spec.name} hold"
    else:
        chosen = assessment.key_in_use(list(keys.values()))
        held = [chosen] if chosen in active else []
        how = "no target's key id could be read: the user's newest Active key"
    others = sorted(active - set(held))
    note = (f"AWS names no key id: rotator took {how}, {', '.join(held) or 'none'}"
            + (f"; the user also has Active key {', '.join(others)}, which no target holds: NOT contained, run "
               f"`rotator revoke --key {others[0]}` if it leaked" if others else ""))
    results = [handle_exposure(Exposure(QUARANTINE, f"{signal_id}#{key_id}", actor, key_id, reason, account, user,
                                        note), ports) for key_id in held]
    if not held:
        results = [_no_active_key(ports, spec, reason, note, others)]
    if all(r.settled for r in results):
        ledger = ports.ledger()
        ledger.save(ExposureRecord(
            signal_id, QUARANTINE, actor, account, user, held[0] if held else None,
            action=results[0].action, outcome=Outcome.ACTED if any(r.outcome is Outcome.ACTED for r in results)
            else results[0].outcome, detail=f"{name}; {note}; " + "; ".join(r.detail for r in results),
            first_seen_at=record.first_seen_at if record else now, last_seen_at=now,
            incident_id=next((r.incident_id for r in results if r.incident_id), None),
            quarantine=QuarantineState.ATTACHED))
    return results


def _no_active_key(ports: ExposurePorts, spec: CredentialSpec, reason: str, note: str,
                   unheld: list[str]) -> ExposureResult:
    """Quarantined, but no Active key the targets point to: the humans are told; rotator changes nothing.
    ``unheld``: the user's Active keys no target holds (which of them AWS found, rotator cannot tell)."""
    state = (f"user {spec.iam_user} has no Active key: nothing was contained or changed" if not unheld else
             f"user {spec.iam_user}'s Active key(s) {', '.join(unheld)} are held by no target, so rotator cannot "
             "tell which one AWS found: nothing was contained or changed")
    lines = [reason, note, state, "follow the AWS Support case opened for this exposure"]
    destinations = list(dict.fromkeys([*([ports.security_channel] if ports.security_channel else []),
                                       *spec.owners]))
    try:
        notifier = ports.notifier()
        for destination in destinations if notifier is not None else []:
            assert notifier is not None
            notifier.post(destination, f"rotator: user {spec.iam_user} quarantined by AWS", lines, severity="warning")
    except RotatorError as exc:
        return ExposureResult(None, Outcome.FAILED, NOTIFY, f"could not tell anyone: {exc}", source=QUARANTINE)
    return ExposureResult(None, Outcome.NOTIFIED, NOTIFY, "; ".join(lines[1:3]), source=QUARANTINE)
