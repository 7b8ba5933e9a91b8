"""Listing projects and groups the way GitLab's finders and ``paginate_with_strategies`` do:
visibility for the caller, filters, ordering, then offset or keyset pagination."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from werkzeug.wrappers import Response

from rotator.sandbox.gitlab.access import group_access, project_access
from rotator.sandbox.gitlab.model import AccessLevel, Namespace, Project, User
from rotator.sandbox.gitlab.pagination import enforce_offset_ceiling, keyset_page, offset_page, page_request
from rotator.sandbox.gitlab.params import Param, declared
from rotator.sandbox.gitlab.responses import ApiError, api_json
from rotator.sandbox.gitlab.routing import Call
from rotator.sandbox.gitlab.state import VISIBILITIES

T = TypeVar("T", Project, Namespace)

ACCESS_LEVELS = tuple(int(level) for level in AccessLevel if level)
_COMMON = (
    Param("search", str),
    Param("min_access_level", int, values=ACCESS_LEVELS),
    Param("sort", str, values=("asc", "desc")),
    Param("pagination", str, values=("keyset", "offset")),
    Param("id_after", int),
    Param("id_before", int),
    Param("owned", bool),
)
PROJECT_LIST_PARAMS = (
    *_COMMON,
    Param("membership", bool),
    Param("visibility", str, values=VISIBILITIES),
    Param("simple", bool),
    Param("include_subgroups", bool),
    Param("order_by", str, values=("id", "name", "path", "created_at", "updated_at", "last_activity_at")),
)
GROUP_LIST_PARAMS = (
    *_COMMON,
    Param("all_available", bool),
    Param("top_level_only", bool),
    Param("order_by", str, values=("name", "path", "id")),
)


def list_projects(call: Call, pool: Sequence[Project], render: Callable[[Project], dict[str, Any]]) -> Response:
    options = declared(call.params, PROJECT_LIST_PARAMS)
    user = call.identity.user
    level = options.get("min_access_level", 0)
    if options.get("membership"):
        level = max(level, AccessLevel.GUEST)
    chosen = [p for p in pool if _project_matches(call, p, user, options, level)]
    order_by, sort = options.get("order_by", "created_at"), options.get("sort", "desc")
    return _paginate(call, _ordered(chosen, order_by, sort), options, (order_by, sort), "Project", render)


def _project_matches(call: Call, project: Project, user: User | None, options: dict[str, Any], level: int) -> bool:
    if level and (user is None or project_access(call.state, user, project) < level):
        return False
    if options.get("owned"):
        namespace = call.state.namespaces[project.namespace_id]
        if user is None or namespace.owner_id != user.id:
            return False
    if "visibility" in options and project.visibility != options["visibility"]:
        return False
    search = options.get("search", "").lower()
    return not search or search in project.name.lower() or search in project.path.lower()


def list_groups(call: Call, pool: Sequence[Namespace], render: Callable[[Namespace], dict[str, Any]],
                *, members_only_by_default: bool) -> Response:
    options = declared(call.params, GROUP_LIST_PARAMS)
    user = call.identity.user
    level = options.get("min_access_level", 0)
    # GET /groups shows a regular user only the groups they belong to unless all_available=true.
    if members_only_by_default and user is not None and not options.get("all_available", user.is_admin):
        level = max(level, AccessLevel.GUEST)
    if options.get("owned"):
        level = AccessLevel.OWNER
    search = options.get("search", "").lower()
    chosen = [g for g in pool
              if (not level or (user is not None and group_access(call.state, user, g) >= level))
              and (not options.get("top_level_only") or g.parent_id is None)
              and (not search or search in g.name.lower() or search in g.path.lower())]
    order_by, sort = options.get("order_by", "name"), options.get("sort", "asc")
    return _paginate(call, _ordered(chosen, order_by, sort), options, (order_by, sort), "Group", render)


def _ordered(items: list[T], order_by: str, sort: str) -> list[T]:
    def sort_key(item: T) -> tuple[str, int]:
        if order_by == "name":
            return (item.name.lower(), item.id)
        if order_by == "path":
            return (item.path.lower(), item.id)
        return ("", item.id)  # id, created_at, updated_at, last_activity_at: ids grow with time here

    return sorted(items, key=sort_key, reverse=sort == "desc")


def _paginate(call: Call, ordered: list[T], options: dict[str, Any], ordering: tuple[str, str], type_name: str,
              render: Callable[[T], dict[str, Any]]) -> Response:
    order_by, sort = ordering
    request = page_request(call.params)
    if "id_after" in options:
        ordered = [item for item in ordered if item.id > options["id_after"]]
    if "id_before" in options:
        ordered = [item for item in ordered if item.id < options["id_before"]]
    if options.get("pagination") == "keyset":
        if order_by != "id":
            raise ApiError(405, {"error": "Keyset pagination is not yet available for this type of request"})
        cursor = "id_before" if sort == "desc" else "id_after"
        page, headers = keyset_page(ordered, request.per_page, lambda item: {cursor: str(item.id)},
                                    call.link_for)
    else:
        enforce_offset_ceiling(request, call.state.offset_pagination_limit, type_name)
        page, headers = offset_page(ordered, request, call.link_for)
    return api_json([render(item) for item in page], headers=headers)
