"""Protected branches and tags of a project (lib/api/protected_branches.rb, lib/api/protected_tags.rb,
rotator/sandbox/gitlab/protected_refs.py), seeded and read through python-gitlab as on a real GitLab."""

from __future__ import annotations

import gitlab as python_gitlab
import pytest

from rotator.sandbox.gitlab import GitLabSandbox
from tests.integration.gitlab_support import Seeder, World, call

pytest_plugins = ["tests.integration.gitlab_fixtures"]

MAINTAINERS = {"access_level": 40, "access_level_description": "Maintainers", "deploy_key_id": None,
               "user_id": None, "group_id": None}


def _project(sandbox: GitLabSandbox, world: World, token: str | None = None) -> python_gitlab.v4.objects.Project:
    gl = python_gitlab.Gitlab(sandbox.url, private_token=token or sandbox.admin_token)
    return gl.projects.get(world.project_id, lazy=True)


def test_protected_branch_defaults_and_fields(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    project = _project(gitlab_fake, gitlab_world)
    created = project.protectedbranches.create({"name": "main"})
    body = created.attributes
    assert (body["name"], body["allow_force_push"], body["code_owner_approval_required"]) == ("main", False, False)
    for field in ("push_access_levels", "merge_access_levels", "unprotect_access_levels"):
        assert [{k: v for k, v in level.items() if k != "id"} for level in body[field]] == [MAINTAINERS]
        assert isinstance(body[field][0]["id"], int)
    assert isinstance(body["id"], int)


def test_protected_branches_list_wildcards_as_written(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    project = _project(gitlab_fake, gitlab_world)
    project.protectedbranches.create({"name": "main", "push_access_level": 0, "merge_access_level": 30})
    project.protectedbranches.create({"name": "release/*", "allow_force_push": True, "push_access_level": 60})
    listed = {b.name: b.attributes for b in project.protectedbranches.list(get_all=True)}
    assert list(listed) == ["main", "release/*"]
    main, release = listed["main"], listed["release/*"]
    assert [(a["access_level"], a["access_level_description"]) for a in main["push_access_levels"]] == [(0, "No one")]
    assert [(a["access_level"], a["access_level_description"]) for a in main["merge_access_levels"]] == [
        (30, "Developers + Maintainers")]
    assert release["allow_force_push"] is True
    assert [a["access_level_description"] for a in release["push_access_levels"]] == ["Instance admins"]
    # find_by!(name:): the wildcard itself is found, a branch it merely matches is not.
    assert project.protectedbranches.get("release/*").name == "release/*"
    with pytest.raises(python_gitlab.GitlabGetError) as missing:
        project.protectedbranches.get("release/1.0")
    assert (missing.value.response_code, missing.value.error_message) == (404, "404 Not found")


def test_protected_branch_duplicate_is_409_and_bad_level_is_400(gitlab_fake: GitLabSandbox,
                                                                 gitlab_world: World) -> None:
    base = f"/projects/{gitlab_world.project_id}/protected_branches"
    token = gitlab_fake.admin_token
    assert call(gitlab_fake, "POST", base, token, json={"name": "main"}).status_code == 201
    again = call(gitlab_fake, "POST", base, token, json={"name": "main"})
    assert (again.status_code, again.json()) == (409, {"message": "Protected branch 'main' already exists"})
    bad = call(gitlab_fake, "POST", base, token, json={"name": "dev", "push_access_level": 50})
    assert (bad.status_code, bad.json()) == (400, {"error": "push_access_level does not have a valid value"})
    missing = call(gitlab_fake, "POST", base, token, json={})
    assert (missing.status_code, missing.json()) == (400, {"error": "name is missing"})


def test_protected_tags_with_wildcards(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    project = _project(gitlab_fake, gitlab_world)
    created = project.protectedtags.create({"name": "v*"})
    body = created.attributes
    body.pop("project_id", None)  # python-gitlab adds its parent's id to the object
    level_id = body["create_access_levels"][0]["id"]
    assert body == {"name": "v*", "create_access_levels": [{**MAINTAINERS, "id": level_id}]}
    project.protectedtags.create({"name": "release-1.0", "create_access_level": 30})
    assert [t.name for t in project.protectedtags.list(get_all=True)] == ["v*", "release-1.0"]
    assert project.protectedtags.get("v*").name == "v*"
    with pytest.raises(python_gitlab.GitlabGetError):
        project.protectedtags.get("v1.2.3")
    duplicate = call(gitlab_fake, "POST", f"/projects/{gitlab_world.project_id}/protected_tags",
                     gitlab_fake.admin_token, json={"name": "v*"})
    assert (duplicate.status_code, duplicate.json()) == (422, {"message": ["Name has already been taken"]})
    # ProtectedRefAccess.allowed_access_levels serves tags as it serves branches: 60 (instance admins) is
    # refused on GitLab.com only; 50 is no protected-ref level anywhere.
    admin_only = call(gitlab_fake, "POST", f"/projects/{gitlab_world.project_id}/protected_tags",
                      gitlab_fake.admin_token, json={"name": "x*", "create_access_level": 60})
    assert admin_only.status_code == 201
    assert [a["access_level_description"] for a in admin_only.json()["create_access_levels"]] == ["Instance admins"]
    owners = call(gitlab_fake, "POST", f"/projects/{gitlab_world.project_id}/protected_tags",
                  gitlab_fake.admin_token, json={"name": "y*", "create_access_level": 50})
    assert owners.status_code == 400
    project.protectedtags.delete("v*")
    assert [t.name for t in project.protectedtags.list(get_all=True)] == ["release-1.0", "x*"]


def test_unprotecting_finds_the_exact_name_and_answers_204_or_404(gitlab_fake: GitLabSandbox,
                                                                  gitlab_world: World) -> None:
    """DELETE runs find_by!(name:) then destroy: 204 with no body; a name matched only by a wildcard is 404."""
    base = f"/projects/{gitlab_world.project_id}/protected_branches"
    token = gitlab_fake.admin_token
    call(gitlab_fake, "POST", base, token, json={"name": "release/*"})
    call(gitlab_fake, "POST", f"/projects/{gitlab_world.project_id}/protected_tags", token, json={"name": "v*"})
    for path in (f"{base}/release%2F1.0", f"/projects/{gitlab_world.project_id}/protected_tags/v1.0"):
        missing = call(gitlab_fake, "DELETE", path, token)
        assert (missing.status_code, missing.json()) == (404, {"message": "404 Not found"})
    gone = call(gitlab_fake, "DELETE", f"{base}/release%2F*", token)
    assert (gone.status_code, gone.content) == (204, b"")
    assert call(gitlab_fake, "GET", base, token).json() == []
    assert call(gitlab_fake, "DELETE", f"{base}/release%2F*", token).status_code == 404


def test_protected_refs_are_offset_paginated(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    project = _project(gitlab_fake, gitlab_world)
    for index in range(5):
        project.protectedbranches.create({"name": f"branch-{index}"})
    page = call(gitlab_fake, "GET", f"/projects/{gitlab_world.project_id}/protected_branches",
                gitlab_fake.admin_token, params={"per_page": 2, "page": 2})
    assert [b["name"] for b in page.json()] == ["branch-2", "branch-3"]
    assert (page.headers["X-Total"], page.headers["X-Next-Page"], page.headers["X-Prev-Page"]) == ("5", "3", "1")
    assert len(project.protectedbranches.list(get_all=True, per_page=2)) == 5


def test_protected_refs_need_maintainer(gitlab_fake: GitLabSandbox, gitlab_world: World, gitlab_seed: Seeder) -> None:
    """`before { authorize_admin_project }`: a Developer is refused, a Maintainer may read and protect."""
    developer = gitlab_seed.user_with_role("projects", gitlab_world.project_id, 30)
    maintainer = gitlab_seed.user_with_role("projects", gitlab_world.project_id, 40)
    for path in ("protected_branches", "protected_tags"):
        refused = call(gitlab_fake, "GET", f"/projects/{gitlab_world.project_id}/{path}", developer)
        assert (refused.status_code, refused.json()) == (403, {"message": "403 Forbidden"})
        assert call(gitlab_fake, "GET", f"/projects/{gitlab_world.project_id}/{path}", maintainer).status_code == 200
    _project(gitlab_fake, gitlab_world, maintainer).protectedtags.create({"name": "v*"})
    read_only = gitlab_seed.user_with_role("projects", gitlab_world.project_id, 40, scopes=("read_api",))
    write = call(gitlab_fake, "POST", f"/projects/{gitlab_world.project_id}/protected_branches", read_only,
                 json={"name": "main"})
    assert write.status_code == 403 and write.json()["error"] == "insufficient_scope"
