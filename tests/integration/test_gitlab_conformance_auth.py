"""Reference §4: tokens, roles, and the order authenticate → resolve → permission."""

from __future__ import annotations

import datetime as dt

import pytest

from rotator.sandbox.gitlab import GitLabSandbox
from tests.integration.gitlab_support import Seeder, World, call

pytest_plugins = ["tests.integration.gitlab_fixtures"]

UNAUTHORIZED = {"message": "401 Unauthorized"}
FORBIDDEN = {"message": "403 Forbidden"}
MAINTAINER, DEVELOPER, OWNER, GUEST = 40, 30, 50, 10


def test_s4_token_accepted_in_header_bearer_and_query(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    path = f"/projects/{gitlab_world.project_id}/variables"
    token = gitlab_fake.admin_token
    assert call(gitlab_fake, "GET", path, headers={"PRIVATE-TOKEN": token}).status_code == 200
    assert call(gitlab_fake, "GET", path, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert call(gitlab_fake, "GET", path, params={"private_token": token}).status_code == 200
    assert call(gitlab_fake, "GET", path, params={"access_token": token}).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"PRIVATE-TOKEN": "glpat-unknown"}, {"Authorization": "Bearer nope"}])
def test_s4_missing_or_unknown_token_is_401(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                            headers: dict[str, str]) -> None:
    for path in (f"/projects/{gitlab_world.project_id}/variables", f"/groups/{gitlab_world.group_id}/variables",
                 "/admin/ci/variables"):
        response = call(gitlab_fake, "GET", path, headers=headers)
        assert (response.status_code, response.json()) == (401, UNAUTHORIZED)


def test_s4_expired_token_is_401_invalid_token(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                               gitlab_seed: Seeder) -> None:
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    token = gitlab_seed.token(gitlab_seed.user(admin=True)["id"], expires_at=yesterday)
    response = call(gitlab_fake, "GET", f"/projects/{gitlab_world.project_id}/variables", token)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token",
                               "error_description": "Token is expired. You can either do re-authorization or "
                                                    "token refresh."}
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_s4_token_expiring_in_future_works(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                           gitlab_seed: Seeder) -> None:
    tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    token = gitlab_seed.token(gitlab_seed.user(admin=True)["id"], expires_at=tomorrow)
    assert call(gitlab_fake, "GET", f"/projects/{gitlab_world.project_id}/variables", token).status_code == 200


def test_s4_revoked_token_is_401(gitlab_fake: GitLabSandbox, gitlab_world: World, gitlab_seed: Seeder) -> None:
    token = gitlab_seed.token(gitlab_seed.user(admin=True)["id"])
    assert call(gitlab_fake, "GET", "/user", token).status_code == 200  # usable before revocation
    record = gitlab_fake.state.token_record(token)
    assert record is not None
    revoked = call(gitlab_fake, "DELETE", f"/personal_access_tokens/{record.id}", gitlab_fake.admin_token)
    assert revoked.status_code == 204
    response = call(gitlab_fake, "GET", f"/projects/{gitlab_world.project_id}/variables", token)
    assert (response.status_code, response.json()) == (
        401, {"error": "invalid_token",
              "error_description": "Token was revoked. You have to re-authorize from the user."})


def test_s4_read_api_token_reads_but_cannot_write(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                                  gitlab_seed: Seeder) -> None:
    token = gitlab_seed.token(gitlab_seed.user(admin=True)["id"], scopes=("read_api",))
    base = f"/projects/{gitlab_world.project_id}/variables"
    assert call(gitlab_fake, "GET", base, token).status_code == 200
    response = call(gitlab_fake, "POST", base, token, json={"key": "K", "value": "v"})
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "insufficient_scope"
    assert body["error_description"] == "The request requires higher privileges than provided by the access token."
    assert "api" in body["scope"].split()
    assert gitlab_fake.state.get_variable("project", gitlab_world.project_path, "K") is None


def test_s4_read_user_token_cannot_use_the_variables_api(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                                         gitlab_seed: Seeder) -> None:
    token = gitlab_seed.token(gitlab_seed.user(admin=True)["id"], scopes=("read_user",))
    assert call(gitlab_fake, "GET", "/user", token).status_code == 200
    response = call(gitlab_fake, "GET", f"/projects/{gitlab_world.project_id}/variables", token)
    assert (response.status_code, response.json()["error"]) == (403, "insufficient_scope")


@pytest.mark.parametrize("level, status", [(GUEST, 403), (DEVELOPER, 403), (MAINTAINER, 200), (OWNER, 200)])
def test_s4_project_variables_need_maintainer(gitlab_fake: GitLabSandbox, gitlab_world: World, gitlab_seed: Seeder,
                                              level: int,
                                              status: int) -> None:
    token = gitlab_seed.user_with_role("projects", gitlab_world.project_id, level)
    response = call(gitlab_fake, "POST", f"/projects/{gitlab_world.project_id}/variables", token,
                    json={"key": "ROLE", "value": "v"})
    assert response.status_code == {200: 201, 403: 403}[status]
    if status == 403:
        assert response.json() == FORBIDDEN
    listed = call(gitlab_fake, "GET", f"/projects/{gitlab_world.project_id}/variables", token)
    assert listed.status_code == status


@pytest.mark.parametrize("level, status", [(DEVELOPER, 403), (MAINTAINER, 200), (OWNER, 200)])
def test_s4_group_role_is_inherited_by_projects_and_subgroups(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder,
                                                              level: int,
                                                              status: int) -> None:
    top = gitlab_seed.group()
    sub = gitlab_seed.group(parent_id=top["id"])
    deep_project = gitlab_seed.project(sub["id"])
    token = gitlab_seed.user_with_role("groups", top["id"], level)
    response = call(gitlab_fake, "GET", f"/projects/{deep_project['id']}/variables", token)
    assert response.status_code == status


@pytest.mark.parametrize("level, status", [(DEVELOPER, 403), (MAINTAINER, 403), (OWNER, 200)])
def test_s4_group_variables_need_owner(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder, level: int,
                                       status: int) -> None:
    top = gitlab_seed.group()
    sub = gitlab_seed.group(parent_id=top["id"])
    token = gitlab_seed.user_with_role("groups", top["id"], level)
    for group in (top, sub):  # Owner of a parent is Owner of its subgroups
        response = call(gitlab_fake, "GET", f"/groups/{group['id']}/variables", token)
        assert response.status_code == status
        if status == 403:
            assert response.json() == FORBIDDEN


def test_s4_instance_variables_need_admin(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    user_token = gitlab_seed.token(gitlab_seed.user()["id"])
    response = call(gitlab_fake, "GET", "/admin/ci/variables", user_token)
    assert (response.status_code, response.json()) == (403, FORBIDDEN)
    admin_token = gitlab_seed.token(gitlab_seed.user(admin=True)["id"])
    assert call(gitlab_fake, "GET", "/admin/ci/variables", admin_token).status_code == 200


def test_s4_order_authenticate_then_resolve_then_permission(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                                            gitlab_seed: Seeder) -> None:
    outsider = gitlab_seed.token(gitlab_seed.user()["id"])
    guest = gitlab_seed.user_with_role("projects", gitlab_world.project_id, GUEST)
    cases = [
        (None, "/projects/999999/variables", 401, UNAUTHORIZED),
        (outsider, "/projects/999999/variables", 404, {"message": "404 Project Not Found"}),
        (outsider, f"/projects/{gitlab_world.project_id}/variables", 404, {"message": "404 Project Not Found"}),
        (guest, f"/projects/{gitlab_world.project_id}/variables", 403, FORBIDDEN),
        (None, "/groups/999999/variables", 401, UNAUTHORIZED),
        (outsider, "/groups/999999/variables", 404, {"message": "404 Group Not Found"}),
        (outsider, f"/groups/{gitlab_world.group_id}/variables", 404, {"message": "404 Group Not Found"}),
        (None, "/admin/ci/variables", 401, UNAUTHORIZED),
    ]
    for token, path, status, body in cases:
        # An invalid body too: permission is decided before parameters are validated.
        response = call(gitlab_fake, "POST", path, token, json={})
        assert (response.status_code, response.json()) == (status, body), (token is None, path)


def test_s4_public_project_still_needs_maintainer_for_variables(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                                                gitlab_seed: Seeder) -> None:
    public = gitlab_seed.project(gitlab_world.group_id, visibility="public")
    outsider = gitlab_seed.token(gitlab_seed.user()["id"])
    assert call(gitlab_fake, "GET", f"/projects/{public['id']}", outsider).status_code == 200
    response = call(gitlab_fake, "GET", f"/projects/{public['id']}/variables", outsider)
    assert (response.status_code, response.json()) == (403, FORBIDDEN)


@pytest.mark.parametrize("path, message", [
    ("/projects/{project}/variables/NOPE", "404 Variable Not Found"),
    ("/groups/{group}/variables/NOPE", "404 GroupVariable Not Found"),
    ("/admin/ci/variables/NOPE", "404 InstanceVariable Not Found"),
])
def test_s4_variable_not_found_message_per_scope(gitlab_fake: GitLabSandbox, gitlab_world: World, path: str,
                                                 message: str) -> None:
    url = path.format(project=gitlab_world.project_id, group=gitlab_world.group_id)
    for method in ("GET", "PUT", "DELETE"):
        response = call(gitlab_fake, method, url, gitlab_fake.admin_token, json={"value": "x"})
        assert (response.status_code, response.json()) == (404, {"message": message}), method
