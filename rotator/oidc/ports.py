"""What `plan-oidc` and `retire-credential` ask of IAM and GitLab beyond rotator.ports.

Kept in the oidc package, not in rotator.ports, because only these two commands need it. Depends on
rotator.domain and rotator.ports alone, so adapters may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class UserPermissions:
    """What an IAM user may do, to be granted to the role that replaces its keys."""

    managed_policy_arns: tuple[str, ...] = ()
    inline_policies: tuple[tuple[str, str], ...] = ()  # (name, JSON document)
    boundary_arn: str | None = None
    notes: tuple[str, ...] = ()  # e.g. which policies came from which group


@dataclass(frozen=True)
class OidcResources:
    """Everything `plan-oidc --apply` creates, as IAM takes it."""

    provider_url: str
    audience: str
    thumbprints: tuple[str, ...]
    role_name: str
    trust_policy: str  # JSON
    description: str
    permissions: UserPermissions
    tags: tuple[tuple[str, str], ...] = ()


class OidcIam(Protocol):
    """IAM of one account, for the move to OIDC."""

    def user_permissions(self, user_name: str) -> UserPermissions:
        """The user's attached and inline policies, its groups' too, and its permissions boundary."""
        ...

    def apply(self, resources: OidcResources) -> list[str]:
        """Create (or bring up to date) the provider, the role and its policies. Idempotent; returns one
        line per change made."""
        ...

    def role_last_used(self, role_name: str) -> datetime | None:
        """When the role was last assumed (None: never). Raises AwsNotFound when there is no such role."""
        ...


@dataclass(frozen=True)
class ProtectedRef:
    """A protected branch or tag of a project, as GitLab stores it: an exact name or a wildcard pattern."""

    name: str
    # The role access levels (30 Developer, 40 Maintainer, 60 admin, 0 no one) allowed to bring commits to it:
    # push and merge for a branch, create for a tag. Grants to one user, group or deploy key are left out.
    write_levels: tuple[int, ...] = ()


class ProtectedRefs(Protocol):
    """GitLab's protected branches and tags of one project (the token needs Maintainer on it)."""

    def protected_branches(self, project: str) -> list[ProtectedRef]:
        ...

    def protected_tags(self, project: str) -> list[ProtectedRef]:
        ...
