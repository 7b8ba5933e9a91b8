"""Users, personal access tokens, memberships, ``/user`` and ``/version``: what one calls to seed a
GitLab the way an administrator would. Admin-only where GitLab is."""

from __future__ import annotations

from datetime import UTC, date, datetime

from werkzeug.wrappers import Response

from rotator.sandbox.gitlab.access import can_admin_project, group_access
from rotator.sandbox.gitlab.entities import member_entity, token_entity, user_entity
from rotator.sandbox.gitlab.listing import ACCESS_LEVELS
from rotator.sandbox.gitlab.model import AccessLevel, Namespace, Project, User
from rotator.sandbox.gitlab.params import Param, declared
from rotator.sandbox.gitlab.resolve import resolve_group, resolve_project
from rotator.sandbox.gitlab.responses import (
    api_json,
    bad_request_error,
    conflict,
    forbidden,
    no_content,
    not_found,
)
from rotator.sandbox.gitlab.routing import Call, Router
from rotator.sandbox.gitlab.state import AlreadyTaken, UnknownEntity

TOKEN_SCOPES = ("api", "read_api", "read_user", "read_repository", "write_repository", "read_registry",
                "write_registry", "sudo", "admin_mode", "create_runner", "manage_runner", "ai_features",
                "k8s_proxy", "read_service_ping")
USER_PARAMS = (
    Param("email", str, required=True),
    Param("username", str, required=True),
    Param("name", str, required=True),
    Param("admin", bool),
    Param("password", str),
    Param("reset_password", bool),
    Param("force_random_password", bool),
)
TOKEN_PARAMS = (
    Param("name", str, required=True),
    Param("scopes", list, required=True),
    Param("expires_at", str),
    Param("description", str),
)
MEMBER_PARAMS = (Param("user_id", int, required=True), Param("access_level", int, required=True, values=ACCESS_LEVELS))


def _today() -> date:
    return datetime.now(UTC).date()


def _admin(call: Call) -> User:
    """``authenticated_as_admin!``: administrator powers, which admin mode may withhold (403)."""
    user = call.current_user()
    if not call.identity.admin:
        raise forbidden()
    return user


def current_user(call: Call) -> Response:
    # lib/api/users.rb GET /user: Entities::UserWithAdmin when `current_user.admin?` - the account
    # flag, not admin mode, so `is_admin` stays true for an administrator without admin mode.
    user = call.current_user()
    return api_json(user_entity(user, call.base_url, with_email=True, with_admin_flag=user.is_admin))


def version(call: Call) -> Response:
    # lib/api/version.rb: any signed-in caller (read_user scope suffices); the release the fake plays.
    call.current_user()
    return api_json({"version": str(call.state.version), "revision": call.state.revision,
                     "kas": {"enabled": False, "externalUrl": None, "version": None}, "enterprise": True})


def list_users(call: Call) -> Response:
    call.current_user()
    username = declared(call.params, (Param("username", str),)).get("username")
    with call.state.lock:
        users = sorted(call.state.users.values(), key=lambda u: u.id)
    if username is not None:
        users = [u for u in users if u.username.lower() == username.lower()]
    page, headers = call.offset_page(users)
    # lib/api/users.rb: UserWithAdmin for a caller who can read all resources (an admin, in admin mode where
    # it is on), else UserBasic (lib/api/entities/user_basic.rb), which has no email, not even the caller's.
    admin = call.identity.admin
    return api_json([user_entity(u, call.base_url, with_email=admin, with_admin_flag=admin) for u in page],
                    headers=headers)


def create_user(call: Call) -> Response:
    _admin(call)
    values = declared(call.params, USER_PARAMS)
    try:
        user = call.state.add_user(values["username"], admin=values.get("admin", False), name=values["name"],
                                   email=values["email"])
    except AlreadyTaken as taken:
        raise conflict(f"{taken.field} has already been taken") from None
    return api_json(user_entity(user, call.base_url, with_email=True, with_admin_flag=True), 201)


def _user_from_path(call: Call) -> User:
    try:
        return call.state.user(int(call.path_params["user_id"]))
    except (UnknownEntity, ValueError):
        raise not_found("User") from None


def create_token(call: Call) -> Response:
    _admin(call)
    owner = _user_from_path(call)
    values = declared(call.params, TOKEN_PARAMS)
    if not values["scopes"] or any(scope not in TOKEN_SCOPES for scope in values["scopes"]):
        raise bad_request_error("scopes does not have a valid value")
    expires_at = None
    if "expires_at" in values:
        try:
            expires_at = date.fromisoformat(values["expires_at"])
        except ValueError:
            raise bad_request_error("expires_at is invalid") from None
    token = call.state.issue_token(owner, values["name"], tuple(values["scopes"]), expires_at)
    return api_json(token_entity(token, reveal=True, today=_today()), 201)


def revoke_token(call: Call) -> Response:
    user = call.current_user()
    try:
        token = call.state.token_by_id(int(call.path_params["token_id"]))
    except ValueError:
        token = None
    if token is None or not (call.identity.admin or token.user_id == user.id):
        raise not_found("Personal Access Token")
    call.state.revoke_token(token.id)
    return no_content()


def _add_member(call: Call, target: Project | Namespace) -> Response:
    values = declared(call.params, MEMBER_PARAMS)
    try:
        member = call.state.user(values["user_id"])
    except UnknownEntity:
        raise not_found("User") from None
    if member.id in target.members:
        raise conflict("Member already exists")
    call.state.add_member(target, member, values["access_level"])
    return api_json(member_entity(member, AccessLevel(values["access_level"]), call.base_url), 201)


def add_project_member(call: Call) -> Response:
    call.current_user()
    project = resolve_project(call)
    if not can_admin_project(call.state, call.identity, project):  # admin_project_member: Maintainer
        raise forbidden()
    return _add_member(call, project)


def add_group_member(call: Call) -> Response:
    user = call.current_user()
    group = resolve_group(call)
    if not call.identity.admin and group_access(call.state, user, group) < AccessLevel.OWNER:
        raise forbidden()
    return _add_member(call, group)


def register(router: Router) -> None:
    router.add("GET", "/user", current_user, read_user_scope=True)
    router.add("GET", "/version", version, read_user_scope=True)
    router.add("GET", "/users", list_users, read_user_scope=True)
    router.add("POST", "/users", create_user)
    router.add("POST", "/users/:user_id/personal_access_tokens", create_token)
    router.add("DELETE", "/personal_access_tokens/:token_id", revoke_token)
    router.add("POST", "/projects/:id/members", add_project_member)
    router.add("POST", "/groups/:id/members", add_group_member)
