"""Group endpoints used to seed and discover: list, get, create, subgroups, descendants, projects."""

from __future__ import annotations

from werkzeug.wrappers import Response

from rotator.sandbox.gitlab import listing
from rotator.sandbox.gitlab.access import can_read_group, can_read_project, group_access
from rotator.sandbox.gitlab.application_limits import GROUPS_API
from rotator.sandbox.gitlab.entities import group_entity, project_entity
from rotator.sandbox.gitlab.listing import group_list_options, list_groups, list_projects
from rotator.sandbox.gitlab.model import AccessLevel, Namespace
from rotator.sandbox.gitlab.params import Param, declared
from rotator.sandbox.gitlab.resolve import resolve_group
from rotator.sandbox.gitlab.responses import api_json, forbidden, message_error, not_found
from rotator.sandbox.gitlab.routing import Call, Router
from rotator.sandbox.gitlab.state import VISIBILITIES, AlreadyTaken, InvalidPath

CREATE_PARAMS = (
    Param("name", str, required=True),
    Param("path", str, required=True),
    Param("parent_id", int),
    Param("visibility", str, values=VISIBILITIES),
    Param("description", str),
)


def _readable(call: Call, groups: list[Namespace]) -> list[Namespace]:
    return [g for g in groups if can_read_group(call.state, call.identity, g)]


def list_all_groups(call: Call) -> Response:
    # lib/api/groups.rb GET /groups: parameters are validated first, then the groups_api limit.
    options = group_list_options(call)
    call.check_rate_limit(GROUPS_API)
    return listing.list_all_groups(call, options, lambda g: group_entity(call.state, g, call.base_url))


def get_group(call: Call) -> Response:
    return api_json(group_entity(call.state, resolve_group(call), call.base_url))


def list_subgroups(call: Call) -> Response:
    group = resolve_group(call)
    with call.state.lock:
        children = [n for n in call.state.namespaces.values() if n.parent_id == group.id and n.is_group]
    return list_groups(call, _readable(call, children), lambda g: group_entity(call.state, g, call.base_url))


def list_descendant_groups(call: Call) -> Response:
    group = resolve_group(call)
    descendants = call.state.descendants(group.id)
    return list_groups(call, _readable(call, descendants), lambda g: group_entity(call.state, g, call.base_url))


def list_group_projects(call: Call) -> Response:
    group = resolve_group(call)
    include_subgroups = declared(call.params, (Param("include_subgroups", bool),)).get("include_subgroups", False)
    namespace_ids = {group.id}
    if include_subgroups:
        namespace_ids |= {n.id for n in call.state.descendants(group.id)}
    with call.state.lock:
        projects = [p for p in call.state.projects.values() if p.namespace_id in namespace_ids]
    visible = [p for p in projects if can_read_project(call.state, call.identity, p)]
    return list_projects(call, visible, lambda p: project_entity(call.state, p, call.base_url))


def create_group(call: Call) -> Response:
    user = call.current_user()
    values = declared(call.params, CREATE_PARAMS)
    parent_id = values.get("parent_id")
    if parent_id is not None:
        parent = call.state.find_group(str(parent_id))
        if parent is None or not can_read_group(call.state, call.identity, parent):
            raise not_found("Group")
        if not call.identity.admin and group_access(call.state, user, parent) < AccessLevel.MAINTAINER:
            raise forbidden()
    try:
        group = call.state.create_group(values["path"], values["name"], parent_id,
                                        values.get("visibility", "private"), values.get("description", ""))
    except AlreadyTaken:
        raise message_error(400, 'Failed to save group {:path=>["has already been taken"]}') from None
    except InvalidPath as invalid:
        raise message_error(400, f'Failed to save group {{:path=>["{invalid}"]}}') from None
    # The creator, admin or not, becomes the group's Owner.
    call.state.add_member(group, user, AccessLevel.OWNER)
    return api_json(group_entity(call.state, group, call.base_url), 201)


def register(router: Router) -> None:
    router.add("GET", "/groups", list_all_groups, public=True)
    router.add("POST", "/groups", create_group)
    router.add("GET", "/groups/:id", get_group, public=True)
    router.add("GET", "/groups/:id/subgroups", list_subgroups, public=True)
    router.add("GET", "/groups/:id/descendant_groups", list_descendant_groups, public=True)
    router.add("GET", "/groups/:id/projects", list_group_projects, public=True)
