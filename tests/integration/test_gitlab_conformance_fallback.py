"""Reference §9 "Filter fallback": a group PUT whose ``filter[environment_scope]`` matches nothing.

lib/api/group_variables.rb (16.9+) hands ``find_variable``'s nil to Ci::ChangeVariableService, whose
``params[:variable] || find_variable`` falls back to ``find_by!(key:)``: the update lands on a
same-key variable of another scope, and the answer shows that scope. Only a key absent everywhere
is a 404. Projects have no such fallback (lib/api/ci/variables.rb answers 404).
"""

from __future__ import annotations

import gitlab as python_gitlab

from rotator.sandbox.gitlab import GitLabSandbox
from tests.integration.gitlab_support import OK_SECRET, World, call

pytest_plugins = ["tests.integration.gitlab_fixtures"]


def _seed(gitlab_fake: GitLabSandbox, world: World, *scopes: str) -> python_gitlab.v4.objects.Group:
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_token)
    group = gl.groups.get(world.group_id, lazy=True)
    for scope in scopes:
        group.variables.create({"key": "AWS_SECRET_ACCESS_KEY", "value": _value(scope),
                                "environment_scope": scope, "masked": True})
    return group


def _value(scope: str) -> str:
    return f"{scope.replace('*', 'all')}-{OK_SECRET}"  # maskable: no '*'


def _stored(gitlab_fake: GitLabSandbox, world: World) -> dict[str, str]:
    return {v.environment_scope: v.value for v in gitlab_fake.state.variables("group", world.group["full_path"])}


def test_fallback_group_put_updates_another_scope(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    group = _seed(gitlab_fake, gitlab_world, "staging")
    group.variables.update("AWS_SECRET_ACCESS_KEY", {"value": f"new-{OK_SECRET}"},
                           filter={"environment_scope": "production"})
    assert _stored(gitlab_fake, gitlab_world) == {"staging": f"new-{OK_SECRET}"}
    put = [e for e in gitlab_fake.log.entries() if e.method == "PUT"]
    assert [e.status for e in put] == [200]


def test_fallback_answer_shows_the_scope_actually_changed(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    _seed(gitlab_fake, gitlab_world, "staging", "review/*")
    response = call(gitlab_fake, "PUT", f"/groups/{gitlab_world.group_id}/variables/AWS_SECRET_ACCESS_KEY",
                    gitlab_fake.admin_token, params={"filter[environment_scope]": "production"},
                    json={"value": f"new-{OK_SECRET}"})
    assert response.status_code == 200
    assert (response.json()["environment_scope"], response.json()["value"]) == ("staging", f"new-{OK_SECRET}")
    assert _stored(gitlab_fake, gitlab_world)["review/*"] == _value("review/*")  # the oldest one was taken


def test_fallback_with_environment_scope_in_the_body_moves_the_other_variable(gitlab_fake: GitLabSandbox,
                                                                             gitlab_world: World) -> None:
    """`target_variable.update(params.except(:key))`: the scope sent in the body is applied to the
    variable found, so the staging variable becomes the production one."""
    _seed(gitlab_fake, gitlab_world, "staging")
    response = call(gitlab_fake, "PUT", f"/groups/{gitlab_world.group_id}/variables/AWS_SECRET_ACCESS_KEY",
                    gitlab_fake.admin_token, params={"filter[environment_scope]": "production"},
                    json={"value": f"new-{OK_SECRET}", "environment_scope": "production"})
    assert (response.status_code, response.json()["environment_scope"]) == (200, "production")
    assert _stored(gitlab_fake, gitlab_world) == {"production": f"new-{OK_SECRET}"}


def test_fallback_key_absent_everywhere_is_404(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    _seed(gitlab_fake, gitlab_world, "staging")
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_token)
    group = gl.groups.get(gitlab_world.group_id, lazy=True)
    try:
        group.variables.update("AWS_ACCESS_KEY_ID", {"value": "x"}, filter={"environment_scope": "production"})
    except python_gitlab.GitlabUpdateError as missing:
        assert (missing.response_code, missing.error_message) == (404, "404 GroupVariable Not Found")
    else:
        raise AssertionError("a key absent in every scope must be a 404")


def test_fallback_filter_matching_exactly_updates_that_scope(gitlab_fake: GitLabSandbox,
                                                             gitlab_world: World) -> None:
    group = _seed(gitlab_fake, gitlab_world, "staging", "production")
    group.variables.update("AWS_SECRET_ACCESS_KEY", {"value": f"new-{OK_SECRET}"},
                           filter={"environment_scope": "production"})
    assert _stored(gitlab_fake, gitlab_world) == {"staging": _value("staging"), "production": f"new-{OK_SECRET}"}


def test_fallback_does_not_exist_for_projects(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_token)
    project = gl.projects.get(gitlab_world.project_id, lazy=True)
    project.variables.create({"key": "K", "value": "v", "environment_scope": "staging"})
    response = call(gitlab_fake, "PUT", f"/projects/{gitlab_world.project_id}/variables/K", gitlab_fake.admin_token,
                    params={"filter[environment_scope]": "production"}, json={"value": "x"})
    assert (response.status_code, response.json()) == (404, {"message": "404 Variable Not Found"})
