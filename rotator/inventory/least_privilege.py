"""Least privilege that holds, as `rotator check` verifies it in each managed account: every tracked CI user
(and every role whose sessions rotator may cut) carries the CI permissions boundary, and rotator's own
principal may do what rotator does. Pure judgement over what IAM answered; the reads are
``rotator.adapters.aws_least_privilege``.

It belongs to the inventory feature: like discovery, it is a read-only survey of what exists in the managed
accounts (here: the tracked users' and roles' boundaries, and what IAM's policy simulator says rotator's
principal may do), judged against the configuration, changing nothing.

Why the boundary matters (deploy/README.md, "No escalation beyond the union"): rotator's policies allow its
session-deny inline policy only on entities whose ``iam:PermissionsBoundary`` is ArnLike the CI boundary
pattern and not an AWS managed policy. An entity without it gets no session deny from `revoke`, and a leaked
key of it is not held back by the boundary's Deny of credential minting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

EntityKind = Literal["user", "role"]

# The name deploy/README.md gives the boundary policy when it creates it under the pattern's path.
BOUNDARY_POLICY_NAME = "ci-permissions-boundary"
# Never an AWS managed policy: the shipped policies add `ArnNotLike iam:PermissionsBoundary
# arn:aws:iam::aws:policy/*` to every grant, whatever the pattern (any partition here).
AWS_MANAGED_POLICIES = "arn:*:iam::aws:policy/*"

ALLOWED = "allowed"  # EvalDecision values of SimulatePrincipalPolicy: allowed | explicitDeny | implicitDeny


@dataclass(frozen=True)
class Entity:
    """A user or role as IAM describes it (GetUser / GetRole)."""

    kind: EntityKind
    name: str
    arn: str
    boundary_arn: str | None


@dataclass(frozen=True)
class BoundaryGap:
    entity: Entity
    problem: str
    fix: str  # the exact command that fixes it


@dataclass(frozen=True)
class Need:
    """One thing rotator's principal must be allowed: an action on a resource, in a request context."""

    action: str
    resource: str  # an ARN, or "*"
    why: str
    context: tuple[tuple[str, str], ...] = ()  # condition key → value, as the real request carries it


@dataclass(frozen=True)
class PermissionGap:
    action: str
    decision: str  # explicitDeny | implicitDeny | not evaluated
    resources: tuple[str, ...]
    why: str


class PrivilegeReads(Protocol):
    """IAM and STS of one account, read-only, for `rotator check`."""

    def caller_arn(self) -> str:
        """sts:GetCallerIdentity: the ARN rotator's credentials act as in this account."""
        ...

    def describe(self, kind: EntityKind, name: str) -> Entity:
        """iam:GetUser / iam:GetRole: the entity's ARN and permissions boundary. Raises AwsNotFound."""
        ...

    def simulate(self, source_arn: str, needs: Sequence[Need]) -> dict[tuple[str, str], str]:
        """iam:SimulatePrincipalPolicy of ``source_arn``'s policies: (action, resource) → EvalDecision."""
        ...


# --- the boundary ---------------------------------------------------------------------------------------


def arn_like(pattern: str, value: str) -> bool:
    """IAM's ArnLike: each of the six colon-delimited parts compared on its own, case-sensitively, with `*`
    (any run of characters) and `?` (one character) (IAM User Guide, "Condition operators", ARN condition
    operators)."""
    patterns = pattern.split(":", 5)
    values = value.split(":", 5)
    if len(patterns) != 6 or len(values) != 6:
        return False
    return all(_like(p, v) for p, v in zip(patterns, values, strict=True))


def _like(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def carries_ci_boundary(boundary_arn: str | None, pattern: str) -> bool:
    """What the shipped policies' condition accepts: ArnLike the pattern, and not an AWS managed policy."""
    return (boundary_arn is not None and arn_like(pattern, boundary_arn)
            and not arn_like(AWS_MANAGED_POLICIES, boundary_arn))


def boundary_arn_for(pattern: str, account_id: str) -> str:
    """The boundary to attach in one account: the pattern with that account's id, and the policy name
    deploy/README.md creates in place of a trailing `*` (a custom pattern's other wildcards stay visible)."""
    parts = pattern.split(":", 5)
    if len(parts) == 6 and parts[4] in ("*", ""):
        parts[4] = account_id
    arn = ":".join(parts)
    return arn[:-1] + BOUNDARY_POLICY_NAME if arn.endswith("/*") else arn


def put_boundary_command(entity: Entity, boundary_arn: str) -> str:
    option = "--user-name" if entity.kind == "user" else "--role-name"
    return (f"aws iam put-{entity.kind}-permissions-boundary {option} {entity.name} "
            f"--permissions-boundary {boundary_arn}")


def boundary_gaps(entities: Iterable[Entity], pattern: str, account_id: str) -> list[BoundaryGap]:
    """Each entity that does not carry the CI boundary, with the command that attaches it."""
    gaps: list[BoundaryGap] = []
    wanted = boundary_arn_for(pattern, account_id)
    for entity in entities:
        if carries_ci_boundary(entity.boundary_arn, pattern):
            continue
        if entity.boundary_arn is None:
            problem = "carries no permissions boundary"
        elif arn_like(AWS_MANAGED_POLICIES, entity.boundary_arn):
            problem = f"its permissions boundary {entity.boundary_arn} is an AWS managed policy, never the CI boundary"
        else:
            problem = f"its permissions boundary {entity.boundary_arn} is not the CI boundary ({pattern})"
        gaps.append(BoundaryGap(entity, f"{entity.kind} {entity.name} {problem}: rotator may not write its session "
                                        "deny there", put_boundary_command(entity, wanted)))
    return gaps


# --- rotator's own principal ----------------------------------------------------------------------------

_IAM_ENTITY = re.compile(r"arn:(aws[\w-]*):iam::(\d{12}):(user|role)/[\w+=,.@/-]+")
_ASSUMED_ROLE = re.compile(r"arn:(aws[\w-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/[^/]+")


def policy_source_arn(caller_arn: str, role_arn: str | None = None) -> str | None:
    """Whose policies to simulate. An assumed role's session is governed by the role's policies: the role
    rotator assumes (its configured ARN, path included) or, for the ambient credentials, the role named in
    the session ARN (``arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION`` → ``arn:aws:iam::ACCOUNT:role/NAME``;
    the session ARN carries no path). An IAM user is itself. Anything else (root, a federated user) cannot
    be simulated: None."""
    if role_arn:
        return role_arn
    if _IAM_ENTITY.fullmatch(caller_arn):
        return caller_arn
    assumed = _ASSUMED_ROLE.fullmatch(caller_arn)
    if assumed:
        partition, account, role = assumed.groups()
        return f"arn:{partition}:iam::{account}:role/{role}"
    return None


ROTATION_ACTIONS = ("iam:GetUser", "iam:ListAccessKeys", "iam:CreateAccessKey", "iam:UpdateAccessKey",
                    "iam:DeleteAccessKey", "iam:GetAccessKeyLastUsed")


def needs(users: Sequence[Entity], roles: Sequence[Entity], *, pattern: str, session_denies: bool = True,
          assumed_roles: Sequence[str] = (), locates_keys: bool = False,
          quarantine_policies: Sequence[str] = ()) -> list[Need]:
    """What rotator's principal must be allowed in one account, as the real requests would carry it.

    ``session_denies``: `revoke` writes its session deny on the users (and roles) it manages, which the
    policies allow only with the entity's own boundary in the request context (``iam:PermissionsBoundary``):
    simulated with that boundary, and only for entities that carry the CI boundary (the others are a
    boundary gap already). ``assumed_roles``: the other accounts' roles rotator assumes from this one.
    ``locates_keys``: sts:GetAccessKeyInfo, which `revoke` calls with the ambient credentials only.
    ``quarantine_policies``: the AWS quarantine policies whose users the service lists on each tick
    ([events] quarantine_check).
    """
    wanted: list[Need] = []
    for user in users:
        wanted += [Need(action, user.arn, f"rotate the keys of {user.name}") for action in ROTATION_ACTIONS]
        # `revoke` reports whether the user can sign in to the console, and removes that with --disable-console.
        wanted += [Need("iam:GetLoginProfile", user.arn, f"tell whether {user.name} can sign in to the console"),
                   Need("iam:DeleteLoginProfile", user.arn,
                        f"disable console sign-in of {user.name} (revoke --disable-console)")]
        if session_denies:
            wanted.append(Need("iam:GetUserPolicy", user.arn, f"read the session deny of {user.name}"))
            if carries_ci_boundary(user.boundary_arn, pattern):
                assert user.boundary_arn is not None
                wanted.append(Need("iam:PutUserPolicy", user.arn, f"write the session deny of {user.name}",
                                   (("iam:PermissionsBoundary", user.boundary_arn),)))
    for role in roles:
        wanted.append(Need("iam:GetRole", role.arn, f"read the boundary of role {role.name}"))
        if session_denies:
            wanted.append(Need("iam:GetRolePolicy", role.arn, f"read the session deny of role {role.name}"))
            if carries_ci_boundary(role.boundary_arn, pattern):
                assert role.boundary_arn is not None
                wanted.append(Need("iam:PutRolePolicy", role.arn, f"cut the sessions of role {role.name}",
                                   (("iam:PermissionsBoundary", role.boundary_arn),)))
    wanted += [Need("cloudtrail:LookupEvents", "*", "audit what a leaked key did"),
               Need("ec2:DescribeRegions", "*", "find the regions to audit")]
    if locates_keys:
        wanted.append(Need("sts:GetAccessKeyInfo", "*", "find the account of a leaked key id"))
    wanted += [Need("sts:AssumeRole", arn, "reach another managed account") for arn in assumed_roles]
    wanted += [Need("iam:ListEntitiesForPolicy", arn, "see which users AWS quarantined")
               for arn in quarantine_policies]
    return wanted


def permission_gaps(wanted: Sequence[Need], decisions: Mapping[tuple[str, str], str]) -> list[PermissionGap]:
    """Every need the simulation did not allow, one gap per action and decision, listing the resources."""
    grouped: dict[tuple[str, str], list[Need]] = {}
    for need in wanted:
        decision = decisions.get((need.action, need.resource), "not evaluated")
        if decision != ALLOWED:
            grouped.setdefault((need.action, decision), []).append(need)
    return [PermissionGap(action, decision, tuple(dict.fromkeys(n.resource for n in group)),
                          "; ".join(dict.fromkeys(n.why for n in group)))
            for (action, decision), group in grouped.items()]


def grant_command(source_arn: str, policy_file: str) -> str:
    """The command that gives rotator's principal the shipped policy (as an inline policy named rotator)."""
    kind, _, path_and_name = source_arn.split(":", 5)[5].partition("/")
    name = path_and_name.rsplit("/", 1)[-1]
    return (f"aws iam put-{kind}-policy --{kind}-name {name} --policy-name rotator "
            f"--policy-document file://{policy_file}")
