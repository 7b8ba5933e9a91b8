"""Containment against fakes of the ports: identify, deactivate first, cut sessions, say what was tried."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from rotator.config.early import AccountRole, ContainmentSettings
from rotator.domain import KeyOwner, KeyStatus
from rotator.errors import AwsAccessDenied, UsageError
from rotator.incident.containment import (
    SESSION_DENY_POLICY,
    VERIFY_ATTEMPTS,
    NotContained,
    StepStatus,
    session_deny_document,
)
from rotator.incident.steps import legacy_session_deny_policy_name
from tests.unit.fakes import T0
from tests.unit.incident_fakes import FakeIncidentIam
from tests.unit.worlds import incident_world, step

# --- containment ------------------------------------------------------------------------------------


def test_untracked_key_is_identified_through_aws_then_deactivated_first() -> None:
    world = incident_world()
    result = world.contain()
    assert result.contained and result.identity is not None
    assert (result.identity.user_name, result.identity.account, result.identity.source) == ("ci-payments", "default",
                                                                                            "aws")
    # One account configured: IAM alone names the user; STS is not asked before the deactivation.
    assert world.directory.calls == []
    assert world.iam.calls[:3] == ["GetAccessKeyLastUsed", "UpdateAccessKey", "ListAccessKeys"]
    assert world.iam.writes[0] == "UpdateAccessKey"  # the first write of the whole command
    assert world.iam.key(world.key_id).status is KeyStatus.INACTIVE
    assert step(result, "deactivate") is StepStatus.DONE


def test_tracked_key_resolves_from_the_store_without_asking_sts() -> None:
    world = incident_world()
    world.store.remember_key(KeyOwner(world.key_id, "payments", "default", "ci-payments"), T0, status="Active")
    result = world.contain()
    assert result.identity is not None and result.identity.source == "store"
    assert result.identity.credential == "payments"
    assert world.directory.calls == []
    assert world.iam.calls[0] == "UpdateAccessKey"


def test_a_stale_store_owner_falls_back_to_aws() -> None:
    world = incident_world()
    world.store.remember_key(KeyOwner(world.key_id, "old", "default", "someone-else"), T0, status="Active")
    world.iam.add_user("someone-else", keys=0)
    result = world.contain()
    assert result.contained and result.identity is not None
    assert (result.identity.user_name, result.identity.source) == ("ci-payments", "aws")
    assert any("out of date" in attempt for attempt in result.tried)


def test_unknown_key_is_not_contained_and_says_what_was_tried() -> None:
    world = incident_world()
    with pytest.raises(NotContained) as failure:
        world.contain("AKIAZZZZZZZZZZZZZZZZ")
    assert failure.value.exit_code == 1
    assert any("GetAccessKeyInfo" in t for t in failure.value.tried)
    assert any("GetAccessKeyLastUsed" in t for t in failure.value.tried)
    assert world.iam.writes == []


@pytest.mark.parametrize("bad", ["AKIA123", "akiaabcdefghijklmnop", "AKIAABCDEFGHIJKLMNOPQ", "ABIAABCDEFGHIJKLMNOP",
                                 "AKIAABCDEFGHIJKLMNO!", ""])
def test_malformed_key_is_a_usage_error_before_any_call(bad: str) -> None:
    world = incident_world()
    with pytest.raises(UsageError) as failure:
        world.contain(bad)
    assert failure.value.exit_code == 2
    assert world.iam.calls == [] and world.directory.calls == []


def test_a_refused_update_still_counts_when_the_key_is_already_inactive() -> None:
    world = incident_world()
    world.iam.key(world.key_id).status = KeyStatus.INACTIVE

    def deny() -> None:
        raise AwsAccessDenied("iam:UpdateAccessKey: AccessDenied", code="AccessDenied")

    world.iam.fail["UpdateAccessKey"] = deny
    result = world.contain()
    assert result.contained
    assert step(result, "deactivate") is StepStatus.ALREADY


def test_an_update_that_never_takes_effect_is_not_contained() -> None:
    world = incident_world()
    world.iam.ignore_deactivate = True
    with pytest.raises(NotContained, match="still Active"):
        world.contain()
    assert world.iam.calls.count("ListAccessKeys") == VERIFY_ATTEMPTS
    assert world.clock.slept == VERIFY_ATTEMPTS - 1  # about a second between reads: IAM is eventually consistent


def test_session_deny_cuts_sessions_issued_before_t0() -> None:
    world = incident_world()
    result = world.contain()
    document = json.loads(world.iam.user_policies[("ci-payments", SESSION_DENY_POLICY)])
    statement = document["Statement"][0]
    assert (statement["Effect"], statement["Action"], statement["Resource"]) == ("Deny", "*", "*")
    issued_before = statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
    assert issued_before == result.t0.strftime("%Y-%m-%dT%H:%M:%SZ")
    # T0 is the consistency margin after the verified deactivation: a session the key could still mint while
    # IAM propagated the deactivation is issued before it.
    assert result.contained_at is not None and result.t0 - result.contained_at >= timedelta(minutes=3)
    assert world.iam.calls.index("PutUserPolicy") > world.iam.calls.index("ListAccessKeys")
    # Read back before it is claimed.
    assert world.iam.calls.index("GetUserPolicy", world.iam.calls.index("PutUserPolicy")) > 0
    assert step(result, "deny sessions") is StepStatus.DONE
    assert "read back" in next(s.detail for s in result.steps if s.name == "deny sessions")


def test_the_consistency_margin_is_configurable() -> None:
    world = incident_world()
    result = world.contain(early={"consistency_margin": timedelta(0)})
    assert result.contained_at is not None and result.t0 - result.contained_at < timedelta(seconds=2)


def test_an_earlier_deny_with_a_later_t0_is_kept_and_a_per_key_one_still_counts() -> None:
    from rotator.domain import Incident

    world = incident_world()
    later = session_deny_document(T0 + timedelta(days=1))  # written by an earlier version, per key
    world.iam.user_policies[("ci-payments", legacy_session_deny_policy_name(world.key_id))] = later
    # That version recorded the incident too: the per-key name is read for keys revoked before.
    world.store.save_incident(Incident("i-0", world.key_id, "default", "ci-payments", "old", "", T0))
    result = world.contain()
    assert step(result, "deny sessions") is StepStatus.ALREADY
    assert "PutUserPolicy" not in world.iam.calls
    assert world.iam.user_policies[("ci-payments", legacy_session_deny_policy_name(world.key_id))] == later


def test_one_deny_per_user_whose_t0_only_moves_later() -> None:
    world = incident_world()
    world.iam.user_policies[("ci-payments", SESSION_DENY_POLICY)] = session_deny_document(T0 - timedelta(days=3))
    first = world.contain()
    assert step(first, "deny sessions") is StepStatus.DONE  # moved later, to this incident's T0
    names = [name for user, name in world.iam.user_policies if user == "ci-payments"]
    assert names == [SESSION_DENY_POLICY]  # still one policy, not one per incident
    moved = world.iam.user_policies[("ci-payments", SESSION_DENY_POLICY)]
    assert json.loads(moved)["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"] == \
        first.t0.strftime("%Y-%m-%dT%H:%M:%SZ")
    world.iam.user_policies[("ci-payments", SESSION_DENY_POLICY)] = session_deny_document(first.t0 + timedelta(days=1))
    second = world.contain(world.iam._new_key("ci-payments").key_id)  # another key of the same user, later
    assert step(second, "deny sessions") is StepStatus.ALREADY  # the later T0 already covers it: never moved back


def test_a_deny_that_does_not_read_back_is_not_claimed() -> None:
    world = incident_world()
    world.iam.fail["PutUserPolicy"] = lambda: None  # accepted...
    original = world.iam.put_user_policy

    def lost(user_name: str, policy_name: str, document: str) -> None:
        world.iam._call("PutUserPolicy")  # ...but never visible

    world.iam.put_user_policy = lost  # type: ignore[method-assign]
    result = world.contain()
    assert step(result, "deny sessions") is StepStatus.FAILED
    assert "not verified" in next(s.detail for s in result.steps if s.name == "deny sessions")
    world.iam.put_user_policy = original  # type: ignore[method-assign]


def test_rerun_keeps_the_incidents_t0_unless_the_key_was_used_since() -> None:
    world = incident_world()
    first = world.revoke()
    world.clock.advance(timedelta(hours=2))
    calls = len(world.iam.calls)
    second = world.contain()
    assert second.t0 == first.containment.t0  # a re-run must not cut sessions the roles granted to others since
    assert step(second, "deny sessions") is StepStatus.ALREADY and "PutUserPolicy" not in world.iam.calls[calls:]
    # Re-activated and used after the incident: its sessions since then are cut too.
    from rotator.domain import KeyLastUsed

    world.iam.key(world.key_id).last_used = KeyLastUsed(world.key_id, "ci-payments", world.clock.now(), "s3", None)
    world.iam.key(world.key_id).status = KeyStatus.ACTIVE
    world.clock.advance(timedelta(minutes=5))
    third = world.contain()
    assert third.t0 > second.t0 and step(third, "deny sessions") is StepStatus.DONE


def test_deny_sessions_false_writes_no_policy_and_says_so() -> None:
    world = incident_world()
    result = world.contain(early={"deny_sessions": False})
    assert result.contained
    assert world.iam.user_policies == {} and "PutUserPolicy" not in world.iam.calls
    detail = next(s.detail for s in result.steps if s.name == "deny sessions")
    assert "NOT cut" in detail and "deny_sessions = false" in detail and "aws iam put-user-policy" in detail
    assert step(result, "deny sessions") is StepStatus.SKIPPED  # a choice, not a failure


def test_console_password_is_reported_and_deleted_only_when_asked() -> None:
    world = incident_world()
    world.iam.login_profiles["ci-payments"] = T0
    assert step(world.contain(), "console login") is StepStatus.ATTENTION
    assert "ci-payments" in world.iam.login_profiles
    deleted = world.contain(disable_console=True)
    assert step(deleted, "console login") is StepStatus.DONE
    assert "ci-payments" not in world.iam.login_profiles
    assert next(s.detail for s in deleted.steps if s.name == "console login").endswith(
        "deleted (--disable-console; GetLoginProfile finds none)")


def test_a_console_password_still_there_after_its_deletion_is_a_failed_step() -> None:
    world = incident_world()
    world.iam.login_profiles["ci-payments"] = T0
    world.iam.login_profiles_that_stay.add("ci-payments")
    result = world.contain(disable_console=True)
    assert step(result, "console login") is StepStatus.FAILED
    assert "GetLoginProfile still finds it" in next(s.detail for s in result.steps if s.name == "console login")


def test_dry_run_changes_nothing() -> None:
    world = incident_world()
    outcome = world.revoke(dry_run=True, replace=True)
    assert world.iam.writes == []
    assert world.iam.key(world.key_id).status is KeyStatus.ACTIVE
    assert world.notifier.posted == [] and world.variables.writes == [] and world.store.incident_rows == {}
    assert step(outcome, "deactivate") is StepStatus.PLANNED
    assert step(outcome, "replace") is StepStatus.PLANNED
    assert outcome.exit_code == 0


def test_temporary_key_with_a_role_gets_the_session_deny_on_the_role() -> None:
    world = incident_world()
    world.iam.add_role("ci-deployer")
    result = world.contain("ASIAABCDEFGHIJKLMNOP", role="ci-deployer")
    assert result.contained and result.temporary
    assert step(result, "deactivate") is StepStatus.SKIPPED
    assert ("ci-deployer", SESSION_DENY_POLICY) in world.iam.role_policies
    assert "UpdateAccessKey" not in world.iam.calls
    assert result.identity is not None and result.identity.source == "--role"  # nothing in CloudTrail confirms it
    assert any("taken as given" in attempt for attempt in result.tried)


def test_temporary_key_without_a_known_principal_is_not_contained() -> None:
    world = incident_world()
    with pytest.raises(NotContained, match="temporary key") as failure:
        world.contain("ASIAABCDEFGHIJKLMNOP")
    assert "--role" in failure.value.hint


def test_temporary_key_resolved_by_the_store_denies_the_users_sessions() -> None:
    world = incident_world()
    world.store.remember_key(KeyOwner("ASIAABCDEFGHIJKLMNOP", None, "default", "ci-payments"), T0, status="minted")
    result = world.contain("ASIAABCDEFGHIJKLMNOP")
    assert result.contained
    assert ("ci-payments", SESSION_DENY_POLICY) in world.iam.user_policies


def test_the_key_account_is_matched_to_the_configured_role() -> None:
    world = incident_world()
    other = FakeIncidentIam(world.clock)
    other.add_user("ci-prod", keys=3)  # fake key ids count per fake: skip past the default account's
    prod_key = other.keys["ci-prod"][-1].key_id
    world.directory.accounts["111122223333"] = other
    world.account_ids = {"default": None, "prod": "111122223333"}
    world.iams["prod"] = other
    result = world.contain(prod_key)
    assert result.identity is not None and result.identity.account == "prod"
    assert other.key(prod_key).status is KeyStatus.INACTIVE and world.iam.writes == []


def test_containment_settings_read_only_aws_and_service(tmp_path: object) -> None:
    from pathlib import Path

    from rotator.config.early import load_containment_settings

    folder = Path(str(tmp_path))
    file = folder / "rotator.toml"
    file.write_text('[aws]\nregion = "eu-west-1"\n[[aws.accounts]]\nname = "prod"\n'
                    'role_arn = "arn:aws:iam::111122223333:role/rotator"\n[gitlab]\nurl = 3\n')
    settings = load_containment_settings(str(file))
    assert settings.region == "eu-west-1"
    assert settings.account_ids() == {"default": None, "prod": "111122223333"}
    assert load_containment_settings(str(folder / "missing.toml")) == ContainmentSettings(str(folder / "missing.toml"))
    assert AccountRole("a", "arn:aws:iam::210987654321:role/x").account_id == "210987654321"


def test_the_containment_path_imports_nothing_slow() -> None:
    """Everything `revoke` loads before UpdateAccessKey, in a fresh interpreter: no pydantic config, no database
    layer, no GitLab or Slack client (they would cost more than the whole containment budget)."""
    import subprocess
    import sys

    probe = ("import sys, rotator.cli.revoke_cmd, rotator.incident.containment, rotator.config.early, "
             "rotator.wiring.incident, rotator.adapters.aws_incident, rotator.adapters.db.key_index; "
             "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
             "{'gitlab', 'slack_sdk', 'sqlalchemy', 'alembic', 'pydantic', 'structlog', 'rich'} "
             "or m in {'rotator.config.settings', 'rotator.rotation.engine'})))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
