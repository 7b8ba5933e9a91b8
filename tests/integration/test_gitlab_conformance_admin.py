"""The seeding and discovery endpoints a real GitLab has (users, tokens, members, groups, projects),
admin-only where GitLab is, with GitLab's visibility rules; and the in-process seeding API."""

from __future__ import annotations

import concurrent.futures

import gitlab as python_gitlab
import pytest

from rotator.sandbox.gitlab import AccessLevel, GitLabSandbox
from rotator.sandbox.gitlab.store import VariableInvalid
from tests.integration.gitlab_support import OK_SECRET, Seeder, World, call, enc, unique

pytest_plugins = ["tests.integration.gitlab_fixtures"]


def test_admin_user_root_and_its_token_are_seeded(gitlab_fake: GitLabSandbox) -> None:
    me = call(gitlab_fake, "GET", "/user", gitlab_fake.admin_token)
    assert me.status_code == 200
    assert (me.json()["username"], me.json()["is_admin"]) == ("root", True)
    version = call(gitlab_fake, "GET", "/version", gitlab_fake.admin_token)
    assert version.status_code == 200 and version.json()["version"]


def test_admin_only_endpoints_refuse_regular_users(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    user = gitlab_seed.user()
    token = gitlab_seed.token(user["id"])
    forbidden = {"message": "403 Forbidden"}
    new_user = call(gitlab_fake, "POST", "/users", token, json={"username": "x", "email": "x@e.com", "name": "x"})
    assert (new_user.status_code, new_user.json()) == (403, forbidden)
    new_token = call(gitlab_fake, "POST", f"/users/{user['id']}/personal_access_tokens", token,
                     json={"name": "t", "scopes": ["api"]})
    assert (new_token.status_code, new_token.json()) == (403, forbidden)
    me = call(gitlab_fake, "GET", "/user", token).json()
    assert me["username"] == user["username"] and "is_admin" not in me


def test_admin_create_user_conflicts_are_409(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    user = gitlab_seed.user()
    again = call(gitlab_fake, "POST", "/users", gitlab_fake.admin_token,
                 json={"username": user["username"], "email": "other@example.com", "name": "n"})
    assert (again.status_code, again.json()) == (409, {"message": "Username has already been taken"})


def test_admin_token_creation_returns_token_once(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    user = gitlab_seed.user()
    created = call(gitlab_fake, "POST", f"/users/{user['id']}/personal_access_tokens", gitlab_fake.admin_token,
                   json={"name": "ci", "scopes": ["read_api"], "expires_at": "2099-01-01"})
    assert created.status_code == 201
    body = created.json()
    assert (body["scopes"], body["expires_at"], body["active"], body["user_id"]) == (
        ["read_api"], "2099-01-01", True, user["id"])
    assert call(gitlab_fake, "GET", "/user", body["token"]).json()["id"] == user["id"]
    bad = call(gitlab_fake, "POST", f"/users/{user['id']}/personal_access_tokens", gitlab_fake.admin_token,
               json={"name": "ci", "scopes": ["everything"]})
    assert (bad.status_code, bad.json()) == (400, {"error": "scopes does not have a valid value"})


def test_admin_members_need_the_right_role(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                           gitlab_seed: Seeder) -> None:
    developer = gitlab_seed.user_with_role("projects", gitlab_world.project_id, 30)
    someone = gitlab_seed.user()
    refused = call(gitlab_fake, "POST", f"/projects/{gitlab_world.project_id}/members", developer,
                   json={"user_id": someone["id"], "access_level": 30})
    assert (refused.status_code, refused.json()) == (403, {"message": "403 Forbidden"})
    added = call(gitlab_fake, "POST", f"/projects/{gitlab_world.project_id}/members", gitlab_fake.admin_token,
                 json={"user_id": someone["id"], "access_level": 40})
    assert (added.status_code, added.json()["access_level"]) == (201, 40)
    duplicate = call(gitlab_fake, "POST", f"/projects/{gitlab_world.project_id}/members", gitlab_fake.admin_token,
                     json={"user_id": someone["id"], "access_level": 40})
    assert (duplicate.status_code, duplicate.json()) == (409, {"message": "Member already exists"})
    bad_level = call(gitlab_fake, "POST", f"/groups/{gitlab_world.group_id}/members", gitlab_fake.admin_token,
                     json={"user_id": someone["id"], "access_level": 35})
    assert (bad_level.status_code, bad_level.json()) == (400, {"error": "access_level does not have a valid value"})


def test_admin_projects_list_follows_membership(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    top = gitlab_seed.group()
    sub = gitlab_seed.group(parent_id=top["id"])
    in_sub = gitlab_seed.project(sub["id"])
    elsewhere = gitlab_seed.project(gitlab_seed.group()["id"])
    direct = gitlab_seed.project(gitlab_seed.group()["id"])
    user = gitlab_seed.user()
    gitlab_seed.member("groups", top["id"], user["id"], 30)
    gitlab_seed.member("projects", direct["id"], user["id"], 40)
    token = gitlab_seed.token(user["id"])
    listed = call(gitlab_fake, "GET", "/projects", token, params={"membership": True, "per_page": 100})
    ids = {p["id"] for p in listed.json()}
    assert {in_sub["id"], direct["id"]} <= ids and elsewhere["id"] not in ids
    first = next(p for p in listed.json() if p["id"] == in_sub["id"])
    assert first["path_with_namespace"] == in_sub["path_with_namespace"]
    assert first["namespace"] == {**first["namespace"], "id": sub["id"], "full_path": sub["full_path"]}
    assert first["web_url"].endswith(in_sub["path_with_namespace"])
    maintained = call(gitlab_fake, "GET", "/projects", token, params={"min_access_level": 40, "per_page": 100})
    assert {p["id"] for p in maintained.json()} == {direct["id"]}
    admin_view = call(gitlab_fake, "GET", "/projects", gitlab_fake.admin_token, params={"per_page": 100}).json()
    assert elsewhere["id"] in {p["id"] for p in admin_view}


def test_admin_project_permissions_block(gitlab_fake: GitLabSandbox, gitlab_world: World, gitlab_seed: Seeder) -> None:
    token = gitlab_seed.user_with_role("groups", gitlab_world.group_id, 40)
    body = call(gitlab_fake, "GET", f"/projects/{enc(gitlab_world.project_path)}", token).json()
    assert body["permissions"] == {"project_access": None,
                                   "group_access": {"access_level": 40, "notification_level": 3}}


def test_admin_groups_list_all_available_and_discovery(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    top = gitlab_seed.group()
    sub = gitlab_seed.group(parent_id=top["id"])
    leaf = gitlab_seed.group(parent_id=sub["id"])
    deep_project = gitlab_seed.project(leaf["id"])
    top_project = gitlab_seed.project(top["id"])
    public = call(gitlab_fake, "POST", "/groups", gitlab_fake.admin_token,
                  json={"name": "pub", "path": unique("pub"), "visibility": "public"}).json()
    user = gitlab_seed.user()
    gitlab_seed.member("groups", sub["id"], user["id"], 50)
    token = gitlab_seed.token(user["id"])

    mine = {g["id"] for g in call(gitlab_fake, "GET", "/groups", token, params={"per_page": 100}).json()}
    # GroupsFinder: authorized_groups.self_and_ancestors - sub (member), leaf (holds a project the
    # user is authorized for), and top, the ancestor of both.
    assert mine == {top["id"], sub["id"], leaf["id"]}
    available = {g["id"] for g in call(gitlab_fake, "GET", "/groups", token,
                                       params={"all_available": True, "per_page": 100}).json()}
    assert {sub["id"], leaf["id"], public["id"], top["id"]} <= available  # top: parent of a membership

    admin = gitlab_fake.admin_token
    subgroups = call(gitlab_fake, "GET", f"/groups/{top['id']}/subgroups", admin).json()
    assert [(g["id"], g["parent_id"], g["full_path"]) for g in subgroups] == [(sub["id"], top["id"], sub["full_path"])]
    descendants = call(gitlab_fake, "GET", f"/groups/{enc(top['full_path'])}/descendant_groups", admin).json()
    assert {g["id"] for g in descendants} == {sub["id"], leaf["id"]}
    only_top = call(gitlab_fake, "GET", f"/groups/{top['id']}/projects", admin).json()
    assert [p["id"] for p in only_top] == [top_project["id"]]
    everything = call(gitlab_fake, "GET", f"/groups/{top['id']}/projects", admin,
                      params={"include_subgroups": True}).json()
    assert {p["id"] for p in everything} == {top_project["id"], deep_project["id"]}


def test_admin_subgroup_creation_needs_a_role_in_the_parent(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                                            gitlab_seed: Seeder) -> None:
    developer = gitlab_seed.user_with_role("groups", gitlab_world.group_id, 30)
    refused = call(gitlab_fake, "POST", "/groups", developer,
                   json={"name": "s", "path": "s", "parent_id": gitlab_world.group_id})
    assert (refused.status_code, refused.json()) == (403, {"message": "403 Forbidden"})
    missing = call(gitlab_fake, "POST", "/groups", gitlab_fake.admin_token,
                   json={"name": "s", "path": "s", "parent_id": 987654})
    assert (missing.status_code, missing.json()) == (404, {"message": "404 Group Not Found"})


def test_admin_python_gitlab_seeds_like_a_real_gitlab(gitlab_fake: GitLabSandbox) -> None:
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_token)
    top = gl.groups.create({"name": "Payments", "path": unique("payments")})
    sub = gl.groups.create({"name": "Backend", "path": "backend", "parent_id": top.id})
    project = gl.projects.create({"name": "api", "path": "api", "namespace_id": sub.id})
    user = gl.users.create({"username": unique("dev"), "email": f"{unique('d')}@example.com", "name": "Dev",
                            "password": "unused-password-1"})
    sub.members.create({"user_id": user.id, "access_level": 50})
    token = user.personal_access_tokens.create({"name": "ci", "scopes": ["api"]}).token
    as_owner = python_gitlab.Gitlab(gitlab_fake.url, private_token=token)
    group = as_owner.groups.get(sub.full_path)
    group.variables.create({"key": "AWS_SECRET_ACCESS_KEY", "value": OK_SECRET, "masked_and_hidden": True,
                            "environment_scope": "production"})
    assert group.variables.get("AWS_SECRET_ACCESS_KEY").value is None
    assert as_owner.projects.get(project.path_with_namespace).id == project.id
    assert [p.id for p in as_owner.groups.get(top.id).projects.list(include_subgroups=True)] == [project.id]


# ---- in-process seeding API ------------------------------------------------------------------------


def test_state_api_seeds_and_reads_back_hidden_values(gitlab_fake: GitLabSandbox) -> None:
    state = gitlab_fake.state
    top = unique("team")
    project = state.add_project(f"{top}/platform/deploy")
    assert project.full_path == f"{top}/platform/deploy"
    alice = state.add_user(unique("alice"))
    token = state.add_token(alice, ("api",))
    state.add_member(f"{top}/platform", alice, AccessLevel.MAINTAINER)
    state.set_variable("project", project.full_path, "AWS_SECRET_ACCESS_KEY", OK_SECRET, masked=True, hidden=True,
                       environment_scope="prod")
    state.set_variable("group", top, "GROUP_ONLY", "g")
    over_http = call(gitlab_fake, "GET", f"/projects/{project.id}/variables", token).json()
    assert [(v["key"], v["value"], v["environment_scope"]) for v in over_http] == [
        ("AWS_SECRET_ACCESS_KEY", None, "prod")]
    stored = state.get_variable("project", project.full_path, "AWS_SECRET_ACCESS_KEY", "prod")
    assert stored is not None and stored.value == OK_SECRET
    group_call = call(gitlab_fake, "GET", f"/groups/{enc(top)}/variables", token)
    assert group_call.status_code == 403  # Maintainer of the subgroup, nothing on the top group


def test_state_api_set_variable_validates_like_a_create(gitlab_fake: GitLabSandbox) -> None:
    project = gitlab_fake.state.add_project(f"{unique('v')}/p")
    with pytest.raises(VariableInvalid) as refused:
        gitlab_fake.state.set_variable("project", project.full_path, "BAD-KEY", "v")
    assert refused.value.errors == {"key": ["can contain only letters, digits and '_'."]}


def test_concurrent_writes_to_many_projects_all_land(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                                     gitlab_seed: Seeder) -> None:
    projects = [gitlab_seed.project(gitlab_world.group_id) for _ in range(8)]

    def rotate(project_id: int, index: int) -> int:
        base = f"/projects/{project_id}/variables"
        created = call(gitlab_fake, "POST", base, gitlab_fake.admin_token,
                       json={"key": f"K{index}", "value": OK_SECRET, "masked_and_hidden": True})
        updated = call(gitlab_fake, "PUT", f"{base}/K{index}", gitlab_fake.admin_token,
                       json={"value": f"{OK_SECRET}{index}"})
        return created.status_code * 1000 + updated.status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda job: rotate(*job), [(p["id"], i) for p in projects for i in range(6)]))
    assert set(results) == {201200}
    for project in projects:
        values = sorted(v.value for v in gitlab_fake.state.variables("project", project["path_with_namespace"]))
        assert values == sorted(f"{OK_SECRET}{i}" for i in range(6))
