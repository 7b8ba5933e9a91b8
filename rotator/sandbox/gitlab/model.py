"""The records the fake GitLab keeps in memory: users, tokens, namespaces (groups and personal
namespaces), projects and CI/CD variables.

Plain mutable dataclasses; :mod:`rotator.sandbox.gitlab.state` owns them and their locking.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from datetime import date, datetime


class AccessLevel(enum.IntEnum):
    """GitLab's member access levels (the numbers are part of the API)."""

    NO_ACCESS = 0
    GUEST = 10
    REPORTER = 20
    DEVELOPER = 30
    MAINTAINER = 40
    OWNER = 50


class VariableOwnerKind(enum.Enum):
    PROJECT = "project"
    GROUP = "group"
    INSTANCE = "instance"


@dataclass
class User:
    id: int
    username: str
    name: str
    email: str
    is_admin: bool
    namespace_id: int
    created_at: datetime
    state: str = "active"


@dataclass
class PersonalAccessToken:
    id: int
    user_id: int
    name: str
    token: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: date | None = None
    revoked: bool = False

    def is_expired(self, today: date) -> bool:
        # GitLab stores a date; a token is unusable from 00:00 UTC of its expiry day.
        return self.expires_at is not None and self.expires_at <= today


@dataclass
class Namespace:
    """A group (``kind == "group"``) or a user's personal namespace (``kind == "user"``)."""

    id: int
    name: str
    path: str
    full_path: str
    kind: str
    parent_id: int | None
    visibility: str
    created_at: datetime
    description: str = ""
    owner_id: int | None = None  # personal namespaces only
    members: dict[int, AccessLevel] = field(default_factory=dict)

    @property
    def is_group(self) -> bool:
        return self.kind == "group"


@dataclass(frozen=True)
class RefAccess:
    """One access rule of a protected branch or tag (ProtectedRefAccess): a role that may push,
    merge or create. ``access_level`` 0 is "No one", 60 is "Administrators"."""

    id: int
    access_level: int


@dataclass
class ProtectedBranch:
    id: int
    name: str  # a branch name or a wildcard such as "release/*"
    push_access_levels: tuple[RefAccess, ...]
    merge_access_levels: tuple[RefAccess, ...]
    unprotect_access_levels: tuple[RefAccess, ...]
    allow_force_push: bool = False
    code_owner_approval_required: bool = False


@dataclass
class ProtectedTag:
    id: int
    name: str  # a tag name or a wildcard such as "v*"
    create_access_levels: tuple[RefAccess, ...]


@dataclass
class Project:
    id: int
    name: str
    path: str
    namespace_id: int
    full_path: str
    visibility: str
    created_at: datetime
    description: str = ""
    members: dict[int, AccessLevel] = field(default_factory=dict)
    # In creation order, as GitLab lists them (user_project.protected_branches, ordered by id).
    protected_branches: list[ProtectedBranch] = field(default_factory=list)
    protected_tags: list[ProtectedTag] = field(default_factory=list)


@dataclass
class CiVariable:
    """One CI/CD variable. Instance variables leave ``hidden`` False and ``environment_scope`` "*"."""

    id: int
    key: str
    value: str
    variable_type: str = "env_var"
    protected: bool = False
    masked: bool = False
    raw: bool = False
    hidden: bool = False
    environment_scope: str = "*"
    description: str | None = None
    # Wall-clock seconds; group DELETE compares it with If-Unmodified-Since.
    updated_at: float = field(default_factory=time.time)
