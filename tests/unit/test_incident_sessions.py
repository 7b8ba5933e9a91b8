"""Cutting every session a compromised key spawned, on the fake world: roles in the key's account, in a second
configured account and in an unconfigured one, user sessions, role chains, what rotator may not or cannot
change, temporary (ASIA) keys, and the claims made about all of it."""

from __future__ import annotations

import json
import re

import pytest

from rotator.domain import KeyOwner
from rotator.errors import ExitCode
from rotator.incident.containment import RoleMismatch
from rotator.incident.followup import IncidentOutcome
from rotator.incident.report import incident_json
from rotator.incident.steps import SESSION_DENY_POLICY
from tests.unit.fakes import T0
from tests.unit.incident_fakes import ACCOUNT, record, role_account_copy
from tests.unit.worlds import SECURITY, World, incident_world

OTHER = "222222222222"
FOREIGN = "333333333333"
ROLE_SAME = f"arn:aws:iam::{ACCOUNT}:role/deploy/payments"
ROLE_OTHER = f"arn:aws:iam::{OTHER}:role/ci/release"
ROLE_FOREIGN = f"arn:aws:iam::{FOREIGN}:role/audit"
S_SAME, S_OTHER, S_FOREIGN, S_USER = ("ASIA1111111111111111", "ASIA2222222222222222", "ASIA3333333333333333",
                                      "ASIA4444444444444444")


def attacked(world: World | None = None) -> World:
    """The leaked key assumed a role in its own account, one in a second configured account and one in an account
    rotator does not know, and minted a GetSessionToken session."""
    world = world or incident_world()
    other = world.add_account("prod", OTHER)
    world.iam.add_role("payments", "/deploy/")
    other.add_role("release", "/ci/")
    key = world.key_id
    world.trail.add(record("AssumeRole", key_id=key, role_arn=ROLE_SAME, minted=S_SAME, at="2026-01-01T11:01:00Z"))
    cross = record("AssumeRole", key_id=key, role_arn=ROLE_OTHER, minted=S_OTHER, at="2026-01-01T11:02:00Z")
    world.trail.add(cross)
    world.trails[OTHER].add(role_account_copy(cross))  # AWS records a cross-account AssumeRole in both accounts
    world.directory.sessions[S_OTHER] = OTHER  # GetAccessKeyInfo answers the role's account
    world.trail.add(record("AssumeRole", key_id=key, role_arn=ROLE_FOREIGN, minted=S_FOREIGN,
                           at="2026-01-01T11:03:00Z"))
    world.trail.add(record("GetSessionToken", key_id=key, minted=S_USER, at="2026-01-01T11:04:00Z"))
    world.trails[OTHER].add(record("ListBuckets", key_id=S_OTHER, as_role=ROLE_OTHER, account=OTHER))
    return world


def lines_of(outcome: IncidentOutcome) -> dict[str, str]:
    return {cut.principal.name: cut.line() for cut in outcome.cuts}


def markdown_sessions(markdown: str) -> list[str]:
    section = re.search(r"^## Sessions\n\n(.*?)\n\n", markdown, flags=re.MULTILINE | re.DOTALL)
    assert section is not None
    return [line[2:] for line in section.group(1).splitlines()]


def test_every_role_session_is_cut_where_it_can_be_and_named_where_it_cannot() -> None:
    world = attacked()
    outcome = world.revoke()
    assert outcome.exit_code == ExitCode.CONTAINED_FOLLOW_UP_FAILED  # one session is not cut
    assert world.iam.role_policies[("payments", SESSION_DENY_POLICY)]  # the role's own account
    assert world.iams["prod"].role_policies[("release", SESSION_DENY_POLICY)]  # through the prod account's IAM
    for document in (world.iam.role_policies[("payments", SESSION_DENY_POLICY)],
                     world.iams["prod"].role_policies[("release", SESSION_DENY_POLICY)]):
        condition = json.loads(document)["Statement"][0]["Condition"]
        assert condition == {"DateLessThan": {"aws:TokenIssueTime": outcome.containment.t0.strftime(
            "%Y-%m-%dT%H:%M:%SZ")}}
    lines = lines_of(outcome)
    assert lines["payments"].startswith(f"sessions of role payments in account default ({ACCOUNT}) issued before")
    assert "denied (inline policy rotator-deny-sessions, read back)" in lines["release"]
    assert f"in account prod ({OTHER})" in lines["release"]
    assert S_USER in lines["ci-payments"] and "denied" in lines["ci-payments"]  # the user's deny covers it
    foreign = lines["audit"]
    assert f"account {FOREIGN} is not configured" in foreign and "NOT cut" in foreign
    assert f"run with credentials of account {FOREIGN}: aws iam put-role-policy --role-name audit " \
           f"--policy-name {SESSION_DENY_POLICY} --policy-document '" in foreign
    assert [cut.principal.name for cut in outcome.open_gaps] == ["audit"]
    document = incident_json(outcome.view("responder", ""))
    assert document["contained"] is False and document["key_inactive"] is True
    assert document["not_cut"] == [foreign]
    # The session in the unconfigured account is a coverage gap naming it; the one in prod was audited there.
    assert outcome.audit is not None and outcome.audit.failed
    assert any(FOREIGN in gap for gap in outcome.audit.gaps)
    assert {k for k, _, _ in world.trails[OTHER].lookups} == {S_OTHER}


def test_the_slack_thread_and_the_report_say_the_same_thing_line_for_line() -> None:
    world = attacked()
    outcome = world.revoke()
    thread = [p for p in world.notifier.posted if p.channel == SECURITY]
    assert all(p.thread == "1.000" for p in thread[1:])
    sessions_reply = next(p for p in thread if p.title.startswith("rotator: sessions of"))
    incident = next(iter(world.store.incident_rows.values()))
    assert incident.report_markdown is not None
    assert markdown_sessions(incident.report_markdown) == sessions_reply.lines
    assert json.loads(incident.report_json or "{}")["session_lines"] == sessions_reply.lines
    assert set(sessions_reply.lines) == set(lines_of(outcome).values())
    assert "2 NOT cut" not in sessions_reply.title and "1 NOT cut" in sessions_reply.title
    assert [dict(s)["line"] for s in incident.sessions] == sessions_reply.lines


def test_a_key_from_the_store_gets_the_same_cross_account_treatment() -> None:
    world = attacked()
    world.store.remember_key(KeyOwner(world.key_id, "payments", "default", "ci-payments"), T0, status="Active")
    outcome = world.revoke()
    assert outcome.containment.identity is not None and outcome.containment.identity.source == "store"
    assert "GetCallerIdentity" in world.directory.calls  # the ambient account's id, asked before the audit
    assert outcome.audit is not None and outcome.audit.account_id == ACCOUNT
    assert world.iams["prod"].role_policies[("release", SESSION_DENY_POLICY)]
    assert {k for k, _, _ in world.trails[OTHER].lookups} == {S_OTHER}
    assert [cut.principal.name for cut in outcome.open_gaps] == ["audit"]
    assert any(FOREIGN in gap for gap in outcome.audit.gaps)


def test_role_chains_are_followed_to_any_depth_without_looping() -> None:
    world = incident_world()
    other = world.add_account("prod", OTHER)
    world.iam.add_role("payments", "/deploy/")
    other.add_role("release", "/ci/")
    other.add_role("deep")
    hop1, hop2, hop3 = "ASIA5555555555555555", "ASIA6666666666666666", "ASIA7777777777777777"
    world.trail.add(record("AssumeRole", key_id=world.key_id, role_arn=ROLE_SAME, minted=hop1))
    world.trail.add(record("AssumeRole", key_id=hop1, as_role=ROLE_SAME, role_arn=ROLE_OTHER, minted=hop2))
    prod = world.trails[OTHER]
    prod.add(record("AssumeRole", key_id=hop2, as_role=ROLE_OTHER, account=OTHER,
                    role_arn=f"arn:aws:iam::{OTHER}:role/deep", minted=hop3))
    prod.add(record("AssumeRole", key_id=hop3, as_role=f"arn:aws:iam::{OTHER}:role/deep", account=OTHER,
                    role_arn=ROLE_SAME, minted=hop1))  # a loop back to a session already followed
    outcome = world.revoke()
    assert outcome.audit is not None
    assert [k.key_id for k in outcome.audit.keys] == [world.key_id, hop1, hop2, hop3]
    assert {cut.principal.name for cut in outcome.cuts if cut.cut} == {"ci-payments", "payments", "release", "deep"}
    assert other.role_policies[("deep", SESSION_DENY_POLICY)]
    assert not outcome.open_gaps and outcome.exit_code == ExitCode.OK
    assert sum(1 for k, _, _ in world.trail.lookups if k == hop1) == len(world.trail.regions)  # looked up once


@pytest.mark.parametrize("role_arn, reason, command", [
    (f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123456789abcdef",
     "an IAM Identity Center role", "aws sso-admin put-inline-policy-to-permission-set"),
    (f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/elasticbeanstalk.amazonaws.com/AWSServiceRoleForEB",
     "a service-linked role", None),
])
def test_roles_aws_will_not_let_anyone_change_are_named(role_arn: str, reason: str, command: str | None) -> None:
    world = incident_world()
    world.trail.add(record("AssumeRole", key_id=world.key_id, role_arn=role_arn, minted=S_SAME))
    outcome = world.revoke()
    gap = outcome.open_gaps[0]
    assert reason in gap.reason and "PutRolePolicy" not in world.iam.calls
    if command is None:
        assert "run" not in gap.line().split("—", 1)[1]
    else:
        assert command in gap.line()


def test_access_denied_and_the_revoke_settings_make_named_gaps() -> None:
    world = attacked()
    world.iam.denied_roles.add("payments")
    denied = world.revoke()
    gap = next(c for c in denied.open_gaps if c.principal.name == "payments")
    assert "may not change it (AccessDenied" in gap.reason and "aws iam put-role-policy --role-name payments" in \
        gap.line()

    off = attacked()
    off.revoke_config = '[revoke]\nrole_session_revocation = "off"\n'
    outcome = off.revoke()
    assert {c.principal.name for c in outcome.open_gaps} == {"payments", "release", "audit"}
    assert "PutRolePolicy" not in off.iam.calls + off.iams["prod"].calls
    assert 'role_session_revocation = "off"' in lines_of(outcome)["payments"]

    paths = attacked()
    paths.revoke_config = '[revoke]\nrole_session_revocation = "paths"\nrole_paths = ["/ci/"]\n'
    outcome = paths.revoke()
    assert paths.iams["prod"].role_policies[("release", SESSION_DENY_POLICY)]
    assert ("payments", SESSION_DENY_POLICY) not in paths.iam.role_policies
    assert "its path /deploy/ is not under [revoke] role_paths (/ci/)" in lines_of(outcome)["payments"]


def test_deny_sessions_false_writes_nothing_and_every_line_says_so() -> None:
    world = attacked()
    world.revoke_config = "[revoke]\ndeny_sessions = false\n"
    outcome = world.revoke(early={"deny_sessions": False})
    assert not any(call.startswith("Put") for call in world.iam.calls + world.iams["prod"].calls)
    assert all("NOT cut" in line for line in lines_of(outcome).values())
    assert all("deny_sessions = false" in c.reason for c in outcome.cuts if c.principal.name != "audit")
    assert outcome.exit_code == ExitCode.CONTAINED_FOLLOW_UP_FAILED  # sessions were found and not cut


# --- temporary (ASIA) keys --------------------------------------------------------------------------------------


def test_a_role_session_key_is_traced_to_its_role_and_upstream_credential() -> None:
    world = attacked()
    outcome = world.revoke(S_SAME)
    containment = outcome.containment
    assert containment.identity is not None and containment.identity.role_name == "payments"
    assert containment.identity.source == "cloudtrail"
    assert containment.origin is not None and containment.origin.upstream_key == world.key_id
    assert world.iam.role_policies[("payments", SESSION_DENY_POLICY)]
    upstream = [line for line in incident_json(outcome.view("r", ""))["session_lines"] if "minted by" in line]
    assert upstream and f"contain it: rotator revoke --key {world.key_id}" in upstream[0]


def test_the_role_given_is_checked_against_cloudtrail() -> None:
    world = attacked()
    right = world.contain(S_OTHER, role="release")
    assert right.identity is not None and right.identity.source == "cloudtrail, matches --role"
    assert right.identity.account == "prod" and world.iams["prod"].role_policies[("release", SESSION_DENY_POLICY)]
    # The role account's copy does not name the key that minted it; the caller account's copy does.
    assert right.origin is not None and right.origin.upstream_key == world.key_id
    assert right.origin.caller_account == ACCOUNT
    writes = len(world.iam.writes) + len(world.iams["prod"].writes)
    with pytest.raises(RoleMismatch) as wrong:
        world.contain(S_SAME, role="release")
    assert wrong.value.exit_code == ExitCode.USAGE
    assert "role payments" in wrong.value.message and "role release" in wrong.value.message
    assert len(world.iam.writes) + len(world.iams["prod"].writes) == writes  # refused before any write


def test_a_user_session_key_is_cut_on_the_user() -> None:
    world = attacked()
    result = world.contain(S_USER)
    assert result.identity is not None and (result.identity.user_name, result.identity.role_name) == (
        "ci-payments", None)
    assert world.iam.user_policies[("ci-payments", SESSION_DENY_POLICY)]
    with pytest.raises(RoleMismatch, match="user ci-payments"):
        world.contain(S_USER, role="payments")
