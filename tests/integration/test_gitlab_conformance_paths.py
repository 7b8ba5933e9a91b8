"""Reference §7 (no compare-and-set; group DELETE honours If-Unmodified-Since) and §8 (identifying
projects and groups: numeric id or encoded path, moved projects, unknown routes)."""

from __future__ import annotations

import time
from email.utils import formatdate

import gitlab as python_gitlab
import pytest

from rotator.sandbox.gitlab import GitLabSandbox
from tests.integration.gitlab_support import Seeder, World, call, enc

pytest_plugins = ["tests.integration.gitlab_fixtures"]

# ---- §7 -------------------------------------------------------------------------------------------


def test_s7_no_etag_and_last_write_wins(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = f"/projects/{gitlab_world.project_id}/variables"
    created = call(gitlab_fake, "POST", base, gitlab_fake.admin_token, json={"key": "LWW", "value": "one"})
    fetched = call(gitlab_fake, "GET", f"{base}/LWW", gitlab_fake.admin_token)
    assert "ETag" not in created.headers and "ETag" not in fetched.headers
    first = call(gitlab_fake, "PUT", f"{base}/LWW", gitlab_fake.admin_token, json={"value": "two"},
                 headers={"If-Match": '"stale"'})
    second = call(gitlab_fake, "PUT", f"{base}/LWW", gitlab_fake.admin_token, json={"value": "three"})
    assert (first.status_code, second.status_code) == (200, 200)
    assert call(gitlab_fake, "GET", f"{base}/LWW", gitlab_fake.admin_token).json()["value"] == "three"


def test_s7_group_delete_honours_if_unmodified_since(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = f"/groups/{gitlab_world.group_id}/variables"
    call(gitlab_fake, "POST", base, gitlab_fake.admin_token, json={"key": "GUARDED", "value": "v"})
    an_hour_ago = formatdate(time.time() - 3600, usegmt=True)
    refused = call(gitlab_fake, "DELETE", f"{base}/GUARDED", gitlab_fake.admin_token,
                   headers={"If-Unmodified-Since": an_hour_ago})
    assert (refused.status_code, refused.json()) == (412, {"message": "412 Precondition Failed"})
    in_an_hour = formatdate(time.time() + 3600, usegmt=True)
    allowed = call(gitlab_fake, "DELETE", f"{base}/GUARDED", gitlab_fake.admin_token,
                   headers={"If-Unmodified-Since": in_an_hour})
    assert allowed.status_code == 204


def test_s7_project_delete_ignores_if_unmodified_since(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = f"/projects/{gitlab_world.project_id}/variables"
    call(gitlab_fake, "POST", base, gitlab_fake.admin_token, json={"key": "UNGUARDED", "value": "v"})
    response = call(gitlab_fake, "DELETE", f"{base}/UNGUARDED", gitlab_fake.admin_token,
                    headers={"If-Unmodified-Since": formatdate(time.time() - 3600, usegmt=True)})
    assert response.status_code == 204


def test_s7_unparseable_if_unmodified_since_is_ignored(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = f"/groups/{gitlab_world.group_id}/variables"
    call(gitlab_fake, "POST", base, gitlab_fake.admin_token, json={"key": "G2", "value": "v"})
    response = call(gitlab_fake, "DELETE", f"{base}/G2", gitlab_fake.admin_token,
                    headers={"If-Unmodified-Since": "yesterday-ish"})
    assert response.status_code == 204


# ---- §8 -------------------------------------------------------------------------------------------


def test_s8_id_is_numeric_or_url_encoded_full_path(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    top = gitlab_seed.group()
    middle = gitlab_seed.group(parent_id=top["id"])
    leaf = gitlab_seed.group(parent_id=middle["id"])
    project = gitlab_seed.project(leaf["id"])
    full_path = project["path_with_namespace"]
    assert full_path.count("/") == 3
    token = gitlab_fake.admin_token
    call(gitlab_fake, "POST", f"/projects/{project['id']}/variables", token, json={"key": "DEEP", "value": "v"})
    by_path = call(gitlab_fake, "GET", f"/projects/{enc(full_path)}/variables/DEEP", token)
    assert (by_path.status_code, by_path.json()["value"]) == (200, "v")
    group_by_path = call(gitlab_fake, "GET", f"/groups/{enc(leaf['full_path'])}/variables", token)
    assert group_by_path.status_code == 200
    assert call(gitlab_fake, "GET", f"/groups/{enc(leaf['full_path'])}", token).json()["id"] == leaf["id"]
    assert call(gitlab_fake, "GET", f"/projects/{enc(full_path.upper())}", token).json()["id"] == project["id"]


def test_s8_unencoded_path_is_an_unknown_route(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    response = call(gitlab_fake, "GET", f"/projects/{gitlab_world.project_path}/variables", gitlab_fake.admin_token)
    assert (response.status_code, response.json()) == (404, {"error": "404 Not Found"})


@pytest.mark.parametrize("path", ["/nope", "/projects/1/nothing-here", "/admin/ci", "/"])
def test_s8_unknown_routes_are_404_error(gitlab_fake: GitLabSandbox, path: str) -> None:
    response = call(gitlab_fake, "GET", path, gitlab_fake.admin_token)
    assert (response.status_code, response.json()) == (404, {"error": "404 Not Found"})


def test_s8_moved_project_get_redirects_with_location(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    token = gitlab_fake.admin_token
    call(gitlab_fake, "POST", f"/projects/{gitlab_world.project_id}/variables", token, json={"key": "K", "value": "v"})
    renamed = call(gitlab_fake, "PUT", f"/projects/{gitlab_world.project_id}", token, json={"path": "renamed-app"})
    assert (renamed.status_code, renamed.json()["path_with_namespace"]) == (
        200, f"{gitlab_world.group['full_path']}/renamed-app")

    moved = call(gitlab_fake, "GET", f"/projects/{enc(gitlab_world.project_path)}/variables/K", token,
                 params={"filter[environment_scope]": "*"})
    expected = f"{gitlab_fake.api_url}/projects/{gitlab_world.project_id}/variables/K?filter%5Benvironment_scope%5D=%2A"
    assert moved.status_code == 301
    assert moved.headers["Location"] == expected
    assert moved.text == f"This resource has been moved permanently to {expected}"
    followed = call(gitlab_fake, "GET", f"/projects/{enc(gitlab_world.project_path)}/variables/K", token,
                    allow_redirects=True)
    assert (followed.status_code, followed.json()["value"]) == (200, "v")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_s8_moved_project_other_methods_are_405(gitlab_fake: GitLabSandbox, gitlab_world: World, method: str) -> None:
    new_path = f"{gitlab_world.group['full_path']}/moved-{method.lower()}"
    gitlab_fake.state.move_project(gitlab_world.project_path, new_path)
    suffix = "" if method == "POST" else "/K"
    response = call(gitlab_fake, method, f"/projects/{enc(gitlab_world.project_path)}/variables{suffix}",
                    gitlab_fake.admin_token, json={"key": "K", "value": "v"})
    assert (response.status_code, response.json()) == (
        405, {"message": "Non GET methods are not allowed for moved projects"})


def test_s8_moved_project_still_404_for_outsiders(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                                  gitlab_seed: Seeder) -> None:
    gitlab_fake.state.move_project(gitlab_world.project_path, f"{gitlab_world.group['full_path']}/hidden-move")
    outsider = gitlab_seed.token(gitlab_seed.user()["id"])
    response = call(gitlab_fake, "GET", f"/projects/{enc(gitlab_world.project_path)}/variables", outsider)
    assert (response.status_code, response.json()) == (404, {"message": "404 Project Not Found"})


def test_s8_python_gitlab_follows_a_moved_project(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    new_path = f"{gitlab_world.group['full_path']}/followed"
    gitlab_fake.state.move_project(gitlab_world.project_path, new_path)
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_token)
    project = gl.projects.get(gitlab_world.project_path)
    assert (project.id, project.path_with_namespace) == (gitlab_world.project_id, new_path)
    with pytest.raises(python_gitlab.GitlabCreateError) as refused:
        gl.projects.get(gitlab_world.project_path, lazy=True).variables.create({"key": "K", "value": "v"})
    assert refused.value.response_code == 405


def test_s8_old_path_taken_by_a_new_project_is_no_longer_a_redirect(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                                                     gitlab_seed: Seeder) -> None:
    old_path = gitlab_world.project_path
    gitlab_fake.state.move_project(old_path, f"{gitlab_world.group['full_path']}/elsewhere")
    newcomer = gitlab_seed.project(gitlab_world.group_id, path=old_path.rsplit("/", 1)[1])
    response = call(gitlab_fake, "GET", f"/projects/{enc(old_path)}", gitlab_fake.admin_token)
    assert (response.status_code, response.json()["id"]) == (200, newcomer["id"])
