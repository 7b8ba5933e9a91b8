"""Reference §9 "Versions": the fake plays a chosen GitLab release (rotator/sandbox/gitlab/versions.py).

- GET /version reports it;
- before 16.9 a group PUT ignores ``filter[environment_scope]`` and changes the first same-key
  variable (Ci::ChangeVariableService ``find_by!(key:)``), while GET and DELETE already honoured the
  filter (``find_variable``);
- before 17.4 ``masked_and_hidden`` is dropped (the variable is created visible) and responses carry
  no ``hidden`` attribute.
"""

from __future__ import annotations

import gitlab as python_gitlab
import pytest
import requests

from rotator.sandbox.gitlab import GitLabSandbox, start_gitlab
from rotator.sandbox.runner import SandboxError, start_sandbox
from tests.integration.gitlab_support import OK_SECRET, World, call

pytest_plugins = ["tests.integration.gitlab_fixtures"]

AMBIGUOUS = {"message": "There are multiple variables with provided parameters. Please use 'filter[environment_scope]'"}


def _client(sandbox: GitLabSandbox) -> python_gitlab.Gitlab:
    return python_gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)


def _two_group_scopes(gl: python_gitlab.Gitlab, group_id: int) -> None:
    group = gl.groups.get(group_id, lazy=True)
    for scope in ("production", "staging"):
        group.variables.create({"key": "AWS_SECRET_ACCESS_KEY", "value": f"{scope}-secret-value",
                                "environment_scope": scope})


def _stored(sandbox: GitLabSandbox, world: World) -> dict[str, str]:
    return {v.environment_scope: v.value for v in sandbox.state.variables("group", world.group["full_path"])}


@pytest.mark.parametrize("version, reported", [("16.8", "16.8.0-ee"), ("17.3", "17.3.0-ee"),
                                               ("17.6.2", "17.6.2-ee")])
def test_version_endpoint_reports_the_release_played(gitlab_fake: GitLabSandbox, version: str,
                                                     reported: str) -> None:
    gitlab_fake.configure(version=version)
    assert _client(gitlab_fake).version()[0] == reported


def test_version_defaults_to_17_6_and_bad_versions_are_refused(gitlab_fake: GitLabSandbox) -> None:
    with start_gitlab() as fresh:
        assert fresh.settings()["version"] == "17.6.0-ee"
        assert fresh.settings()["admin_mode"] is False
    for bad in ("15.11", "18.0", "seventeen", 17.6):
        with pytest.raises(ValueError, match="version"):
            gitlab_fake.configure(version=bad)
    assert gitlab_fake.settings()["version"] == "17.6.0-ee"  # nothing applied
    refused = requests.put(f"{gitlab_fake.url}/_sandbox/settings", json={"version": "12.0"}, timeout=5)
    assert refused.status_code == 400 and "version" in refused.json()["error"]
    with pytest.raises(ValueError, match="version"):
        start_gitlab(settings={"version": "99.1"})


def test_version_over_http_settings_route(gitlab_fake: GitLabSandbox) -> None:
    changed = requests.put(f"{gitlab_fake.url}/_sandbox/settings", json={"version": "16.8", "admin_mode": True},
                           timeout=5)
    assert changed.status_code == 200
    assert (changed.json()["version"], changed.json()["admin_mode"]) == ("16.8.0-ee", True)
    assert call(gitlab_fake, "GET", "/version", gitlab_fake.admin_token).json()["version"] == "16.8.0-ee"


def test_version_16_8_group_put_ignores_the_filter_and_changes_the_first_same_key_variable(
        gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    gitlab_fake.configure(version="16.8")
    gl = _client(gitlab_fake)
    _two_group_scopes(gl, gitlab_world.group_id)
    group = gl.groups.get(gitlab_world.group_id, lazy=True)
    # python-gitlab sends the filter in the query; 16.8 does not read it on PUT.
    group.variables.update("AWS_SECRET_ACCESS_KEY", {"value": "rotated-staging-secret"},
                           filter={"environment_scope": "staging"})
    stored = _stored(gitlab_fake, gitlab_world)
    assert stored == {"production": "rotated-staging-secret", "staging": "staging-secret-value"}


def test_version_16_8_group_put_answer_names_the_scope_it_changed(gitlab_fake: GitLabSandbox,
                                                                 gitlab_world: World) -> None:
    gitlab_fake.configure(version="16.8")
    _two_group_scopes(_client(gitlab_fake), gitlab_world.group_id)
    base = f"/groups/{gitlab_world.group_id}/variables"
    for how in ({"params": {"filter[environment_scope]": "staging"}},
                {"json": {"value": "x2", "filter": {"environment_scope": "staging"}}}):
        response = call(gitlab_fake, "PUT", f"{base}/AWS_SECRET_ACCESS_KEY", gitlab_fake.admin_token,
                        **({"json": {"value": "x1"}} | how))
        assert (response.status_code, response.json()["environment_scope"]) == (200, "production")
    missing = call(gitlab_fake, "PUT", f"{base}/NOT_THERE", gitlab_fake.admin_token, json={"value": "x"})
    assert (missing.status_code, missing.json()) == (404, {"message": "404 GroupVariable Not Found"})


def test_version_16_8_group_get_and_delete_already_honour_the_filter(gitlab_fake: GitLabSandbox,
                                                                     gitlab_world: World) -> None:
    """lib/api/group_variables.rb GET/DELETE used find_variable long before 16.9 documented the filter."""
    gitlab_fake.configure(version="16.8")
    gl = _client(gitlab_fake)
    _two_group_scopes(gl, gitlab_world.group_id)
    group = gl.groups.get(gitlab_world.group_id, lazy=True)
    with pytest.raises(python_gitlab.GitlabGetError) as ambiguous:
        group.variables.get("AWS_SECRET_ACCESS_KEY")
    assert (ambiguous.value.response_code, ambiguous.value.error_message) == (409, AMBIGUOUS["message"])
    staging = group.variables.get("AWS_SECRET_ACCESS_KEY", filter={"environment_scope": "staging"})
    assert staging.value == "staging-secret-value"
    group.variables.delete("AWS_SECRET_ACCESS_KEY", filter={"environment_scope": "staging"})
    assert [v.environment_scope for v in group.variables.list(get_all=True)] == ["production"]


def test_version_16_9_group_put_honours_the_filter(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    gitlab_fake.configure(version="16.9")
    gl = _client(gitlab_fake)
    _two_group_scopes(gl, gitlab_world.group_id)
    gl.groups.get(gitlab_world.group_id, lazy=True).variables.update(
        "AWS_SECRET_ACCESS_KEY", {"value": "rotated-staging-secret"}, filter={"environment_scope": "staging"})
    stored = _stored(gitlab_fake, gitlab_world)
    assert stored == {"production": "production-secret-value", "staging": "rotated-staging-secret"}


@pytest.mark.parametrize("kind", ["projects", "groups"])
def test_version_17_3_drops_masked_and_hidden(gitlab_fake: GitLabSandbox, gitlab_world: World, kind: str) -> None:
    gitlab_fake.configure(version="17.3")
    gl = _client(gitlab_fake)
    owner = (gl.projects if kind == "projects" else gl.groups).get(
        gitlab_world.project_id if kind == "projects" else gitlab_world.group_id, lazy=True)
    alone = owner.variables.create({"key": "ONLY_HIDDEN_ASKED", "value": OK_SECRET, "masked_and_hidden": True})
    with_masked = owner.variables.create({"key": "MASKED_TOO", "value": OK_SECRET, "masked": True,
                                          "masked_and_hidden": True})
    # Dropped by declared_params: the value comes back, and there is no `hidden` attribute at all.
    assert (alone.value, alone.masked, "hidden" in alone.attributes) == (OK_SECRET, False, False)
    assert (with_masked.value, with_masked.masked, "hidden" in with_masked.attributes) == (OK_SECRET, True, False)
    listed = {v.key: v.attributes for v in owner.variables.list(get_all=True)}
    assert listed["MASKED_TOO"]["value"] == OK_SECRET and "hidden" not in listed["MASKED_TOO"]


def test_version_17_4_hides_with_masked_and_hidden(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    gitlab_fake.configure(version="17.4")
    project = _client(gitlab_fake).projects.get(gitlab_world.project_id, lazy=True)
    created = project.variables.create({"key": "HIDDEN", "value": OK_SECRET, "masked_and_hidden": True})
    assert (created.value, created.masked, created.hidden) == (None, True, True)
    plain = project.variables.create({"key": "PLAIN", "value": "v"})
    assert plain.hidden is False


def test_version_chosen_for_the_whole_sandbox() -> None:
    """What `rotator sandbox` runs: start_sandbox(gitlab_settings=...) passes the settings to GitLab."""
    with pytest.raises(SandboxError, match="cannot play"):
        start_sandbox(gitlab_settings={"version": "15.0"})
    running = start_sandbox(gitlab_settings={"version": "16.8", "admin_mode": True})
    try:
        urls = running.urls()
        version = requests.get(f"{urls['gitlab_url']}/api/v4/version", timeout=5,
                               headers={"PRIVATE-TOKEN": urls["gitlab_token"]})
        assert version.json()["version"] == "16.8.0-ee"
        settings = requests.get(f"{urls['gitlab_url']}/_sandbox/settings", timeout=5).json()
        assert settings["admin_mode"] is True
    finally:
        running.stop()
