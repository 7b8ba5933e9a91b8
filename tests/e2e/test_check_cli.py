"""`rotator check`: ✔ per probe against the emulators; ✘ with the reason, and exit 1, when a party refuses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import NO_BOUNDARY_CHECK, aws_client, client_env, config_toml
from tests.sandbox_support import ROTATOR, seed_one, writes_in


def _check(config: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROTATOR, "check", "--config", str(config), *extra], env=env, text=True,
                          capture_output=True, timeout=120, check=False)


def test_every_probe_passes_and_nothing_is_written(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    config = tmp_path / "rotator.toml"
    config.write_text(config_toml(sandbox.urls(), [seed], database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    for log in (sandbox.aws.log, sandbox.gitlab.log, sandbox.slack.log):  # type: ignore[attr-defined]
        log.clear()
    done = _check(config, client_env(sandbox.urls()))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(line.startswith("✔") for line in lines)
    assert any("sts:GetCallerIdentity" in line for line in lines)
    assert any("GET /user" in line for line in lines) and any("slack auth.test" in line for line in lines)
    assert sum("gitlab variables of" in line for line in lines) == len(seed.targets)
    probe = next(line for line in lines if "gitlab capabilities" in line)
    version = sandbox.gitlab.state.version  # type: ignore[attr-defined]
    for shown in (f"GitLab {version}", "token scopes:", "is an administrator",
                  "filter[environment_scope] on group updates:", "masked_and_hidden:"):
        assert shown in probe, probe
    # moto's caller is no IAM user or role ARN: nothing to simulate, and the line says so.
    assert any("permissions of rotator's principal: not simulated" in line for line in lines)
    assert writes_in(sandbox) == {"aws": [], "gitlab": [], "slack": []}


def test_a_tracked_user_without_the_ci_boundary_is_a_failed_probe_with_the_fixing_command(
        sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    text = config_toml(sandbox.urls(), [seed], database_url=f"sqlite:///{tmp_path / 'r.db'}")
    config = tmp_path / "rotator.toml"
    config.write_text(text.replace(NO_BOUNDARY_CHECK, ""))  # the default: arn:aws:iam::*:policy/ci-boundary/*
    # IAM itself says the user carries no boundary.
    assert "PermissionsBoundary" not in aws_client(sandbox.urls(), "iam").get_user(UserName=seed.iam_user)["User"]
    for log in (sandbox.aws.log, sandbox.gitlab.log, sandbox.slack.log):  # type: ignore[attr-defined]
        log.clear()
    done = _check(config, client_env(sandbox.urls()), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    probes = json.loads(done.stdout)["probes"]
    failed = [p for p in probes if not p["ok"]]
    assert [p["name"] for p in failed] == [f"aws[default] permissions boundary of user {seed.iam_user}"]
    assert failed[0]["detail"].endswith(
        f"fix: aws iam put-user-permissions-boundary --user-name {seed.iam_user} --permissions-boundary "
        "arn:aws:iam::123456789012:policy/ci-boundary/ci-permissions-boundary")
    assert "carries no permissions boundary" in failed[0]["detail"]
    assert writes_in(sandbox) == {"aws": [], "gitlab": [], "slack": []}  # check fixes nothing by itself

    plain = _check(config, client_env(sandbox.urls()))
    assert plain.returncode == 1
    [line] = [line for line in plain.stdout.splitlines() if line.startswith("✘")]
    assert "aws iam put-user-permissions-boundary --user-name" in line


def test_a_refusing_party_is_a_cross_with_the_reason_and_exit_1(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    text = config_toml(sandbox.urls(), [seed], database_url=f"sqlite:///{tmp_path / 'r.db'}")
    config = tmp_path / "rotator.toml"
    config.write_text(text.replace(f'project = "{seed.targets[0].path}"', 'project = "nobody/nothing"'))
    env = client_env(sandbox.urls())
    env["ROTATOR_SLACK_TOKEN"] = "xoxb-not-the-sandbox-token"
    done = _check(config, env, "--json")
    assert done.returncode == 1
    probes = {p["name"]: p for p in json.loads(done.stdout)["probes"]}
    assert probes["gitlab variables of project nobody/nothing"]["ok"] is False
    assert "404" in probes["gitlab variables of project nobody/nothing"]["detail"]
    assert probes["slack auth.test"]["ok"] is False and "invalid_auth" in probes["slack auth.test"]["detail"]
    assert probes["gitlab GET /user"]["ok"] is True  # one failure does not stop the other probes
