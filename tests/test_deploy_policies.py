"""No escalation beyond the union of the managed users' permissions: rotator writes inline policies only on
entities capped by the CI permissions boundary, and never removes, replaces or rewrites a boundary.

The judges of the field run here too: parliament (with its community auditors) over every policy in deploy/
and every policy rotator writes at run time, and cloudsplaining's privilege-escalation scan over the identity
policies. Any finding not in deploy/ACCEPTED-FINDINGS.md fails.
"""

from __future__ import annotations

import fnmatch
import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from rotator.domain import CredentialSpec, ScopeKind, TargetSpec
from rotator.incident.steps import session_deny_document
from rotator.oidc.plan import OidcPlan, OidcRequest, build_plan, subject_patterns, trust_policy
from rotator.oidc.ports import UserPermissions
from tests.deploy_judges import (
    DEPLOY,
    Finding,
    cloudsplaining_escalations,
    is_trust_policy,
    load,
    parliament_findings,
    policy_files,
    stale,
    unaccepted,
)

# The CI boundary is any customer managed policy under the path /ci-boundary/ (deploy/ci-permissions-boundary.json
# is created as /ci-boundary/ci-permissions-boundary); never an AWS managed one (account "aws").
BOUNDARY_PATTERN = "arn:aws:iam::*:policy/ci-boundary/*"
AWS_MANAGED_POLICIES = "arn:aws:iam::aws:policy/*"
BOUNDARY = "arn:aws:iam::111122223333:policy/ci-boundary/ci-permissions-boundary"
BOUNDARY_CONDITION = {"ArnLike": {"iam:PermissionsBoundary": BOUNDARY_PATTERN},
                      "ArnNotLike": {"iam:PermissionsBoundary": AWS_MANAGED_POLICIES}}
# What would let rotator's principal grant an Allow: an inline or attached policy, on anything.
GRANTS = ("iam:Put*Policy", "iam:Attach*Policy")
BOUNDARY_CHANGES = ("iam:DeleteUserPermissionsBoundary", "iam:DeleteRolePermissionsBoundary",
                    "iam:PutUserPermissionsBoundary", "iam:PutRolePermissionsBoundary")
BOUNDARY_REWRITES = ("iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion")
SERVICE_POLICIES = ("iam-policy.json", "cross-account-role.json",
                    "iam-policy-no-session-deny.json", "cross-account-role-no-session-deny.json")
SESSION_DENY_ACTIONS = {"iam:putuserpolicy", "iam:putrolepolicy", "iam:getuserpolicy", "iam:getrolepolicy",
                        "iam:getrole"}  # GetRole: `rotator check` reads the boundary of roles whose sessions it may cut


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@functools.cache
def iam_actions() -> tuple[str, ...]:
    """Every IAM action, from botocore's service model (its operation names are IAM's action names)."""
    from botocore.session import get_session

    return tuple(f"iam:{name}" for name in get_session().get_service_model("iam").operation_names)


def actions_of(statement: dict[str, Any]) -> set[str]:
    """The IAM actions a statement's Action patterns name, wildcards expanded."""
    patterns = [p.lower() for p in _as_list(statement["Action"])]
    return {a for a in iam_actions() if any(fnmatch.fnmatchcase(a.lower(), p) for p in patterns)}


def matching(actions: set[str], patterns: tuple[str, ...]) -> set[str]:
    return {a for a in actions if any(fnmatch.fnmatchcase(a, p) for p in patterns)}


def identity_policies() -> dict[str, dict[str, Any]]:
    """Every identity policy shipped in deploy/ that a principal of rotator (or its operator) would hold:
    all but the trust policies and the CI boundary itself."""
    return {path.name: load(path) for path in policy_files()
            if not is_trust_policy(load(path)) and path.name != "ci-permissions-boundary.json"}


def test_the_policies_this_file_checks_are_the_ones_shipped() -> None:
    assert set(identity_policies()) == {*SERVICE_POLICIES, "oidc-migration-policy.json"}


@pytest.mark.parametrize("name", sorted(identity_policies()))
def test_every_grant_of_a_policy_is_conditioned_on_the_ci_boundary(name: str) -> None:
    for statement in identity_policies()[name]["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        grants = matching(actions_of(statement), GRANTS)
        if grants:
            # Groups carry no boundary, so PutGroupPolicy/AttachGroupPolicy can never meet this.
            assert statement.get("Condition") == BOUNDARY_CONDITION, (name, statement["Sid"], sorted(grants))


@pytest.mark.parametrize("name", sorted(identity_policies()))
def test_removing_replacing_or_rewriting_a_boundary_is_explicitly_denied(name: str) -> None:
    unconditional_denies = [s for s in identity_policies()[name]["Statement"]
                            if s["Effect"] == "Deny" and "Condition" not in s and _as_list(s["Resource"]) == ["*"]]
    denied = {a for s in unconditional_denies for a in actions_of(s)}
    assert set(BOUNDARY_CHANGES) <= denied, name
    assert set(BOUNDARY_REWRITES) <= denied, name  # on "*": the boundary policy's versions included


@pytest.mark.parametrize("name", sorted(identity_policies()))
def test_inline_policies_on_an_entity_without_the_boundary_are_explicitly_denied(name: str) -> None:
    """Even if another policy of the same principal granted more, an unbounded entity gets no policy."""
    statements = identity_policies()[name]["Statement"]
    granted = {a for s in statements if s["Effect"] == "Allow" for a in matching(actions_of(s), GRANTS)}
    if name in SERVICE_POLICIES:
        granted |= {"iam:PutUserPolicy", "iam:PutRolePolicy"}  # with or without session denies
    unbounded = (None, {"ArnNotLike": {"iam:PermissionsBoundary": BOUNDARY_PATTERN}})
    for action in sorted(granted):
        assert any(s["Effect"] == "Deny" and action in actions_of(s) and s.get("Condition") in unbounded
                   for s in statements), (name, action)


# --- what the policies decide, request by request -------------------------------------------------------


def _condition_holds(condition: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    """IAM's condition operators that these policies use. A key missing from the request context makes a
    positive operator false and a negated one true (IAM User Guide, "Condition operators")."""
    for operator, keys in condition.items():
        for key, values in keys.items():
            value = context.get(key)
            patterns = _as_list(values)
            if operator == "ArnLike":
                holds = value is not None and any(fnmatch.fnmatchcase(value, p) for p in patterns)
            elif operator == "ArnNotLike":
                holds = value is None or not any(fnmatch.fnmatchcase(value, p) for p in patterns)
            elif operator == "ForAnyValue:StringEquals":
                holds = value is not None and value in patterns
            else:
                raise AssertionError(f"this model does not know {operator}: extend it before using it")
            if not holds:
                return False
    return True


def decide(document: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> str:
    """One identity policy's decision (IAM User Guide, "Policy evaluation logic"): an explicit Deny wins, then
    an Allow, else the implicit deny. A model of the documented logic for these statements, not AWS."""
    def applies(statement: dict[str, Any]) -> bool:
        return (any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in _as_list(statement["Action"]))
                and any(fnmatch.fnmatchcase(resource, p) for p in _as_list(statement["Resource"]))
                and _condition_holds(statement.get("Condition", {}), context))

    matched = [s["Effect"] for s in document["Statement"] if applies(s)]
    return "explicit deny" if "Deny" in matched else "allow" if "Allow" in matched else "implicit deny"


CI_USER = "arn:aws:iam::111122223333:user/ci/ci-payments-deploy"
HUMAN = "arn:aws:iam::111122223333:user/people/alice"
DEPLOY_ROLE = "arn:aws:iam::111122223333:role/deploy/payments"
WITH_BOUNDARY = {"iam:PermissionsBoundary": BOUNDARY}
OTHER_BOUNDARY = {"iam:PermissionsBoundary": "arn:aws:iam::111122223333:policy/AllowEverything"}
AWS_BOUNDARY = {"iam:PermissionsBoundary": "arn:aws:iam::aws:policy/ci-boundary/AdministratorAccess"}
NONE: dict[str, str] = {}

# (action, resource, request context) → decision, for rotator's own principal with session denies on.
SERVICE_DECISIONS = [
    ("iam:CreateAccessKey", CI_USER, NONE, "allow"),  # inherent: rotator's reach is the managed users' union
    ("iam:CreateAccessKey", HUMAN, NONE, "implicit deny"),
    ("iam:PutUserPolicy", CI_USER, WITH_BOUNDARY, "allow"),  # the session deny, on a capped user
    ("iam:PutUserPolicy", CI_USER, NONE, "explicit deny"),
    ("iam:PutUserPolicy", CI_USER, OTHER_BOUNDARY, "explicit deny"),
    ("iam:PutUserPolicy", CI_USER, AWS_BOUNDARY, "implicit deny"),
    ("iam:PutUserPolicy", HUMAN, WITH_BOUNDARY, "implicit deny"),
    ("iam:PutRolePolicy", DEPLOY_ROLE, WITH_BOUNDARY, "allow"),  # role-session revocation, on a capped role
    ("iam:PutRolePolicy", DEPLOY_ROLE, NONE, "explicit deny"),  # reported to a human with the command
    ("iam:GetRolePolicy", DEPLOY_ROLE, NONE, "allow"),
    ("iam:DeleteUserPermissionsBoundary", CI_USER, WITH_BOUNDARY, "explicit deny"),
    ("iam:PutUserPermissionsBoundary", CI_USER, WITH_BOUNDARY, "explicit deny"),
    ("iam:DeleteRolePermissionsBoundary", DEPLOY_ROLE, WITH_BOUNDARY, "explicit deny"),
    ("iam:PutRolePermissionsBoundary", DEPLOY_ROLE, WITH_BOUNDARY, "explicit deny"),
    ("iam:CreatePolicyVersion", BOUNDARY, NONE, "explicit deny"),
    ("iam:SetDefaultPolicyVersion", BOUNDARY, NONE, "explicit deny"),
    ("iam:AttachUserPolicy", CI_USER, WITH_BOUNDARY, "explicit deny"),
    ("iam:AttachRolePolicy", DEPLOY_ROLE, WITH_BOUNDARY, "explicit deny"),
    ("iam:PutGroupPolicy", "arn:aws:iam::111122223333:group/ci", NONE, "explicit deny"),
    ("iam:AddUserToGroup", "arn:aws:iam::111122223333:group/admins", NONE, "explicit deny"),
    ("iam:CreateUser", "arn:aws:iam::111122223333:user/ci/new", NONE, "explicit deny"),
    ("iam:UpdateAssumeRolePolicy", DEPLOY_ROLE, WITH_BOUNDARY, "explicit deny"),
    ("iam:DeleteUserPolicy", CI_USER, WITH_BOUNDARY, "explicit deny"),  # an operator's own deny stays
]


def _without_session_deny(decision: tuple[str, str, dict[str, str], str]) -> str:
    action, _, _, expected = decision
    if action in ("iam:PutUserPolicy", "iam:PutRolePolicy"):
        return "explicit deny"  # on every resource, bounded or not
    if action == "iam:GetRolePolicy":
        return "implicit deny"
    return expected


@pytest.mark.parametrize("name", SERVICE_POLICIES)
def test_what_rotators_principal_may_do_request_by_request(name: str) -> None:
    document = load(DEPLOY / name)
    without = "no-session-deny" in name
    for decision in SERVICE_DECISIONS:
        action, resource, context, expected = decision
        want = _without_session_deny(decision) if without else expected
        assert decide(document, action, resource, context) == want, (name, action, resource, context)


def test_what_the_oidc_migration_operator_may_do_request_by_request() -> None:
    document = load(DEPLOY / "oidc-migration-policy.json")
    role = "arn:aws:iam::111122223333:role/gitlab-oidc-payments-deploy"
    for action, resource, context, expected in [
        ("iam:CreateRole", role, WITH_BOUNDARY, "allow"),  # the role gets the CI user's boundary
        ("iam:CreateRole", role, NONE, "explicit deny"),  # a user without the boundary cannot be migrated
        ("iam:AttachRolePolicy", role, WITH_BOUNDARY, "allow"),
        ("iam:AttachRolePolicy", role, NONE, "explicit deny"),
        ("iam:PutRolePolicy", role, OTHER_BOUNDARY, "explicit deny"),
        ("iam:PutRolePermissionsBoundary", role, WITH_BOUNDARY, "explicit deny"),
        ("iam:DeleteRolePermissionsBoundary", role, WITH_BOUNDARY, "explicit deny"),
        ("iam:CreatePolicyVersion", BOUNDARY, NONE, "explicit deny"),
        ("iam:CreateRole", DEPLOY_ROLE, WITH_BOUNDARY, "implicit deny"),  # gitlab-oidc-* roles only
        ("iam:UpdateAccessKey", CI_USER, NONE, "allow"),  # retire-credential
        ("iam:CreateAccessKey", CI_USER, NONE, "implicit deny"),
    ]:
        assert decide(document, action, resource, context) == expected, (action, resource, context)


def test_the_boundary_lets_a_ci_user_mint_no_credential_and_write_no_iam_policy() -> None:
    """A leaked CI key cannot make itself a new key, a console password, or an inline policy, whatever
    the operator's list of allowed actions grows to."""
    boundary = load(DEPLOY / "ci-permissions-boundary.json")
    for action in ("iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:DeleteAccessKey", "iam:CreateLoginProfile",
                   "iam:PutUserPolicy", "iam:AttachUserPolicy", "iam:CreatePolicyVersion",
                   "iam:DeleteUserPermissionsBoundary", "iam:PutUserPermissionsBoundary", "iam:UpdateAssumeRolePolicy"):
        assert decide(boundary, action, CI_USER, NONE) == "explicit deny", action
    allows = [s for s in boundary["Statement"] if s["Effect"] == "Allow"]
    assert allows and all("*" not in _as_list(s["Action"]) and not any(a.startswith("iam:") for a in _as_list(
        s["Action"])) for s in allows)
    # The session denies rotator writes are pure Deny statements: a boundary caps Allows only, so it never
    # weakens them.
    assert {s["Effect"] for s in json.loads(session_deny_document(datetime(2024, 1, 2, tzinfo=UTC)))["Statement"]} \
        == {"Deny"}


@pytest.mark.parametrize(("narrow", "full"), [("iam-policy-no-session-deny.json", "iam-policy.json"),
                                              ("cross-account-role-no-session-deny.json", "cross-account-role.json")])
def test_the_no_session_deny_variant_is_the_same_policy_without_any_inline_policy(narrow: str, full: str) -> None:
    def allowed(name: str) -> set[str]:
        return {a.lower() for s in load(DEPLOY / name)["Statement"] if s["Effect"] == "Allow" for a in actions_of(s)
                } | {a.lower() for s in load(DEPLOY / name)["Statement"] if s["Effect"] == "Allow"
                     for a in _as_list(s["Action"]) if not a.startswith("iam:")}

    assert allowed(narrow) == allowed(full) - SESSION_DENY_ACTIONS
    denied = {s["Sid"]: s for s in load(DEPLOY / narrow)["Statement"] if s["Effect"] == "Deny"}
    assert {"iam:PutUserPolicy", "iam:PutRolePolicy"} <= set(denied["NeverWriteAnInlinePolicy"]["Action"])
    assert "Condition" not in denied["NeverWriteAnInlinePolicy"]


# --- the judges --------------------------------------------------------------------------------------------

# Policies rotator writes at run time, built by the code that writes them. The lead extends this list: one
# line per generated document. Inputs are examples; what is judged is the documents' shape.
GITLAB_PROVIDER = "arn:aws:iam::111122223333:oidc-provider/gitlab.example.com"
SAMPLE_USER_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "DeployArtifacts", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
     "Resource": "arn:aws:s3:::payments-artifacts/*"}]})


@functools.cache
def sample_oidc_plan() -> OidcPlan:
    """What `plan-oidc` builds for a sample credential: two projects, branch main, tags v*, and a CI user with
    one managed and one inline policy under the CI boundary."""
    credential = CredentialSpec("payments-deploy", "ci-payments-deploy", targets=(
        TargetSpec(ScopeKind.PROJECT, "payments/api"), TargetSpec(ScopeKind.PROJECT, "payments/worker")))
    permissions = UserPermissions(("arn:aws:iam::111122223333:policy/ci/payments-deploy",),
                                  (("deploy-artifacts", SAMPLE_USER_POLICY),),
                                  "arn:aws:iam::111122223333:policy/ci-boundary/ci-permissions-boundary")
    return build_plan(OidcRequest(credential=credential, gitlab_url="https://gitlab.example.com",
                                  account_id="111122223333", permissions=permissions, refs=("main",), tags=("v*",)))


GENERATED: dict[str, Callable[[], str]] = {
    # The session deny of `rotator revoke`, on the user and on every role it assumed (the same document).
    "generated:session-deny": lambda: session_deny_document(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    # The deny on a role whose sessions the key assumed is this same document (rotator.incident.sessions puts
    # session_deny_document on users and roles alike), so "generated:session-deny" judges both.
    # plan-oidc: the role's trust policy, and each permissions policy it puts on the role (the user's, copied).
    "generated:oidc-trust-plan": lambda: sample_oidc_plan().resources.trust_policy,
    "generated:oidc-permissions-plan": lambda: dict(sample_oidc_plan().resources.permissions.inline_policies)[
        "deploy-artifacts"],
    "generated:oidc-trust-branch": lambda: json.dumps(trust_policy(
        GITLAB_PROVIDER, "gitlab.example.com", "https://gitlab.example.com",
        subject_patterns(["payments/api"], ["main"], []))),
    "generated:oidc-trust-tag-pattern": lambda: json.dumps(trust_policy(
        GITLAB_PROVIDER, "gitlab.example.com", "https://gitlab.example.com",
        subject_patterns(["payments/api", "payments/worker"], ["main"], ["v*"]))),
}


def judged_policies() -> list[str]:
    return [path.name for path in policy_files()] + list(GENERATED)


def document_text(name: str) -> str:
    return GENERATED[name]() if name in GENERATED else (DEPLOY / name).read_text()


@functools.cache
def all_parliament_findings() -> tuple[Finding, ...]:
    return tuple(f for name in judged_policies() for f in parliament_findings(name, document_text(name)))


@pytest.mark.parametrize("name", judged_policies())
def test_parliament_finds_nothing_beyond_the_accepted_findings(name: str) -> None:
    assert unaccepted(parliament_findings(name, document_text(name))) == []


def test_parliament_really_judges() -> None:
    """The same run over an allow-everything inline policy finds what it must, so a silent judge cannot pass."""
    admin = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:PutUserPolicy", "iam:CreateAccessKey"], "Resource": "*"}]})
    ids = {f.finding for f in parliament_findings("probe", admin)}
    assert {"PRIVILEGE_ESCALATION/PutUserPolicy", "PRIVILEGE_ESCALATION/CreateAccessKey"} <= ids


def test_every_accepted_parliament_finding_is_still_found() -> None:
    assert [row.finding for row in stale("parliament", all_parliament_findings())] == []


def identity_documents() -> dict[str, dict[str, Any]]:
    return {path.name: load(path) for path in policy_files() if not is_trust_policy(load(path))}


@pytest.mark.parametrize("name", sorted(identity_documents()))
def test_cloudsplaining_finds_no_escalation_beyond_creating_the_managed_users_keys(name: str) -> None:
    document = identity_documents()[name]
    # Default mode trusts ARN scoping and conditions: nothing at all.
    assert cloudsplaining_escalations(name, document, strict=False) == []
    # --flag-all-risky-actions: only what ACCEPTED-FINDINGS.md accepts (CreateAccessKey on the managed users).
    assert unaccepted(cloudsplaining_escalations(name, document, strict=True)) == []


def test_cloudsplaining_really_judges_and_every_accepted_finding_is_still_found() -> None:
    probe = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:PutUserPolicy",
                                                     "Resource": "arn:aws:iam::*:user/ci/*"}]}
    assert [f.finding for f in cloudsplaining_escalations("probe", probe, strict=True)] == [
        "PrivilegeEscalation/PutUserPolicy"]
    found = [f for name, document in identity_documents().items()
             for f in cloudsplaining_escalations(name, document, strict=True)]
    assert [row.finding for row in stale("cloudsplaining", found)] == []
