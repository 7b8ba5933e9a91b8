"""Reference §2: several variables with one key, told apart by ``filter[environment_scope]``."""

from __future__ import annotations

import gitlab as python_gitlab
import pytest

from rotator.sandbox.gitlab import GitLabSandbox
from tests.integration.gitlab_support import World, call

pytest_plugins = ["tests.integration.gitlab_fixtures"]

AMBIGUOUS = {"message": "There are multiple variables with provided parameters. Please use 'filter[environment_scope]'"}


def _two_scopes(gitlab_fake: GitLabSandbox, base: str) -> None:
    for scope, value in (("production", "prod-value"), ("staging", "stage-value")):
        response = call(gitlab_fake, "POST", base, gitlab_fake.admin_token,
                        json={"key": "AWS_KEY", "value": value, "environment_scope": scope})
        assert response.status_code == 201


@pytest.mark.parametrize("kind", ["projects", "groups"])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_s2_ambiguous_scope_returns_409(gitlab_fake: GitLabSandbox, gitlab_world: World, kind: str,
                                        method: str) -> None:
    owner = gitlab_world.project_id if kind == "projects" else gitlab_world.group_id
    base = f"/{kind}/{owner}/variables"
    _two_scopes(gitlab_fake, base)
    response = call(gitlab_fake, method, f"{base}/AWS_KEY", gitlab_fake.admin_token)
    assert (response.status_code, response.json()) == (409, AMBIGUOUS)


def test_s2_project_put_without_filter_returns_409(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = f"/projects/{gitlab_world.project_id}/variables"
    _two_scopes(gitlab_fake, base)
    response = call(gitlab_fake, "PUT", f"{base}/AWS_KEY", gitlab_fake.admin_token, json={"value": "new"})
    assert (response.status_code, response.json()) == (409, AMBIGUOUS)


def test_s2_group_put_without_filter_updates_one_variable_without_409(gitlab_fake: GitLabSandbox,
                                                                     gitlab_world: World) -> None:
    base = f"/groups/{gitlab_world.group_id}/variables"
    _two_scopes(gitlab_fake, base)
    response = call(gitlab_fake, "PUT", f"{base}/AWS_KEY", gitlab_fake.admin_token, json={"value": "new"})
    assert response.status_code == 200
    values = sorted(v["value"] for v in call(gitlab_fake, "GET", base, gitlab_fake.admin_token).json())
    assert values in (["new", "stage-value"], ["new", "prod-value"])


def test_s2_group_put_with_blank_filter_is_ambiguous(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = f"/groups/{gitlab_world.group_id}/variables"
    _two_scopes(gitlab_fake, base)
    response = call(gitlab_fake, "PUT", f"{base}/AWS_KEY?filter[environment_scope]=", gitlab_fake.admin_token,
                    json={"value": "new"})
    assert (response.status_code, response.json()) == (409, AMBIGUOUS)


@pytest.mark.parametrize("kind", ["projects", "groups"])
@pytest.mark.parametrize("how", ["query", "json", "form"])
def test_s2_filter_in_query_or_body_selects_the_scope(gitlab_fake: GitLabSandbox, gitlab_world: World, kind: str,
                                                      how: str) -> None:
    owner = gitlab_world.project_id if kind == "projects" else gitlab_world.group_id
    base = f"/{kind}/{owner}/variables"
    _two_scopes(gitlab_fake, base)
    token = gitlab_fake.admin_token
    if how == "query":
        response = call(gitlab_fake, "PUT", f"{base}/AWS_KEY?filter%5Benvironment_scope%5D=staging", token,
                        json={"value": "new"})
    elif how == "json":
        response = call(gitlab_fake, "PUT", f"{base}/AWS_KEY", token,
                        json={"value": "new", "filter": {"environment_scope": "staging"}})
    else:
        response = call(gitlab_fake, "PUT", f"{base}/AWS_KEY", token,
                        data={"value": "new", "filter[environment_scope]": "staging"})
    assert response.status_code == 200
    assert (response.json()["environment_scope"], response.json()["value"]) == ("staging", "new")
    prod = call(gitlab_fake, "GET", f"{base}/AWS_KEY", token, params={"filter[environment_scope]": "production"})
    assert (prod.status_code, prod.json()["value"]) == (200, "prod-value")
    deleted = call(gitlab_fake, "DELETE", f"{base}/AWS_KEY", token, params={"filter[environment_scope]": "staging"})
    assert deleted.status_code == 204
    remaining = call(gitlab_fake, "GET", base, token).json()
    assert [(v["environment_scope"], v["value"]) for v in remaining] == [("production", "prod-value")]


@pytest.mark.parametrize("kind, missing, methods", [("projects", "Variable", ("GET", "PUT", "DELETE")),
                                                    ("groups", "GroupVariable", ("GET", "DELETE"))])
def test_s2_filter_matching_nothing_is_404(gitlab_fake: GitLabSandbox, gitlab_world: World, kind: str,
                                           missing: str, methods: tuple[str, ...]) -> None:
    """Group PUT is not here: it falls back to another scope (test_gitlab_conformance_fallback.py)."""
    owner = gitlab_world.project_id if kind == "projects" else gitlab_world.group_id
    base = f"/{kind}/{owner}/variables"
    _two_scopes(gitlab_fake, base)
    for method in methods:
        response = call(gitlab_fake, method, f"{base}/AWS_KEY", gitlab_fake.admin_token,
                        params={"filter[environment_scope]": "review"}, json={"value": "x"})
        assert (response.status_code, response.json()) == (404, {"message": f"404 {missing} Not Found"}), method


def test_s2_filter_is_exact_not_a_wildcard_match(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = f"/projects/{gitlab_world.project_id}/variables"
    call(gitlab_fake, "POST", base, gitlab_fake.admin_token,
         json={"key": "WILD", "value": "v", "environment_scope": "review/*"})
    token = gitlab_fake.admin_token
    assert call(gitlab_fake, "GET", f"{base}/WILD", token,
                params={"filter[environment_scope]": "review/app-1"}).status_code == 404
    assert call(gitlab_fake, "GET", f"{base}/WILD", token,
                params={"filter[environment_scope]": "*"}).status_code == 404
    assert call(gitlab_fake, "GET", f"{base}/WILD", token,
                params={"filter[environment_scope]": "review/*"}).status_code == 200


def test_s2_python_gitlab_filter_on_get_update_delete(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    """python-gitlab 6.5 sends ``filter={...}`` kwargs as ``filter[environment_scope]`` in the query."""
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_token)
    project = gl.projects.get(gitlab_world.project_path)
    for scope in ("production", "staging"):
        project.variables.create({"key": "PAIR", "value": f"{scope}-v", "environment_scope": scope})
    with pytest.raises(python_gitlab.GitlabGetError) as ambiguous:
        project.variables.get("PAIR")
    assert ambiguous.value.response_code == 409

    staging = project.variables.get("PAIR", filter={"environment_scope": "staging"})
    assert staging.value == "staging-v"
    staging.value = "rotated"
    staging.save(filter={"environment_scope": "staging"})
    project.variables.update("PAIR", {"value": "rotated-2", "filter": {"environment_scope": "production"}})
    assert project.variables.get("PAIR", filter={"environment_scope": "staging"}).value == "rotated"
    assert project.variables.get("PAIR", filter={"environment_scope": "production"}).value == "rotated-2"
    project.variables.delete("PAIR", filter={"environment_scope": "staging"})
    assert [v.environment_scope for v in project.variables.list(get_all=True)] == ["production"]
    put = [e for e in gitlab_fake.log.entries() if e.method == "PUT"]
    assert len(put) == 2 and all(e.status == 200 for e in put)
