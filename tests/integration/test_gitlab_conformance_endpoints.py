"""Reference §1: the three variable APIs, their status codes and response shape (raw HTTP)."""

from __future__ import annotations

import pytest

from rotator.sandbox.gitlab import GitLabSandbox
from tests.integration.gitlab_support import OK_SECRET, Seeder, World, call

pytest_plugins = ["tests.integration.gitlab_fixtures"]

DEFAULTS = {"variable_type": "env_var", "hidden": False, "protected": False, "masked": False, "raw": False,
            "environment_scope": "*", "description": None}
INSTANCE_DEFAULTS = {"variable_type": "env_var", "protected": False, "masked": False, "raw": False,
                     "description": None}


def _owner_paths(gitlab_world: World) -> list[tuple[str, str]]:
    return [("project", f"/projects/{gitlab_world.project_id}/variables"),
            ("group", f"/groups/{gitlab_world.group_id}/variables")]


@pytest.mark.parametrize("kind", ["project", "group"])
def test_s1_crud_status_codes_and_defaults(gitlab_fake: GitLabSandbox, gitlab_world: World, kind: str) -> None:
    base = dict(_owner_paths(gitlab_world))[kind]
    token = gitlab_fake.admin_token

    created = call(gitlab_fake, "POST", base, token, json={"key": "K", "value": "v"})
    assert created.status_code == 201
    assert created.json() == {"key": "K", "value": "v", **DEFAULTS}
    assert list(created.json()) == ["variable_type", "key", "value", "hidden", "protected", "masked", "raw",
                                    "environment_scope", "description"]

    fetched = call(gitlab_fake, "GET", f"{base}/K", token)
    assert (fetched.status_code, fetched.json()) == (200, created.json())

    listed = call(gitlab_fake, "GET", base, token)
    assert (listed.status_code, listed.json()) == (200, [created.json()])

    updated = call(gitlab_fake, "PUT", f"{base}/K", token, json={"value": "w", "protected": True,
                                                                   "description": "why"})
    assert updated.status_code == 200
    assert updated.json() == {**created.json(), "value": "w", "protected": True, "description": "why"}

    deleted = call(gitlab_fake, "DELETE", f"{base}/K", token)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert call(gitlab_fake, "GET", f"{base}/K", token).status_code == 404


def test_s1_instance_crud_has_no_scope_and_no_hidden(gitlab_fake: GitLabSandbox) -> None:
    token = gitlab_fake.admin_token
    created = call(gitlab_fake, "POST", "/admin/ci/variables", token,
                   json={"key": "INSTANCE_K1", "value": "v", "environment_scope": "prod"})
    assert created.status_code == 201
    assert created.json() == {"key": "INSTANCE_K1", "value": "v", **INSTANCE_DEFAULTS}
    updated = call(gitlab_fake, "PUT", "/admin/ci/variables/INSTANCE_K1", token, json={"value": "w", "raw": True})
    assert (updated.status_code, updated.json()["value"], updated.json()["raw"]) == (200, "w", True)
    assert call(gitlab_fake, "GET", "/admin/ci/variables/INSTANCE_K1", token).json()["value"] == "w"
    assert any(v["key"] == "INSTANCE_K1" for v in call(gitlab_fake, "GET", "/admin/ci/variables", token).json())
    deleted = call(gitlab_fake, "DELETE", "/admin/ci/variables/INSTANCE_K1", token)
    assert (deleted.status_code, deleted.content) == (204, b"")


@pytest.mark.parametrize("missing, body, error", [
    ("value", {"key": "K"}, "value is missing"),
    ("key", {"value": "v"}, "key is missing"),
    ("both", {}, "key is missing, value is missing"),
])
def test_s1_missing_required_parameter_is_400_error(gitlab_fake: GitLabSandbox, gitlab_world: World, missing: str,
                                                    body: dict[str, str], error: str) -> None:
    for path in (f"/projects/{gitlab_world.project_id}/variables", f"/groups/{gitlab_world.group_id}/variables",
                 "/admin/ci/variables"):
        response = call(gitlab_fake, "POST", path, gitlab_fake.admin_token, json=body)
        assert (response.status_code, response.json()) == (400, {"error": error}), (missing, path)


def test_s1_optional_parameters_are_stored(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    body = {"key": "FULL", "value": "x y z", "protected": True, "masked": False, "raw": True,
            "variable_type": "file", "environment_scope": "review/*", "description": "a file"}
    response = call(gitlab_fake, "POST", f"/projects/{gitlab_world.project_id}/variables", gitlab_fake.admin_token,
                    json=body)
    assert response.status_code == 201
    assert response.json() == {**body, "hidden": False}


def test_s1_invalid_variable_type_is_400(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    response = call(gitlab_fake, "POST", f"/projects/{gitlab_world.project_id}/variables", gitlab_fake.admin_token,
                    json={"key": "K", "value": "v", "variable_type": "secret"})
    assert (response.status_code, response.json()) == (400, {"error": "variable_type does not have a valid value"})


def test_s1_masked_and_hidden_hides_the_value_in_every_response(gitlab_fake: GitLabSandbox,
                                                                gitlab_world: World) -> None:
    token = gitlab_fake.admin_token
    for _, base in _owner_paths(gitlab_world):
        created = call(gitlab_fake, "POST", base, token,
                       json={"key": "SECRET", "value": OK_SECRET, "masked_and_hidden": True})
        assert created.status_code == 201
        assert created.json() == {**DEFAULTS, "key": "SECRET", "value": None, "hidden": True, "masked": True}
        assert call(gitlab_fake, "GET", f"{base}/SECRET", token).json()["value"] is None
        assert [v["value"] for v in call(gitlab_fake, "GET", base, token).json()] == [None]
        updated = call(gitlab_fake, "PUT", f"{base}/SECRET", token, json={"value": OK_SECRET[::-1]})
        assert (updated.status_code, updated.json()["value"], updated.json()["hidden"]) == (200, None, True)
    stored = gitlab_fake.state.get_variable("project", gitlab_world.project_path, "SECRET")
    assert stored is not None and stored.value == OK_SECRET[::-1]  # written, only never shown


def test_s1_put_cannot_rename_and_ignores_masked_and_hidden(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = f"/projects/{gitlab_world.project_id}/variables"
    token = gitlab_fake.admin_token
    call(gitlab_fake, "POST", base, token, json={"key": "ORIGINAL", "value": OK_SECRET})
    response = call(gitlab_fake, "PUT", f"{base}/ORIGINAL", token,
                    json={"key": "RENAMED", "value": "changed1", "masked_and_hidden": True})
    assert response.status_code == 200
    assert (response.json()["key"], response.json()["value"], response.json()["hidden"]) == (
        "ORIGINAL", "changed1", False)
    assert call(gitlab_fake, "GET", f"{base}/RENAMED", token).status_code == 404


def test_s1_form_encoded_bodies_are_accepted(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = f"/projects/{gitlab_world.project_id}/variables"
    created = call(gitlab_fake, "POST", base, gitlab_fake.admin_token,
                   data={"key": "FORM", "value": "v", "protected": "true", "environment_scope": "prod"})
    assert created.status_code == 201
    assert (created.json()["protected"], created.json()["environment_scope"]) == (True, "prod")
    bad = call(gitlab_fake, "POST", base, gitlab_fake.admin_token, data={"key": "F2", "value": "v", "masked": "maybe"})
    assert (bad.status_code, bad.json()) == (400, {"error": "masked is invalid"})


def test_s1_group_scope_is_silently_star_on_free_tier(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder) -> None:
    gitlab_fake.state.tier = "free"
    group = gitlab_seed.group()
    base = f"/groups/{group['id']}/variables"
    created = call(gitlab_fake, "POST", base, gitlab_fake.admin_token,
                   json={"key": "K", "value": "v", "environment_scope": "production"})
    assert (created.status_code, created.json()["environment_scope"]) == (201, "*")
    updated = call(gitlab_fake, "PUT", f"{base}/K", gitlab_fake.admin_token, json={"environment_scope": "staging"})
    assert (updated.status_code, updated.json()["environment_scope"]) == (200, "*")


def test_s1_group_scope_is_kept_on_paid_tier(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    created = call(gitlab_fake, "POST", f"/groups/{gitlab_world.group_id}/variables", gitlab_fake.admin_token,
                   json={"key": "K", "value": "v", "environment_scope": "production"})
    assert (created.status_code, created.json()["environment_scope"]) == (201, "production")


def test_s1_responses_carry_no_id_or_timestamps(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    token = gitlab_fake.admin_token
    call(gitlab_fake, "POST", f"/projects/{gitlab_world.project_id}/variables", token, json={"key": "K", "value": "v"})
    body = call(gitlab_fake, "GET", f"/projects/{gitlab_world.project_id}/variables/K", token).json()
    assert not {"id", "created_at", "updated_at"} & set(body)
