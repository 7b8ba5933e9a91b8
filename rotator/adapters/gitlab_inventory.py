"""python-gitlab adapter for discovery: the groups and projects a token can read, and their variables.
Only GET requests.

Which groups and projects (discovery decides, from the capability probe):
- ``everything``: a token with working admin access lists every group (``all_available=true``) and every
  project, then the instance's variables.
- otherwise exactly what the token can read: groups where its user is Owner (``min_access_level=50``: group
  variables need Owner) and projects where it is Maintainer (``min_access_level=40``). Without that filter
  GitLab also lists, for a non-admin, the ancestors of the groups the user belongs to (GroupsFinder,
  app/finders/groups_finder.rb), whose variables it cannot read, and every public project.

Pagination, as GitLab serves it:
- ``GET /groups`` answers an authenticated caller with offset pages whatever ``pagination=`` says (lib/api/groups.rb
  present_groups → paginate; keyset on /groups is name-ordered and for anonymous callers only,
  lib/api/helpers/pagination_strategies.rb). Pages are ordered by id, so a group created during the walk lands
  on a later page; a group deleted during the walk can shift one later group onto a page already read, and
  that group is missed by this walk (the next run finds it).
- ``GET /projects`` uses keyset pages (``pagination=keyset&order_by=id&sort=asc``; python-gitlab follows
  ``Link: rel="next"`` until the empty last page), consistent while projects come and go, at any depth.

Listings have application rate limits of their own (``groups_api`` per minute, ``projects_api`` per 10 minutes,
lib/gitlab/application_rate_limiter.rb) that answer 429 with a JSON body and no Retry-After
(lib/api/helpers/rate_limiter.rb). python-gitlab backs off exponentially; when the limit outlasts its retries,
the same page is asked again after a pause, for up to ``rate_limit_wait`` seconds, then a typed error names it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import gitlab

from rotator.adapters.gitlab import gitlab_call, scope_path, variable_from_api
from rotator.adapters.gitlab_capabilities import CapabilityProbe
from rotator.domain import CiVariable, GitLabCapabilities, ScopeKind
from rotator.errors import GitLabPermanentError, GitLabUnavailable

OWNER, MAINTAINER = 50, 40  # Gitlab::Access levels
OFFSET_BY_ID = {"order_by": "id", "sort": "asc"}
KEYSET_BY_ID = {"pagination": "keyset", "order_by": "id", "sort": "asc"}
LISTING_LIMITS = {"/groups": "groups_api (per minute)", "/projects": "projects_api (per 10 minutes)"}
_END = object()


class GitLabInventory:
    def __init__(self, client: gitlab.Gitlab, *, capabilities: Callable[[], GitLabCapabilities] | None = None,
                 per_page: int = 100, rate_limit_wait: float = 600.0, pause: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep, max_retries: int | None = None) -> None:
        """``max_retries``: python-gitlab's own retries of each request (its default when None)."""
        self._gl = client
        self._capabilities = capabilities or CapabilityProbe(client).capabilities
        self._per_page = per_page
        self._rate_limit_wait = rate_limit_wait
        self._pause = pause
        self._sleep = sleep
        self._retries: dict[str, Any] = {} if max_retries is None else {"max_retries": max_retries}

    def capabilities(self) -> GitLabCapabilities:
        return self._capabilities()

    def scopes(self, *, everything: bool) -> Iterator[tuple[ScopeKind, str | None]]:
        groups = {"all_available": True} if everything else {"min_access_level": OWNER}
        for group in self._walk("/groups", {**OFFSET_BY_ID, **groups}):
            yield ScopeKind.GROUP, str(group["full_path"])
        projects = {} if everything else {"min_access_level": MAINTAINER}
        for project in self._walk("/projects", {**KEYSET_BY_ID, "simple": True, **projects}):
            yield ScopeKind.PROJECT, str(project["path_with_namespace"])
        if everything:
            yield ScopeKind.INSTANCE, None

    def variables(self, kind: ScopeKind, path: str | None) -> list[CiVariable]:
        label = "instance" if kind is ScopeKind.INSTANCE else f"{kind.value} {path}"
        with gitlab_call(label, kind):
            rows = self._gl.http_list(scope_path(kind, path), get_all=True, per_page=100)
        return [variable_from_api(row) for row in rows if isinstance(row, dict)]

    def instance_variable_limit(self) -> int | None:
        """The plan limit ci_instance_level_variables (GET /application/plan_limits, lib/api/admin/plan_limits.rb,
        administrators only); None when GitLab does not tell this token."""
        try:
            with gitlab_call("GET /application/plan_limits", ScopeKind.INSTANCE):
                data = self._gl.http_get("/application/plan_limits")
        except GitLabPermanentError:
            return None
        value = data.get("ci_instance_level_variables") if isinstance(data, dict) else None
        return value if isinstance(value, int) else None

    def _walk(self, path: str, filters: dict[str, Any]) -> Iterator[dict[str, Any]]:
        kind = ScopeKind.GROUP if path == "/groups" else ScopeKind.PROJECT
        label = f"GET {path}"
        query = {**filters, "per_page": self._per_page}
        waited = 0.0
        pages: Any = None
        while pages is None:
            try:
                with gitlab_call(label, kind):
                    pages = self._gl.http_list(path, query_data=query, iterator=True, **self._retries)
            except GitLabUnavailable as exc:
                waited = self._wait_out(exc, path, waited)
        while True:
            try:
                with gitlab_call(label, kind):
                    # A page that failed is asked again on the next call: python-gitlab keeps its place.
                    row = next(pages, _END)
            except GitLabUnavailable as exc:
                waited = self._wait_out(exc, path, waited)
                continue
            if row is _END:
                return
            waited = 0.0
            if isinstance(row, dict):
                yield row

    def _wait_out(self, exc: GitLabUnavailable, path: str, waited: float) -> float:
        """Pause before asking for the same page again while a listing rate limit holds; raise past the budget."""
        if exc.status != 429 or waited >= self._rate_limit_wait:
            if exc.status == 429:
                raise GitLabUnavailable(
                    f"GET {path}: GitLab kept answering 429 for more than {self._rate_limit_wait:.0f}s: the "
                    f"application rate limit {LISTING_LIMITS[path]} holds", target=exc.target, status=429,
                    hint="run discover again later, or raise that limit in the Admin area (Settings > Network)",
                ) from None
            raise exc
        pause = min(self._pause, self._rate_limit_wait - waited)
        self._sleep(pause)
        return waited + pause
