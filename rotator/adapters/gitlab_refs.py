"""python-gitlab adapter for `plan-oidc`: a project's protected branches and protected tags
(rotator.oidc.ports.ProtectedRefs). Only GET requests.

GitLab's protected branches and protected tags APIs (``GET /projects/:id/protected_branches`` and
``/protected_tags``, lib/api/protected_branches.rb and protected_tags.rb) list them "as they are defined in the
UI": a wildcard is returned as written, never expanded; both are paginated, and both need Maintainer on the
project (``authorize_admin_project``). Each access level entry grants a role (``access_level``: 30 Developer,
40 Maintainer, 60 admin, 0 no one) unless it names a ``user_id``, ``group_id`` or ``deploy_key_id``.
Group-level protected branches (a GitLab Self-Managed feature behind ``allow_protected_branches_for_group``)
are not read: a branch protected only there is reported as unprotected.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gitlab

from rotator.adapters.gitlab import gitlab_call
from rotator.domain import ScopeKind
from rotator.oidc.ports import ProtectedRef


def _role_levels(*entries: Iterable[Any] | None) -> tuple[int, ...]:
    levels: list[int] = []
    for listing in entries:
        for entry in listing or ():
            if not isinstance(entry, dict) or any(entry.get(k) for k in ("user_id", "group_id", "deploy_key_id")):
                continue
            level = entry.get("access_level")
            if isinstance(level, int) and level not in levels:
                levels.append(level)
    return tuple(levels)


class GitLabProtectedRefs:
    def __init__(self, client: gitlab.Gitlab) -> None:
        self._gl = client

    def protected_branches(self, project: str) -> list[ProtectedRef]:
        with gitlab_call(f"protected branches of project {project}", ScopeKind.PROJECT):
            rows = self._gl.projects.get(project, lazy=True).protectedbranches.list(get_all=True)
        return [ProtectedRef(str(row.attributes["name"]), _role_levels(row.attributes.get("push_access_levels"),
                                                                       row.attributes.get("merge_access_levels")))
                for row in rows]

    def protected_tags(self, project: str) -> list[ProtectedRef]:
        with gitlab_call(f"protected tags of project {project}", ScopeKind.PROJECT):
            rows = self._gl.projects.get(project, lazy=True).protectedtags.list(get_all=True)
        return [ProtectedRef(str(row.attributes["name"]), _role_levels(row.attributes.get("create_access_levels")))
                for row in rows]
