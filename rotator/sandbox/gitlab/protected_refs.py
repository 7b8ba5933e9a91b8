"""Protected branches and protected tags of a project: which refs only some roles may push or create.

lib/api/protected_branches.rb and lib/api/protected_tags.rb, doc/api/protected_branches.md and
doc/api/protected_tags.md:

- every endpoint runs ``authorize_admin_project`` (Maintainer; a Developer gets 403);
- lists are offset-paginated (``paginate``), in creation order; a name may be a wildcard (``v*``,
  ``release/*``), which is returned as written, never expanded;
- single lookups use ``find_by!(name:)``, the exact name: a branch matched only by a wildcard is a
  404 ``{"message":"404 Not found"}``;
- creating a branch that is already protected is a 409 ``Protected branch 'NAME' already exists``;
  a duplicate tag fails the model's uniqueness validation: 422 ``["Name has already been taken"]``;
- access levels default to 40 (Maintainers); ProtectedRefAccess (app/models/concerns/
  protected_ref_access.rb, included by the branch and the tag access levels alike) allows 30, 40, 60 and 0
  (``allowed_access_levels``: 60, instance admins, is dropped on GitLab.com only, and this fake plays a
  self-managed instance), and ``access_level_description`` is its ``human_access_levels``.

The paid-tier fields (``user_id`` / ``group_id`` in access levels, ``unprotect_access_levels``,
``code_owner_approval_required``) are always present: the fake plays an Enterprise Edition.
"""

from __future__ import annotations

from typing import Any, TypeVar

from werkzeug.wrappers import Response

from rotator.sandbox.gitlab.access import can_admin_project
from rotator.sandbox.gitlab.model import Project, ProtectedBranch, ProtectedTag, RefAccess
from rotator.sandbox.gitlab.params import Param, declared
from rotator.sandbox.gitlab.resolve import resolve_project
from rotator.sandbox.gitlab.responses import ApiError, api_json, conflict, forbidden, message_error, no_content
from rotator.sandbox.gitlab.routing import Call, Router
from rotator.sandbox.gitlab.state import GitLabState

HUMAN_ACCESS_LEVELS = {30: "Developers + Maintainers", 40: "Maintainers", 60: "Instance admins", 0: "No one"}
ACCESS_LEVELS = (30, 40, 60, 0)
DEFAULT_ACCESS_LEVEL = 40

BRANCH_PARAMS = (
    Param("name", str, required=True),
    Param("push_access_level", int, values=ACCESS_LEVELS),
    Param("merge_access_level", int, values=ACCESS_LEVELS),
    Param("unprotect_access_level", int, values=ACCESS_LEVELS),
    Param("allow_force_push", bool),
    Param("code_owner_approval_required", bool),
)
TAG_PARAMS = (Param("name", str, required=True), Param("create_access_level", int, values=ACCESS_LEVELS))


def _access(state: GitLabState, level: int) -> tuple[RefAccess, ...]:
    return (RefAccess(id=state.next_id("ref_access"), access_level=level),)


def _render_access(levels: tuple[RefAccess, ...]) -> list[dict[str, Any]]:
    return [{"id": a.id, "access_level": a.access_level,
             "access_level_description": HUMAN_ACCESS_LEVELS[a.access_level],
             "deploy_key_id": None, "user_id": None, "group_id": None} for a in levels]


def branch_entity(branch: ProtectedBranch) -> dict[str, Any]:
    return {
        "id": branch.id,
        "name": branch.name,
        "push_access_levels": _render_access(branch.push_access_levels),
        "merge_access_levels": _render_access(branch.merge_access_levels),
        "unprotect_access_levels": _render_access(branch.unprotect_access_levels),
        "allow_force_push": branch.allow_force_push,
        "code_owner_approval_required": branch.code_owner_approval_required,
        "inherited": False,
    }


def tag_entity(tag: ProtectedTag) -> dict[str, Any]:
    return {"name": tag.name, "create_access_levels": _render_access(tag.create_access_levels)}


def _maintained_project(call: Call) -> Project:
    call.current_user()
    project = resolve_project(call)
    if not can_admin_project(call.state, call.identity, project):
        raise forbidden()
    return project


def _record_not_found() -> ApiError:
    # ActiveRecord::RecordNotFound from find_by!, rescued by the API base class with `not_found!`.
    return message_error(404, "404 Not found")


Ref = TypeVar("Ref", ProtectedBranch, ProtectedTag)


def _find_by_name(call: Call, refs: list[Ref]) -> Ref:
    """``find_by!(name:)``: the exact name as protected (a wildcard is matched as written, never expanded)."""
    with call.state.lock:
        found = [r for r in refs if r.name == call.path_params["name"]]
    if not found:
        raise _record_not_found()
    return found[0]


def _unprotect(call: Call, refs: list[Ref]) -> Response:
    """DELETE: ``find_by!(name:)`` then destroy; 204 with no body."""
    with call.state.lock:
        kept = [r for r in refs if r.name != call.path_params["name"]]
        if len(kept) == len(refs):
            raise _record_not_found()
        refs[:] = kept
    return no_content()


# ---- branches -------------------------------------------------------------------------------------


def list_branches(call: Call) -> Response:
    project = _maintained_project(call)
    search = declared(call.params, (Param("search", str),)).get("search", "").lower()
    with call.state.lock:
        branches = [b for b in project.protected_branches if search in b.name.lower()]
    page, headers = call.offset_page(branches)
    return api_json([branch_entity(b) for b in page], headers=headers)


def get_branch(call: Call) -> Response:
    return api_json(branch_entity(_find_by_name(call, _maintained_project(call).protected_branches)))


def create_branch(call: Call) -> Response:
    project = _maintained_project(call)
    values = declared(call.params, BRANCH_PARAMS)
    state = call.state
    with state.lock:
        if any(b.name == values["name"] for b in project.protected_branches):
            raise conflict(f"Protected branch '{values['name']}' already exists")
        branch = ProtectedBranch(
            id=state.next_id("protected_ref"), name=values["name"],
            push_access_levels=_access(state, values.get("push_access_level", DEFAULT_ACCESS_LEVEL)),
            merge_access_levels=_access(state, values.get("merge_access_level", DEFAULT_ACCESS_LEVEL)),
            unprotect_access_levels=_access(state, values.get("unprotect_access_level", DEFAULT_ACCESS_LEVEL)),
            allow_force_push=values.get("allow_force_push", False),
            code_owner_approval_required=values.get("code_owner_approval_required", False))
        project.protected_branches.append(branch)
    return api_json(branch_entity(branch), 201)


def delete_branch(call: Call) -> Response:
    return _unprotect(call, _maintained_project(call).protected_branches)


# ---- tags -----------------------------------------------------------------------------------------


def list_tags(call: Call) -> Response:
    project = _maintained_project(call)
    with call.state.lock:
        tags = list(project.protected_tags)
    page, headers = call.offset_page(tags)
    return api_json([tag_entity(t) for t in page], headers=headers)


def get_tag(call: Call) -> Response:
    return api_json(tag_entity(_find_by_name(call, _maintained_project(call).protected_tags)))


def create_tag(call: Call) -> Response:
    project = _maintained_project(call)
    values = declared(call.params, TAG_PARAMS)
    state = call.state
    with state.lock:
        if any(t.name == values["name"] for t in project.protected_tags):
            # render_api_error!(protected_tag.errors.full_messages, 422)
            raise message_error(422, ["Name has already been taken"])
        tag = ProtectedTag(id=state.next_id("protected_ref"), name=values["name"],
                           create_access_levels=_access(state, values.get("create_access_level",
                                                                          DEFAULT_ACCESS_LEVEL)))
        project.protected_tags.append(tag)
    return api_json(tag_entity(tag), 201)


def delete_tag(call: Call) -> Response:
    return _unprotect(call, _maintained_project(call).protected_tags)


def register(router: Router) -> None:
    router.add("GET", "/projects/:id/protected_branches", list_branches)
    router.add("POST", "/projects/:id/protected_branches", create_branch)
    router.add("GET", "/projects/:id/protected_branches/:name", get_branch)
    router.add("DELETE", "/projects/:id/protected_branches/:name", delete_branch)
    router.add("GET", "/projects/:id/protected_tags", list_tags)
    router.add("POST", "/projects/:id/protected_tags", create_tag)
    router.add("GET", "/projects/:id/protected_tags/:name", get_tag)
    router.add("DELETE", "/projects/:id/protected_tags/:name", delete_tag)
