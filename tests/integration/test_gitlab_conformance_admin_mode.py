"""Reference §9 "Admin mode" (lib/api/api_guard.rb, rotator/sandbox/gitlab/admin_mode.py).

With the instance setting ``admin_mode`` on, an administrator's token acts as an administrator only
when it carries the ``admin_mode`` scope. Without it: instance variables answer 403, ``/groups``
(even with ``all_available=true``) and ``/projects`` list what a member would see, and ``GET /user``
still says ``is_admin: true``. ``GET /personal_access_tokens/self`` tells a token its scopes.
"""

from __future__ import annotations

from typing import Any

import gitlab as python_gitlab
import pytest

from rotator.sandbox.gitlab import GitLabSandbox
from tests.integration.gitlab_support import Seeder, call

pytest_plugins = ["tests.integration.gitlab_fixtures"]

FORBIDDEN = {"message": "403 Forbidden"}


def _private_world(seed: Seeder) -> dict[str, Any]:
    """A private group with a project nobody is a member of, and one the admin is a member of."""
    stranger_group = seed.group()
    stranger_project = seed.project(stranger_group["id"])
    return {"stranger_group": stranger_group, "stranger_project": stranger_project}


def _ids(response: Any) -> set[int]:
    return {item["id"] for item in response.json()}


def _forget_admin_membership(sandbox: GitLabSandbox, group_id: int) -> None:
    # The seeding admin became Owner by creating the group; take that away to model a group the
    # administrator is not a member of.
    root = sandbox.state.user("root")
    with sandbox.state.lock:
        sandbox.state.namespaces[group_id].members.pop(root.id, None)


def test_admin_mode_off_gives_an_api_token_every_admin_power(gitlab_fake: GitLabSandbox,
                                                               gitlab_seed: Seeder) -> None:
    world = _private_world(gitlab_seed)
    _forget_admin_membership(gitlab_fake, world["stranger_group"]["id"])
    token = gitlab_fake.admin_token
    assert call(gitlab_fake, "GET", "/admin/ci/variables", token).status_code == 200
    assert world["stranger_group"]["id"] in _ids(call(gitlab_fake, "GET", "/groups", token,
                                                      params={"all_available": True, "per_page": 100}))
    assert world["stranger_project"]["id"] in _ids(call(gitlab_fake, "GET", "/projects", token,
                                                        params={"per_page": 100}))


def test_admin_mode_on_without_the_scope_the_admin_acts_as_a_member(gitlab_fake: GitLabSandbox,
                                                                      gitlab_seed: Seeder) -> None:
    world = _private_world(gitlab_seed)
    mine = gitlab_seed.group()  # the admin created it: Owner
    _forget_admin_membership(gitlab_fake, world["stranger_group"]["id"])
    gitlab_fake.configure(admin_mode=True)
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_token)

    with pytest.raises(python_gitlab.GitlabListError) as refused:
        gl.variables.list(get_all=True)  # GET /admin/ci/variables
    assert (refused.value.response_code, refused.value.error_message) == (403, "403 Forbidden")
    created = call(gitlab_fake, "POST", "/admin/ci/variables", gitlab_fake.admin_token,
                   json={"key": "NOPE", "value": "v"})
    assert (created.status_code, created.json()) == (403, FORBIDDEN)

    groups = {g.id for g in gl.groups.list(all_available=True, get_all=True)}
    assert mine["id"] in groups and world["stranger_group"]["id"] not in groups
    projects = {p.id for p in gl.projects.list(get_all=True)}
    assert world["stranger_project"]["id"] not in projects
    hidden = call(gitlab_fake, "GET", f"/groups/{world['stranger_group']['id']}", gitlab_fake.admin_token)
    assert (hidden.status_code, hidden.json()) == (404, {"message": "404 Group Not Found"})

    gl.auth()
    assert (gl.user is not None and gl.user.username, gl.user is not None and gl.user.is_admin) == ("root", True)


def test_admin_mode_on_with_the_scope_the_admin_sees_everything(gitlab_fake: GitLabSandbox,
                                                                  gitlab_seed: Seeder) -> None:
    world = _private_world(gitlab_seed)
    _forget_admin_membership(gitlab_fake, world["stranger_group"]["id"])
    gitlab_fake.configure(admin_mode=True)
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_mode_token)
    gl.variables.create({"key": "ADMIN_MODE_OK", "value": "v"})
    assert "ADMIN_MODE_OK" in {v.key for v in gl.variables.list(get_all=True)}
    assert world["stranger_group"]["id"] in {g.id for g in gl.groups.list(get_all=True)}  # all_available default
    assert world["stranger_project"]["id"] in {p.id for p in gl.projects.list(get_all=True)}


def test_admin_mode_scope_means_nothing_for_a_regular_user(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    gitlab_fake.configure(admin_mode=True)
    user = gitlab_seed.user()
    token = gitlab_seed.token(user["id"], scopes=("api", "admin_mode"))
    response = call(gitlab_fake, "GET", "/admin/ci/variables", token)
    assert (response.status_code, response.json()) == (403, FORBIDDEN)


def test_admin_mode_on_seeding_needs_the_scope_too(gitlab_fake: GitLabSandbox) -> None:
    """POST /users is `authenticated_as_admin!`: the api-only admin token is refused under admin mode."""
    gitlab_fake.configure(admin_mode=True)
    body = {"username": "mode-user", "email": "mode-user@example.com", "name": "m", "password": "unused-pass-1"}
    refused = call(gitlab_fake, "POST", "/users", gitlab_fake.admin_token, json=body)
    assert (refused.status_code, refused.json()) == (403, FORBIDDEN)
    created = call(gitlab_fake, "POST", "/users", gitlab_fake.admin_mode_token, json=body)
    assert created.status_code == 201


@pytest.mark.parametrize("scopes", [("api",), ("read_api",), ("read_user",), ("api", "admin_mode"),
                                    ("admin_mode",)])
def test_personal_access_token_self_tells_any_token_its_scopes(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder,
                                                                scopes: tuple[str, ...]) -> None:
    user = gitlab_seed.user(admin=True)
    token = gitlab_seed.token(user["id"], scopes=scopes, expires_at="2099-12-31")
    me = python_gitlab.Gitlab(gitlab_fake.url, private_token=token).personal_access_tokens.get("self")
    assert (me.scopes, me.user_id, me.active, me.revoked, me.expires_at) == (
        list(scopes), user["id"], True, False, "2099-12-31")
    assert "token" not in me.attributes
    assert set(me.attributes) >= {"id", "name", "created_at", "last_used_at", "description"}


def test_personal_access_token_self_needs_a_valid_token(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    assert call(gitlab_fake, "GET", "/personal_access_tokens/self").status_code == 401
    token = gitlab_seed.token(gitlab_seed.user()["id"])
    assert call(gitlab_fake, "DELETE", "/personal_access_tokens/self", token).status_code == 204
    assert call(gitlab_fake, "GET", "/personal_access_tokens/self", token).status_code == 401


def test_the_users_list_shows_emails_and_admin_flags_only_to_an_admin_in_admin_mode(
        gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    """lib/api/users.rb: GET /users presents UserWithAdmin to a caller who can read all resources, else
    UserBasic, which has neither email nor is_admin (not even for the caller's own entry)."""
    member = gitlab_seed.user()
    member_token = gitlab_seed.token(member["id"])
    own = call(gitlab_fake, "GET", "/users", member_token, params={"username": member["username"]}).json()
    assert [u["username"] for u in own] == [member["username"]]
    assert "email" not in own[0] and "is_admin" not in own[0]
    admin_view = call(gitlab_fake, "GET", "/users", gitlab_fake.admin_token,
                      params={"username": member["username"]}).json()
    assert (admin_view[0]["email"], admin_view[0]["is_admin"]) == (member["email"], False)
    gitlab_fake.configure(admin_mode=True)
    try:
        without_scope = call(gitlab_fake, "GET", "/users", gitlab_fake.admin_token,
                             params={"username": member["username"]}).json()
        assert "email" not in without_scope[0] and "is_admin" not in without_scope[0]
        with_scope = call(gitlab_fake, "GET", "/users", gitlab_fake.admin_mode_token,
                          params={"username": member["username"]}).json()
        assert with_scope[0]["email"] == member["email"]
    finally:
        gitlab_fake.configure(admin_mode=False)
