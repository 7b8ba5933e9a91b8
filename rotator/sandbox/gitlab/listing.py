"""Listing projects and groups the way GitLab's finders and pagination helpers do: which rows a
caller gets, in which order, and how they are paged.

- Projects (lib/api/projects.rb, app/finders/projects_finder.rb): visibility for the caller,
  filters, then ``paginate_with_strategies``: offset pages with the 50,000-row ceiling, or keyset by
  id (``id_after`` / ``id_before``).
- ``GET /groups`` (lib/api/groups.rb ``find_groups``, app/finders/groups_finder.rb): see
  :func:`finder_groups`; an authenticated caller always gets plain offset pages
  (``present_groups_with_pagination_strategies`` → ``present_groups`` → ``paginate``), keyset is for
  anonymous callers only and is name-ordered with ``cursor=`` links.
- Subgroups, descendant groups and a group's projects: offset pages (``present_groups``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from werkzeug.wrappers import Response

from rotator.sandbox.gitlab.access import group_access, project_access
from rotator.sandbox.gitlab.model import AccessLevel, Namespace, Project, User
from rotator.sandbox.gitlab.pagination import (
    cursor_page,
    decode_cursor,
    enforce_offset_ceiling,
    keyset_page,
    page_request,
)
from rotator.sandbox.gitlab.params import Param, declared
from rotator.sandbox.gitlab.responses import ApiError, api_json
from rotator.sandbox.gitlab.routing import Call
from rotator.sandbox.gitlab.state import VISIBILITIES

T = TypeVar("T", Project, Namespace)

ACCESS_LEVELS = tuple(int(level) for level in AccessLevel if level)
KEYSET_UNAVAILABLE = "Keyset pagination is not yet available for this type of request"
_COMMON = (
    Param("search", str),
    Param("min_access_level", int, values=ACCESS_LEVELS),
    Param("sort", str, values=("asc", "desc")),
    Param("owned", bool),
)
PROJECT_LIST_PARAMS = (
    *_COMMON,
    Param("pagination", str, values=("keyset", "offset")),
    Param("id_after", int),
    Param("id_before", int),
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

Render = Callable[[T], dict[str, Any]]


# ---- projects -------------------------------------------------------------------------------------


def project_list_options(call: Call) -> dict[str, Any]:
    """The declared parameters, validated as Grape does before the endpoint runs (pagination too)."""
    page_request(call.params)
    return declared(call.params, PROJECT_LIST_PARAMS)


def list_projects(call: Call, pool: Sequence[Project], render: Render[Project],
                  options: dict[str, Any] | None = None) -> Response:
    """``pool`` is what the caller may see; ``options`` the declared parameters when already read."""
    options = options if options is not None else project_list_options(call)
    user = call.identity.user
    # ProjectsFinder#collection_with_user: `min_access_level` → current_user.authorized_projects(level),
    # membership only, for administrators too.
    level = options.get("min_access_level", 0)
    if options.get("membership"):
        level = max(level, AccessLevel.GUEST)
    chosen = [p for p in pool if _project_matches(call, p, user, options, level)]
    order_by, sort = options.get("order_by", "created_at"), options.get("sort", "desc")
    ordered = _ordered(chosen, order_by, sort)
    request = page_request(call.params)
    if "id_after" in options:
        ordered = [item for item in ordered if item.id > options["id_after"]]
    if "id_before" in options:
        ordered = [item for item in ordered if item.id < options["id_before"]]
    if options.get("pagination") == "keyset":
        # Gitlab::Pagination::Keyset.available? for Project: order_by id only.
        if order_by != "id":
            raise ApiError(405, {"error": KEYSET_UNAVAILABLE})
        cursor = "id_before" if sort == "desc" else "id_after"
        page, headers = keyset_page(ordered, request.per_page, lambda item: {cursor: str(item.id)}, call.link_for)
    else:
        enforce_offset_ceiling(request, call.state.offset_pagination_limit, "Project")
        page, headers = call.offset_page(ordered, request)
    return api_json([render(item) for item in page], headers=headers)


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


# ---- GET /groups ----------------------------------------------------------------------------------


def group_list_options(call: Call) -> dict[str, Any]:
    """The declared parameters, validated as Grape does before the endpoint runs (pagination too)."""
    page_request(call.params)
    return declared(call.params, GROUP_LIST_PARAMS)


def finder_groups(call: Call, options: dict[str, Any]) -> list[Namespace]:
    """GroupsFinder#all_groups, in its order of precedence:

    1. ``owned`` → ``current_user.owned_groups`` (groups where the user is a direct Owner);
    2. ``min_access_level`` → the user's direct memberships at that level or above, and their
       descendants (``groups_with_min_access_level``) - for administrators too;
    3. an administrator (with admin mode, when the instance enables it) and ``all_available`` → every
       group; ``all_available`` defaults to ``can_read_all_resources?`` (lib/api/groups.rb);
    4. otherwise ``authorized_groups.self_and_ancestors`` - the groups the user is a member of, the
       groups holding projects the user is authorized for (app/models/user.rb
       ``authorized_groups_without_shared_membership``), and all their ancestors - plus, with
       ``all_available``, the groups public to the user (public, and internal when signed in).

    Anonymous callers get the public groups.
    """
    state, caller = call.state, call.identity
    with state.lock:
        groups = [n for n in state.namespaces.values() if n.is_group]
        projects = list(state.projects.values())
    user = caller.user
    if user is None:
        return [g for g in groups if g.visibility == "public"]
    if options.get("owned"):
        return [g for g in groups if g.members.get(user.id) == AccessLevel.OWNER]
    if "min_access_level" in options:
        level = options["min_access_level"]
        chosen = {g.id for g in groups if g.members.get(user.id, AccessLevel.NO_ACCESS) >= level}
        return [g for g in groups if any(a.id in chosen for a in state.ancestors(g.id))]
    all_available = options.get("all_available", caller.admin)
    if caller.admin and all_available:
        return groups
    authorized = {g.id for g in groups if user.id in g.members}
    authorized |= {p.namespace_id for p in projects
                   if state.namespaces[p.namespace_id].is_group
                   and project_access(state, user, p) >= AccessLevel.GUEST}
    with_ancestors = {a.id for group_id in authorized for a in state.ancestors(group_id)}
    return [g for g in groups
            if g.id in with_ancestors or (all_available and g.visibility in ("public", "internal"))]


def list_all_groups(call: Call, options: dict[str, Any], render: Render[Namespace]) -> Response:
    chosen = _filtered_groups(finder_groups(call, options), options)
    order_by, sort = options.get("order_by", "name"), options.get("sort", "asc")
    ordered = _ordered(chosen, order_by, sort)
    request = page_request(call.params)
    if call.identity.user is not None:
        page, headers = call.offset_page(ordered, request)  # present_groups → paginate
    elif call.params.get("pagination") == "keyset":
        # CursorBasedKeyset::SUPPORTED_ORDERING: Group => { name: :asc }; anything else is a 405.
        if (order_by, sort) != ("name", "asc"):
            raise ApiError(405, {"error": KEYSET_UNAVAILABLE})
        cursor = call.params.get("cursor")
        if isinstance(cursor, str) and cursor:
            after = decode_cursor(cursor)
            bound = (str(after.get("name", "")).lower(), int(after.get("id", 0)))
            ordered = [g for g in ordered if (g.name.lower(), g.id) > bound]
        page, headers = cursor_page(ordered, request.per_page, lambda g: {"name": g.name, "id": g.id},
                                    call.link_for)
    else:
        # Group is in CursorBasedKeyset::ENFORCED_TYPES: offset pages stop at the ceiling.
        enforce_offset_ceiling(request, call.state.offset_pagination_limit, "Group")
        page, headers = call.offset_page(ordered, request)
    return api_json([render(item) for item in page], headers=headers)


def list_groups(call: Call, pool: Sequence[Namespace], render: Render[Namespace]) -> Response:
    """Subgroups and descendant groups: ``pool`` already holds what the caller may read."""
    options = group_list_options(call)
    user = call.identity.user
    level = options.get("min_access_level", 0)
    if options.get("owned"):
        level = AccessLevel.OWNER
    chosen = [g for g in _filtered_groups(pool, options)
              if not level or (user is not None and group_access(call.state, user, g) >= level)]
    ordered = _ordered(chosen, options.get("order_by", "name"), options.get("sort", "asc"))
    page, headers = call.offset_page(ordered)
    return api_json([render(item) for item in page], headers=headers)


def _filtered_groups(groups: Sequence[Namespace], options: dict[str, Any]) -> list[Namespace]:
    search = options.get("search", "").lower()
    return [g for g in groups
            if (not options.get("top_level_only") or g.parent_id is None)
            and (not search or search in g.name.lower() or search in g.path.lower())]


def _ordered(items: list[T], order_by: str, sort: str) -> list[T]:
    # Groups: `order_options["id"] ||= "asc"` breaks ties (lib/api/groups.rb); projects likewise by id.
    def sort_key(item: T) -> tuple[str, int]:
        if order_by == "name":
            return (item.name.lower(), item.id)
        if order_by == "path":
            return (item.path.lower(), item.id)
        return ("", item.id)  # id, created_at, updated_at, last_activity_at: ids grow with time here

    return sorted(items, key=sort_key, reverse=sort == "desc")
