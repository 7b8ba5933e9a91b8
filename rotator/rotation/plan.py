"""`rotate --dry-run`: what the next run would do for a credential, found by reads alone.

Nothing here writes: no IAM mutation, no GitLab PUT/POST, no journal, no lease, no Slack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rotator.domain import CredentialSpec, Journal, KeyStatus, Phase, format_duration, newest_active, next_rotation_due
from rotator.errors import RotatorError
from rotator.ports import CiVariables, Clock, Iam, Store
from rotator.rotation.targets import check_drift, missing_variable_error, read_target


@dataclass(frozen=True)
class Plan:
    credential: str
    action: str  # rotate | resume | nothing | hold | error
    steps: tuple[str, ...] = field(default_factory=tuple)


def plan_rotation(spec: CredentialSpec, *, iam: Iam, variables: CiVariables, store: Store, clock: Clock,
                  force: bool = False) -> Plan:
    try:
        return _plan(spec, iam, variables, store, clock, force)
    except RotatorError as exc:
        return Plan(spec.name, "error", (f"cannot plan: {exc}",))


def _plan(spec: CredentialSpec, iam: Iam, variables: CiVariables, store: Store, clock: Clock,
          force: bool) -> Plan:
    journal = store.open_journal(spec.name)
    if journal is not None:
        return Plan(spec.name, "resume", tuple(_resume_steps(spec, journal, clock)))
    user = iam.get_user(spec.iam_user)
    keys = iam.list_access_keys(user.name)
    readings = [read_target(variables, t) for t in spec.targets]
    problems = [str(p) for r in readings if (p := missing_variable_error(r)) is not None]
    problems += [str(p) for r in readings if (p := check_drift(r, {k.key_id for k in keys})) is not None]
    if problems:
        return Plan(spec.name, "hold", tuple(problems))
    held = {r.held_key_id for r in readings if r.held_key_id}
    current = newest_active(keys)
    old_id = next(iter(held), None) or (current.key_id if current else None)
    old = next((k for k in keys if k.key_id == old_id), None)
    status = store.get_status(spec.name)
    due = next_rotation_due(old.created_at if old else None, status.last_rotated_at if status else None,
                            spec.policy)
    if not force and due is not None and due > clock.now():
        return Plan(spec.name, "nothing", (f"not due until {due.isoformat()} (key {old_id})",))
    described = ", ".join(f"{k.key_id} {k.status.value}" for k in keys) or "no keys"
    steps = [f"record intent: user {user.name} ({user.user_id}) has {described}; replacing {old_id or 'nothing'}"]
    if len(keys) >= 2:
        spare = [k.key_id for k in keys if k.status is KeyStatus.INACTIVE and k.key_id not in held]
        steps.append(f"make room: delete {spare[0]} if it is proven replaced, else hold" if spare
                     else "hold: both keys are Active and a human must pick one to delete")
    steps.append(f"create a new access key for {user.name}")
    steps.append(f"verify it with sts:GetCallerIdentity, about once a second for up to "
                 f"{format_duration(spec.policy.verify_timeout)}")
    for reading in readings:
        t = reading.target
        verb = "create" if reading.secret_var is None else "update"
        steps.append(f"publish to {t.label}: {verb} {t.secret_access_key_var}, then {t.access_key_id_var}")
    if old_id:
        steps.append(f"after {format_duration(spec.policy.grace)} grace: deactivate {old_id} if no target holds it "
                     "and it was not used since publish")
        steps.append(f"after {format_duration(spec.policy.delete_after)} more: delete {old_id}")
    return Plan(spec.name, "rotate", tuple(steps))


def _resume_steps(spec: CredentialSpec, journal: Journal, clock: Clock) -> list[str]:
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
    if journal.phase is Phase.PUBLISHED and journal.published_at is not None:
        at = journal.published_at + spec.policy.grace
        when = "now" if at <= clock.now() else at.isoformat()
        return [head, f"deactivate {journal.old_key_id} {when} (after grace, if unused since publish)"]
    if journal.phase is Phase.RETIRED and journal.deactivated_at is not None:
        at = journal.deactivated_at + spec.policy.delete_after
        when = "now" if at <= clock.now() else at.isoformat()
        return [head, f"delete {journal.old_key_id} {when}"]
    return [head]
