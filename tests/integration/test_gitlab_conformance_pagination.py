"""Reference §5 and §9: offset pagination on every list, keyset on /projects (ending with an empty page)
and on /groups for anonymous callers only, the offset ceilings, totals omitted above 10,000 rows."""

from __future__ import annotations

import gitlab as python_gitlab
import pytest
import requests

from rotator.sandbox.gitlab import GitLabSandbox
from tests.integration.gitlab_support import Seeder, World, call

pytest_plugins = ["tests.integration.gitlab_fixtures"]


def _fill(gitlab_fake: GitLabSandbox, gitlab_world: World, count: int) -> str:
    base = f"/projects/{gitlab_world.project_id}/variables"
    for index in range(count):
        gitlab_fake.state.set_variable("project", gitlab_world.project_path, f"VAR_{index:03d}", "v")
    return base


def _keys(response: requests.Response) -> list[str]:
    return [v["key"] for v in response.json()]


def test_s5_default_page_is_20_with_all_headers(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = _fill(gitlab_fake, gitlab_world, 45)
    response = call(gitlab_fake, "GET", base, gitlab_fake.admin_token)
    assert response.status_code == 200
    assert _keys(response) == [f"VAR_{i:03d}" for i in range(20)]
    headers = response.headers
    assert (headers["X-Per-Page"], headers["X-Page"], headers["X-Next-Page"], headers["X-Prev-Page"],
            headers["X-Total"], headers["X-Total-Pages"]) == ("20", "1", "2", "", "45", "3")
    assert response.links["next"]["url"].endswith("page=2&per_page=20")
    assert "prev" not in response.links
    assert "page=1" in response.links["first"]["url"] and "page=3" in response.links["last"]["url"]


def test_s5_middle_and_last_page(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = _fill(gitlab_fake, gitlab_world, 45)
    middle = call(gitlab_fake, "GET", base, gitlab_fake.admin_token, params={"page": 2})
    assert (middle.headers["X-Prev-Page"], middle.headers["X-Next-Page"]) == ("1", "3")
    assert set(middle.links) == {"prev", "next", "first", "last"}
    last = call(gitlab_fake, "GET", base, gitlab_fake.admin_token, params={"page": 3})
    assert _keys(last) == [f"VAR_{i:03d}" for i in range(40, 45)]
    assert (last.headers["X-Next-Page"], last.headers["X-Prev-Page"]) == ("", "2")
    assert "next" not in last.links
    beyond = call(gitlab_fake, "GET", base, gitlab_fake.admin_token, params={"page": 9})
    assert (beyond.status_code, beyond.json(), beyond.headers["X-Next-Page"]) == (200, [], "")


def test_s5_per_page_capped_at_100(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = _fill(gitlab_fake, gitlab_world, 120)
    response = call(gitlab_fake, "GET", base, gitlab_fake.admin_token, params={"per_page": 500})
    assert (len(response.json()), response.headers["X-Per-Page"], response.headers["X-Total-Pages"]) == (
        100, "100", "2")


@pytest.mark.parametrize("params, error", [
    ({"per_page": 0}, "per_page has a value not allowed"),
    ({"per_page": -5}, "per_page does not have a valid value"),
    ({"page": 0}, "page does not have a valid value"),
    ({"page": "abc"}, "page is invalid"),
])
def test_s5_invalid_pagination_is_400(gitlab_fake: GitLabSandbox, gitlab_world: World, params: dict[str, object],
                                      error: str) -> None:
    for path in (f"/projects/{gitlab_world.project_id}/variables", f"/groups/{gitlab_world.group_id}/variables",
                 "/admin/ci/variables", "/projects", "/groups"):
        response = call(gitlab_fake, "GET", path, gitlab_fake.admin_token, params=params)
        assert (response.status_code, response.json()) == (400, {"error": error}), path


def test_s5_empty_list_has_one_page(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    response = call(gitlab_fake, "GET", f"/groups/{gitlab_world.group_id}/variables", gitlab_fake.admin_token)
    assert (response.json(), response.headers["X-Total"], response.headers["X-Total-Pages"]) == ([], "0", "1")


def test_s5_python_gitlab_get_all_and_iterator(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    _fill(gitlab_fake, gitlab_world, 45)
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_token, per_page=20)
    project = gl.projects.get(gitlab_world.project_id)
    assert len(project.variables.list(get_all=True)) == 45
    lazy = project.variables.list(iterator=True)
    assert (lazy.total, lazy.total_pages) == (45, 3)
    assert [v.key for v in lazy] == [f"VAR_{i:03d}" for i in range(45)]
    pages = [e for e in gitlab_fake.log.entries() if e.key.endswith(f"/projects/{gitlab_world.project_id}/variables")]
    assert len(pages) == 6  # 3 pages for get_all, 3 for the iterator


def test_s5_projects_and_groups_offset_pages(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    parent = gitlab_seed.group()
    for _ in range(3):
        gitlab_seed.group(parent_id=parent["id"])
    response = call(gitlab_fake, "GET", f"/groups/{parent['id']}/subgroups", gitlab_fake.admin_token,
                    params={"per_page": 2})
    assert (len(response.json()), response.headers["X-Total"], response.headers["X-Next-Page"]) == (2, "3", "2")


@pytest.mark.parametrize("path, type_name, signed_in", [("/projects", "Project", True),
                                                       ("/projects", "Project", False),
                                                       ("/groups", "Group", False)])
def test_s5_offset_beyond_50000_rows_is_405(gitlab_fake: GitLabSandbox, path: str, type_name: str,
                                            signed_in: bool) -> None:
    """paginate_with_strategies → offset_paginator. /groups goes through it for anonymous callers only."""
    token = gitlab_fake.admin_token if signed_in else None
    response = call(gitlab_fake, "GET", path, token, params={"page": 2501, "per_page": 20})
    assert response.status_code == 405
    assert response.json() == {"error": "Offset pagination has a maximum allowed offset of 50000 for requests that "
                                        f"return objects of type {type_name}. Remaining records can be retrieved "
                                        "using keyset pagination."}
    assert call(gitlab_fake, "GET", path, token, params={"page": 2500, "per_page": 20}).status_code == 200


def test_s9_signed_in_groups_have_no_offset_ceiling(gitlab_fake: GitLabSandbox) -> None:
    """lib/api/groups.rb: a signed-in caller's /groups is `present_groups` → plain `paginate`."""
    response = call(gitlab_fake, "GET", "/groups", gitlab_fake.admin_token, params={"page": 2501, "per_page": 20})
    assert (response.status_code, response.json(), response.headers["X-Next-Page"]) == (200, [], "")


def test_s5_variables_have_no_offset_ceiling(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    response = call(gitlab_fake, "GET", f"/projects/{gitlab_world.project_id}/variables", gitlab_fake.admin_token,
                    params={"page": 2501, "per_page": 20})
    assert (response.status_code, response.json()) == (200, [])


def test_s5_keyset_pagination_links_only_next(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    parent = gitlab_seed.group()
    for _ in range(5):
        gitlab_seed.project(parent["id"])
    params = {"pagination": "keyset", "order_by": "id", "sort": "asc", "per_page": 2}
    seen: list[int] = []
    url: str | None = f"{gitlab_fake.api_url}/projects"
    first = True
    while url is not None:
        response = requests.get(url, headers={"PRIVATE-TOKEN": gitlab_fake.admin_token},
                                params=params if first else None, timeout=10)
        first = False
        assert response.status_code == 200
        assert set(response.links) <= {"next"}
        assert "X-Total" not in response.headers
        seen += [item["id"] for item in response.json()]
        url = response.links.get("next", {}).get("url")
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    with gitlab_fake.state.lock:
        assert len(seen) == len(gitlab_fake.state.projects)


def test_s5_keyset_needs_a_supported_order(gitlab_fake: GitLabSandbox) -> None:
    response = call(gitlab_fake, "GET", "/projects", gitlab_fake.admin_token,
                    params={"pagination": "keyset", "order_by": "name"})
    assert (response.status_code, response.json()) == (
        405, {"error": "Keyset pagination is not yet available for this type of request"})


def test_s5_python_gitlab_keyset_iterator(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    group = gitlab_seed.group()
    created = [gitlab_seed.project(group["id"])["id"] for _ in range(7)]
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_token)
    listed = [p.id for p in gl.projects.list(iterator=True, pagination="keyset", order_by="id", sort="asc",
                                             per_page=3)]
    assert listed == sorted(listed)
    assert set(created) <= set(listed)
    keyset_calls = [e for e in gitlab_fake.log.entries() if e.key == "GET /api/v4/projects"]
    # Every non-empty page links to the next one (Keyset::Pager): one more request, answered [].
    assert len(keyset_calls) == -(-len(listed) // 3) + 1
