"""`rotate --dry-run` (rotator.rotation.plan) through the composition root over the fake world: every action it
can announce (resume, nothing, hold, rotate, error), the exact steps it lists, and that planning writes nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from rotator.domain import (
    CredentialSpec,
    CredentialState,
    Incident,
    Journal,
    Phase,
    ScopeKind,
    TargetSpec,
)
from rotator.rotation.plan import Plan, plan_rotation
from tests.unit.worlds import GROUP, PROJECT, World, rotation_world

STRANGER = "AKIA7777777777777777"
NEW_KEY = "AKIA9999999999999999"
ROTATION_ID = "0123456789abcdef-0000"
PROJECT_LABEL = "project payments/api [environment_scope=*]"
GROUP_LABEL = "group payments [environment_scope=production]"
# The preflight of each target whose key id is readable.
PROVE = "prove AWS_ACCESS_KEY_ID can be written (PUT its current value), then "


def world_with_policy() -> World:
    """The rotation world (key 40 days old, due under 30 days) with a grace of 1h and deletion after 7d."""
    return rotation_world(grace=timedelta(hours=1), delete_after=timedelta(days=7))


def plan(world: World, *, force: bool = False, emergency: bool = False) -> Plan:
    [only] = world.root().rotation.plan([world.spec], force=force, emergency=emergency)
    return only


def user_id(world: World) -> str:
    return world.iam.users[world.spec.iam_user].user_id


def second_key(world: World, *, active: bool) -> str:
    """Give the credential's user a second key (newer than the one the targets hold)."""
    key = world.iam._new_key(world.spec.iam_user)
    if not active:
        world.iam.set_access_key_status(world.spec.iam_user, key.key_id, active=False)
    return key.key_id


def open_journal(world: World, phase: Phase, **fields: object) -> Journal:
    now = world.clock.now()
    journal = Journal(rotation_id=ROTATION_ID, credential=world.spec.name, account="default",
                      user_name=world.spec.iam_user, user_id=user_id(world), prior_key_ids=(world.key_id,),
                      old_key_id=world.key_id, phase=phase, started_at=now, updated_at=now)
    journal = replace(journal, **fields)  # type: ignore[arg-type]
    world.store.save_journal(journal)
    return journal


def intent(world: World, described: str) -> str:
    return (f"record intent: user {world.spec.iam_user} ({user_id(world)}) has {described}; replacing "
            f"{world.key_id}")


def tail_steps(world: World) -> tuple[str, ...]:
    """Create, verify, publish to both targets, grace, delete: the steps after intent and room."""
    return (
        f"create a new access key for {world.spec.iam_user}",
        "verify it with sts:GetCallerIdentity, about once a second for up to 1m",
        f"publish to {PROJECT_LABEL}: {PROVE}update AWS_SECRET_ACCESS_KEY, then AWS_ACCESS_KEY_ID "
        "right after it",
        f"publish to {GROUP_LABEL}: {PROVE}update AWS_SECRET_ACCESS_KEY, then AWS_ACCESS_KEY_ID "
        "right after it",
        f"after 1h grace: deactivate {world.key_id} if no target holds it and it was not used since publish",
        f"after 7d more: delete {world.key_id}",
    )


# --- rotate ------------------------------------------------------------------------------------------------


def test_a_due_credential_plans_every_step_of_a_rotation_and_writes_nothing() -> None:
    world = world_with_policy()
    assert plan(world) == Plan("payments", "rotate", (intent(world, f"{world.key_id} Active"), *tail_steps(world)))
    assert "CreateAccessKey" not in world.iam.calls and "UpdateAccessKey" not in world.iam.calls
    assert world.variables.writes == []
    assert world.store.journal_rows == {} and world.store.leases == {}
    assert world.notifier.posted == []


def test_a_second_key_proven_replaced_is_deleted_first_to_make_room() -> None:
    """Two keys: every target holds the Active one, so the Inactive one is unreferenced and replaced."""
    world = world_with_policy()
    spare = second_key(world, active=False)
    assert plan(world) == Plan("payments", "rotate", (
        intent(world, f"{world.key_id} Active, {spare} Inactive"),
        f"make room: delete {spare} (Inactive, unreferenced, replaced)",
        *tail_steps(world),
    ))


def test_a_published_rotations_journal_proves_a_key_replaced_when_the_targets_cannot() -> None:
    """The targets hold a key that is Inactive (so they prove nothing); the journal of an earlier published
    rotation of the same user proves the other key replaced, and that one may go."""
    world = world_with_policy()
    spare = second_key(world, active=False)
    world.iam.set_access_key_status(world.spec.iam_user, world.key_id, active=False)
    open_journal(world, Phase.DONE, rotation_id="earlier", old_key_id=spare)
    result = plan(world)
    assert result.action == "rotate"
    assert result.steps[1] == f"make room: delete {spare} (Inactive, unreferenced, replaced)"


def test_a_key_named_in_an_incident_is_never_deleted_to_make_room() -> None:
    world = world_with_policy()
    spare = second_key(world, active=False)
    world.store.save_incident(Incident("inc-1", spare, "default", world.spec.iam_user, "responder", "leaked",
                                       world.clock.now()))
    assert plan(world) == Plan("payments", "hold", (
        intent(world, f"{world.key_id} Active, {spare} Inactive"),
        f"hold: the user already has the maximum number of access keys [{world.key_id} (Active), {spare} "
        "(Inactive)]: the Inactive key cannot be proven replaced (a target still holds it, targets disagree, or it "
        "is evidence of an incident). A human must confirm which key is unused, deactivate and delete it, then run "
        "`rotator rotate` again",
    ))


def test_two_active_keys_hold_the_rotation_for_a_human() -> None:
    world = world_with_policy()
    spare = second_key(world, active=True)
    result = plan(world)
    assert result.action == "hold"
    assert result.steps[-1].startswith(
        f"hold: the user already has the maximum number of access keys [{world.key_id} (Active), {spare} "
        "(Active)]: both keys are Active.")


def test_a_hidden_key_id_variable_holds_a_rotation_that_needs_room() -> None:
    world = world_with_policy()
    spare = second_key(world, active=False)
    world.variables.seed(ScopeKind.PROJECT, "payments/api", "AWS_ACCESS_KEY_ID", world.key_id, hidden=True)
    result = plan(world)
    assert result.action == "hold"
    assert result.steps[0] == intent(world, f"{world.key_id} Active, {spare} Inactive")
    assert "a target's key-id variable is hidden, so no key can be proven unreferenced" in result.steps[-1]


def test_a_target_without_its_variables_is_created_when_create_missing_is_set() -> None:
    world = world_with_policy()
    fresh = TargetSpec(ScopeKind.PROJECT, "payments/web", create_missing=True)
    world.spec = replace(world.spec, targets=(PROJECT, fresh))
    steps = plan(world).steps
    assert steps[3:5] == (
        f"publish to {PROJECT_LABEL}: {PROVE}update AWS_SECRET_ACCESS_KEY, then AWS_ACCESS_KEY_ID "
        "right after it",
        "publish to project payments/web [environment_scope=*]: create AWS_SECRET_ACCESS_KEY, then "
        "AWS_ACCESS_KEY_ID right after it",
    )


def test_a_user_without_a_key_gets_its_first_one_and_nothing_is_retired() -> None:
    world = world_with_policy()
    world.iam.add_user("ci-fresh", keys=0)
    fresh_user = world.iam.users["ci-fresh"]
    target = TargetSpec(ScopeKind.PROJECT, "fresh/app", create_missing=True)
    world.specs.append(CredentialSpec("fresh", "ci-fresh", targets=(target,)))
    [result] = world.root().rotation.plan([world.specs[1]], force=False)
    assert result == Plan("fresh", "rotate", (
        f"record intent: user ci-fresh ({fresh_user.user_id}) has no keys; replacing nothing",
        "create a new access key for ci-fresh",
        "verify it with sts:GetCallerIdentity, about once a second for up to 1m",
        "publish to project fresh/app [environment_scope=*]: create AWS_SECRET_ACCESS_KEY, then AWS_ACCESS_KEY_ID "
        "right after it",
    ))


# --- nothing to do -----------------------------------------------------------------------------------------


def test_a_key_younger_than_the_policy_is_not_due_unless_forced() -> None:
    world = world_with_policy()
    key = next(k for k in world.iam.list_access_keys(world.spec.iam_user) if k.key_id == world.key_id)
    world.spec = replace(world.spec, policy=replace(world.spec.policy, rotate_every=timedelta(days=60)))
    due = key.created_at + timedelta(days=60)
    assert plan(world) == Plan("payments", "nothing", (f"not due until {due.isoformat()} (key {world.key_id})",))
    assert plan(world, force=True).action == "rotate"


def test_planning_forces_nothing_unless_asked() -> None:
    world = world_with_policy()
    world.spec = replace(world.spec, policy=replace(world.spec.policy, rotate_every=timedelta(days=60)))
    unforced = plan_rotation(world.spec, iam=world.iam, variables=world.variables, store=world.store,
                             clock=world.clock)
    assert unforced.action == "nothing"


def test_the_last_rotation_moves_the_due_date() -> None:
    world = world_with_policy()
    rotated = world.clock.now() - timedelta(days=1)
    world.store.set_status(world.spec.name, CredentialState.OK, world.clock.now(), last_rotated_at=rotated)
    due = rotated + timedelta(days=30)
    assert plan(world).steps == (f"not due until {due.isoformat()} (key {world.key_id})",)


def test_a_rotation_due_this_very_instant_is_planned() -> None:
    world = world_with_policy()
    world.store.set_status(world.spec.name, CredentialState.OK, world.clock.now(),
                           last_rotated_at=world.clock.now() - timedelta(days=30))
    assert plan(world).action == "rotate"


# --- hold: the targets need a human first -------------------------------------------------------------------


def test_a_single_target_holding_an_unknown_key_holds_the_plan() -> None:
    world = world_with_policy()
    world.spec = replace(world.spec, targets=(PROJECT,))
    world.variables.seed(ScopeKind.PROJECT, "payments/api", "AWS_ACCESS_KEY_ID", STRANGER)
    assert plan(world) == Plan("payments", "hold", (
        f"{PROJECT_LABEL}: AWS_ACCESS_KEY_ID holds {STRANGER}, which is neither the current key nor the new one "
        f"({world.key_id}) (next step: find out who changed the variable; put the right key back or remove the "
        "target from the config, then run `rotator rotate` again)",
    ))


def test_a_missing_variable_holds_the_plan() -> None:
    world = world_with_policy()
    world.spec = replace(world.spec, targets=(PROJECT, TargetSpec(ScopeKind.PROJECT, "payments/web")))
    result = plan(world)
    assert result.action == "hold"
    assert result.steps == (
        "project payments/web [environment_scope=*]: variable AWS_SECRET_ACCESS_KEY and AWS_ACCESS_KEY_ID does not "
        "exist (next step: create it in GitLab (masked, protected, hidden for the secret) or set create_missing = "
        "true on the target)",
    )


def test_targets_holding_different_keys_hold_the_plan() -> None:
    world = world_with_policy()
    spare = second_key(world, active=True)
    world.variables.seed(GROUP.kind, GROUP.path, GROUP.access_key_id_var, spare, scope="production")
    pair = ", ".join(sorted([world.key_id, spare]))
    assert plan(world) == Plan("payments", "hold", (
        f"targets hold different keys ({pair}): fix them by hand, then rotate again",))


# --- error -------------------------------------------------------------------------------------------------


def test_a_party_refusing_a_read_is_an_error_plan_naming_it() -> None:
    world = world_with_policy()
    world.variables.forbidden.add((ScopeKind.GROUP, "payments"))
    assert plan(world) == Plan("payments", "error", (
        f"cannot plan: {GROUP.var('AWS_ACCESS_KEY_ID').label}: GitLab answered 403: 403 Forbidden",))


# --- resume an interrupted rotation -------------------------------------------------------------------------


def test_an_intent_without_a_key_resumes_by_cleaning_up_then_starting_again() -> None:
    world = world_with_policy()
    open_journal(world, Phase.INTENT, prior_key_ids=(world.key_id, STRANGER))
    assert plan(world) == Plan("payments", "resume", (
        "resume rotation 01234567 (phase intent)",
        f"delete any key of ci-payments created but never journaled (not among {world.key_id}, {STRANGER}), then "
        "start again",
    ))
    world.store.journal_rows.clear()
    open_journal(world, Phase.INTENT, prior_key_ids=())
    assert plan(world).steps[1] == ("delete any key of ci-payments created but never journaled (not among none), "
                                    "then start again")


def test_a_created_key_resumes_with_verification_then_the_targets_still_pending() -> None:
    world = world_with_policy()
    open_journal(world, Phase.CREATED, new_key_id=NEW_KEY, targets_done=frozenset({PROJECT.target_id}))
    assert plan(world) == Plan("payments", "resume", (
        "resume rotation 01234567 (phase created)",
        f"verify {NEW_KEY} with STS",
        f"publish {NEW_KEY} to {GROUP_LABEL}",
    ))


def test_a_verified_key_resumes_with_publishing_only() -> None:
    world = world_with_policy()
    open_journal(world, Phase.VERIFIED, new_key_id=NEW_KEY)
    assert plan(world).steps == ("resume rotation 01234567 (phase verified)",
                                 f"publish {NEW_KEY} to {PROJECT_LABEL}, {GROUP_LABEL}")
    world.store.journal_rows.clear()
    open_journal(world, Phase.VERIFIED, new_key_id=NEW_KEY,
                 targets_done=frozenset({PROJECT.target_id, GROUP.target_id}))
    assert plan(world).steps[1] == f"publish {NEW_KEY} to no remaining target"


def test_a_published_rotation_resumes_by_deactivating_the_old_key_after_grace() -> None:
    world = world_with_policy()
    now = world.clock.now()
    open_journal(world, Phase.PUBLISHED, new_key_id=NEW_KEY, published_at=now - timedelta(hours=1))
    assert plan(world).steps == ("resume rotation 01234567 (phase published)",
                                 f"deactivate {world.key_id} now (after grace, if unused since publish)")
    world.store.journal_rows.clear()
    published = now - timedelta(minutes=59)
    open_journal(world, Phase.PUBLISHED, new_key_id=NEW_KEY, published_at=published)
    later = (published + timedelta(hours=1)).isoformat()
    assert plan(world).steps[1] == f"deactivate {world.key_id} {later} (after grace, if unused since publish)"


def test_a_retired_rotation_resumes_by_deleting_the_old_key_after_delete_after() -> None:
    world = world_with_policy()
    now = world.clock.now()
    open_journal(world, Phase.RETIRED, new_key_id=NEW_KEY, published_at=now,
                 deactivated_at=now - timedelta(days=7))
    assert plan(world).steps == ("resume rotation 01234567 (phase retired)", f"delete {world.key_id} now")
    world.store.journal_rows.clear()
    deactivated = now - timedelta(days=6)
    open_journal(world, Phase.RETIRED, new_key_id=NEW_KEY, published_at=now, deactivated_at=deactivated)
    later = (deactivated + timedelta(days=7)).isoformat()
    assert plan(world).steps[1] == f"delete {world.key_id} {later}"


def test_a_journal_without_its_phase_timestamp_resumes_with_no_promise() -> None:
    """A published or retired journal lacking the time it reached that phase says only that it resumes."""
    world = world_with_policy()
    open_journal(world, Phase.PUBLISHED, new_key_id=NEW_KEY)
    assert plan(world).steps == ("resume rotation 01234567 (phase published)",)
    world.store.journal_rows.clear()
    open_journal(world, Phase.RETIRED, new_key_id=NEW_KEY)
    assert plan(world).steps == ("resume rotation 01234567 (phase retired)",)


def test_an_open_journal_is_resumed_even_when_nothing_is_due() -> None:
    world = world_with_policy()
    world.spec = replace(world.spec, policy=replace(world.spec.policy, rotate_every=timedelta(days=365)))
    open_journal(world, Phase.VERIFIED, new_key_id=NEW_KEY)
    assert plan(world) == Plan("payments", "resume", ("resume rotation 01234567 (phase verified)",
                                                      f"publish {NEW_KEY} to {PROJECT_LABEL}, {GROUP_LABEL}"))


# --- emergency ------------------------------------------------------------------------------------------------


def test_an_emergency_plan_deactivates_the_old_key_once_published_and_keeps_it_as_evidence() -> None:
    world = world_with_policy()
    world.spec = replace(world.spec, policy=replace(world.spec.policy, rotate_every=timedelta(days=365)))
    assert plan(world, emergency=True).steps == (
        intent(world, f"{world.key_id} Active"), *tail_steps(world)[:4],
        f"emergency: deactivate {world.key_id} as soon as every target holds the new pair (no grace, no "
        "LastUsedDate gate), and check with ListAccessKeys that IAM lists it Inactive",
        f"keep {world.key_id} Inactive as evidence; a later run deletes it after 7d (delete_after)",
    )


def test_an_emergency_resumes_a_published_rotation_by_deactivating_now_and_a_retired_one_by_checking() -> None:
    world = world_with_policy()
    now = world.clock.now()
    open_journal(world, Phase.PUBLISHED, new_key_id=NEW_KEY, published_at=now)
    assert plan(world, emergency=True).steps == (
        "resume rotation 01234567 (phase published)",
        f"emergency: deactivate {world.key_id} now if no target holds it (no grace, no LastUsedDate gate); keep "
        "it Inactive as evidence")
    world.store.journal_rows.clear()
    open_journal(world, Phase.RETIRED, new_key_id=NEW_KEY, published_at=now, deactivated_at=now)
    assert plan(world, emergency=True).steps == (
        "resume rotation 01234567 (phase retired)",
        f"emergency: {world.key_id} is already Inactive: check it with ListAccessKeys; nothing is deleted")
    world.store.journal_rows.clear()
    open_journal(world, Phase.VERIFIED, new_key_id=NEW_KEY)
    assert plan(world, emergency=True).steps == ("resume rotation 01234567 (phase verified)",
                                                 f"publish {NEW_KEY} to {PROJECT_LABEL}, {GROUP_LABEL}")
