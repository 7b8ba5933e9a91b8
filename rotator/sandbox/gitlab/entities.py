"""JSON shapes of users, tokens, members, groups and projects: the fields clients actually read."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from rotator.sandbox.gitlab.access import group_access
from rotator.sandbox.gitlab.model import AccessLevel, Namespace, PersonalAccessToken, Project, User
from rotator.sandbox.gitlab.state import GitLabState


def timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def user_entity(user: User, base_url: str, *, with_email: bool, with_admin_flag: bool) -> dict[str, Any]:
    """Entities::UserPublic, plus ``is_admin`` where GitLab presents Entities::UserWithAdmin."""
    body: dict[str, Any] = {
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "state": user.state,
        "locked": False,
        "avatar_url": None,
        "web_url": f"{base_url}/{user.username}",
        "created_at": timestamp(user.created_at),
    }
    if with_email:
        body["email"] = user.email
    if with_admin_flag:
        body["is_admin"] = user.is_admin
    return body


def token_entity(token: PersonalAccessToken, *, reveal: bool, today: date) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": token.id,
        "name": token.name,
        "revoked": token.revoked,
        "created_at": timestamp(token.created_at),
        "description": None,
        "scopes": list(token.scopes),
        "user_id": token.user_id,
        "last_used_at": None,
        "active": not token.revoked and not token.is_expired(today),
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
    }
    if reveal:
        body["token"] = token.token
    return body


def member_entity(user: User, level: AccessLevel, base_url: str) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "state": user.state,
        "avatar_url": None,
        "web_url": f"{base_url}/{user.username}",
        "access_level": int(level),
        "expires_at": None,
    }


def namespace_entity(namespace: Namespace, base_url: str) -> dict[str, Any]:
    return {
        "id": namespace.id,
        "name": namespace.name,
        "path": namespace.path,
        "kind": namespace.kind,
        "full_path": namespace.full_path,
        "parent_id": namespace.parent_id,
        "avatar_url": None,
        "web_url": f"{base_url}/{namespace.full_path}",
    }


def group_entity(state: GitLabState, group: Namespace, base_url: str) -> dict[str, Any]:
    names = [n.name for n in reversed(state.ancestors(group.id))]
    return {
        "id": group.id,
        "web_url": f"{base_url}/groups/{group.full_path}",
        "name": group.name,
        "path": group.path,
        "description": group.description,
        "visibility": group.visibility,
        "full_name": " / ".join(names),
        "full_path": group.full_path,
        "parent_id": group.parent_id,
        "created_at": timestamp(group.created_at),
    }


def project_entity(state: GitLabState, project: Project, base_url: str) -> dict[str, Any]:
    namespace = state.namespaces[project.namespace_id]
    names = [n.name for n in reversed(state.ancestors(namespace.id))]
    return {
        "id": project.id,
        "description": project.description,
        "name": project.name,
        "name_with_namespace": " / ".join([*names, project.name]),
        "path": project.path,
        "path_with_namespace": project.full_path,
        "created_at": timestamp(project.created_at),
        "default_branch": None,
        "web_url": f"{base_url}/{project.full_path}",
        "visibility": project.visibility,
        "namespace": namespace_entity(namespace, base_url),
    }


def project_permissions(state: GitLabState, project: Project, viewer: User | None) -> dict[str, Any]:
    """The ``permissions`` block of GET /projects/:id: the caller's direct and group roles."""
    if viewer is None:
        return {"project_access": None, "group_access": None}
    direct = project.members.get(viewer.id)
    namespace = state.namespaces[project.namespace_id]
    inherited = group_access(state, viewer, namespace) if namespace.is_group else AccessLevel.NO_ACCESS
    return {
        "project_access": {"access_level": int(direct), "notification_level": 3} if direct else None,
        "group_access": {"access_level": int(inherited), "notification_level": 3} if inherited else None,
    }
