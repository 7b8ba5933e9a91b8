"""Project endpoints used to seed and discover: list, get, create, rename (which leaves a redirect)."""

from __future__ import annotations

from werkzeug.wrappers import Response

from rotator.sandbox.gitlab.access import can_admin_project, can_read_project, group_access
from rotator.sandbox.gitlab.application_limits import PROJECTS_API
from rotator.sandbox.gitlab.entities import project_entity, project_permissions
from rotator.sandbox.gitlab.listing import list_projects, project_list_options
from rotator.sandbox.gitlab.model import AccessLevel, Namespace, Project, User
from rotator.sandbox.gitlab.params import Param, declared
from rotator.sandbox.gitlab.resolve import resolve_project
from rotator.sandbox.gitlab.responses import ApiError, api_json, bad_request_error, forbidden, validation_error
from rotator.sandbox.gitlab.routing import Call, Router
from rotator.sandbox.gitlab.state import VISIBILITIES, AlreadyTaken, InvalidPath

CREATE_PARAMS = (
    Param("name", str),
    Param("path", str),
    Param("namespace_id", str),
    Param("visibility", str, values=VISIBILITIES),
    Param("description", str),
)
UPDATE_PARAMS = (Param("name", str), Param("path", str), Param("visibility", str, values=VISIBILITIES),
                 Param("description", str))


def _visible_projects(call: Call) -> list[Project]:
    with call.state.lock:
        projects = list(call.state.projects.values())
    return [p for p in projects if can_read_project(call.state, call.identity, p)]


def list_all_projects(call: Call) -> Response:
    # lib/api/projects.rb GET /projects: parameters first, then (signed in) the projects_api limit.
    # Anonymous callers meet projects_api_rate_limit_unauthenticated instead, not emulated here.
    options = project_list_options(call)
    if call.identity.user is not None:
        call.check_rate_limit(PROJECTS_API)
    return list_projects(call, _visible_projects(call), lambda p: project_entity(call.state, p, call.base_url),
                         options)


def get_project(call: Call) -> Response:
    project = resolve_project(call)
    body = project_entity(call.state, project, call.base_url)
    body["permissions"] = project_permissions(call.state, project, call.identity.user)
    return api_json(body)


def create_project(call: Call) -> Response:
    user = call.current_user()
    values = declared(call.params, CREATE_PARAMS)
    if "name" not in values and "path" not in values:
        raise bad_request_error("name, path are missing, at least one parameter must be provided")
    path = values.get("path") or values["name"].strip().lower().replace(" ", "-")
    namespace = _target_namespace(call, user, values.get("namespace_id"))
    try:
        project = call.state.create_project(path, values.get("name") or path, namespace.id,
                                            values.get("visibility", "private"), values.get("description", ""))
    except AlreadyTaken:
        raise validation_error({"name": ["has already been taken"], "path": ["has already been taken"]}) from None
    except InvalidPath as invalid:
        raise validation_error({"path": [str(invalid)]}) from None
    if (namespace.is_group and not call.identity.admin
            and group_access(call.state, user, namespace) < AccessLevel.MAINTAINER):
        # A Developer who creates a project in a group becomes its Maintainer.
        call.state.add_member(project, user, AccessLevel.MAINTAINER)
    return api_json(project_entity(call.state, project, call.base_url), 201)


def _target_namespace(call: Call, user: User, namespace_ref: str | None) -> Namespace:
    if namespace_ref is None:
        return call.state.namespaces[user.namespace_id]
    namespace = call.state.find_namespace(namespace_ref)
    if namespace is None:
        raise ApiError(404, {"message": "404 Namespace Not Found"})
    if call.identity.admin:
        return namespace
    allowed = (group_access(call.state, user, namespace) >= AccessLevel.DEVELOPER if namespace.is_group
               else namespace.owner_id == user.id)
    if not allowed:
        raise validation_error({"namespace": ["is not valid"]})
    return namespace


def update_project(call: Call) -> Response:
    """Rename a project (``path`` / ``name``); a new path leaves the old one redirecting."""
    call.current_user()
    project = resolve_project(call)
    if not can_admin_project(call.state, call.identity, project):
        raise forbidden()
    values = declared(call.params, UPDATE_PARAMS)
    if "path" in values and values["path"] != project.path:
        namespace = call.state.namespaces[project.namespace_id]
        try:
            call.state.move_project(project.full_path, f"{namespace.full_path}/{values['path']}")
        except AlreadyTaken:
            raise validation_error({"path": ["has already been taken"]}) from None
        except InvalidPath as invalid:
            raise validation_error({"path": [str(invalid)]}) from None
    with call.state.lock:
        project.name = values.get("name", project.name)
        project.visibility = values.get("visibility", project.visibility)
        project.description = values.get("description", project.description)
    return api_json(project_entity(call.state, project, call.base_url))


def register(router: Router) -> None:
    router.add("GET", "/projects", list_all_projects, public=True)
    router.add("POST", "/projects", create_project)
    router.add("GET", "/projects/:id", get_project, public=True)
    router.add("PUT", "/projects/:id", update_project)
