"""`rotate --dry-run`: what the next run would do for a credential, found by reads alone.

Nothing here writes: no IAM mutation, no GitLab PUT/POST, no journal, no lease, no Slack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rotator.domain import (
    CredentialSpec,
    Journal,
    Phase,
    format_duration,
    is_due,
    next_rotation_due,
)
from rotator.errors import RotatorError
from rotator.ports import CiVariables, Clock, Iam, Store
from rotator.rotation.targets import assess_targets


@dataclass(frozen=True)
class Plan:
    credential: str
    action: str  # rotate | resume | nothing | hold | error
    steps: tuple[str, ...] = field(default_factory=tuple)


def plan_rotation(spec: CredentialSpec, *, iam: Iam, variables: CiVariables, store: Store, clock: Clock,
                  force: bool = False, emergency: bool = False) -> Plan:
    try:
        return _plan(spec, iam, variables, store, clock, force or emergency, emergency)
    except RotatorError as exc:
        return Plan(spec.name, "error", (f"cannot plan: {exc}",))


def _plan(spec: CredentialSpec, iam: Iam, variables: CiVariables, store: Store, clock: Clock,
          force: bool, emergency: bool) -> Plan:
    journal = store.open_journal(spec.name)
    if journal is not None:
        steps = _resume_steps(spec, journal, clock, emergency)
        return Plan(spec.name, "resume", tuple(steps))
    user = iam.get_user(spec.iam_user)
    keys = iam.list_access_keys(user.name)
    assessment = assess_targets(variables, spec.targets, {k.key_id for k in keys})
    problems = assessment.problems()
    if problems:
        return Plan(spec.name, "hold", tuple(problems))
    old_id = assessment.key_in_use(keys)
    old = next((k for k in keys if k.key_id == old_id), None)
    status = store.get_status(spec.name)
    created, last_rotated = old.created_at if old else None, status.last_rotated_at if status else None
    due = next_rotation_due(created, last_rotated, spec.policy)
    if not force and not is_due(created, last_rotated, spec.policy, clock.now()):
        assert due is not None  # not due means a due date is known
        return Plan(spec.name, "nothing", (f"not due until {due.isoformat()} (key {old_id})",))
    described = ", ".join(f"{k.key_id} {k.status.value}" for k in keys) or "no keys"
    steps = [f"record intent: user {user.name} ({user.user_id}) has {described}; replacing {old_id or 'nothing'}"]
    if len(keys) >= 2:
        # IAM allows two keys per user: CreateAccessKey will answer LimitExceeded, and the engine makes room
        # by the same rule as here.
        decision = assessment.room(keys, replacing=old_id, journals=store.journals(spec.name),
                                   user_id=user.user_id,
                                   is_evidence=lambda key_id: bool(store.incidents_for_key(key_id)))
        if decision.delete_key_id is None:
            return Plan(spec.name, "hold", (*steps, f"hold: {decision.hold_reason}"))
        steps.append(f"make room: delete {decision.delete_key_id} (Inactive, unreferenced, replaced)")
    steps.append(f"create a new access key for {user.name}")
    steps.append(f"verify it with sts:GetCallerIdentity, about once a second for up to "
                 f"{format_duration(spec.policy.verify_timeout)}")
    for reading in assessment.readings:
        t = reading.target
        verb = "create" if reading.secret_var is None else "update"
        check = (f"prove {t.access_key_id_var} can be written (PUT its current value), then "
                 if reading.key_id_var is not None and reading.key_id_var.value is not None else "")
        steps.append(f"publish to {t.label}: {check}{verb} {t.secret_access_key_var}, then {t.access_key_id_var} "
                     "right after it")
    if old_id and emergency:
        steps.append(f"emergency: deactivate {old_id} as soon as every target holds the new pair (no grace, no "
                     "LastUsedDate gate), and check with ListAccessKeys that IAM lists it Inactive")
        steps.append(f"keep {old_id} Inactive as evidence; a later run deletes it after "
                     f"{format_duration(spec.policy.delete_after)} (delete_after)")
    elif old_id:
        steps.append(f"after {format_duration(spec.policy.grace)} grace: deactivate {old_id} if no target holds it "
                     "and it was not used since publish")
        steps.append(f"after {format_duration(spec.policy.delete_after)} more: delete {old_id}")
    return Plan(spec.name, "rotate", tuple(steps))


def _resume_steps(spec: CredentialSpec, journal: Journal, clock: Clock, emergency: bool) -> list[str]:
    head = f"resume rotation {journal.rotation_id[:8]} (phase {journal.phase.value})"
    if journal.phase is Phase.INTENT:
        return [head, f"delete any key of {journal.user_name} created but never journaled "
                      f"(not among {', '.join(journal.prior_key_ids) or 'none'}), then start again"]
    if journal.phase in (Phase.CREATED, Phase.VERIFIED):
        pending = [t.label for t in spec.targets if t.target_id not in journal.targets_done]
        steps = [head]
        if journal.phase is Phase.CREATED:
            steps.append(f"verify {journal.new_key_id} with STS")
        steps.append(f"publish {journal.new_key_id} to {', '.join(pending) or 'no remaining target'}")
        return steps
    if journal.phase is Phase.PUBLISHED and emergency:
        return [head, f"emergency: deactivate {journal.old_key_id} now if no target holds it (no grace, no "
                      "LastUsedDate gate); keep it Inactive as evidence"]
    if journal.phase is Phase.RETIRED and emergency:
        return [head, f"emergency: {journal.old_key_id} is already Inactive: check it with ListAccessKeys; "
                      "nothing is deleted"]
    if journal.phase is Phase.PUBLISHED and journal.published_at is not None:
        at = journal.published_at + spec.policy.grace
        when = "now" if at <= clock.now() else at.isoformat()
        return [head, f"deactivate {journal.old_key_id} {when} (after grace, if unused since publish)"]
    if journal.phase is Phase.RETIRED and journal.deactivated_at is not None:
        at = journal.deactivated_at + spec.policy.delete_after
        when = "now" if at <= clock.now() else at.isoformat()
        return [head, f"delete {journal.old_key_id} {when}"]
    return [head]
