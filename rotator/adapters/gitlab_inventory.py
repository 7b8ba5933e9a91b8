"""python-gitlab adapter for discovery: every group and project the token can see, and their variables.

Lists use keyset pagination (``pagination=keyset&order_by=id&sort=asc``), which GitLab serves at any
depth (offset pagination of /projects and /groups stops at 50,000 rows) and which stays consistent while
projects are being created. python-gitlab follows the ``Link: rel="next"`` header. Only GET requests.

An administrator's token sees every group and project (and the instance variables); any other token sees
what it is a member of, so the walk does not wander through every public project of a large GitLab.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gitlab

from rotator.adapters.gitlab import current_user, gitlab_call, scope_path, variable_from_api
from rotator.domain import CiVariable, ScopeKind

KEYSET = {"pagination": "keyset", "order_by": "id", "sort": "asc"}


class GitLabInventory:
    def __init__(self, client: gitlab.Gitlab, *, per_page: int = 100) -> None:
        self._gl = client
        self._per_page = per_page
        self._admin: bool | None = None

    def is_admin(self) -> bool:
        if self._admin is None:
            self._admin = bool(current_user(self._gl).get("is_admin"))
        return self._admin

    def scopes(self) -> Iterator[tuple[ScopeKind, str | None]]:
        admin = self.is_admin()
        for group in self._walk("/groups", {"all_available": True} if admin else {}):
            yield ScopeKind.GROUP, str(group["full_path"])
        for project in self._walk("/projects", {"simple": True} if admin else {"simple": True, "membership": True}):
            yield ScopeKind.PROJECT, str(project["path_with_namespace"])
        if admin:
            yield ScopeKind.INSTANCE, None

    def variables(self, kind: ScopeKind, path: str | None) -> list[CiVariable]:
        label = "instance" if kind is ScopeKind.INSTANCE else f"{kind.value} {path}"
        with gitlab_call(label, kind):
            rows = self._gl.http_list(scope_path(kind, path), get_all=True, per_page=100)
        return [variable_from_api(row) for row in rows if isinstance(row, dict)]

    def _walk(self, path: str, filters: dict[str, Any]) -> Iterator[dict[str, Any]]:
        kind = ScopeKind.GROUP if path == "/groups" else ScopeKind.PROJECT
        with gitlab_call(f"GET {path}", kind):
            pages = self._gl.http_list(path, query_data={**KEYSET, **filters, "per_page": self._per_page},
                                       iterator=True)
            for row in pages:
                if isinstance(row, dict):
                    yield row
