"""Reference §9 "Listing": who sees which groups and projects (GroupsFinder, ProjectsFinder), how
``min_access_level`` narrows them, and how ``/groups`` pages (lib/api/groups.rb)."""

from __future__ import annotations

from typing import Any

import gitlab as python_gitlab
import requests

from rotator.sandbox.gitlab import GitLabSandbox, start_gitlab
from tests.integration.gitlab_support import Seeder, call, unique

pytest_plugins = ["tests.integration.gitlab_fixtures"]

OWNER, MAINTAINER, DEVELOPER = 50, 40, 30


def _tree(seed: Seeder) -> dict[str, Any]:
    """top / mid / leaf (private), a project in leaf and one in mid, and an empty private subgroup of leaf."""
    top = seed.group()
    mid = seed.group(parent_id=top["id"])
    leaf = seed.group(parent_id=mid["id"])
    empty = seed.group(parent_id=leaf["id"])
    return {"top": top, "mid": mid, "leaf": leaf, "empty": empty,
            "leaf_project": seed.project(leaf["id"]), "mid_project": seed.project(mid["id"])}


def _ids(items: Any) -> set[int]:
    return {item.id for item in items}


def test_groups_for_a_member_include_the_ancestors(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    tree = _tree(gitlab_seed)
    user = gitlab_seed.user()
    gitlab_seed.member("groups", tree["leaf"]["id"], user["id"], OWNER)
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_seed.token(user["id"]))
    # authorized_groups.self_and_ancestors: leaf (member) and its ancestors mid and top. The empty
    # subgroup holds no project the user is authorized for and no membership of its own: absent.
    assert _ids(gl.groups.list(get_all=True)) == {tree["leaf"]["id"], tree["mid"]["id"], tree["top"]["id"]}
    # Their projects stay unreadable (reading variables there is another matter, see min_access_level).
    assert _ids(gl.projects.list(get_all=True)) == {tree["leaf_project"]["id"]}


def test_groups_include_the_groups_of_projects_the_user_is_a_member_of(gitlab_fake: GitLabSandbox,
                                                                       gitlab_seed: Seeder) -> None:
    tree = _tree(gitlab_seed)
    user = gitlab_seed.user()
    gitlab_seed.member("projects", tree["leaf_project"]["id"], user["id"], MAINTAINER)
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_seed.token(user["id"]))
    assert _ids(gl.groups.list(get_all=True)) == {tree["leaf"]["id"], tree["mid"]["id"], tree["top"]["id"]}


def test_min_access_level_on_groups_is_direct_memberships_and_their_descendants(
        gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    tree = _tree(gitlab_seed)
    user = gitlab_seed.user()
    gitlab_seed.member("groups", tree["mid"]["id"], user["id"], OWNER)
    gitlab_seed.member("groups", tree["top"]["id"], user["id"], DEVELOPER)
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_seed.token(user["id"]))
    owned_scope = {tree["mid"]["id"], tree["leaf"]["id"], tree["empty"]["id"]}
    assert _ids(gl.groups.list(min_access_level=OWNER, get_all=True)) == owned_scope
    assert _ids(gl.groups.list(min_access_level=DEVELOPER, get_all=True)) == owned_scope | {tree["top"]["id"]}


def test_min_access_level_on_projects_is_the_role_in_the_project(gitlab_fake: GitLabSandbox,
                                                                 gitlab_seed: Seeder) -> None:
    tree = _tree(gitlab_seed)
    user = gitlab_seed.user()
    gitlab_seed.member("groups", tree["mid"]["id"], user["id"], DEVELOPER)
    gitlab_seed.member("projects", tree["leaf_project"]["id"], user["id"], MAINTAINER)
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_seed.token(user["id"]))
    assert _ids(gl.projects.list(get_all=True)) == {tree["leaf_project"]["id"], tree["mid_project"]["id"]}
    assert _ids(gl.projects.list(min_access_level=MAINTAINER, get_all=True)) == {tree["leaf_project"]["id"]}


def test_min_access_level_applies_to_administrators_too(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    """GroupsFinder checks min_access_level before the "admin sees all" branch; ProjectsFinder uses
    authorized_projects(min_access_level): an administrator gets only its own memberships."""
    tree = _tree(gitlab_seed)
    other_admin = gitlab_seed.user(admin=True)
    gitlab_seed.member("groups", tree["leaf"]["id"], other_admin["id"], OWNER)
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_seed.token(other_admin["id"]))
    assert _ids(gl.groups.list(min_access_level=OWNER, get_all=True)) == {tree["leaf"]["id"], tree["empty"]["id"]}
    assert _ids(gl.projects.list(min_access_level=MAINTAINER, get_all=True)) == {tree["leaf_project"]["id"]}
    everything = _ids(gl.groups.list(get_all=True))
    assert {tree["top"]["id"], tree["mid"]["id"]} <= everything


def test_owned_groups_are_direct_owner_memberships(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    tree = _tree(gitlab_seed)
    user = gitlab_seed.user()
    gitlab_seed.member("groups", tree["mid"]["id"], user["id"], OWNER)
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_seed.token(user["id"]))
    assert _ids(gl.groups.list(owned=True, get_all=True)) == {tree["mid"]["id"]}


def test_signed_in_groups_ignore_keyset_and_serve_offset_pages(gitlab_fake: GitLabSandbox,
                                                               gitlab_seed: Seeder) -> None:
    for _ in range(3):
        gitlab_seed.group()
    response = call(gitlab_fake, "GET", "/groups", gitlab_fake.admin_token,
                    params={"pagination": "keyset", "order_by": "id", "sort": "asc", "per_page": 2})
    assert response.status_code == 200
    assert (response.headers["X-Page"], response.headers["X-Next-Page"]) == ("1", "2")
    assert int(response.headers["X-Total"]) >= 3
    assert set(response.links) == {"next", "first", "last"}
    assert "page=2" in response.links["next"]["url"] and "cursor" not in response.links["next"]["url"]
    # python-gitlab's keyset iterator still walks every group, on offset pages.
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_token)
    listed = [g.id for g in gl.groups.list(iterator=True, pagination="keyset", order_by="id", per_page=2)]
    with gitlab_fake.state.lock:
        assert sorted(listed) == sorted(n.id for n in gitlab_fake.state.namespaces.values() if n.is_group)


def test_signed_in_groups_ignore_id_after(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    first = gitlab_seed.group()
    response = call(gitlab_fake, "GET", "/groups", gitlab_fake.admin_token,
                    params={"id_after": first["id"], "per_page": 100})
    assert first["id"] in {g["id"] for g in response.json()}


def test_anonymous_groups_keyset_is_name_ordered_with_cursor_links(gitlab_fake: GitLabSandbox,
                                                                   gitlab_seed: Seeder) -> None:
    prefix = unique("pub")
    for name in ("c", "a", "d", "b", "e"):
        call(gitlab_fake, "POST", "/groups", gitlab_fake.admin_token,
             json={"name": f"{prefix}-{name}", "path": f"{prefix}-{name}", "visibility": "public"})
    gitlab_seed.group()  # private: never listed for an anonymous caller
    url: str | None = f"{gitlab_fake.api_url}/groups"
    params: dict[str, Any] | None = {"pagination": "keyset", "per_page": 2, "search": prefix}
    names: list[str] = []
    requests_made = 0
    while url is not None:
        response = requests.get(url, params=params, timeout=10)
        params, requests_made = None, requests_made + 1
        assert response.status_code == 200 and "X-Total" not in response.headers
        assert set(response.links) <= {"next"}
        names += [g["name"] for g in response.json()]
        next_url = response.links.get("next", {}).get("url")
        assert next_url is None or "cursor=" in next_url
        url = next_url
    assert names == [f"{prefix}-{n}" for n in "abcde"]
    assert requests_made == 3  # the cursor pager reads one row ahead: no empty last page


def test_anonymous_groups_keyset_needs_name_order(gitlab_fake: GitLabSandbox) -> None:
    response = call(gitlab_fake, "GET", "/groups", params={"pagination": "keyset", "order_by": "id"})
    assert (response.status_code, response.json()) == (
        405, {"error": "Keyset pagination is not yet available for this type of request"})


def test_projects_keyset_ends_with_an_empty_page(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    group = gitlab_seed.group()
    created = [gitlab_seed.project(group["id"])["id"] for _ in range(4)]
    last_full = call(gitlab_fake, "GET", "/projects", gitlab_fake.admin_token,
                     params={"pagination": "keyset", "order_by": "id", "sort": "asc", "per_page": 2,
                             "id_after": created[1]})
    assert [p["id"] for p in last_full.json()] == created[2:]
    assert "next" in last_full.links
    after = requests.get(last_full.links["next"]["url"], headers={"PRIVATE-TOKEN": gitlab_fake.admin_token},
                         timeout=10)
    assert (after.status_code, after.json(), "Link" in after.headers) == (200, [], False)


def test_offset_totals_are_omitted_above_10000_rows_only_behind_the_count_with_limit_flag() -> None:
    """OffsetPagination paginates `without_count` past Kaminari's MAX_COUNT_LIMIT (10,000 rows) when the ops
    feature flag api_kaminari_count_with_limit is on; it is off by default, and then every page is counted."""
    with start_gitlab() as sandbox:
        sandbox.state.api_kaminari_count_with_limit = True
        top = sandbox.state.add_group(unique("many"))
        for index in range(9_999):
            sandbox.state.create_group(f"g{index:05d}", f"g{index:05d}", top.id)
        counted = call(sandbox, "GET", "/groups", sandbox.admin_token, params={"per_page": 100})
        assert (counted.headers["X-Total"], counted.headers["X-Total-Pages"]) == ("10000", "100")
        assert "last" in counted.links

        sandbox.state.create_group("one-more", "one-more", top.id)  # 10,001 groups
        first = call(sandbox, "GET", "/groups", sandbox.admin_token, params={"per_page": 100})
        assert "X-Total" not in first.headers and "X-Total-Pages" not in first.headers
        assert (first.headers["X-Next-Page"], set(first.links)) == ("2", {"next", "first"})
        last = call(sandbox, "GET", "/groups", sandbox.admin_token, params={"per_page": 100, "page": 101})
        assert (len(last.json()), last.headers["X-Next-Page"], last.headers["X-Prev-Page"]) == (1, "", "100")
        lazy = python_gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token).groups.list(
            iterator=True, per_page=100)
        assert (lazy.total, lazy.total_pages) == (None, None)

        sandbox.state.api_kaminari_count_with_limit = False  # a fresh self-managed instance
        default = call(sandbox, "GET", "/groups", sandbox.admin_token, params={"per_page": 100})
        assert (default.headers["X-Total"], default.headers["X-Total-Pages"]) == ("10001", "101")
        assert "last" in default.links
