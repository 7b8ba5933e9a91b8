"""`rotator plan-oidc`: the way off static keys. Pure generation, no I/O.

For one tracked credential this builds:

- the IAM OIDC identity provider for the GitLab URL (issuer = the GitLab URL, client id = the audience);
- a role whose trust policy allows ``sts:AssumeRoleWithWebIdentity`` only for GitLab ID tokens whose
  ``aud`` is the audience and whose ``sub`` names the credential's project(s) and protected refs:
  ``project_path:GROUP/PROJECT:ref_type:branch:ref:main`` (GitLab's format);
- the same permissions as the IAM user (its managed and inline policies, and its groups', and its
  permissions boundary), read from IAM by the adapter;
- the ``.gitlab-ci.yml`` snippet using ``id_tokens`` (CI_JOB_JWT_V2 was removed in GitLab 17.0).

Why only ``aud`` and ``sub``: for a generic OIDC provider IAM evaluates no other claim of the token, so
GitLab's ``environment`` / ``ref_protected`` claims cannot be conditions. Protected refs are named in
``sub`` (only branches the project protects should be listed), and the environment is enforced by GitLab
(a protected environment on the job the snippet defines); the README of the plan says so.

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
    environment: str | None = None
    projects: tuple[str, ...] = ()  # override the project paths taken from the targets
    role_name: str | None = None
    thumbprints: tuple[str, ...] = ()


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

    @property
    def provider_request(self) -> dict[str, Any]:
        """The CreateOpenIDConnectProvider input."""
        request: dict[str, Any] = {"Url": self.provider_url, "ClientIDList": [self.audience]}
        if self.thumbprints:
            request["ThumbprintList"] = list(self.thumbprints)
        return request

    @property
    def description(self) -> str:
        return f"GitLab CI OIDC role replacing the static key of credential {self.credential}"[:1000]

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
            "Sid": "GitLabCiOidc",
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
    plan = OidcPlan(
        credential=spec.name, provider_url=issuer, provider_host=host, provider_arn=provider_arn, audience=audience,
        thumbprints=tuple(t.lower() for t in request.thumbprints), role_name=role_name, role_arn=role_arn,
        subjects=subjects, trust_policy=trust_policy(provider_arn, host, audience, subjects),
        permissions=request.permissions, ci_snippet="", warnings=tuple(warnings))
    return replace(plan, ci_snippet=ci_snippet(plan, request))


def ci_snippet(plan: OidcPlan, request: OidcRequest) -> str:
    """A .gitlab-ci.yml fragment: an ID token with our audience, written to a file the AWS SDKs and CLI read
    (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), so no credential ever appears in a job's environment."""
    spec = request.credential
    blanked = sorted({t.access_key_id_var for t in spec.targets} | {t.secret_access_key_var for t in spec.targets})
    branch_rule = " || ".join(f'$CI_COMMIT_BRANCH == "{r}"' for r in request.refs if "*" not in r)
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
        lines.append(f"  environment: {request.environment}  # make it a protected environment in GitLab")
    lines.append("  rules:")
    rule = '$CI_COMMIT_REF_PROTECTED == "true"' + (f" && ({branch_rule})" if branch_rule else "")
    lines.append(f"    - if: '{rule}'")
    lines += ["  script:", "    - aws sts get-caller-identity  # proves the role works; replace with the real job"]
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
        "4. Add `gitlab-ci.yml` to the project's pipeline and run it on a protected branch.",
        f"5. Once a pipeline succeeded with the role: `rotator retire-credential {spec.name}` deletes the "
        "GitLab variables and deactivates the user's keys; then remove the credential from the config.",
        "",
        "Apply steps 1-3 with `rotator plan-oidc --apply` (idempotent), or with your own tooling from the JSON.",
        "",
        "## Why only `aud` and `sub`",
        "For a generic OIDC provider IAM evaluates no other token claim, so GitLab's `environment` and "
        "`ref_protected` claims cannot be conditions. List only protected branches with `--ref`, and make the "
        "job's environment a protected environment in GitLab.",
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
