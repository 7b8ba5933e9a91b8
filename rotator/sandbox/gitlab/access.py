"""Who may see and change what, following GitLab's permission model.

A role on a group is inherited by its subgroups and by the projects in them; the owner of a personal
namespace is Owner of its projects; a request with administrator powers (``Identity.admin``, which
admin mode may withhold from an administrator: see admin_mode.py) may do everything.
"""

from __future__ import annotations

from rotator.sandbox.gitlab.auth import Identity
from rotator.sandbox.gitlab.model import AccessLevel, Namespace, Project, User
from rotator.sandbox.gitlab.state import GitLabState


def group_access(state: GitLabState, user: User, group: Namespace) -> AccessLevel:
    best = AccessLevel.NO_ACCESS
    for namespace in state.ancestors(group.id):
        best = max(best, namespace.members.get(user.id, AccessLevel.NO_ACCESS))
        if namespace.kind == "user" and namespace.owner_id == user.id:
            best = AccessLevel.OWNER
    return best


def project_access(state: GitLabState, user: User, project: Project) -> AccessLevel:
    namespace = state.namespaces[project.namespace_id]
    return max(project.members.get(user.id, AccessLevel.NO_ACCESS), group_access(state, user, namespace))


def _visible_by_setting(visibility: str, user: User | None) -> bool:
    return visibility == "public" or (visibility == "internal" and user is not None)


def can_read_project(state: GitLabState, caller: Identity, project: Project) -> bool:
    user = caller.user
    if _visible_by_setting(project.visibility, user):
        return True
    if user is None:
        return False
    return caller.admin or project_access(state, user, project) >= AccessLevel.GUEST


def can_read_group(state: GitLabState, caller: Identity, group: Namespace) -> bool:
    user = caller.user
    if _visible_by_setting(group.visibility, user):
        return True
    if user is None:
        return False
    if caller.admin or group_access(state, user, group) >= AccessLevel.GUEST:
        return True
    # A member of a subgroup or of a project inside can see the parents on the way to it.
    descendants = state.descendants(group.id)
    if any(user.id in n.members for n in descendants):
        return True
    namespace_ids = {group.id} | {n.id for n in descendants}
    with state.lock:
        return any(user.id in p.members for p in state.projects.values() if p.namespace_id in namespace_ids)


def can_admin_project(state: GitLabState, caller: Identity, project: Project) -> bool:
    """``admin_project`` (Maintainer), which ``authorize_admin_project`` checks: project CI/CD
    variables (``admin_cicd_variables``, lib/api/ci/variables.rb), protected branches and tags."""
    user = caller.user
    return user is not None and (caller.admin or project_access(state, user, project) >= AccessLevel.MAINTAINER)


def can_admin_group_variables(state: GitLabState, caller: Identity, group: Namespace) -> bool:
    """``admin_cicd_variables`` on a group (``admin_group`` before 17.x, lib/api/group_variables.rb):
    Owner; a Maintainer gets 403."""
    user = caller.user
    return user is not None and (caller.admin or group_access(state, user, group) >= AccessLevel.OWNER)
