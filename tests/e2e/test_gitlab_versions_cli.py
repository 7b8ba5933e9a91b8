"""`rotator rotate` against the GitLab versions people run: a release whose group PUT ignores
filter[environment_scope] (16.8) and one that cannot create hidden variables (17.3). Both refusals come
before any write, to GitLab or to IAM, with exit 1 and a message naming the version and the fix."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import CredentialSeed, TargetSeed, client_env, config_toml, ensure_group, gitlab_admin
from tests.sandbox_support import ROTATOR, clear_logs, seed_one, unique, user_keys, writes_in


def _rotate(sandbox: Sandbox, tmp_path: Path, seed: CredentialSeed, *, config_text: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "rotator.toml"
    config.write_text(config_text or _config(sandbox, tmp_path, seed))
    return subprocess.run([ROTATOR, "rotate", seed.name, "--force", "--json", "--config", str(config)],
                          env=client_env(sandbox.urls()), text=True, capture_output=True, timeout=120, check=False)


def _message(done: subprocess.CompletedProcess[str]) -> str:
    [result] = json.loads(done.stdout)["results"]
    assert result["outcome"] == "failed", result
    message: str = result["message"]
    return message


def _config(sandbox: Sandbox, tmp_path: Path, seed: CredentialSeed) -> str:
    return config_toml(sandbox.urls(), [seed], database_url=f"sqlite:///{tmp_path / 'rotator.db'}")


def test_at_16_8_a_group_key_in_two_scopes_is_refused_before_any_write(sandbox: Sandbox, gitlab: Any,
                                                                       tmp_path: Path) -> None:
    gitlab.configure(version="16.8")
    seed = seed_one(sandbox)
    group_path = f"{seed.name}-group"
    ensure_group(gitlab_admin(sandbox.urls()), group_path).variables.create(
        {"key": "AWS_ACCESS_KEY_ID", "value": "AKIASTAGINGSTAGING00", "environment_scope": "staging",
         "masked": True, "protected": True})
    keys = user_keys(sandbox, seed.iam_user)
    clear_logs(sandbox)
    done = _rotate(sandbox, tmp_path, seed)
    assert done.returncode == 1, done.stdout + done.stderr
    output = _message(done)
    assert "GitLab 16.8.0-ee" in output and "honoured from GitLab 16.9" in output
    assert "production, staging" in output and "upgrade GitLab to 16.9 or later" in output
    written = writes_in(sandbox)
    assert written["gitlab"] == [] and written["aws"] == []
    assert user_keys(sandbox, seed.iam_user) == keys
    staging = gitlab.state.get_variable("group", group_path, "AWS_ACCESS_KEY_ID", "staging")
    assert staging.value == "AKIASTAGINGSTAGING00"


def test_at_17_3_a_missing_hidden_secret_is_not_created_visible(sandbox: Sandbox, gitlab: Any,
                                                                tmp_path: Path) -> None:
    gitlab.configure(version="17.3")
    name = unique("old")
    seed = seed_one(sandbox, name=name, targets=(TargetSeed("project", f"{name}/api"),))
    gl = gitlab_admin(sandbox.urls())
    gl.projects.get(f"{name}/api").variables.delete("AWS_SECRET_ACCESS_KEY")
    text = _config(sandbox, tmp_path, seed).replace(f'project = "{name}/api"',
                                                    f'project = "{name}/api"\ncreate_missing = true')
    keys = user_keys(sandbox, seed.iam_user)
    clear_logs(sandbox)
    done = _rotate(sandbox, tmp_path, seed, config_text=text)
    assert done.returncode == 1, done.stdout + done.stderr
    output = _message(done)
    assert "GitLab 17.3.0-ee cannot create hidden variables" in output
    assert "accept_masked_only = true" in output and "upgrade GitLab to 17.4 or later" in output
    written = writes_in(sandbox)
    assert written["gitlab"] == [] and written["aws"] == []
    assert user_keys(sandbox, seed.iam_user) == keys
    assert gitlab.state.get_variable("project", f"{name}/api", "AWS_SECRET_ACCESS_KEY", "*") is None

    # The operator accepts a masked, visible secret on this GitLab: created masked, never claimed hidden.
    accepted = text.replace("create_missing = true", "create_missing = true\naccept_masked_only = true")
    done = _rotate(sandbox, tmp_path, seed, config_text=accepted)
    assert done.returncode == 0, done.stdout + done.stderr
    created = gitlab.state.get_variable("project", f"{name}/api", "AWS_SECRET_ACCESS_KEY", "*")
    assert created is not None and created.masked and created.protected and not created.hidden
