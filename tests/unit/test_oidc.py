"""plan-oidc's generated trust policy, evaluated the way IAM evaluates StringEquals / StringLike; the CI
snippet; and retire-credential's order of steps and refusals, against fakes of its ports."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from rotator.domain import CiVariable, CredentialSpec, Event, KeyStatus, ScopeKind, TargetSpec, VarRef
from rotator.errors import AwsNotFound, LeaseBusy, RotatorError, UsageError
from rotator.oidc.plan import OidcRequest, build_plan, plan_files, subject_patterns
from rotator.oidc.ports import OidcResources, UserPermissions
from rotator.oidc.retire_credential import NotProven, RetirePorts, retire_credential
from tests.unit.fakes import T0, FakeClock, FakeIam, FakeStore

GITLAB = "https://gitlab.example.com"
PERMISSIONS = UserPermissions(("arn:aws:iam::aws:policy/ReadOnlyAccess",),
                              (("deploy", '{"Version": "2012-10-17", "Statement": []}'),))


def _like(pattern: str, value: str) -> bool:
    """IAM StringLike: '*' any run of characters (':' and '/' included), '?' one character, case-sensitive."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


OPERATORS = {"StringEquals": lambda pattern, value: pattern == value, "StringLike": _like}


def allows(policy: dict[str, Any], claims: dict[str, str], *, action: str = "sts:AssumeRoleWithWebIdentity",
           federated: str | None = None) -> bool:
    """A tiny IAM evaluator for trust policies: every operator and every key must hold (AND); a list of
    values for one key is an OR; a claim the token lacks fails its condition."""
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow" or statement["Action"] != action:
            continue
        if federated is not None and statement["Principal"].get("Federated") != federated:
            continue
        if all(key in claims and any(OPERATORS[op](v, claims[key]) for v in
                                     (values if isinstance(values, list) else [values]))
               for op, block in statement.get("Condition", {}).items() for key, values in block.items()):
            return True
    return False


def spec(*targets: TargetSpec) -> CredentialSpec:
    return CredentialSpec("payments-deploy", "ci-payments", targets=targets or (
        TargetSpec(ScopeKind.PROJECT, "payments/api"),))


def plan_for(credential: CredentialSpec, **options: Any) -> Any:
    return build_plan(OidcRequest(credential=credential, gitlab_url=GITLAB, account_id="111122223333",
                                  permissions=PERMISSIONS, **options))


def claims(project: str, ref: str, ref_type: str = "branch", aud: str = GITLAB) -> dict[str, str]:
    return {"gitlab.example.com:aud": aud,
            "gitlab.example.com:sub": f"project_path:{project}:ref_type:{ref_type}:ref:{ref}"}


def test_trust_policy_is_valid_json_and_admits_only_the_project_on_protected_refs() -> None:
    plan = plan_for(spec(), refs=("main", "release"))
    policy = json.loads(plan_files(plan, _request())["trust-policy.json"])
    assert policy == plan.trust_policy
    provider = "arn:aws:iam::111122223333:oidc-provider/gitlab.example.com"
    assert policy["Statement"][0]["Principal"] == {"Federated": provider}
    assert allows(policy, claims("payments/api", "main"), federated=provider)
    assert allows(policy, claims("payments/api", "release"))
    assert not allows(policy, claims("payments/api", "feature-x"))  # an unprotected branch
    assert not allows(policy, claims("payments/api", "main", ref_type="tag"))
    assert not allows(policy, claims("payments/api-evil", "main"))
    assert not allows(policy, claims("payments/other", "main"))
    assert not allows(policy, claims("payments/api", "main", aud="https://evil.example"))
    assert not allows(policy, {"gitlab.example.com:aud": GITLAB})  # no sub claim at all
    assert not allows(policy, claims("payments/api", "main"), action="sts:AssumeRole")


def test_group_targets_admit_projects_below_the_group_only() -> None:
    plan = plan_for(spec(TargetSpec(ScopeKind.GROUP, "platform")), tags=("v*",))
    policy = plan.trust_policy
    assert "StringLike" in policy["Statement"][0]["Condition"]
    assert allows(policy, claims("platform/tools", "main"))
    assert allows(policy, claims("platform/sub/deep", "main"))
    assert allows(policy, claims("platform/tools", "v1.2.3", ref_type="tag"))
    assert not allows(policy, claims("platform-other/tools", "main"))
    assert not allows(policy, claims("platform/tools", "feature", ref_type="branch"))
    assert not allows(policy, claims("platform/tools", "release-1", ref_type="tag"))


def test_a_wildcard_never_lets_one_claim_field_spill_into_the_next() -> None:
    [pattern] = subject_patterns(["platform/*"], ["main"], [])
    # Nothing in a path or a ref can contain ':', so the '*' cannot swallow ":ref_type:branch:ref:...".
    forged = "project_path:platform/x:ref_type:branch:ref:feature"
    assert not _like(pattern, forged)
    assert fnmatch.fnmatchcase("project_path:platform/x:ref_type:branch:ref:main", pattern)
    with pytest.raises(UsageError, match="not a branch name"):
        subject_patterns(["p/q"], ["main:ref_type:tag"], [])
    with pytest.raises(UsageError, match="no ref"):
        subject_patterns(["p/q"], [], [])


def test_instance_targets_need_explicit_projects() -> None:
    instance = spec(TargetSpec(ScopeKind.INSTANCE, None))
    with pytest.raises(UsageError, match="instance-level target"):
        plan_for(instance)
    plan = plan_for(instance, projects=("ops/deployer",))
    assert allows(plan.trust_policy, claims("ops/deployer", "main"))


def test_ci_snippet_uses_id_tokens_and_blanks_the_static_pair() -> None:
    credential = spec(TargetSpec(ScopeKind.PROJECT, "payments/api", access_key_id_var="DEPLOY_AWS_ACCESS_KEY_ID",
                                 secret_access_key_var="DEPLOY_AWS_SECRET_ACCESS_KEY"))
    plan = plan_for(credential, environment="production")
    snippet = plan.ci_snippet
    assert "id_tokens:" in snippet and f"aud: {GITLAB}" in snippet
    assert "$CI_JOB_JWT" not in snippet and "${CI_JOB_JWT" not in snippet
    assert f"AWS_ROLE_ARN: {plan.role_arn}" in snippet and "AWS_WEB_IDENTITY_TOKEN_FILE" in snippet
    assert 'DEPLOY_AWS_ACCESS_KEY_ID: ""' in snippet and 'DEPLOY_AWS_SECRET_ACCESS_KEY: ""' in snippet
    assert "environment: production" in snippet and '$CI_COMMIT_REF_PROTECTED == "true"' in snippet


def test_thumbprints_are_optional_and_validated() -> None:
    plan = plan_for(spec())
    assert "ThumbprintList" not in plan.provider_request
    assert plan.provider_request == {"Url": GITLAB, "ClientIDList": [GITLAB]}
    pinned = plan_for(spec(), thumbprints=("A" * 40,))
    assert pinned.provider_request["ThumbprintList"] == ["a" * 40]
    with pytest.raises(UsageError, match="thumbprint"):
        plan_for(spec(), thumbprints=("xyz",))


def test_an_http_gitlab_is_warned_about() -> None:
    plan = build_plan(OidcRequest(credential=spec(), gitlab_url="http://127.0.0.1:8080", account_id="111122223333",
                                  permissions=PERMISSIONS))
    assert any("not https" in warning for warning in plan.warnings)
    assert plan.provider_host == "127.0.0.1:8080"


def _request() -> OidcRequest:
    return OidcRequest(credential=spec(), gitlab_url=GITLAB, account_id="111122223333", permissions=PERMISSIONS)


# --- retire-credential ------------------------------------------------------------------------------------


@dataclass
class FakeVariables:
    present: set[str] = field(default_factory=set)
    order: list[str] = field(default_factory=list)

    def get(self, ref: VarRef) -> CiVariable | None:
        return CiVariable(ref.key, "v") if ref.key in self.present else None

    def delete(self, ref: VarRef) -> bool:
        self.order.append(f"delete {ref.key}")
        if ref.key in self.present:
            self.present.remove(ref.key)
            return True
        return False


@dataclass
class FakeOidc:
    used: Any = T0

    def user_permissions(self, user_name: str) -> UserPermissions:
        return PERMISSIONS

    def apply(self, resources: OidcResources) -> list[str]:
        return []

    def role_last_used(self, role_name: str) -> Any:
        if self.used == "missing":
            raise AwsNotFound(f"no role {role_name}", code="NoSuchEntity")
        return self.used


def retire_world(used: Any = T0) -> tuple[RetirePorts, FakeVariables, FakeIam, FakeStore]:
    clock = FakeClock()
    iam = FakeIam(clock)
    iam.add_user("ci-payments", keys=2)
    variables = FakeVariables({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})
    store = FakeStore()
    return RetirePorts(variables, iam, FakeOidc(used), store, clock, "test"), variables, iam, store


def run_retire(ports: RetirePorts, **options: Any) -> Any:
    return retire_credential(spec(), ports, role_name="gitlab-oidc-payments-deploy", holder="me",
                             lease_ttl=timedelta(minutes=2), **options)


def test_a_key_iam_still_lists_active_after_its_deactivation_is_named_not_counted() -> None:
    ports, _, iam, _ = retire_world()

    def never_takes_effect() -> None:  # UpdateAccessKey is accepted; ListAccessKeys keeps listing Active
        for key_id in iam.key_ids("ci-payments"):
            iam.key(key_id).status = KeyStatus.ACTIVE

    iam.fail["ListAccessKeys"] = never_takes_effect
    result = run_retire(ports)
    assert result.deactivated == [] and sorted(result.still_active) == sorted(iam.key_ids("ci-payments"))
    assert sum("still shows Active after UpdateAccessKey (5 reads of ListAccessKeys)" in s for s in result.steps) == 2


def test_retire_deletes_variables_before_deactivating_keys() -> None:
    ports, variables, iam, store = retire_world()
    iam.calls.clear()
    result = run_retire(ports)
    assert variables.present == set() and variables.order == ["delete AWS_SECRET_ACCESS_KEY",
                                                              "delete AWS_ACCESS_KEY_ID"]
    assert {k.status.value for k in iam.list_access_keys("ci-payments")} == {"Inactive"}
    assert iam.calls.count("UpdateAccessKey") == 2 and "DeleteAccessKey" not in iam.calls  # kept as Inactive
    assert len(result.deactivated) == 2 and len(result.deleted) == 2 and result.still_active == []
    assert all("Inactive (verified with ListAccessKeys)" in s for s in result.steps if s.startswith("deactivated"))
    events: list[Event] = store.events("payments-deploy")
    assert events[0].action == "retire_credential" and set(events[0].key_ids) == set(result.deactivated)
    assert store.lease_holder("credential:payments-deploy") is None  # released


def test_retire_dry_run_changes_nothing() -> None:
    ports, variables, iam, store = retire_world()
    iam.calls.clear()
    result = run_retire(ports, dry_run=True)
    assert variables.order == [] and "UpdateAccessKey" not in iam.calls and store.events() == []
    assert any(step.startswith("would delete") for step in result.steps)
    assert any(step.startswith("would deactivate") for step in result.steps)


@pytest.mark.parametrize("used", [None, "missing"])
def test_retire_refuses_without_a_proven_role(used: Any) -> None:
    ports, variables, iam, _ = retire_world(used)
    with pytest.raises(NotProven):
        run_retire(ports)
    assert variables.order == [] and all(k.status.value == "Active" for k in iam.list_access_keys("ci-payments"))
    run_retire(ports, skip_role_check=True)
    assert variables.present == set()


def test_retire_refuses_during_a_rotation_or_when_the_lease_is_held() -> None:
    from rotator.domain import Journal, Phase

    ports, variables, _, store = retire_world()
    store.save_journal(Journal("r1", "payments-deploy", "default", "ci-payments", "AIDA", (), None, Phase.CREATED,
                               T0, T0))
    with pytest.raises(RotatorError, match="unfinished rotation"):
        run_retire(ports)
    ports, variables, _, store = retire_world()
    assert store.try_acquire_lease("credential:payments-deploy", "other", timedelta(minutes=2))
    with pytest.raises(LeaseBusy):
        run_retire(ports)
    assert variables.order == []
