"""`rotator plan-oidc`: the way off static keys. Pure generation, no I/O.

For one tracked credential this builds:

- the IAM OIDC identity provider for the GitLab URL (issuer = the GitLab URL, client id = the audience);
- a role whose trust policy allows ``sts:AssumeRoleWithWebIdentity`` only for GitLab ID tokens whose
  ``aud`` is the audience and whose ``sub`` names the credential's project(s) and protected refs:
  ``project_path:GROUP/PROJECT:ref_type:branch:ref:main`` (GitLab's default ``sub``, docs.gitlab.com
  ci/secrets/id_token_authentication);
- the same permissions as the IAM user (its managed and inline policies, and its groups', and its
  permissions boundary), read from IAM by the adapter;
- the ``.gitlab-ci.yml`` snippet using ``id_tokens`` (CI_JOB_JWT_V2 was removed in GitLab 17.0), whose rule
  runs the job on the trusted branches (``$CI_COMMIT_BRANCH``) and tags (``$CI_COMMIT_TAG``, set only in tag
  pipelines: docs.gitlab.com ci/variables/predefined_variables).

What AWS can enforce: for an OIDC provider other than the few it knows (Cognito, Google, Facebook, Amazon),
IAM's condition keys are the token's ``aud`` and ``sub`` only (IAM User Guide, "Available keys for AWS web
identity federation"), so GitLab's ``environment``, ``ref_protected`` or ``deployment_tier`` claims cannot be
conditions. GitLab's default ``sub`` is ``project_path:…:ref_type:…:ref:…``: it has no environment
component, so **the environment is not enforced by AWS**. The trust policy pins project, ref type and ref;
that the ref is protected is checked against GitLab before the plan is made (rotator.oidc.protection); who
may deploy to an environment is GitLab's to enforce, with a protected environment and deployment approvals
(Premium). A project that changed its ``sub`` components (``ci_id_token_sub_claim_components``, GitLab
17.10) gets tokens this trust policy never matches.

Thumbprints: CreateOpenIDConnectProvider takes ThumbprintList, but it is optional: without it IAM fetches
the thumbprint of the top intermediate CA of the provider's certificate itself, and for providers whose
certificate chains to a CA that AWS trusts (as gitlab.com's does) IAM no longer uses thumbprints at all.
So the plan sends none unless the operator pins one with ``--thumbprint`` (the README shows how to compute
it with openssl for a GitLab behind a private CA).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from rotator.domain import CredentialSpec, ScopeKind
from rotator.errors import UsageError
from rotator.oidc.ports import OidcResources, UserPermissions
from rotator.oidc.protection import RefProtection, protection_warnings

GIT_REF = re.compile(r"[\w./*-]+")  # what we accept as a branch name or tag pattern (no ':' can appear)
THUMBPRINT = re.compile(r"[0-9a-fA-F]{40}")
ROLE_NAME_MAX = 64


@dataclass(frozen=True)
class OidcRequest:
    credential: CredentialSpec
    gitlab_url: str
    account_id: str
    permissions: UserPermissions
    region: str = "us-east-1"
    partition: str = "aws"
    audience: str | None = None  # default: the GitLab URL
    refs: tuple[str, ...] = ("main",)  # protected branches allowed to assume the role
    tags: tuple[str, ...] = ()  # protected tag patterns (e.g. "v*") allowed too
    environment: str | None = None  # only the CI job's `environment:` keyword: AWS cannot check it
    projects: tuple[str, ...] = ()  # override the project paths taken from the targets
    role_name: str | None = None
    thumbprints: tuple[str, ...] = ()
    protection: tuple[RefProtection, ...] = ()  # what GitLab says about each trusted ref (rotator.oidc.protection)


@dataclass(frozen=True)
class OidcPlan:
    credential: str
    provider_url: str
    provider_host: str  # the condition-key prefix, e.g. "gitlab.example.com"
    provider_arn: str
    audience: str
    thumbprints: tuple[str, ...]
    role_name: str
    role_arn: str
    subjects: tuple[str, ...]
    trust_policy: dict[str, Any]
    permissions: UserPermissions
    ci_snippet: str
    warnings: tuple[str, ...] = field(default_factory=tuple)
    protection: tuple[RefProtection, ...] = ()

    @property
    def provider_request(self) -> dict[str, Any]:
        """The CreateOpenIDConnectProvider input."""
        request: dict[str, Any] = {"Url": self.provider_url, "ClientIDList": [self.audience]}
        if self.thumbprints:
            request["ThumbprintList"] = list(self.thumbprints)
        return request

    @property
    def description(self) -> str:
        return (f"GitLab CI OIDC role replacing the static key of credential {self.credential}. Trusts the ID "
                "token's sub (project, ref type, ref) and aud only: AWS cannot check the GitLab environment; "
                "protect it in GitLab")[:1000]

    @property
    def resources(self) -> OidcResources:
        return OidcResources(provider_url=self.provider_url, audience=self.audience, thumbprints=self.thumbprints,
                             role_name=self.role_name, trust_policy=json.dumps(self.trust_policy, indent=2),
                             description=self.description, permissions=self.permissions,
                             tags=(("rotator:credential", self.credential),))

    @property
    def role_request(self) -> dict[str, Any]:
        """The CreateRole input."""
        request: dict[str, Any] = {
            "RoleName": self.role_name, "AssumeRolePolicyDocument": json.dumps(self.trust_policy, indent=2),
            "Description": self.description,
            "MaxSessionDuration": 3600,
            "Tags": [{"Key": "rotator:credential", "Value": self.credential}],
        }
        if self.permissions.boundary_arn:
            request["PermissionsBoundary"] = self.permissions.boundary_arn
        return request


def provider_host(issuer: str) -> str:
    """The IAM provider name and condition-key prefix: the issuer URL without its scheme."""
    parts = urlsplit(issuer)
    return (parts.netloc + parts.path).rstrip("/")


def project_paths(spec: CredentialSpec, override: Sequence[str] = ()) -> tuple[str, ...]:
    """Which projects' pipelines may assume the role: the credential's project targets; every project
    below a group target (``group/*``); an instance target needs --project (it reaches every project)."""
    if override:
        return tuple(dict.fromkeys(override))
    paths: list[str] = []
    for target in spec.targets:
        if target.kind is ScopeKind.INSTANCE:
            raise UsageError(f"credential {spec.name} has an instance-level target, which every project reads",
                             hint="name the projects that really use the key with --project PATH (repeatable)")
        assert target.path is not None
        paths.append(target.path if target.kind is ScopeKind.PROJECT else f"{target.path}/*")
    return tuple(dict.fromkeys(paths))


def subject_patterns(projects: Sequence[str], refs: Sequence[str], tags: Sequence[str]) -> tuple[str, ...]:
    """GitLab's ``sub`` claim values allowed: ``project_path:P:ref_type:branch:ref:R`` (and tags).

    A ``*`` never lets one field spill into the next: neither project paths nor git refs may contain ':'.
    """
    for ref in (*refs, *tags):
        if not GIT_REF.fullmatch(ref):
            raise UsageError(f"{ref!r} is not a branch name or tag pattern", hint="use names like main or v*")
    if not refs and not tags:
        raise UsageError("no ref may assume the role", hint="pass --ref BRANCH (a protected branch) or --tag PATTERN")
    subjects = [f"project_path:{p}:ref_type:branch:ref:{r}" for p in projects for r in refs]
    subjects += [f"project_path:{p}:ref_type:tag:ref:{t}" for p in projects for t in tags]
    return tuple(subjects)


def trust_policy(provider_arn: str, host: str, audience: str, subjects: Sequence[str]) -> dict[str, Any]:
    wildcard = any("*" in s or "?" in s for s in subjects)
    subject_values: str | list[str] = subjects[0] if len(subjects) == 1 else list(subjects)
    conditions: dict[str, dict[str, Any]] = {"StringEquals": {f"{host}:aud": audience}}
    conditions.setdefault("StringLike" if wildcard else "StringEquals", {})[f"{host}:sub"] = subject_values
    return {
        "Version": "2012-10-17",
        "Statement": [{
            # IAM sees only aud and sub, and GitLab's sub names no environment: the Sid says so to whoever
            # reads the role in the console.
            "Sid": "GitLabProjectAndRefOnlyAwsCannotCheckTheEnvironment",
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": conditions,
        }],
    }


def role_name_for(credential: str) -> str:
    return f"gitlab-oidc-{credential}"[:ROLE_NAME_MAX]


def build_plan(request: OidcRequest) -> OidcPlan:
    spec = request.credential
    issuer = request.gitlab_url.rstrip("/")
    host = provider_host(issuer)
    audience = request.audience or issuer
    for thumbprint in request.thumbprints:
        if not THUMBPRINT.fullmatch(thumbprint):
            raise UsageError(f"{thumbprint!r} is not a certificate thumbprint",
                             hint="a thumbprint is 40 hex digits: the SHA-1 of the top intermediate CA certificate")
    warnings: list[str] = []
    if urlsplit(issuer).scheme != "https":
        warnings.append(f"{issuer} is not https: AWS only accepts OIDC providers (and token issuers) on https")
    projects = project_paths(spec, request.projects)
    subjects = subject_patterns(projects, request.refs, request.tags)
    provider_arn = f"arn:{request.partition}:iam::{request.account_id}:oidc-provider/{host}"
    role_name = request.role_name or role_name_for(spec.name)
    role_arn = f"arn:{request.partition}:iam::{request.account_id}:role/{role_name}"
    if not request.permissions.managed_policy_arns and not request.permissions.inline_policies:
        warnings.append(f"IAM user {spec.iam_user} has no policies: the role would be allowed nothing")
    warnings += protection_warnings(request.protection)
    plan = OidcPlan(
        credential=spec.name, provider_url=issuer, provider_host=host, provider_arn=provider_arn, audience=audience,
        thumbprints=tuple(t.lower() for t in request.thumbprints), role_name=role_name, role_arn=role_arn,
        subjects=subjects, trust_policy=trust_policy(provider_arn, host, audience, subjects),
        permissions=request.permissions, ci_snippet="", warnings=tuple(warnings), protection=request.protection)
    return replace(plan, ci_snippet=ci_snippet(plan, request))


def ref_condition(variable: str, ref: str) -> str:
    """A `rules:if` test of one trusted name or pattern: equality, or an anchored RE2 pattern in which `*` is
    any run of characters, like the trust policy's StringLike (GitLab: "CI/CD variable expressions")."""
    if "*" not in ref:
        return f'{variable} == "{ref}"'
    pattern = "".join(".*" if c == "*" else "\\" + c if c in "./" else c for c in ref)
    return f"{variable} =~ /^{pattern}$/"


def ci_rule(refs: Sequence[str], tags: Sequence[str]) -> str:
    """The job runs on a protected ref the role trusts: a trusted branch ($CI_COMMIT_BRANCH, empty in tag
    pipelines) or a trusted tag ($CI_COMMIT_TAG, set only in tag pipelines)."""
    tests = [ref_condition("$CI_COMMIT_BRANCH", r) for r in refs] + [ref_condition("$CI_COMMIT_TAG", t) for t in tags]
    return '$CI_COMMIT_REF_PROTECTED == "true" && (' + " || ".join(tests) + ")"


def ci_snippet(plan: OidcPlan, request: OidcRequest) -> str:
    """A .gitlab-ci.yml fragment: an ID token with our audience, written to a file the AWS SDKs and CLI read
    (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), so no credential ever appears in a job's environment."""
    spec = request.credential
    blanked = sorted({t.access_key_id_var for t in spec.targets} | {t.secret_access_key_var for t in spec.targets})
    lines = [
        f"# Generated by `rotator plan-oidc {spec.name}`: assume {plan.role_name} with GitLab's ID token.",
        "# Needs GitLab >= 15.7 (id_tokens). CI_JOB_JWT_V2 no longer exists (removed in GitLab 17.0).",
        ".aws-oidc:",
        "  id_tokens:",
        "    AWS_ID_TOKEN:",
        f"      aud: {plan.audience}",
        "  variables:",
        f"    AWS_ROLE_ARN: {plan.role_arn}",
        '    AWS_WEB_IDENTITY_TOKEN_FILE: "${CI_BUILDS_DIR}/.aws-web-identity-token-${CI_JOB_ID}"',
        '    AWS_ROLE_SESSION_NAME: "gitlab-${CI_PROJECT_ID}-${CI_JOB_ID}"',
        f"    AWS_REGION: {request.region}",
        "    # The static pair still stored in CI/CD variables would win over the web identity in the AWS",
        "    # credential chain: blank it for these jobs until `rotator retire-credential` deletes it.",
        *(f'    {name}: ""' for name in blanked),
        "  before_script:",
        '    - printf "%s" "$AWS_ID_TOKEN" > "$AWS_WEB_IDENTITY_TOKEN_FILE"',
        "",
        "deploy:",
        "  extends: .aws-oidc",
    ]
    if request.environment:
        lines += ["  # AWS does not check the environment (the role trusts sub and aud only): make it a protected",
                  "  # environment with deployment approvals in GitLab, or anyone who can run this job deploys.",
                  f"  environment: {request.environment}"]
    lines += ["  rules:", f"    - if: '{ci_rule(request.refs, request.tags)}'",
              "  script:", "    - aws sts get-caller-identity  # proves the role works; replace with the real job"]
    return "\n".join(lines) + "\n"


def plan_readme(plan: OidcPlan, request: OidcRequest) -> str:
    spec = request.credential
    perms = plan.permissions
    lines = [
        f"# Moving credential `{spec.name}` (IAM user `{spec.iam_user}`) to GitLab OIDC",
        "",
        f"1. OIDC provider `{plan.provider_arn}` (`provider.json`): issuer `{plan.provider_url}`, "
        f"client id `{plan.audience}`.",
        f"2. Role `{plan.role_arn}` (`role.json`, trust policy in `trust-policy.json`): only GitLab ID tokens with "
        f"`aud` = `{plan.audience}` and `sub` one of:",
        *(f"   - `{s}`" for s in plan.subjects),
        "3. The user's permissions, granted to the role (`permissions.json`): "
        f"{len(perms.managed_policy_arns)} managed and {len(perms.inline_policies)} inline polic(ies)"
        + (f", permissions boundary `{perms.boundary_arn}`" if perms.boundary_arn else "") + ".",
        *(f"   - {note}" for note in perms.notes),
        "4. Add `gitlab-ci.yml` to the project's pipeline and run it on one of those protected refs.",
        f"5. Once a pipeline succeeded with the role: `rotator retire-credential {spec.name}` deletes the "
        "GitLab variables and deactivates the user's keys; then remove the credential from the config.",
        "",
        "Apply steps 1-3 with `rotator plan-oidc --apply` (idempotent), or with your own tooling from the JSON.",
        "",
        "## What AWS enforces, and what it cannot",
        "For an OIDC provider like GitLab, IAM evaluates only the token's `aud` and `sub` (IAM User Guide, "
        "\"Available keys for AWS web identity federation\"). GitLab's `sub` is "
        "`project_path:GROUP/PROJECT:ref_type:branch|tag:ref:NAME`: it names no environment. So **AWS cannot "
        "enforce the environment**: any pipeline of these projects on these refs can assume the role, whatever "
        "`environment:` its job declares"
        + (f" (the snippet's `environment: {request.environment}` included)." if request.environment else ".")
        + " To control who deploys, use GitLab: make the environment a protected environment (who may deploy) "
        "with deployment approvals (who must approve first); both are GitLab Premium features.",
        "",
        "## Protected refs",
        *_protection_lines(plan.protection),
        "",
        "## Thumbprint",
        "IAM takes ThumbprintList but no longer needs it: without one it fetches the thumbprint of the top "
        "intermediate CA itself, and ignores thumbprints for certificates that chain to a CA AWS trusts. "
        + ("This plan pins: " + ", ".join(plan.thumbprints) + "." if plan.thumbprints else
           "This plan sends none. For a GitLab behind a private CA, compute it and pass --thumbprint HEX: "
           "`openssl s_client -servername HOST -showcerts -connect HOST:443 </dev/null` → save the last "
           "certificate → `openssl x509 -in ca.pem -fingerprint -sha1 -noout` (drop the colons)."),
    ]
    if plan.warnings:
        lines += ["", "## Warnings", *(f"- {w}" for w in plan.warnings)]
    return "\n".join(lines) + "\n"


def _protection_lines(protection: Sequence[RefProtection]) -> list[str]:
    if not protection:
        return ["Not checked against GitLab."]
    lines = ["The trust policy admits only refs GitLab protects (checked when this plan was made):"]
    for verdict in protection:
        status = (f"protected by `{'`, `'.join(verdict.protected_by)}`" if verdict.protected
                  else f"**NOT protected**: {verdict.problem}")
        lines.append(f"- {verdict.label}: {status}")
    return lines


def plan_files(plan: OidcPlan, request: OidcRequest) -> dict[str, str]:
    """File name → content of everything `plan-oidc --output DIR` writes."""
    perms = plan.permissions
    return {
        "provider.json": json.dumps(plan.provider_request, indent=2) + "\n",
        "trust-policy.json": json.dumps(plan.trust_policy, indent=2) + "\n",
        "role.json": json.dumps({**plan.role_request, "AssumeRolePolicyDocument": plan.trust_policy}, indent=2) + "\n",
        "permissions.json": json.dumps({
            "AttachRolePolicy": list(perms.managed_policy_arns),
            "PutRolePolicy": [{"PolicyName": name, "PolicyDocument": json.loads(document)}
                              for name, document in perms.inline_policies],
            "PermissionsBoundary": perms.boundary_arn,
        }, indent=2) + "\n",
        "gitlab-ci.yml": plan.ci_snippet,
        "README.md": plan_readme(plan, request),
    }
