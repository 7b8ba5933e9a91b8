"""Turning ``:id`` into a project or group the caller may see (lib/api/helpers.rb find_project!/find_group!).

Missing and invisible answer the same 404, so a caller cannot probe for private paths. A project
reached through a path it was moved away from redirects GET requests and refuses the others.
"""

from __future__ import annotations

from rotator.sandbox.gitlab.access import can_read_group, can_read_project
from rotator.sandbox.gitlab.model import Namespace, Project
from rotator.sandbox.gitlab.responses import ApiError, message_error, not_found
from rotator.sandbox.gitlab.routing import API_PREFIX, Call

MOVED_NON_GET = "Non GET methods are not allowed for moved projects"


def resolve_project(call: Call, key: str = "id") -> Project:
    project, moved = call.state.find_project(call.path_params[key])
    if project is None or not can_read_project(call.state, call.identity, project):
        raise not_found("Project")
    if moved:
        if call.method != "GET":
            raise message_error(405, MOVED_NON_GET)
        location = _location_with_project_id(call, project)
        raise ApiError(301, None, {"Location": location},
                       plain_text=f"This resource has been moved permanently to {location}")
    return project


def resolve_group(call: Call, key: str = "id") -> Namespace:
    group = call.state.find_group(call.path_params[key])
    if group is None or not can_read_group(call.state, call.identity, group):
        raise not_found("Group")
    return group


def _location_with_project_id(call: Call, project: Project) -> str:
    # /api/v4/projects/<old path>/rest -> /api/v4/projects/<id>/rest, query kept.
    segments = call.raw_path[len(API_PREFIX):].strip("/").split("/")
    rest = "/".join(segments[2:])
    location = f"{call.base_url}{API_PREFIX}/projects/{project.id}" + (f"/{rest}" if rest else "")
    query = call.request.query_string.decode("latin-1")
    return f"{location}?{query}" if query else location
