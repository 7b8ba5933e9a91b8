"""Reference §3: model validation answers ``400 {"message": {field: [...]}}`` with GitLab's wording."""

from __future__ import annotations

from typing import Any

import gitlab as python_gitlab
import pytest

from rotator.sandbox.gitlab import GitLabSandbox, start_gitlab
from rotator.sandbox.gitlab.model import VariableOwnerKind
from rotator.sandbox.gitlab.store import VariableInvalid
from tests.integration.gitlab_support import OK_KEY_ID, OK_SECRET, Seeder, World, call

pytest_plugins = ["tests.integration.gitlab_fixtures"]

KEY_FORMAT = "can contain only letters, digits and '_'."
SCOPE_FORMAT = "can contain only letters, digits, '-', '_', '/', '$', '{', '}', '.', '*' and spaces"


def _post(gitlab_fake: GitLabSandbox, path: str, **body: Any) -> tuple[int, Any]:
    response = call(gitlab_fake, "POST", path, gitlab_fake.admin_token, json=body)
    return response.status_code, response.json()


def _project(gitlab_world: World) -> str:
    return f"/projects/{gitlab_world.project_id}/variables"


@pytest.mark.parametrize("kind", ["projects", "groups"])
def test_s3_duplicate_key_in_same_scope_is_taken(gitlab_fake: GitLabSandbox, gitlab_world: World, kind: str) -> None:
    base = f"/{kind}/{gitlab_world.project_id if kind == 'projects' else gitlab_world.group_id}/variables"
    assert _post(gitlab_fake, base, key="DUP", value="a")[0] == 201
    assert _post(gitlab_fake, base, key="DUP", value="b") == (
        400, {"message": {"key": ["(DUP) has already been taken"]}})
    assert _post(gitlab_fake, base, key="DUP", value="c", environment_scope="prod")[0] == 201


def test_s3_duplicate_instance_key_is_taken(gitlab_fake: GitLabSandbox) -> None:
    assert _post(gitlab_fake, "/admin/ci/variables", key="INSTANCE_DUP", value="a")[0] == 201
    assert _post(gitlab_fake, "/admin/ci/variables", key="INSTANCE_DUP", value="b") == (
        400, {"message": {"key": ["(INSTANCE_DUP) has already been taken"]}})


def test_s3_same_key_in_another_project_is_allowed(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                                   gitlab_seed: Seeder) -> None:
    other = gitlab_seed.project(gitlab_world.group_id)
    assert _post(gitlab_fake, _project(gitlab_world), key="SHARED", value="a")[0] == 201
    assert _post(gitlab_fake, f"/projects/{other['id']}/variables", key="SHARED", value="a")[0] == 201


def test_s3_moving_a_variable_onto_a_taken_scope_is_refused(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    _post(gitlab_fake, _project(gitlab_world), key="MOVE", value="a", environment_scope="prod")
    _post(gitlab_fake, _project(gitlab_world), key="MOVE", value="b", environment_scope="dev")
    response = call(gitlab_fake, "PUT", f"{_project(gitlab_world)}/MOVE", gitlab_fake.admin_token,
                    params={"filter[environment_scope]": "dev"}, json={"environment_scope": "prod"})
    assert (response.status_code, response.json()) == (400, {"message": {"key": ["(MOVE) has already been taken"]}})


@pytest.mark.parametrize("key, messages", [
    ("HAS-DASH", [KEY_FORMAT]),
    ("with space", [KEY_FORMAT]),
    ("K" * 256, ["is too long (maximum is 255 characters)"]),
    ("", ["can't be blank", KEY_FORMAT]),
])
def test_s3_key_format_and_length(gitlab_fake: GitLabSandbox, gitlab_world: World, key: str,
                                  messages: list[str]) -> None:
    assert _post(gitlab_fake, _project(gitlab_world), key=key, value="v") == (400, {"message": {"key": messages}})


def test_s3_key_of_255_chars_is_fine(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    assert _post(gitlab_fake, _project(gitlab_world), key="K" * 255, value="v")[0] == 201


@pytest.mark.parametrize("value, raw, ok", [
    (OK_SECRET, False, True),
    (OK_KEY_ID, False, True),
    ("a_b+c=d/e@f:g.h~i-j", False, True),
    ("short7!", False, False),
    ("1234567", False, False),
    ("has space in it", False, False),
    ("dollar$sign", False, False),
    ("dollar$sign", True, True),
    ("quote'\"<>{}", True, True),
    ("has space", True, False),
    ("1234567", True, False),
])
def test_s3_masked_value_must_be_maskable(gitlab_fake: GitLabSandbox, gitlab_world: World, value: str, raw: bool,
                                          ok: bool) -> None:
    status, body = _post(gitlab_fake, _project(gitlab_world), key="MASKED", value=value, masked=True, raw=raw)
    if ok:
        assert status == 201
    else:
        assert (status, body) == (400, {"message": {"value": ["is invalid"]}})


def test_s3_maskability_is_rechecked_on_update(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = _project(gitlab_world)
    _post(gitlab_fake, base, key="M", value=OK_SECRET, masked=True)
    bad = call(gitlab_fake, "PUT", f"{base}/M", gitlab_fake.admin_token, json={"value": "no way"})
    assert (bad.status_code, bad.json()) == (400, {"message": {"value": ["is invalid"]}})
    unmask_and_set = call(gitlab_fake, "PUT", f"{base}/M", gitlab_fake.admin_token,
                          json={"value": "no way", "masked": False})
    assert unmask_and_set.status_code == 200
    remask = call(gitlab_fake, "PUT", f"{base}/M", gitlab_fake.admin_token, json={"masked": True})
    assert (remask.status_code, remask.json()) == (400, {"message": {"value": ["is invalid"]}})


def test_s3_instance_value_limit_is_10000_chars(gitlab_fake: GitLabSandbox) -> None:
    assert _post(gitlab_fake, "/admin/ci/variables", key="INSTANCE_BIG", value="x" * 10_000)[0] == 201
    assert _post(gitlab_fake, "/admin/ci/variables", key="INSTANCE_TOO_BIG", value="x" * 10_001) == (
        400, {"message": {"value": ["The value of the provided variable exceeds the 10000 character limit"]}})


def test_s3_project_value_has_no_10000_char_limit(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    assert _post(gitlab_fake, _project(gitlab_world), key="BIG", value="x" * 20_000)[0] == 201


def test_s3_description_at_most_255_chars(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    assert _post(gitlab_fake, _project(gitlab_world), key="D1", value="v", description="d" * 255)[0] == 201
    assert _post(gitlab_fake, _project(gitlab_world), key="D2", value="v", description="d" * 256) == (
        400, {"message": {"description": ["is too long (maximum is 255 characters)"]}})


@pytest.mark.parametrize("scope, ok", [
    ("*", True), ("production", True), ("review/*", True), ("feature-1.x_y", True), ("${CI_ENV} a", True),
    ("prod!", False), ("a,b", False), ("ümlaut", False), ("", False),
])
def test_s3_environment_scope_charset(gitlab_fake: GitLabSandbox, gitlab_world: World, scope: str, ok: bool) -> None:
    status, body = _post(gitlab_fake, _project(gitlab_world), key="SCOPED", value="v", environment_scope=scope)
    if ok:
        assert (status, body["environment_scope"]) == (201, scope)
    else:
        expected = [SCOPE_FORMAT] if scope else ["can't be blank", SCOPE_FORMAT]
        assert (status, body) == (400, {"message": {"environment_scope": expected}})


@pytest.mark.parametrize("kind", ["projects", "groups"])
def test_s3_hidden_variable_masked_cannot_change(gitlab_fake: GitLabSandbox, gitlab_world: World, kind: str) -> None:
    base = f"/{kind}/{gitlab_world.project_id if kind == 'projects' else gitlab_world.group_id}/variables"
    _post(gitlab_fake, base, key="HIDDEN", value=OK_SECRET, masked_and_hidden=True)
    response = call(gitlab_fake, "PUT", f"{base}/HIDDEN", gitlab_fake.admin_token, json={"masked": False})
    assert (response.status_code, response.json()) == (
        400, {"message": {"base": ["The visibility setting cannot be changed for masked and hidden variables."]}})


def test_s3_hidden_value_can_be_updated_but_must_stay_maskable(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = _project(gitlab_world)
    _post(gitlab_fake, base, key="HIDDEN", value=OK_SECRET, masked_and_hidden=True)
    ok = call(gitlab_fake, "PUT", f"{base}/HIDDEN", gitlab_fake.admin_token, json={"value": "N3wSecret/Value+1"})
    assert (ok.status_code, ok.json()["value"], ok.json()["hidden"]) == (200, None, True)
    bad = call(gitlab_fake, "PUT", f"{base}/HIDDEN", gitlab_fake.admin_token, json={"value": "not maskable"})
    assert (bad.status_code, bad.json()) == (400, {"message": {"value": ["is invalid"]}})
    stored = gitlab_fake.state.get_variable("project", gitlab_world.project_path, "HIDDEN")
    assert stored is not None and stored.value == "N3wSecret/Value+1"


def test_s3_masked_and_hidden_with_unmaskable_value_is_refused(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    assert _post(gitlab_fake, _project(gitlab_world), key="H", value="short", masked_and_hidden=True) == (
        400, {"message": {"value": ["is invalid"]}})


def test_s3_changing_hidden_on_update_is_refused(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    """The API never passes ``hidden`` on update, so this rule is reachable only through the model."""
    _post(gitlab_fake, _project(gitlab_world), key="VISIBLE", value=OK_SECRET, masked=True)
    store = gitlab_fake.state.variable_store(VariableOwnerKind.PROJECT, gitlab_world.project_id)
    with pytest.raises(VariableInvalid) as refused:
        store.update("VISIBLE", None, {"hidden": True})
    assert refused.value.errors == {"base": ["Only new variables can be set as masked and hidden."]}


@pytest.mark.parametrize("kind, setting, name", [
    ("projects", "max_project_variables", "project"),
    ("groups", "max_group_variables", "group"),
])
def test_s3_too_many_variables(gitlab_fake: GitLabSandbox, gitlab_world: World, kind: str, setting: str,
                               name: str) -> None:
    setattr(gitlab_fake.state, setting, 2)
    base = f"/{kind}/{gitlab_world.project_id if kind == 'projects' else gitlab_world.group_id}/variables"
    assert _post(gitlab_fake, base, key="A", value="v")[0] == 201
    assert _post(gitlab_fake, base, key="B", value="v")[0] == 201
    assert _post(gitlab_fake, base, key="C", value="v") == (
        400, {"message": {"base": [f"Maximum number of {name} ci variables (2) exceeded"]}})
    updated = call(gitlab_fake, "PUT", f"{base}/A", gitlab_fake.admin_token, json={"value": "w"})
    assert updated.status_code == 200  # the limit counts creations only


def test_s3_default_limits_are_gitlabs(gitlab_fake: GitLabSandbox) -> None:
    assert (gitlab_fake.state.max_project_variables, gitlab_fake.state.max_group_variables,
            gitlab_fake.state.max_instance_variables) == (8000, 30000, 25)


def test_s9_instance_variables_are_capped_at_25_by_default() -> None:
    """Ci::InstanceVariable is Limitable with the global plan limit `ci_instance_level_variables`
    (default 25 in db/structure.sql); the 26th create fails Limitable's validation."""
    with start_gitlab() as sandbox:
        gl = python_gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
        for index in range(25):
            gl.variables.create({"key": f"INSTANCE_{index:02d}", "value": "v"})
        with pytest.raises(python_gitlab.GitlabCreateError) as refused:
            gl.variables.create({"key": "INSTANCE_25", "value": "v"})
        assert refused.value.response_code == 400
        assert refused.value.error_message == {"base": ["Maximum number of ci instance level variables (25) exceeded"]}
        gl.variables.update("INSTANCE_00", {"value": "w"})  # the limit counts creations only
        gl.variables.delete("INSTANCE_01")
        gl.variables.create({"key": "INSTANCE_25", "value": "v"})


def test_s9_instance_variable_limit_is_configurable(gitlab_fake: GitLabSandbox) -> None:
    existing = len(gitlab_fake.state.variables("instance"))
    gitlab_fake.configure(max_instance_variables=existing + 1)
    assert _post(gitlab_fake, "/admin/ci/variables", key="ONE_MORE", value="v")[0] == 201
    assert _post(gitlab_fake, "/admin/ci/variables", key="TWO_MORE", value="v") == (
        400, {"message": {"base": [f"Maximum number of ci instance level variables ({existing + 1}) exceeded"]}})
    gitlab_fake.configure(max_instance_variables=0)  # 0: no limit, as in PlanLimits
    assert _post(gitlab_fake, "/admin/ci/variables", key="TWO_MORE", value="v")[0] == 201
