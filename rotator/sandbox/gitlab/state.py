"""The fake GitLab's whole world, in memory, plus the seeding API tests and the demo call in-process.

One re-entrant lock guards the directory (users, tokens, groups, projects, members); each owner's
variables have their own lock (:class:`VariableStore`), so variable traffic on different projects
never serialises. Settings (tier, limits, rate limit) are plain attributes a test may change at
any time.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from rotator.sandbox.gitlab.model import (
    AccessLevel,
    CiVariable,
    Namespace,
    PersonalAccessToken,
    Project,
    User,
    VariableOwnerKind,
)
from rotator.sandbox.gitlab.store import VariableStore
from rotator.sandbox.gitlab.versions import DEFAULT_VERSION, GitLabVersion

PATH_PATTERN = re.compile(r"\A[a-zA-Z0-9_.][a-zA-Z0-9_.-]*\Z")
PATH_FORMAT_MESSAGE = "can contain only letters, digits, '_', '-' and '.'. Cannot start with '-'"
VISIBILITIES = ("private", "internal", "public")


class StateError(Exception):
    """A seeding request the fake refuses, as GitLab would."""


class AlreadyTaken(StateError):
    def __init__(self, field: str, message: str = "has already been taken") -> None:
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


class InvalidPath(StateError):
    pass


class UnknownEntity(StateError):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def _check_visibility(visibility: str) -> None:
    if visibility not in VISIBILITIES:
        raise ValueError(f"visibility must be one of {VISIBILITIES}, not {visibility!r}")


class GitLabState:
    def __init__(self) -> None:
        # Every knob is listed, with its meaning, in settings.py (KNOBS).
        self.version = GitLabVersion.parse(DEFAULT_VERSION)
        self.revision = "1f3c4d2e"
        self.admin_mode = False  # application setting `admin_mode`, off by default as on a fresh install
        self.tier = "premium"  # "free": group environment_scope and filter are paid features
        # Plan limits (db/structure.sql defaults of plan_limits; project/group counts from the docs).
        self.max_project_variables = 8000
        self.max_group_variables = 30000
        self.max_instance_variables = 25
        self.offset_pagination_limit = 50_000
        self.rate_limit_per_period = 2000
        self.rate_limit_period_seconds = 60.0
        # Application rate limits on listings; 0 = off, as on self-managed where the feature flag
        # rate_limit_groups_and_projects_api is disabled by default (GitLab's own defaults when on:
        # 200 per minute for GET /groups, 2000 per 10 minutes for GET /projects).
        self.groups_api_limit = 0
        self.projects_api_limit = 0
        # Ops feature flag (default_enabled: false): above 10,000 rows, offset pages carry no totals.
        self.api_kaminari_count_with_limit = False

        self.lock = threading.RLock()
        self.users: dict[int, User] = {}
        self.namespaces: dict[int, Namespace] = {}
        self.projects: dict[int, Project] = {}
        self._tokens: dict[str, PersonalAccessToken] = {}
        self._namespace_ids_by_path: dict[str, int] = {}
        self._project_ids_by_path: dict[str, int] = {}
        self._project_redirects: dict[str, int] = {}
        self._stores: dict[tuple[VariableOwnerKind, int], VariableStore] = {}
        self._counters = {name: itertools.count(1)
                          for name in ("user", "namespace", "project", "token", "variable", "protected_ref",
                                       "ref_access")}
        self.instance_variables = VariableStore(VariableOwnerKind.INSTANCE, self._id_source("variable"),
                                                lambda: self.max_instance_variables)

    # ---- users and tokens -------------------------------------------------------------------------

    def add_user(self, username: str, *, admin: bool = False, name: str | None = None,
                 email: str | None = None) -> User:
        with self.lock:
            if any(u.username.lower() == username.lower() for u in self.users.values()):
                raise AlreadyTaken("Username")
            email = email or f"{username}@example.com"
            if any(u.email.lower() == email.lower() for u in self.users.values()):
                raise AlreadyTaken("Email")
            if username.lower() in self._namespace_ids_by_path:
                raise AlreadyTaken("Username")
            namespace = self._new_namespace(username, username, "user", None, "private")
            user = User(id=self._next("user"), username=username, name=name or username, email=email,
                        is_admin=admin, namespace_id=namespace.id, created_at=_now())
            namespace.owner_id = user.id
            self.users[user.id] = user
            return user

    def user(self, ref: User | int | str) -> User:
        """A user by object, id or username."""
        with self.lock:
            if isinstance(ref, User):
                return ref
            for user in self.users.values():
                if ref in (user.id, user.username):
                    return user
        raise UnknownEntity(f"user {ref}")

    def add_token(self, user: User | int | str, scopes: tuple[str, ...] | list[str] = ("api",), *,
                  expires_at: date | None = None, name: str = "sandbox") -> str:
        owner = self.user(user)
        return self.issue_token(owner, name, tuple(scopes), expires_at).token

    def issue_token(self, user: User, name: str, scopes: tuple[str, ...],
                    expires_at: date | None) -> PersonalAccessToken:
        with self.lock:
            record = PersonalAccessToken(id=self._next("token"), user_id=user.id, name=name,
                                         token=f"glpat-{secrets.token_urlsafe(15)}", scopes=scopes,
                                         created_at=_now(), expires_at=expires_at)
            self._tokens[record.token] = record
            return dataclasses.replace(record)

    def token_record(self, token: str) -> PersonalAccessToken | None:
        with self.lock:
            record = self._tokens.get(token)
            return dataclasses.replace(record) if record else None

    def token_by_id(self, token_id: int) -> PersonalAccessToken | None:
        with self.lock:
            found = [t for t in self._tokens.values() if t.id == token_id]
            return dataclasses.replace(found[0]) if found else None

    def revoke_token(self, token: str | int) -> None:
        """Revoke by token string or token id."""
        with self.lock:
            for record in self._tokens.values():
                if token in (record.token, record.id):
                    record.revoked = True
                    return
        raise UnknownEntity("token")

    # ---- groups and projects ----------------------------------------------------------------------

    def add_group(self, path: str, *, name: str | None = None, visibility: str = "private",
                  description: str = "") -> Namespace:
        """Create the group at full ``path`` ("a/b/c"), creating missing ancestors."""
        with self.lock:
            parent_id = self._ensure_groups(path.rsplit("/", 1)[0]) if "/" in path else None
            return self.create_group(path.rsplit("/", 1)[-1], name or path.rsplit("/", 1)[-1], parent_id,
                                     visibility, description)

    def create_group(self, path: str, name: str, parent_id: int | None, visibility: str = "private",
                     description: str = "") -> Namespace:
        with self.lock:
            if parent_id is not None and parent_id not in self.namespaces:
                raise UnknownEntity("parent group")
            group = self._new_namespace(path, name, "group", parent_id, visibility)
            group.description = description
            return group

    def add_project(self, path: str, *, name: str | None = None, visibility: str = "private",
                    description: str = "") -> Project:
        """Create the project at full ``path``; missing groups on the way are created."""
        if "/" not in path:
            raise InvalidPath(f"project path {path!r} needs a namespace")
        namespace_path, project_path = path.rsplit("/", 1)
        with self.lock:
            namespace_id = self._namespace_ids_by_path.get(namespace_path.lower())
            if namespace_id is None:
                namespace_id = self._ensure_groups(namespace_path)
            return self.create_project(project_path, name or project_path, namespace_id, visibility, description)

    def create_project(self, path: str, name: str, namespace_id: int, visibility: str = "private",
                       description: str = "") -> Project:
        with self.lock:
            namespace = self.namespaces.get(namespace_id)
            if namespace is None:
                raise UnknownEntity("namespace")
            full_path = self._claim_path(namespace.full_path, path)
            _check_visibility(visibility)
            project = Project(id=self._next("project"), name=name, path=path, namespace_id=namespace_id,
                              full_path=full_path, visibility=visibility, created_at=_now(),
                              description=description)
            self.projects[project.id] = project
            self._project_ids_by_path[full_path.lower()] = project.id
            self._project_redirects.pop(full_path.lower(), None)
            return project

    def move_project(self, old_path: str, new_path: str) -> Project:
        """Rename and/or transfer a project; its old path keeps redirecting (301 on GET, 405 otherwise)."""
        if "/" not in new_path:
            raise InvalidPath(f"project path {new_path!r} needs a namespace")
        namespace_path, project_path = new_path.rsplit("/", 1)
        with self.lock:
            project_id = self._project_ids_by_path.get(old_path.lower())
            if project_id is None:
                raise UnknownEntity(f"project {old_path}")
            project = self.projects[project_id]
            namespace_id = self._namespace_ids_by_path.get(namespace_path.lower())
            if namespace_id is None:
                namespace_id = self._ensure_groups(namespace_path)
            namespace = self.namespaces[namespace_id]
            full_path = self._claim_path(namespace.full_path, project_path)
            del self._project_ids_by_path[project.full_path.lower()]
            self._project_redirects[project.full_path.lower()] = project.id
            project.namespace_id, project.path, project.full_path = namespace_id, project_path, full_path
            self._project_ids_by_path[full_path.lower()] = project.id
            self._project_redirects.pop(full_path.lower(), None)
            return project

    def find_project(self, ref: str) -> tuple[Project | None, bool]:
        """(project, found through an old path) for a numeric id or full path, as GitLab resolves ``:id``."""
        with self.lock:
            if re.fullmatch(r"-?\d+", ref):
                return self.projects.get(int(ref)), False
            if "/" not in ref:
                return None, False
            project_id = self._project_ids_by_path.get(ref.lower())
            if project_id is not None:
                return self.projects[project_id], False
            moved_id = self._project_redirects.get(ref.lower())
            return (self.projects[moved_id], True) if moved_id is not None else (None, False)

    def find_group(self, ref: str) -> Namespace | None:
        with self.lock:
            if re.fullmatch(r"-?\d+", ref):
                found = self.namespaces.get(int(ref))
            else:
                namespace_id = self._namespace_ids_by_path.get(ref.lower())
                found = self.namespaces.get(namespace_id) if namespace_id is not None else None
            return found if found is not None and found.is_group else None

    def find_namespace(self, ref: str) -> Namespace | None:
        """Groups and personal namespaces, by id or full path (``namespace_id`` of POST /projects)."""
        with self.lock:
            if re.fullmatch(r"\d+", ref):
                return self.namespaces.get(int(ref))
            namespace_id = self._namespace_ids_by_path.get(ref.lower())
            return self.namespaces.get(namespace_id) if namespace_id is not None else None

    def ancestors(self, namespace_id: int) -> list[Namespace]:
        """The namespace itself, then its parent, up to the root."""
        with self.lock:
            chain: list[Namespace] = []
            current: int | None = namespace_id
            while current is not None:
                namespace = self.namespaces[current]
                chain.append(namespace)
                current = namespace.parent_id
            return chain

    def descendants(self, group_id: int) -> list[Namespace]:
        with self.lock:
            found: list[Namespace] = []
            frontier = [group_id]
            while frontier:
                parent = frontier.pop()
                children = [n for n in self.namespaces.values() if n.parent_id == parent]
                found.extend(children)
                frontier.extend(c.id for c in children)
            return sorted(found, key=lambda n: n.id)

    # ---- members ----------------------------------------------------------------------------------

    def add_member(self, target: str | Project | Namespace, user: User | int | str,
                   level: AccessLevel | int) -> None:
        """Give ``user`` a role on a project or group (by object or full path); replaces an existing role."""
        member = self.user(user)
        with self.lock:
            resolved = self._resolve_target(target)
            resolved.members[member.id] = AccessLevel(level)

    def _resolve_target(self, target: str | Project | Namespace) -> Project | Namespace:
        if not isinstance(target, str):
            return target
        project, _ = self.find_project(target)
        if project is not None:
            return project
        group = self.find_group(target)
        if group is None:
            raise UnknownEntity(f"project or group {target}")
        return group

    # ---- variables --------------------------------------------------------------------------------

    def variable_store(self, kind: VariableOwnerKind, owner_id: int | None = None) -> VariableStore:
        if kind is VariableOwnerKind.INSTANCE:
            return self.instance_variables
        assert owner_id is not None
        with self.lock:
            store = self._stores.get((kind, owner_id))
            if store is None:
                store = VariableStore(kind, self._id_source("variable"), self._limit_for(kind))
                self._stores[(kind, owner_id)] = store
            return store

    def set_variable(self, scope: str, path: str | None, key: str, value: str, **fields: Any) -> CiVariable:
        """Seed a variable (``scope`` "project" | "group" | "instance"), replacing one with the same
        key and environment_scope. Validated like a create; ``hidden=True`` needs ``masked=True``."""
        return self._store_for(scope, path).replace({"key": key, "value": value, **fields})

    def variables(self, scope: str, path: str | None = None) -> list[CiVariable]:
        """Copies of the stored variables, hidden values included (tests read back what GitLab hides)."""
        return self._store_for(scope, path).snapshot()

    def get_variable(self, scope: str, path: str | None, key: str,
                     environment_scope: str = "*") -> CiVariable | None:
        for variable in self.variables(scope, path):
            if variable.key == key and (scope == "instance" or variable.environment_scope == environment_scope):
                return variable
        return None

    def _store_for(self, scope: str, path: str | None) -> VariableStore:
        kind = VariableOwnerKind(scope)
        if kind is VariableOwnerKind.INSTANCE:
            return self.instance_variables
        owner: Project | Namespace | None
        if kind is VariableOwnerKind.PROJECT:
            owner, _ = self.find_project(path or "")
        else:
            owner = self.find_group(path or "")
        if owner is None:
            raise UnknownEntity(f"{scope} {path}")
        return self.variable_store(kind, owner.id)

    def next_id(self, table: str) -> int:
        """A fresh id from one of the id sequences ("protected_ref", "ref_access", ...)."""
        return self._next(table)

    def _limit_for(self, kind: VariableOwnerKind) -> Callable[[], int | None]:
        if kind is VariableOwnerKind.PROJECT:
            return lambda: self.max_project_variables
        return lambda: self.max_group_variables

    # ---- internals --------------------------------------------------------------------------------

    def _next(self, table: str) -> int:
        return next(self._counters[table])

    def _id_source(self, table: str) -> Callable[[], int]:
        return lambda: self._next(table)

    def _ensure_groups(self, full_path: str) -> int:
        parent_id: int | None = None
        walked = ""
        for segment in full_path.split("/"):
            walked = f"{walked}/{segment}" if walked else segment
            existing = self._namespace_ids_by_path.get(walked.lower())
            if existing is None:
                existing = self.create_group(segment, segment, parent_id).id
            parent_id = existing
        assert parent_id is not None
        return parent_id

    def _claim_path(self, parent_full_path: str | None, path: str) -> str:
        if not PATH_PATTERN.match(path):
            raise InvalidPath(PATH_FORMAT_MESSAGE)
        full_path = f"{parent_full_path}/{path}" if parent_full_path else path
        # Groups and projects share one route table in GitLab: a full path names one thing.
        if full_path.lower() in self._namespace_ids_by_path or full_path.lower() in self._project_ids_by_path:
            raise AlreadyTaken("path")
        return full_path

    def _new_namespace(self, path: str, name: str, kind: str, parent_id: int | None,
                       visibility: str) -> Namespace:
        _check_visibility(visibility)
        parent_path = self.namespaces[parent_id].full_path if parent_id is not None else None
        full_path = self._claim_path(parent_path, path)
        namespace = Namespace(id=self._next("namespace"), name=name, path=path, full_path=full_path, kind=kind,
                              parent_id=parent_id, visibility=visibility, created_at=_now())
        self.namespaces[namespace.id] = namespace
        self._namespace_ids_by_path[full_path.lower()] = namespace.id
        return namespace


@dataclasses.dataclass(frozen=True)
class SeededAdmin:
    """The tokens of ``root``: ``token`` has the ``api`` scope only, so with admin mode enabled it
    acts as a regular member; ``admin_mode_token`` adds the ``admin_mode`` scope."""

    token: str
    admin_mode_token: str


def seed_admin(state: GitLabState) -> SeededAdmin:
    """The administrator ``root``, as a fresh GitLab install has, and two personal access tokens."""
    root = state.add_user("root", admin=True, name="Administrator", email="admin@example.com")
    return SeededAdmin(token=state.add_token(root, ("api",), name="sandbox-admin"),
                       admin_mode_token=state.add_token(root, ("api", "admin_mode"), name="sandbox-admin-mode"))
