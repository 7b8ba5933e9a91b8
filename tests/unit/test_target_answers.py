"""One target's writes judged against what GitLab answered, function by function: the preflight of the key-id
variable, the version refusals (16.9 group filter, 17.4 hidden variables), the undo of a write that landed
elsewhere or with other flags, and putting the old secret back after a split pair.

The shared FakeCiVariables plays GitLab (a group PUT whose filter matches nothing takes the key in another
scope, as Ci::ChangeVariableService's find_by!(key) fallback does); ``Scripted`` below answers with exactly
what a test says, for the answers GitLab gives only when something else went wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from rotator.domain import (
    AccessKey,
    CiVariable,
    Journal,
    KeyStatus,
    NewAccessKey,
    Phase,
    ScopeKind,
    Secret,
    TargetSpec,
    VariableWrite,
    VarRef,
)
from rotator.errors import GitLabForbidden, GitLabPairSplit
from rotator.rotation.targets import (
    PreflightRefused,
    ReadBackMismatch,
    TargetAssessment,
    UnsupportedByGitLab,
    WriteIntent,
    WriteMismatch,
    check_answer,
    check_drift,
    describe_split,
    missing_variable_error,
    preflight,
    put_back_secret,
    read_target,
    shown_key_id,
    write_pair,
)
from tests.unit.fakes import MODERN_GITLAB, FakeCiVariables

KEY_ID, SECRET = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
OLD, NEW = "AKIAOLDOLDOLDOLDOLD1", "AKIANEWNEWNEWNEWNEW2"
STAGING_KEY = "AKIASTAGINGSTAGING00"
GROUP_T = TargetSpec(ScopeKind.GROUP, "payments", environment_scope="production")
PROJECT_T = TargetSpec(ScopeKind.PROJECT, "payments/api")
INSTANCE_T = TargetSpec(ScopeKind.INSTANCE, None)
GITLAB_16_8 = replace(MODERN_GITLAB, version="16.8.4-ee")
GITLAB_17_3 = replace(MODERN_GITLAB, version="17.3.2-ee")
CHECK_HINT = ("check the variable in GitLab (its environment scopes and flags) and the target's environment_scope, "
              "then run `rotator rotate` again")
LET_WRITE = ("let rotator's token write AWS_ACCESS_KEY_ID (role, protected-variable rules), then run "
             "`rotator rotate` again")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def gitlab_with(target: TargetSpec, *, secret_hidden: bool = False, key_masked: bool = True,
                key_protected: bool = True) -> FakeCiVariables:
    variables = FakeCiVariables()
    variables.seed(target.kind, target.path, KEY_ID, OLD, scope=target.environment_scope, masked=key_masked,
                   protected=key_protected)
    variables.seed(target.kind, target.path, SECRET, "old-secret-0000000000", scope=target.environment_scope,
                   hidden=secret_hidden)
    return variables


def new_key() -> NewAccessKey:
    return NewAccessKey(NEW, Secret("new-secret-1111111111111111111111111111"), T0)


def vanishes_before_its_put(variables: FakeCiVariables, key: str) -> None:
    """The production variable disappears between rotator's read and its PUT: GitLab's filter then matches
    nothing and the PUT lands on the key in another scope."""

    def vanish(ref: VarRef) -> None:
        if ref.key == key:
            variables.vars.pop((GROUP_T.kind, GROUP_T.path, key, "production"), None)

    variables.before_write = vanish


class Scripted:
    """Answers each PUT with the next scripted variable (or raises the scripted error); logs deletes."""

    def __init__(self, *answers: CiVariable | Exception) -> None:
        self.answers = list(answers)
        self.updates: list[tuple[str, str]] = []
        self.deleted: list[VarRef] = []

    def update_value(self, ref: VarRef, value: str | Secret) -> CiVariable:
        self.updates.append((ref.label, value if isinstance(value, str) else "<secret>"))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def delete(self, ref: VarRef) -> bool:
        self.deleted.append(ref)
        return True


class PairAnswers:
    """A GitLab that answers a pair write with the two scripted variables; logs deletes."""

    def __init__(self, first: CiVariable, second: CiVariable) -> None:
        self.answers = (first, second)
        self.deleted: list[VarRef] = []

    def write_pair(self, first: VariableWrite, second: VariableWrite, *,
                   accept_first: Callable[[CiVariable], None] | None = None) -> tuple[CiVariable, CiVariable]:
        if accept_first is not None:
            accept_first(self.answers[0])
        return self.answers

    def delete(self, ref: VarRef) -> bool:
        self.deleted.append(ref)
        return True


# --- reading -------------------------------------------------------------------------------------------------


def test_gitlabs_capabilities_are_read_only_when_a_variable_is_missing_and_may_be_created() -> None:
    variables = gitlab_with(PROJECT_T)
    reading = read_target(variables, replace(PROJECT_T, create_missing=True))
    assert (reading.capabilities, variables.probes) == (None, 0)
    del variables.vars[(PROJECT_T.kind, PROJECT_T.path, SECRET, "*")]
    assert read_target(variables, replace(PROJECT_T, create_missing=True)).capabilities == MODERN_GITLAB


def test_the_key_in_use_is_the_newest_active_key_until_a_target_can_be_read() -> None:
    variables = gitlab_with(PROJECT_T)
    variables.vars[(PROJECT_T.kind, PROJECT_T.path, KEY_ID, "*")] = CiVariable(KEY_ID, None, "*", hidden=True)
    unreadable = TargetAssessment(readings=(read_target(variables, PROJECT_T),))
    keys = [AccessKey(OLD, KeyStatus.ACTIVE, T0), AccessKey(NEW, KeyStatus.ACTIVE, T0.replace(year=2027)),
            AccessKey("AKIAINACTIVEINACTIV3", KeyStatus.INACTIVE, T0.replace(year=2028))]
    assert unreadable.key_in_use(keys) == NEW
    assert unreadable.key_in_use([]) is None


def test_room_is_made_by_deleting_a_replaced_inactive_key_unless_the_rotation_still_has_to_retire_it() -> None:
    variables = gitlab_with(PROJECT_T)
    variables.seed(PROJECT_T.kind, PROJECT_T.path, KEY_ID, NEW)  # the targets moved on to NEW
    assessment = TargetAssessment(readings=(read_target(variables, PROJECT_T),))
    keys = [AccessKey(OLD, KeyStatus.INACTIVE, T0), AccessKey(NEW, KeyStatus.ACTIVE, T0.replace(year=2027))]
    published = Journal("r-1", "payments", "default", "ci-payments", "AIDAPAYMENTS", (OLD,), OLD, Phase.DONE, T0, T0,
                        new_key_id=NEW, published_at=T0)
    room = dict(journals=[published], user_id="AIDAPAYMENTS")
    assert assessment.room(keys, replacing=None, is_evidence=lambda _: False, **room).delete_key_id == OLD
    assert assessment.room(keys, replacing=NEW, is_evidence=lambda _: False, **room).delete_key_id == OLD
    assert assessment.room(keys, replacing=OLD, is_evidence=lambda _: False, **room).delete_key_id is None
    kept = assessment.room(keys, replacing=None, is_evidence=lambda key_id: key_id == OLD, **room)
    assert kept.delete_key_id is None and "evidence of an incident" in (kept.hold_reason or "")


# --- what a GitLab version cannot do --------------------------------------------------------------------------


def test_before_16_9_a_group_key_in_two_scopes_is_refused_with_the_version_the_scopes_and_the_fix() -> None:
    variables = gitlab_with(GROUP_T)
    variables.gitlab = GITLAB_16_8
    variables.seed(GROUP_T.kind, GROUP_T.path, KEY_ID, STAGING_KEY, scope="staging")
    with pytest.raises(UnsupportedByGitLab) as caught:
        read_target(variables, GROUP_T)
    assert caught.value.message == (
        "group payments [environment_scope=production]: GitLab 16.8.4-ee ignores filter[environment_scope] when "
        "updating a group variable (honoured from GitLab 16.9), and AWS_ACCESS_KEY_ID exists in 2 environment "
        "scopes of group payments (production, staging): a write could change another scope's variable, so the "
        "target is refused before any write")
    assert caught.value.target == GROUP_T.label
    assert caught.value.hint == (
        "upgrade GitLab to 16.9 or later, or keep one environment scope per variable key in this group: give each "
        "scope's pair its own keys and name them in the target's access_key_id_var and secret_access_key_var")


def test_before_16_9_another_key_in_several_scopes_does_not_refuse_the_target() -> None:
    variables = gitlab_with(GROUP_T)
    variables.gitlab = GITLAB_16_8
    for scope in ("staging", "review/*"):
        variables.seed(GROUP_T.kind, GROUP_T.path, "DEPLOY_TOKEN", "token", scope=scope)
    assert read_target(variables, GROUP_T).held_key_id == OLD


def test_before_17_4_a_missing_secret_is_refused_with_the_version_and_three_ways_out() -> None:
    variables = gitlab_with(PROJECT_T)
    variables.gitlab = GITLAB_17_3
    del variables.vars[(PROJECT_T.kind, PROJECT_T.path, SECRET, "*")]
    error = missing_variable_error(read_target(variables, replace(PROJECT_T, create_missing=True)))
    assert isinstance(error, UnsupportedByGitLab)
    assert error.message == (
        "project payments/api [environment_scope=*]: AWS_SECRET_ACCESS_KEY does not exist, and GitLab 17.3.2-ee "
        "cannot create hidden variables (masked_and_hidden arrived in GitLab 17.4): create_missing would leave the "
        "secret masked but visible to the maintainers, so the target is refused before any write")
    assert error.target == PROJECT_T.label
    assert error.hint == (
        "create AWS_SECRET_ACCESS_KEY in GitLab yourself (masked, protected), or upgrade GitLab to 17.4 or later, "
        "or set accept_masked_only = true on the target to accept a masked, visible secret")


def test_before_17_4_only_a_missing_secret_that_gitlab_could_hide_is_refused() -> None:
    # The secret exists (only the key id is to be created): nothing would be created visible.
    variables = gitlab_with(PROJECT_T)
    variables.gitlab = GITLAB_17_3
    del variables.vars[(PROJECT_T.kind, PROJECT_T.path, KEY_ID, "*")]
    assert missing_variable_error(read_target(variables, replace(PROJECT_T, create_missing=True))) is None
    # Instance variables can never be hidden, on any version: the 17.4 rule does not apply to them.
    instance = FakeCiVariables()
    instance.gitlab = GITLAB_17_3
    assert missing_variable_error(read_target(instance, replace(INSTANCE_T, create_missing=True))) is None


# --- the preflight ---------------------------------------------------------------------------------------------


def test_the_preflight_writes_the_key_id_it_read_and_accepts_the_variables_own_flags() -> None:
    variables = gitlab_with(PROJECT_T, key_masked=False, key_protected=False)
    preflight(variables, read_target(variables, PROJECT_T))
    assert variables.writes == [KEY_ID]
    assert variables.value(PROJECT_T.kind, PROJECT_T.path, KEY_ID) == OLD


def test_a_hidden_or_missing_key_id_cannot_be_proven_and_is_not_written() -> None:
    variables = gitlab_with(PROJECT_T)
    variables.vars[(PROJECT_T.kind, PROJECT_T.path, KEY_ID, "*")] = CiVariable(KEY_ID, OLD, "*", hidden=True)
    assert preflight(variables, read_target(variables, PROJECT_T)) == {}
    del variables.vars[(PROJECT_T.kind, PROJECT_T.path, KEY_ID, "*")]
    preflight(variables, read_target(variables, replace(PROJECT_T, create_missing=True)))
    assert variables.writes == []


def test_a_refused_preflight_names_the_variable_the_status_and_what_the_target_still_holds() -> None:
    variables = gitlab_with(PROJECT_T)
    variables.refuse_variable[(PROJECT_T.kind, PROJECT_T.path, KEY_ID)] = 0
    with pytest.raises(PreflightRefused) as caught:
        preflight(variables, read_target(variables, PROJECT_T))
    assert caught.value.message == (
        f"{PROJECT_T.label}: GitLab refused to write AWS_ACCESS_KEY_ID (HTTP 403: "
        f"{PROJECT_T.var(KEY_ID).label}: GitLab answered 403: 403 Forbidden); nothing of the new pair was written "
        f"there, so it still holds {OLD}")
    assert (caught.value.target, caught.value.status, caught.value.hint) == (PROJECT_T.label, 403, LET_WRITE)


def test_a_refused_preflight_keeps_gitlabs_own_hint_before_rotators() -> None:
    reading = read_target(gitlab_with(PROJECT_T), PROJECT_T)
    refusal = GitLabForbidden("403 Forbidden", status=403, hint="the token lost its Maintainer role")
    with pytest.raises(PreflightRefused) as caught:
        preflight(Scripted(refusal), reading)  # type: ignore[arg-type]
    assert caught.value.hint == f"the token lost its Maintainer role; {LET_WRITE}"


def test_a_preflight_that_lands_in_another_scope_is_undone_and_refuses_the_target() -> None:
    variables = gitlab_with(GROUP_T)
    variables.seed(GROUP_T.kind, GROUP_T.path, KEY_ID, STAGING_KEY, scope="staging")
    reading = read_target(variables, GROUP_T)
    vanishes_before_its_put(variables, KEY_ID)
    with pytest.raises(PreflightRefused) as caught:
        preflight(variables, reading)
    staging = replace(GROUP_T.var(KEY_ID), environment_scope="staging").label
    assert caught.value.message == (
        f"{GROUP_T.var(KEY_ID).label}: GitLab updated a variable with environment_scope=staging (asked "
        f"production); rotator put back the previous value of {staging}; nothing of the new pair was written there")
    assert (caught.value.target, caught.value.hint) == (GROUP_T.label, CHECK_HINT)
    assert variables.value(GROUP_T.kind, GROUP_T.path, KEY_ID, "staging") == STAGING_KEY


# --- GitLab's answer to a write --------------------------------------------------------------------------------


def test_a_created_variable_with_other_flags_is_deleted_and_every_difference_named() -> None:
    reading = read_target(FakeCiVariables(), replace(PROJECT_T, create_missing=True))
    ref = PROJECT_T.var(SECRET)
    answered = CiVariable(SECRET, "new-secret", "*", masked=False, protected=True, hidden=False)
    variables = Scripted()
    with pytest.raises(WriteMismatch) as caught:
        check_answer(variables, reading, ref, answered,  # type: ignore[arg-type]
                     WriteIntent(masked=True, protected=True, hidden=True), created=True, before={})
    assert caught.value.message == (
        f"{ref.label}: GitLab created a variable with masked=false (asked true), hidden=false (asked true); "
        f"rotator deleted the variable it had just created ({ref.label})")
    assert (caught.value.target, caught.value.hint) == (PROJECT_T.label, CHECK_HINT)
    assert variables.deleted == [ref]


def test_an_update_with_other_flags_where_asked_is_reported_and_left_in_place() -> None:
    reading = read_target(gitlab_with(PROJECT_T), PROJECT_T)
    ref = PROJECT_T.var(KEY_ID)
    variables = Scripted()
    with pytest.raises(WriteMismatch) as caught:
        check_answer(variables, reading, ref, CiVariable(KEY_ID, NEW, "*", masked=True, protected=False),  # type: ignore[arg-type]
                     WriteIntent(masked=True, protected=True, hidden=False), created=False, before={})
    assert caught.value.message == (f"{ref.label}: GitLab updated a variable with protected=false (asked true); "
                                    "the value went where asked")
    assert (variables.updates, variables.deleted) == ([], [])


def test_a_value_put_into_another_scope_whose_previous_value_is_unknown_is_left_to_a_human() -> None:
    reading = read_target(gitlab_with(GROUP_T), GROUP_T)
    ref = GROUP_T.var(SECRET)
    staging = replace(ref, environment_scope="staging")
    with pytest.raises(WriteMismatch) as caught:
        check_answer(Scripted(), reading, ref, CiVariable(SECRET, None, "staging", hidden=True),  # type: ignore[arg-type]
                     WriteIntent(masked=True, protected=True, hidden=True), created=False,
                     before={(SECRET, "staging"): None})
    assert caught.value.message.endswith(
        f"; {staging.label} now holds the new value, and its previous value is unknown (hidden or not read): put "
        "it back by hand")


def test_a_restore_that_answers_another_value_is_not_called_put_back() -> None:
    reading = read_target(gitlab_with(GROUP_T), GROUP_T)
    ref = GROUP_T.var(KEY_ID)
    staging = replace(ref, environment_scope="staging")
    intent = WriteIntent(masked=True, protected=True, hidden=False)
    refused = GitLabForbidden("403 Forbidden", status=403)
    for restored, said in (
            (CiVariable(KEY_ID, "AKIASOMETHINGELSE000", "staging"), "did not land where asked either"),
            (CiVariable(KEY_ID, STAGING_KEY, "review/*"), "did not land where asked either"),
            (CiVariable(KEY_ID, STAGING_KEY, "staging"), f"rotator put back the previous value of {staging.label}"),
            (refused, f"undoing it failed (403 Forbidden): check {staging.label}")):
        variables = Scripted(restored)
        with pytest.raises(WriteMismatch) as caught:
            check_answer(variables, reading, ref, CiVariable(KEY_ID, NEW, "staging"),  # type: ignore[arg-type]
                         intent, created=False, before={(KEY_ID, "staging"): STAGING_KEY})
        assert said in caught.value.message
        assert variables.updates == [(staging.label, STAGING_KEY)]


# --- writing the pair ------------------------------------------------------------------------------------------


def test_a_secret_put_into_another_scope_is_put_back_from_a_snapshot_taken_before_any_write() -> None:
    variables = gitlab_with(GROUP_T)
    variables.seed(GROUP_T.kind, GROUP_T.path, SECRET, "staging-secret-0000000", scope="staging")
    reading = read_target(variables, GROUP_T)
    vanishes_before_its_put(variables, SECRET)
    with pytest.raises(WriteMismatch, match="rotator put back the previous value of group payments variable "
                                            r"AWS_SECRET_ACCESS_KEY \[environment_scope=staging\]"):
        write_pair(variables, reading, new_key())
    assert variables.value(GROUP_T.kind, GROUP_T.path, SECRET, "staging") == "staging-secret-0000000"
    assert variables.value(GROUP_T.kind, GROUP_T.path, KEY_ID, "production") == OLD


def test_the_pair_write_undoes_from_the_snapshot_it_is_given_not_from_a_later_read() -> None:
    variables = gitlab_with(GROUP_T)
    variables.seed(GROUP_T.kind, GROUP_T.path, SECRET, "changed-after-the-preflight", scope="staging")
    reading = read_target(variables, GROUP_T)
    vanishes_before_its_put(variables, SECRET)
    with pytest.raises(WriteMismatch):
        write_pair(variables, reading, new_key(), before={(SECRET, "staging"): "as-the-preflight-saw-it"})
    assert variables.value(GROUP_T.kind, GROUP_T.path, SECRET, "staging") == "as-the-preflight-saw-it"


def test_a_key_id_put_into_another_scope_is_an_update_put_back_never_a_creation_deleted() -> None:
    variables = gitlab_with(GROUP_T)
    variables.seed(GROUP_T.kind, GROUP_T.path, KEY_ID, STAGING_KEY, scope="staging")
    reading = read_target(variables, GROUP_T)
    vanishes_before_its_put(variables, KEY_ID)
    with pytest.raises(WriteMismatch) as caught:
        write_pair(variables, reading, new_key())
    staging = replace(GROUP_T.var(KEY_ID), environment_scope="staging")
    assert caught.value.message == (
        f"{GROUP_T.var(KEY_ID).label}: GitLab updated a variable with environment_scope=staging (asked production); "
        f"rotator put back the previous value of {staging.label}")
    assert caught.value.target == GROUP_T.label
    assert variables.value(GROUP_T.kind, GROUP_T.path, KEY_ID, "staging") == STAGING_KEY
    assert variables.deleted == []


def test_a_created_key_id_that_gitlab_answers_otherwise_is_deleted_not_put_back() -> None:
    target = replace(PROJECT_T, create_missing=True)
    reading = read_target(FakeCiVariables(), target)
    secret = CiVariable(SECRET, None, "*", masked=True, protected=True, hidden=True)
    key_id = CiVariable(KEY_ID, NEW, "*", masked=True, protected=False)
    variables = PairAnswers(secret, key_id)
    with pytest.raises(WriteMismatch) as caught:
        write_pair(variables, reading, new_key())  # type: ignore[arg-type]
    assert caught.value.message == (
        f"{target.var(KEY_ID).label}: GitLab created a variable with protected=false (asked true); rotator deleted "
        f"the variable it had just created ({target.var(KEY_ID).label})")
    assert variables.deleted == [target.var(KEY_ID)]


# --- after a split pair ------------------------------------------------------------------------------------------


def test_the_old_secret_is_put_back_only_when_it_was_readable_and_gitlab_takes_it() -> None:
    readable = gitlab_with(PROJECT_T)
    reading = read_target(readable, PROJECT_T)
    # The split pair's secret write kept the variable's flags (its answer was checked): only the value is new.
    assert reading.secret_var is not None
    readable.vars[(PROJECT_T.kind, PROJECT_T.path, SECRET, "*")] = replace(reading.secret_var, value="new")
    assert put_back_secret(readable, reading) is None
    assert readable.value(PROJECT_T.kind, PROJECT_T.path, SECRET) == "old-secret-0000000000"

    hidden = gitlab_with(PROJECT_T, secret_hidden=True)
    assert put_back_secret(hidden, read_target(hidden, PROJECT_T)) is not None
    assert hidden.writes == []

    created = FakeCiVariables()
    assert put_back_secret(created, read_target(created, replace(PROJECT_T, create_missing=True))) is not None

    refusing = gitlab_with(PROJECT_T)
    refusing.refuse_variable[(PROJECT_T.kind, PROJECT_T.path, SECRET)] = 0
    assert put_back_secret(refusing, read_target(refusing, PROJECT_T)) is not None


def test_a_split_pair_says_which_variable_holds_what() -> None:
    variables = gitlab_with(PROJECT_T)
    variables.vars[(PROJECT_T.kind, PROJECT_T.path, KEY_ID, "*")] = CiVariable(KEY_ID, None, "*", hidden=True)
    reading = read_target(variables, PROJECT_T)
    split = GitLabPairSplit("not written", written=SECRET, failure=GitLabForbidden("403 Forbidden", status=403))
    assert describe_split(reading, split, NEW) == (
        f"{PROJECT_T.label}: AWS_SECRET_ACCESS_KEY holds the secret of {NEW} but AWS_ACCESS_KEY_ID still holds its "
        "old value: GitLab refused the key-id write (HTTP 403: 403 Forbidden)")


def test_a_put_back_secret_that_lands_in_another_scope_is_undone_and_never_restores_the_pair() -> None:
    variables = gitlab_with(GROUP_T)
    variables.seed(GROUP_T.kind, GROUP_T.path, SECRET, "staging-secret-0000000", scope="staging")
    reading = read_target(variables, GROUP_T)
    before = {(SECRET, "staging"): "staging-as-the-split-saw-it"}  # the snapshot given wins over a later read
    vanishes_before_its_put(variables, SECRET)
    staging = replace(GROUP_T.var(SECRET), environment_scope="staging")
    assert put_back_secret(variables, reading, before=before) == (
        f"putting the old secret back failed ({GROUP_T.var(SECRET).label}: GitLab updated a variable with "
        f"environment_scope=staging (asked production); rotator put back the previous value of {staging.label})")
    assert variables.value(GROUP_T.kind, GROUP_T.path, SECRET, "staging") == "staging-as-the-split-saw-it"
    assert put_back_secret(gitlab_with(GROUP_T), read_target(gitlab_with(GROUP_T), GROUP_T)) is None
    unsnapshotted = gitlab_with(GROUP_T)
    unsnapshotted.seed(GROUP_T.kind, GROUP_T.path, SECRET, "staging-secret-0000000", scope="staging")
    reading = read_target(unsnapshotted, GROUP_T)
    vanishes_before_its_put(unsnapshotted, SECRET)
    assert put_back_secret(unsnapshotted, reading) is not None  # no snapshot given: one is read before the PUT
    assert unsnapshotted.value(GROUP_T.kind, GROUP_T.path, SECRET, "staging") == "staging-secret-0000000"


def test_a_put_back_secret_whose_answer_has_other_flags_or_another_value_is_not_a_restore() -> None:
    reading = read_target(gitlab_with(PROJECT_T), PROJECT_T)
    ref = PROJECT_T.var(SECRET)
    unmasked = CiVariable(SECRET, "old-secret-0000000000", "*", masked=False, protected=True)
    assert put_back_secret(Scripted(unmasked), reading) == (  # type: ignore[arg-type]
        f"putting the old secret back failed ({ref.label}: GitLab updated a variable with masked=false (asked "
        "true); the value went where asked)")
    other = CiVariable(SECRET, "someone-elses-secret0", "*", masked=True, protected=True)
    assert put_back_secret(Scripted(other), reading) == (  # type: ignore[arg-type]
        f"putting the old secret back: GitLab returned a different value for {ref.label}")
    assert put_back_secret(Scripted(other), reading) is not None  # type: ignore[arg-type]
    same = CiVariable(SECRET, "old-secret-0000000000", "*", masked=True, protected=True)
    assert put_back_secret(Scripted(same), reading) is None  # type: ignore[arg-type]
    unshown = CiVariable(SECRET, None, "*", masked=True, protected=True)
    assert put_back_secret(Scripted(unshown), reading) is None  # type: ignore[arg-type]
    hidden = gitlab_with(PROJECT_T, secret_hidden=True)
    assert put_back_secret(hidden, read_target(hidden, PROJECT_T)) == (
        "the old secret was not readable, so it could not be put back")
    refusing = gitlab_with(PROJECT_T)
    refusing.refuse_variable[(PROJECT_T.kind, PROJECT_T.path, SECRET)] = 0
    assert put_back_secret(refusing, read_target(refusing, PROJECT_T)) == (
        f"putting the old secret back failed ({ref.label}: GitLab answered 403: 403 Forbidden)")


def test_a_split_pair_whose_secret_could_not_be_put_back_says_so_and_claims_nothing_about_the_secret() -> None:
    reading = read_target(gitlab_with(PROJECT_T), PROJECT_T)
    split = GitLabPairSplit("not written", written=SECRET, failure=GitLabForbidden("403 Forbidden", status=403))
    assert describe_split(reading, split, NEW, restore_problem="putting the old secret back failed (x)") == (
        f"{PROJECT_T.label}: AWS_ACCESS_KEY_ID still holds {OLD}: GitLab refused the key-id write (HTTP 403: 403 "
        f"Forbidden); putting the old secret back failed (x), so AWS_SECRET_ACCESS_KEY may hold the secret of {NEW}: "
        "check it in GitLab")
    assert describe_split(reading, split, NEW) == (
        f"{PROJECT_T.label}: AWS_SECRET_ACCESS_KEY holds the secret of {NEW} but AWS_ACCESS_KEY_ID still holds "
        f"{OLD}: GitLab refused the key-id write (HTTP 403: 403 Forbidden)")
    hidden = gitlab_with(PROJECT_T, secret_hidden=True)
    assert describe_split(read_target(hidden, PROJECT_T), split, NEW, restore_problem="unreadable") == (
        f"{PROJECT_T.label}: AWS_SECRET_ACCESS_KEY holds the secret of {NEW} but AWS_ACCESS_KEY_ID still holds "
        f"{OLD}: GitLab refused the key-id write (HTTP 403: 403 Forbidden)")
    created = read_target(FakeCiVariables(), replace(PROJECT_T, create_missing=True))
    assert describe_split(created, split, NEW, restore_problem="unreadable") == (
        f"{PROJECT_T.label}: AWS_SECRET_ACCESS_KEY holds the secret of {NEW} but AWS_ACCESS_KEY_ID still holds its "
        "old value: GitLab refused the key-id write (HTTP 403: 403 Forbidden)")


# --- a swapped pair: the secret in the key-id variable is never repeated ---------------------------------------

CANARY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYCANARYKEY1"  # a secret-looking value, 40 characters
NOT_A_KEY_ID = "a value that is not an access key id (40 characters)"


class SwappedAfterItsWrite(FakeCiVariables):
    """A concurrent writer puts a secret into the key-id variable right after rotator's key-id PUT."""

    def update_value(self, ref: VarRef, value: str | Secret) -> CiVariable:
        answer = super().update_value(ref, value)
        if ref.key == KEY_ID and value == NEW:
            where = (ref.kind, ref.path, ref.key, ref.environment_scope)
            self.vars[where] = replace(self.vars[where], value=CANARY)
        return answer


def swapped(target: TargetSpec) -> FakeCiVariables:
    variables = gitlab_with(target)
    variables.seed(target.kind, target.path, KEY_ID, CANARY, scope=target.environment_scope)
    return variables


def test_a_held_value_is_shown_only_when_it_is_an_access_key_id() -> None:
    assert shown_key_id(OLD) == OLD
    assert shown_key_id("ASIAEXAMPLEEXAMPLE00") == "ASIAEXAMPLEEXAMPLE00"
    assert shown_key_id(CANARY) == NOT_A_KEY_ID
    assert shown_key_id("akiaoldoldoldoldold1") == "a value that is not an access key id (20 characters)"
    assert shown_key_id(None) == "a value GitLab does not show"


def test_a_secret_in_the_key_id_variable_never_appears_in_any_message() -> None:
    reading = read_target(swapped(PROJECT_T), PROJECT_T)
    drift = check_drift(reading, {OLD, NEW})
    assert drift is not None and drift.message == (
        f"{PROJECT_T.label}: AWS_ACCESS_KEY_ID holds {NOT_A_KEY_ID}, which is neither the current key nor the new "
        f"one ({NEW}, {OLD})")
    assessment = TargetAssessment((reading, read_target(gitlab_with(GROUP_T), GROUP_T)))
    assert assessment.disagreement == (
        f"targets hold different keys ({OLD}, {NOT_A_KEY_ID}): fix them by hand, then rotate again")
    refusing = swapped(PROJECT_T)
    refusing.refuse_variable[(PROJECT_T.kind, PROJECT_T.path, KEY_ID)] = 0
    with pytest.raises(PreflightRefused) as refused:
        preflight(refusing, read_target(refusing, PROJECT_T))
    assert refused.value.message.endswith(f"so it still holds {NOT_A_KEY_ID}")
    split = GitLabPairSplit("not written", written=SECRET, failure=GitLabForbidden("403 Forbidden", status=403))
    assert describe_split(reading, split, NEW) == (
        f"{PROJECT_T.label}: AWS_SECRET_ACCESS_KEY holds the secret of {NEW} but AWS_ACCESS_KEY_ID still holds "
        f"{NOT_A_KEY_ID}: GitLab refused the key-id write (HTTP 403: 403 Forbidden)")
    concurrent = SwappedAfterItsWrite()
    concurrent.vars = gitlab_with(PROJECT_T).vars
    with pytest.raises(ReadBackMismatch) as read_back:
        write_pair(concurrent, read_target(concurrent, PROJECT_T), new_key(), before={})
    assert read_back.value.message == f"{PROJECT_T.var(KEY_ID).label}: reads back {NOT_A_KEY_ID} instead of {NEW}"
    said = [drift.message, str(drift), assessment.disagreement, refused.value.message, str(refused.value),
            describe_split(reading, split, NEW), *assessment.hold_reasons(), read_back.value.message]
    assert all(CANARY not in text for text in said)
