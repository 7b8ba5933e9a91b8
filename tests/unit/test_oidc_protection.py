"""plan-oidc tells the truth: it trusts only refs GitLab protects (matched the way GitLab's RefMatcher matches
them), says plainly that AWS cannot enforce the environment, and its CI rule runs on tag pipelines when it
trusts tags. Against a fake of the ProtectedRefs port."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field

import pytest

from rotator.domain import CredentialSpec, ScopeKind, TargetSpec
from rotator.errors import ExitCode
from rotator.oidc.plan import OidcRequest, build_plan, ci_rule, plan_files
from rotator.oidc.ports import ProtectedRef, UserPermissions
from rotator.oidc.protection import (
    UnprotectedRefs,
    gitlab_ref_matches,
    protection_warnings,
    ref_protection,
    require_protected,
)

GITLAB = "https://gitlab.example.com"
PERMISSIONS = UserPermissions(("arn:aws:iam::aws:policy/ReadOnlyAccess",))


@dataclass
class FakeProtectedRefs:
    branches: dict[str, list[ProtectedRef]] = field(default_factory=dict)
    tags: dict[str, list[ProtectedRef]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def protected_branches(self, project: str) -> list[ProtectedRef]:
        self.calls.append(f"branches {project}")
        return self.branches.get(project, [])

    def protected_tags(self, project: str) -> list[ProtectedRef]:
        self.calls.append(f"tags {project}")
        return self.tags.get(project, [])


def _string_like(pattern: str, value: str) -> bool:
    """IAM StringLike, as the trust policy's sub is matched: '*' any run of characters."""
    return re.fullmatch(".*".join(re.escape(p) for p in pattern.split("*")), value, flags=re.DOTALL) is not None


# --- GitLab's matcher -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("protected", "ref", "expected"), [
    ("main", "main", True),
    ("main", "main2", False),
    ("main", "Main", False),  # case-sensitive
    ("v*", "v1.2", True),  # a wildcard protected tag covers v1.2
    ("v*", "v", True),
    ("v*", "xv1", False),  # anchored at the start
    ("release/*", "release/1/2", True),  # '*' crosses '/'
    ("*-stable", "1-0-stable", True),
    ("*-stable", "1-0-stable-x", False),  # anchored at the end
    ("*", "anything/at/all", True),
    ("", "main", False),
])
def test_refs_match_protected_names_as_gitlabs_ref_matcher_does(protected: str, ref: str, expected: bool) -> None:
    assert gitlab_ref_matches(protected, ref) is expected


@pytest.mark.parametrize(("protected", "trusted", "covered"), [
    ("v*", "v*", True),
    ("*", "release/*", True),
    ("release/*", "release/*-hotfix", True),
    ("release/*", "*", False),
    ("v1", "v*", False),  # an exact protected name covers no pattern
    ("v*", "*", False),
    ("*b", "a*", False),
])
def test_a_protected_pattern_covers_a_trusted_pattern_only_when_it_covers_every_ref_it_admits(
        protected: str, trusted: str, covered: bool) -> None:
    assert gitlab_ref_matches(protected, trusted) is covered


def test_the_cover_test_is_sound_every_ref_a_covered_pattern_admits_is_protected() -> None:
    """Exhaustively over short patterns and refs of a small alphabet: whenever the protected pattern accepts
    the trusted pattern's text, it accepts every ref the trusted pattern admits."""
    alphabet = "ab/"
    patterns = ["".join(p) for n in range(4) for p in itertools.product(alphabet + "*", repeat=n)]
    refs = ["".join(r) for n in range(5) for r in itertools.product(alphabet, repeat=n)]
    checked = 0
    for protected, trusted in itertools.product(patterns, patterns):
        if protected and gitlab_ref_matches(protected, trusted):
            for ref in refs:
                if _string_like(trusted, ref):
                    assert gitlab_ref_matches(protected, ref), (protected, trusted, ref)
                    checked += 1
    assert checked > 1000


# --- judging a plan's refs ------------------------------------------------------------------------------


def test_each_trusted_ref_is_judged_against_its_projects_protected_refs() -> None:
    gitlab = FakeProtectedRefs(
        branches={"payments/api": [ProtectedRef("main", (40,)), ProtectedRef("release/*", (30, 40))]},
        tags={"payments/api": [ProtectedRef("v*", (40,))]})
    verdicts = ref_protection(["payments/api", "payments/worker"], ["main", "release/*", "feature-x"], ["v*"], gitlab)
    by_label = {v.label: v for v in verdicts}
    assert by_label["payments/api: branch main"].protected_by == ("main",)
    assert not by_label["payments/api: branch main"].developers_may_write
    assert by_label["payments/api: branch release/*"].developers_may_write
    assert by_label["payments/api: tag v*"].protected_by == ("v*",)
    assert by_label["payments/api: branch feature-x"].problem == \
        "no protected branch of payments/api covers branch feature-x"
    assert not by_label["payments/worker: branch main"].protected  # another project protects nothing
    assert by_label["payments/worker: tag v*"].problem == "no protected tag of payments/worker covers every tag " \
                                                          "matching v*"
    assert gitlab.calls == ["branches payments/api", "tags payments/api", "branches payments/worker",
                            "tags payments/worker"]


def test_tags_are_read_only_when_tags_are_trusted_and_group_patterns_cannot_be_verified() -> None:
    gitlab = FakeProtectedRefs(branches={"p/q": [ProtectedRef("main")]})
    ref_protection(["p/q"], ["main"], [], gitlab)
    assert gitlab.calls == ["branches p/q"]
    [verdict] = ref_protection(["platform/*"], ["main"], [], gitlab)
    assert not verdict.protected and "including projects created later" in (verdict.problem or "")
    assert gitlab.calls == ["branches p/q"]  # nothing to ask about projects that may not exist yet


def test_an_unprotected_ref_is_refused_naming_it_unless_allowed() -> None:
    gitlab = FakeProtectedRefs(branches={"payments/api": [ProtectedRef("main", (40,))]})
    verdicts = ref_protection(["payments/api"], ["main", "feature-x"], ["v*"], gitlab)
    with pytest.raises(UnprotectedRefs) as refused:
        require_protected(verdicts, allow_unprotected=False)
    assert refused.value.exit_code == ExitCode.FAILED
    message = str(refused.value)
    assert "branch feature-x" in message and "tag" in message and "v*" in message and "branch main" not in message
    assert "--allow-unprotected" in message
    require_protected(verdicts, allow_unprotected=True)  # allowed: no refusal...
    warnings = protection_warnings(verdicts)  # ...but the plan says it
    assert [w for w in warnings if w.startswith("NOT PROTECTED")] == [
        "NOT PROTECTED, trusted because of --allow-unprotected: no protected branch of payments/api covers branch "
        "feature-x",
        "NOT PROTECTED, trusted because of --allow-unprotected: no protected tag of payments/api covers every tag "
        "matching v*"]
    require_protected([v for v in verdicts if v.protected], allow_unprotected=False)


def test_a_protected_tag_developers_may_create_is_warned_about() -> None:
    gitlab = FakeProtectedRefs(tags={"p/q": [ProtectedRef("v*", (30,))]})
    [warning] = protection_warnings(ref_protection(["p/q"], [], ["v*"], gitlab))
    assert warning.startswith("p/q: tag v* is protected (v*), but the Developer role may create it")


# --- what the plan says and generates -------------------------------------------------------------------


def _plan(**options: object) -> object:
    credential = CredentialSpec("payments-deploy", "ci-payments", targets=(TargetSpec(ScopeKind.PROJECT,
                                                                                      "payments/api"),))
    request = OidcRequest(credential=credential, gitlab_url=GITLAB, account_id="111122223333",
                          permissions=PERMISSIONS, **options)  # type: ignore[arg-type]
    return build_plan(request), request


def test_the_plan_says_plainly_that_aws_cannot_enforce_the_environment() -> None:
    gitlab = FakeProtectedRefs(branches={"payments/api": [ProtectedRef("main", (40,))]})
    protection = tuple(ref_protection(["payments/api"], ["main"], [], gitlab))
    plan, request = _plan(environment="production", protection=protection)
    files = plan_files(plan, request)  # type: ignore[arg-type]
    trust = json.loads(files["trust-policy.json"])
    [statement] = trust["Statement"]
    assert statement["Sid"] == "GitLabProjectAndRefOnlyAwsCannotCheckTheEnvironment"
    keys = {key for block in statement["Condition"].values() for key in block}
    assert keys == {"gitlab.example.com:aud", "gitlab.example.com:sub"}  # nothing about an environment
    assert "AWS cannot check the GitLab environment" in json.loads(files["role.json"])["Description"]
    readme = files["README.md"]
    assert "**AWS cannot enforce the environment**" in readme
    assert "protected environment" in readme and "deployment approvals" in readme
    assert "`environment: production` included" in readme
    assert "- payments/api: branch main: protected by `main`" in readme
    snippet = plan.ci_snippet  # type: ignore[attr-defined]
    assert "  environment: production" in snippet and "AWS does not check the environment" in snippet


def _runs(rule: str, env: dict[str, str]) -> bool:
    """GitLab's `rules:if` for the operators the snippet uses: == on strings, =~ on /RE2/ (a missing variable
    matches nothing), && and || with parentheses (GitLab docs, "CI/CD variable expressions")."""
    def equals(match: re.Match[str]) -> str:
        return repr(env.get(match[1], "") == match[2] and match[1] in env)

    def matches(match: re.Match[str]) -> str:
        value = env.get(match[1])
        return repr(value is not None and re.search(match[2].replace("\\/", "/"), value) is not None)

    python = re.sub(r'\$(\w+) == "([^"]*)"', equals, rule)
    python = re.sub(r"\$(\w+) =~ /((?:\\/|[^/])*)/", matches, python)
    python = python.replace("&&", " and ").replace("||", " or ")
    assert re.fullmatch(r"[\sA-Za-z()]*", python), python  # nothing left unevaluated
    return bool(eval(python))  # only True, False, and, or and parentheses are left: checked above


def test_a_tag_plan_runs_on_tag_pipelines_of_the_trusted_tags_only() -> None:
    plan, _ = _plan(refs=("main",), tags=("v*",))
    rule_line = next(line for line in plan.ci_snippet.splitlines() if "- if:" in line)  # type: ignore[attr-defined]
    rule = rule_line.split("'")[1]
    assert "$CI_COMMIT_TAG =~ /^v.*$/" in rule
    tag_pipeline = {"CI_COMMIT_REF_PROTECTED": "true", "CI_COMMIT_TAG": "v1.2"}  # no CI_COMMIT_BRANCH for tags
    assert _runs(rule, tag_pipeline)
    assert not _runs(rule, {**tag_pipeline, "CI_COMMIT_TAG": "release-1"})
    assert not _runs(rule, {**tag_pipeline, "CI_COMMIT_REF_PROTECTED": "false"})
    assert _runs(rule, {"CI_COMMIT_REF_PROTECTED": "true", "CI_COMMIT_BRANCH": "main"})
    assert not _runs(rule, {"CI_COMMIT_REF_PROTECTED": "true", "CI_COMMIT_BRANCH": "feature"})


@pytest.mark.parametrize(("refs", "tags"), [(("release/*",), ()), (("main",), ("v1.*", "*-rc")), ((), ("*",))])
def test_the_ci_rule_admits_exactly_what_the_trust_policy_admits(refs: tuple[str, ...], tags: tuple[str, ...]) -> None:
    rule = ci_rule(refs, tags)
    for name in ["main", "release/1.0", "release", "releaseX1.0", "v1.2", "v12", "2.0-rc", "2.0-rc1", "x"]:
        for variable, trusted in (("CI_COMMIT_BRANCH", refs), ("CI_COMMIT_TAG", tags)):
            env = {"CI_COMMIT_REF_PROTECTED": "true", variable: name}
            assert _runs(rule, env) is any(_string_like(t, name) for t in trusted), (rule, variable, name)
