"""`rotator check`'s least-privilege judgement: which tracked users (and roles) lack the CI boundary, with the
command that attaches it; whose policies to simulate; which actions the simulation denied, with the command
that grants the shipped policy. Through the real composition root (``root.checks``) over a fake of the
PrivilegeReads port."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from rotator.errors import AwsAccessDenied, AwsNotFound
from rotator.inventory.least_privilege import (
    Entity,
    EntityKind,
    Need,
    arn_like,
    boundary_arn_for,
    boundary_gaps,
    carries_ci_boundary,
    grant_command,
    needs,
    permission_gaps,
    policy_source_arn,
)
from rotator.wiring.checks import ProbeResult
from rotator.wiring.root import Root
from tests.unit.incident_fakes import ACCOUNT
from tests.unit.worlds import World, incident_world

PATTERN = "arn:aws:iam::*:policy/ci-boundary/*"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/ci-boundary/ci-permissions-boundary"
ROTATOR_ROLE = f"arn:aws:sts::{ACCOUNT}:assumed-role/rotator-service/botocore-session-1"


def user(name: str, boundary: str | None = None) -> Entity:
    return Entity("user", name, f"arn:aws:iam::{ACCOUNT}:user/ci/{name}", boundary)


# --- the boundary ---------------------------------------------------------------------------------------


def test_arn_like_compares_each_of_the_six_parts_with_star_and_question_mark() -> None:
    assert arn_like(PATTERN, BOUNDARY)
    assert arn_like(PATTERN, "arn:aws:iam::111122223333:policy/ci-boundary/team/per-user")  # '*' spans '/'
    assert not arn_like(PATTERN, "arn:aws:iam::111122223333:policy/AllowEverything")
    assert not arn_like(PATTERN, "arn:aws:iam::111122223333:policy/ci-boundary")  # nothing after the path
    assert not arn_like(PATTERN, "arn:aws:iam::111122223333:role/ci-boundary/x")
    assert not arn_like(PATTERN, "arn:aws:iam:111122223333:policy/ci-boundary/x")  # five parts
    assert arn_like("arn:aws:iam::?????????333:policy/b", "arn:aws:iam::111122223333:policy/b")
    assert not arn_like("arn:aws:iam::????:policy/b", "arn:aws:iam::111122223333:policy/b")
    assert not arn_like("arn:aws:iam::*:policy/ci-boundary/*", "ARN:AWS:IAM::1:POLICY/CI-BOUNDARY/X")  # case


def test_an_aws_managed_policy_is_never_the_ci_boundary_even_under_the_path() -> None:
    managed = "arn:aws:iam::aws:policy/ci-boundary/AdministratorAccess"
    assert arn_like(PATTERN, managed)  # the account part '*' matches "aws"...
    assert not carries_ci_boundary(managed, PATTERN)  # ...which the shipped policies' ArnNotLike refuses
    assert carries_ci_boundary(BOUNDARY, PATTERN)
    assert not carries_ci_boundary(None, PATTERN)


def test_each_user_without_the_boundary_is_a_gap_with_the_exact_command() -> None:
    gaps = boundary_gaps([user("ci-a"), user("ci-b", BOUNDARY), user("ci-c", "arn:aws:iam::aws:policy/PowerUserAccess"),
                          user("ci-d", f"arn:aws:iam::{ACCOUNT}:policy/AllowEverything"),
                          Entity("role", "deploy-payments", f"arn:aws:iam::{ACCOUNT}:role/deploy/deploy-payments",
                                 None)], PATTERN, ACCOUNT)
    assert [g.entity.name for g in gaps] == ["ci-a", "ci-c", "ci-d", "deploy-payments"]
    assert gaps[0].fix == ("aws iam put-user-permissions-boundary --user-name ci-a --permissions-boundary "
                           f"arn:aws:iam::{ACCOUNT}:policy/ci-boundary/ci-permissions-boundary")
    assert "carries no permissions boundary" in gaps[0].problem
    assert "AWS managed policy" in gaps[1].problem
    assert "AllowEverything is not the CI boundary" in gaps[2].problem
    assert gaps[3].fix == ("aws iam put-role-permissions-boundary --role-name deploy-payments --permissions-boundary "
                           f"arn:aws:iam::{ACCOUNT}:policy/ci-boundary/ci-permissions-boundary")


def test_the_boundary_to_attach_follows_the_configured_pattern() -> None:
    assert boundary_arn_for("arn:aws-us-gov:iam::*:policy/caps/*", "111122223333") == \
        "arn:aws-us-gov:iam::111122223333:policy/caps/ci-permissions-boundary"
    assert boundary_arn_for("arn:aws:iam::111122223333:policy/caps/exact", "444455556666") == \
        "arn:aws:iam::111122223333:policy/caps/exact"  # a pinned account and name are kept as written


# --- rotator's own principal ----------------------------------------------------------------------------


def test_the_simulated_principal_is_the_user_or_the_role_behind_the_session() -> None:
    assert policy_source_arn(f"arn:aws:iam::{ACCOUNT}:user/svc/rotator") == f"arn:aws:iam::{ACCOUNT}:user/svc/rotator"
    assert policy_source_arn(ROTATOR_ROLE) == f"arn:aws:iam::{ACCOUNT}:role/rotator-service"
    configured = "arn:aws:iam::444455556666:role/ops/rotator"  # the path is only in the configured ARN
    assert policy_source_arn("arn:aws:sts::444455556666:assumed-role/rotator/rotator", configured) == configured
    assert policy_source_arn(f"arn:aws:iam::{ACCOUNT}:root") is None
    assert policy_source_arn(f"arn:aws:sts::{ACCOUNT}:federated-user/bob") is None


def test_what_rotator_needs_carries_each_users_boundary_in_the_request_context() -> None:
    capped, bare = user("ci-a", BOUNDARY), user("ci-b")
    wanted = needs([capped, bare], [], pattern=PATTERN, assumed_roles=["arn:aws:iam::444455556666:role/rotator"],
                   locates_keys=True)
    puts = [n for n in wanted if n.action == "iam:PutUserPolicy"]
    assert puts == [Need("iam:PutUserPolicy", capped.arn, "write the session deny of ci-a",
                         (("iam:PermissionsBoundary", BOUNDARY),))]  # none for ci-b: a boundary gap already
    assert {n.action for n in wanted if n.resource == bare.arn} >= {"iam:CreateAccessKey", "iam:UpdateAccessKey",
                                                                     "iam:DeleteAccessKey", "iam:GetUserPolicy"}
    assert Need("sts:AssumeRole", "arn:aws:iam::444455556666:role/rotator", "reach another managed account") in wanted
    assert any(n.action == "sts:GetAccessKeyInfo" for n in wanted)
    assert {n.action for n in wanted if n.resource == bare.arn} >= {"iam:GetLoginProfile", "iam:DeleteLoginProfile"}
    assert not any(n.action == "iam:ListEntitiesForPolicy" for n in wanted)
    quarantine = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3"
    watching = needs([capped], [], pattern=PATTERN, quarantine_policies=[quarantine])
    assert Need("iam:ListEntitiesForPolicy", quarantine, "see which users AWS quarantined") in watching
    narrow = needs([capped], [], pattern=PATTERN, session_denies=False)
    assert not any(n.action.endswith("UserPolicy") for n in narrow)
    assert not any(n.action in ("sts:GetAccessKeyInfo", "sts:AssumeRole") for n in narrow)


def test_each_denied_action_is_one_gap_naming_its_resources() -> None:
    a, b = user("ci-a"), user("ci-b")
    wanted = needs([a, b], [], pattern=PATTERN)
    decisions = {(n.action, n.resource): "allowed" for n in wanted}
    decisions[("iam:CreateAccessKey", a.arn)] = "implicitDeny"
    decisions[("iam:CreateAccessKey", b.arn)] = "implicitDeny"
    decisions[("iam:DeleteAccessKey", b.arn)] = "explicitDeny"
    del decisions[("cloudtrail:LookupEvents", "*")]
    gaps = permission_gaps(wanted, decisions)
    assert [(g.action, g.decision, g.resources) for g in gaps] == [
        ("iam:CreateAccessKey", "implicitDeny", (a.arn, b.arn)),
        ("iam:DeleteAccessKey", "explicitDeny", (b.arn,)),
        ("cloudtrail:LookupEvents", "not evaluated", ("*",))]
    assert gaps[0].why == "rotate the keys of ci-a; rotate the keys of ci-b"
    assert permission_gaps(wanted, {(n.action, n.resource): "allowed" for n in wanted}) == []


def test_the_grant_command_names_the_principal_and_the_shipped_policy() -> None:
    assert grant_command("arn:aws:iam::111122223333:role/ops/rotator", "deploy/cross-account-role.json") == (
        "aws iam put-role-policy --role-name rotator --policy-name rotator "
        "--policy-document file://deploy/cross-account-role.json")
    assert grant_command("arn:aws:iam::111122223333:user/rotator", "deploy/iam-policy.json").startswith(
        "aws iam put-user-policy --user-name rotator ")


# --- through `rotator check`'s probes -------------------------------------------------------------------


@dataclass
class FakePrivilegeReads:
    """IAM of one account: its entities and what the simulator would answer (everything allowed unless
    ``denied`` says otherwise); ``simulator_refuses``: the principal may not call SimulatePrincipalPolicy."""

    caller: str = ROTATOR_ROLE
    entities: dict[tuple[str, str], Entity] = field(default_factory=dict)
    denied: dict[str, str] = field(default_factory=dict)  # action → decision
    simulator_refuses: bool = False
    simulated: list[tuple[str, list[Need]]] = field(default_factory=list)

    def caller_arn(self) -> str:
        return self.caller

    def describe(self, kind: EntityKind, name: str) -> Entity:
        if (kind, name) not in self.entities:
            raise AwsNotFound(f"iam:Get{kind.title()} ({name}): NoSuchEntity", code="NoSuchEntity")
        return self.entities[(kind, name)]

    def simulate(self, source_arn: str, wanted: Sequence[Need]) -> dict[tuple[str, str], str]:
        if self.simulator_refuses:
            raise AwsAccessDenied("iam:SimulatePrincipalPolicy: AccessDenied", code="AccessDenied")
        self.simulated.append((source_arn, list(wanted)))
        return {(n.action, n.resource): self.denied.get(n.action, "allowed") for n in wanted}


def probes(world: World, reads: FakePrivilegeReads, **aws_settings: Any) -> list[ProbeResult]:
    world.privilege["default"] = reads
    root = world.root()
    if aws_settings:
        settings = world.settings()
        settings = settings.model_copy(update={"aws": settings.aws.model_copy(update=aws_settings)})
        root = Root(settings, actor="responder@laptop", aws=world.aws(), clock=world.clock)
    return list(root.checks.least_privilege_probes())


def test_a_tracked_user_without_the_boundary_is_a_failed_probe_with_the_fixing_command() -> None:
    world = incident_world()
    reads = FakePrivilegeReads(entities={("user", "ci-payments"): user("ci-payments")})
    results = probes(world, reads)
    failed = [r for r in results if not r.ok]
    assert [r.name for r in failed] == ["aws[default] permissions boundary of user ci-payments"]
    assert failed[0].detail.endswith(
        "fix: aws iam put-user-permissions-boundary --user-name ci-payments --permissions-boundary "
        f"arn:aws:iam::{ACCOUNT}:policy/ci-boundary/ci-permissions-boundary")
    # The simulation still ran, without the session-deny write that the boundary would have allowed.
    [(source, wanted)] = reads.simulated
    assert source == f"arn:aws:iam::{ACCOUNT}:role/rotator-service"
    assert "iam:PutUserPolicy" not in {n.action for n in wanted}
    assert any(r.ok and "allows" in r.detail for r in results)


def test_a_capped_user_and_a_permitted_principal_pass() -> None:
    world = incident_world()
    reads = FakePrivilegeReads(entities={("user", "ci-payments"): user("ci-payments", BOUNDARY)})
    results = probes(world, reads)
    assert all(r.ok for r in results), results
    assert [r.name for r in results] == ["aws[default] permissions boundary",
                                         "aws[default] permissions of rotator's principal"]
    [(_, wanted)] = reads.simulated
    assert ("iam:PutUserPolicy", (("iam:PermissionsBoundary", BOUNDARY),)) in {(n.action, n.context) for n in wanted}


def test_each_action_the_simulator_denies_is_a_failed_probe_with_the_grant_command() -> None:
    world = incident_world()
    reads = FakePrivilegeReads(entities={("user", "ci-payments"): user("ci-payments", BOUNDARY)},
                               denied={"iam:PutUserPolicy": "explicitDeny", "iam:CreateAccessKey": "implicitDeny"})
    failed = [r for r in probes(world, reads) if not r.ok]
    source = f"arn:aws:iam::{ACCOUNT}:role/rotator-service"
    assert [r.name for r in failed] == [f"aws[default] {source} may iam:CreateAccessKey",
                                        f"aws[default] {source} may iam:PutUserPolicy"]
    assert failed[0].detail.startswith(f"implicitDeny on arn:aws:iam::{ACCOUNT}:user/ci/ci-payments")
    assert failed[1].detail.endswith("fix: aws iam put-role-policy --role-name rotator-service --policy-name rotator "
                                     "--policy-document file://deploy/iam-policy.json")


def test_without_the_simulator_the_harmless_probes_stand_and_the_line_says_so() -> None:
    world = incident_world()
    refused = FakePrivilegeReads(entities={("user", "ci-payments"): user("ci-payments", BOUNDARY)},
                                 simulator_refuses=True)
    [boundary, permissions] = probes(world, refused)
    assert boundary.ok and permissions.ok
    assert permissions.detail.startswith("not simulated (iam:SimulatePrincipalPolicy: AccessDenied)")
    root_user = FakePrivilegeReads(caller=f"arn:aws:iam::{ACCOUNT}:root",
                                   entities={("user", "ci-payments"): user("ci-payments", BOUNDARY)})
    assert "is not an IAM user or role" in probes(world, root_user)[-1].detail
    assert root_user.simulated == []


def test_an_unreadable_user_fails_and_an_empty_pattern_turns_the_boundary_check_off() -> None:
    world = incident_world()
    missing = probes(world, FakePrivilegeReads())
    assert (missing[0].name, missing[0].ok) == ("aws[default] user ci-payments", False)
    assert "NoSuchEntity" in missing[0].detail
    off = probes(world, FakePrivilegeReads(entities={("user", "ci-payments"): user("ci-payments")}),
                 boundary_arn_pattern="")
    assert [r.name for r in off] == ["aws[default] permissions of rotator's principal"] and off[0].ok


@pytest.mark.parametrize("pattern", ["arn:aws:iam::*:policy/ci-boundary/*", "arn:aws:iam::111122223333:policy/x",
                                     "arn:aws-us-gov:iam::*:policy/caps/*", ""])
def test_the_pattern_setting_accepts_policy_arn_patterns(pattern: str) -> None:
    from rotator.config.sections import AwsSettings

    assert AwsSettings(boundary_arn_pattern=pattern).boundary_arn_pattern == pattern


@pytest.mark.parametrize("pattern", ["arn:aws:iam::*:role/ci/*", "ci-boundary", "arn:aws:iam::aws:policy/x"])
def test_the_pattern_setting_refuses_anything_else(pattern: str) -> None:
    from pydantic import ValidationError

    from rotator.config.sections import AwsSettings

    with pytest.raises(ValidationError, match="IAM policy ARN pattern"):
        AwsSettings(boundary_arn_pattern=pattern)
