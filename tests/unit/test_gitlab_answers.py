"""Rotation against GitLab as it really answers: versions whose group PUT ignores the filter (before 16.9) or cannot
create hidden variables (before 17.4) are refused before any write, and every write's answer is compared with
what was asked (scope, masked, protected, hidden), undone where it provably can be, never counted as published."""

from __future__ import annotations

from dataclasses import replace

from rotator.domain import GitLabCapabilities, Phase, ScopeKind, VarRef
from rotator.rotation.plan import plan_rotation
from rotator.rotation.results import Outcome
from tests.unit.fakes import MODERN_GITLAB
from tests.unit.worlds import GROUP, PROJECT, World, rotation_world

GITLAB_16_8 = replace(MODERN_GITLAB, version="16.8.4-ee")
GITLAB_17_3 = replace(MODERN_GITLAB, version="17.3.2-ee")
KEY_ID, SECRET = GROUP.access_key_id_var, GROUP.secret_access_key_var


def nothing_written(w: World, keys_before: list[str]) -> bool:
    return w.variables.writes == [] and w.iam.key_ids("ci-payments") == keys_before and \
        w.iam.calls.count("CreateAccessKey") == 0


def test_version_rules() -> None:
    assert not GITLAB_16_8.group_filter and GITLAB_17_3.group_filter and MODERN_GITLAB.group_filter
    assert not GITLAB_17_3.masked_and_hidden and MODERN_GITLAB.masked_and_hidden
    assert replace(MODERN_GITLAB, version="16.9.0").group_filter
    unreadable = replace(MODERN_GITLAB, version="nightly")
    assert unreadable.release is None and not unreadable.group_filter and not unreadable.masked_and_hidden
    assert GitLabCapabilities("17.0.0", "bot", is_admin=True).admin_mode_missing


def test_before_16_9_a_group_key_in_two_scopes_is_refused_before_any_write() -> None:
    w = rotation_world()
    w.variables.gitlab = GITLAB_16_8
    w.variables.seed(GROUP.kind, GROUP.path, KEY_ID, "AKIASTAGINGSTAGING00", scope="staging")
    keys = w.iam.key_ids("ci-payments")
    result = w.run()
    assert result.outcome is Outcome.FAILED
    assert "GitLab 16.8.4-ee" in result.message and "16.9" in result.message
    assert "production, staging" in result.message and "upgrade GitLab" in result.message
    assert nothing_written(w, keys)
    assert w.variables.value(GROUP.kind, GROUP.path, KEY_ID, "staging") == "AKIASTAGINGSTAGING00"
    # --dry-run says the same, by reads alone
    plan = plan_rotation(w.spec, iam=w.iam, variables=w.variables, store=w.store, clock=w.clock)
    assert plan.action == "error" and "16.9" in plan.steps[0]


def test_before_16_9_a_group_key_in_one_scope_rotates() -> None:
    w = rotation_world()
    w.variables.gitlab = GITLAB_16_8
    result = w.run()
    assert result.outcome is Outcome.ROTATED and w.every_target_works()


def _secret_missing(w: World, *, accept_masked_only: bool = False) -> None:
    del w.variables.vars[(PROJECT.kind, PROJECT.path, SECRET, "*")]
    w.spec = replace(w.spec, targets=(replace(PROJECT, create_missing=True, accept_masked_only=accept_masked_only),
                                      GROUP))


def test_before_17_4_a_hidden_secret_is_never_created_visible() -> None:
    w = rotation_world()
    w.variables.gitlab = GITLAB_17_3
    _secret_missing(w)
    keys = w.iam.key_ids("ci-payments")
    result = w.run()
    assert result.outcome is Outcome.FAILED
    assert "GitLab 17.3.2-ee cannot create hidden variables" in result.message
    assert "accept_masked_only = true" in result.message and "17.4" in result.message
    assert nothing_written(w, keys)
    assert (PROJECT.kind, PROJECT.path, SECRET, "*") not in w.variables.vars


def test_before_17_4_accept_masked_only_creates_a_masked_secret() -> None:
    w = rotation_world()
    w.variables.gitlab = GITLAB_17_3
    _secret_missing(w, accept_masked_only=True)
    result = w.run()
    assert result.outcome is Outcome.ROTATED
    created = w.variables.vars[(PROJECT.kind, PROJECT.path, SECRET, "*")]
    assert created.masked and created.protected and not created.hidden


def test_from_17_4_a_missing_secret_is_created_hidden() -> None:
    w = rotation_world()
    _secret_missing(w)
    assert w.run().outcome is Outcome.ROTATED
    assert w.variables.vars[(PROJECT.kind, PROJECT.path, SECRET, "*")].hidden


def test_a_group_put_applied_to_another_scope_is_rolled_back_and_never_published() -> None:
    w = rotation_world()
    w.variables.seed(GROUP.kind, GROUP.path, KEY_ID, "AKIASTAGINGSTAGING00", scope="staging")

    def someone_deletes_production(ref: VarRef) -> None:
        # Between rotator's read and its PUT, the production key-id variable disappears: GitLab's filter then
        # matches nothing and the PUT falls back to the key in another scope.
        if ref.kind is ScopeKind.GROUP and ref.key == KEY_ID:
            w.variables.vars.pop((GROUP.kind, GROUP.path, KEY_ID, "production"), None)

    w.variables.before_write = someone_deletes_production
    result = w.run()
    assert result.outcome is Outcome.HELD
    assert f"group payments variable {KEY_ID} [environment_scope=production]" in result.message
    assert "environment_scope=staging (asked production)" in result.message
    assert "put back the previous value of group payments variable" in result.message
    assert w.variables.value(GROUP.kind, GROUP.path, KEY_ID, "staging") == "AKIASTAGINGSTAGING00"
    journal = w.store.journals("payments")[-1]
    assert journal.phase is not Phase.PUBLISHED and GROUP.target_id not in journal.targets_done
    assert any("held" in p.title for p in w.notifier.posted)


def test_a_hidden_value_put_into_another_scope_is_reported_as_not_undone() -> None:
    w = rotation_world(hidden_secret=True)
    w.variables.seed(GROUP.kind, GROUP.path, SECRET, "staging-secret-0000000000", scope="staging", hidden=True)

    def someone_deletes_production(ref: VarRef) -> None:
        if ref.kind is ScopeKind.GROUP and ref.key == SECRET:
            w.variables.vars.pop((GROUP.kind, GROUP.path, SECRET, "production"), None)

    w.variables.before_write = someone_deletes_production
    result = w.run()
    assert result.outcome is Outcome.HELD
    assert "its previous value is unknown" in result.message and "put it back by hand" in result.message
    # The pair stopped before the group's key id: it still holds the old key (the preflight wrote it unchanged).
    assert w.variables.value(GROUP.kind, GROUP.path, KEY_ID, "production") == w.key_id


def test_flags_changed_behind_rotators_back_are_a_mismatch() -> None:
    w = rotation_world()

    def someone_unprotects(ref: VarRef) -> None:
        if ref.kind is ScopeKind.PROJECT and ref.key == KEY_ID:
            key = (PROJECT.kind, PROJECT.path, KEY_ID, "*")
            w.variables.vars[key] = replace(w.variables.vars[key], protected=False)

    w.variables.before_write = someone_unprotects
    result = w.run()
    assert result.outcome is Outcome.HELD
    assert "project payments/api variable AWS_ACCESS_KEY_ID" in result.message
    assert "protected=false (asked true)" in result.message


def test_a_create_that_comes_back_visible_is_deleted_and_reported() -> None:
    w = rotation_world()
    _secret_missing(w)

    def hidden_variables_switched_off(ref: VarRef) -> None:
        # The probe said 17.6, but this GitLab drops masked_and_hidden (as 17.3 does, or with the feature off).
        w.variables.gitlab = GITLAB_17_3

    w.variables.before_write = hidden_variables_switched_off
    result = w.run()
    assert result.outcome is Outcome.HELD
    assert "hidden=false (asked true)" in result.message
    assert "deleted the variable it had just created" in result.message
    assert (PROJECT.kind, PROJECT.path, SECRET, "*") not in w.variables.vars
