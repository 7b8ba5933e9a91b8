"""The bad-config matrix, through the real CLI: `rotator check` exits 2 with one line naming file, key and problem.

Every case fails before any outside call, so no emulator is needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

VALID = """
[gitlab]
url = "http://127.0.0.1:9"
token_env = "ROTATOR_GITLAB_TOKEN"

[slack]
token_env = "ROTATOR_SLACK_TOKEN"

[policy]
grace = "1h"

[[credentials]]
name = "payments-deploy"
iam_user = "ci-payments-deploy"

[[credentials.targets]]
project = "payments/api"

[[credentials]]
name = "artifacts"
iam_user = "ci-artifacts"

[[credentials.targets]]
group = "platform"
"""

TOKENS = {"ROTATOR_GITLAB_TOKEN": "glpat-e2e-canary", "ROTATOR_SLACK_TOKEN": "xoxb-e2e-canary"}


def run_check(config: Path, cwd: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A clean environment: nothing from the developer's shell (AWS_*, ROTATOR_*) may change the outcome.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), "LC_ALL": "C.UTF-8", **extra_env}
    return subprocess.run([sys.executable, "-m", "rotator", "check", "--config", str(config)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


def assert_one_config_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"rotator: config error: {expected}"), lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    for secret in TOKENS.values():
        assert secret not in result.stderr


CASES = {
    "toml syntax error": (VALID.replace('grace = "1h"', "grace = 1h"),
                          "{path}: line 10, column 10: TOML syntax error: Expected newline or end of document "
                          "after a statement"),
    "unknown key": (VALID.replace('token_env = "ROTATOR_SLACK_TOKEN"', 'tokn_env = "ROTATOR_SLACK_TOKEN"'),
                    "{path}: slack.tokn_env: unknown key (known keys: api_url, messages_per_second, security_channel, "
                    "timeout, token_env, token_file)"),
    "inline secret": (VALID.replace('token_env = "ROTATOR_GITLAB_TOKEN"', 'token = "glpat-e2e-canary"'),
                      "{path}: gitlab.token: unknown key (known keys: "),
    "bad duration": (VALID.replace('grace = "1h"', 'grace = "1 hour"'),
                     "{path}: policy.grace: '1 hour' is not a duration; write a whole number and a unit: "
                     "'90s', '15m', '1h', '30d'"),
    "target with two scopes": (VALID.replace('group = "platform"', 'group = "platform"\nproject = "platform/x"'),
                               "{path}: credentials[1].targets[0]: exactly one of project, group or instance = true "
                               "is required (found project and group)"),
    "target with no scope": (VALID.replace('group = "platform"', 'environment_scope = "production"'),
                             "{path}: credentials[1].targets[0]: exactly one of project, group or instance = true "
                             "is required (found none)"),
    "duplicate credential names": (VALID.replace('name = "artifacts"', 'name = "payments-deploy"'),
                                   "{path}: credentials: duplicate credential name 'payments-deploy' "
                                   "(credentials[0] and credentials[1])"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    text, expected = CASES[case]
    path = tmp_path / "rotator.toml"
    path.write_text(text)
    assert_one_config_error(run_check(path, tmp_path, TOKENS), expected.format(path=path))


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    assert_one_config_error(run_check(path, tmp_path, TOKENS),
                            f"{path}: file not found (pass --config PATH or set ROTATOR_CONFIG)")


@pytest.mark.parametrize(("unset", "key"), [("ROTATOR_GITLAB_TOKEN", "gitlab"), ("ROTATOR_SLACK_TOKEN", "slack")])
def test_missing_environment_variable_for_a_needed_secret(tmp_path: Path, unset: str, key: str) -> None:
    path = tmp_path / "rotator.toml"
    path.write_text(VALID)
    env = {name: value for name, value in TOKENS.items() if name != unset}
    assert_one_config_error(run_check(path, tmp_path, env),
                            f"{path}: {key}.token_env: environment variable {unset} is not set")


def test_unreadable_token_file(tmp_path: Path) -> None:
    path = tmp_path / "rotator.toml"
    path.write_text(VALID.replace('token_env = "ROTATOR_GITLAB_TOKEN"', 'token_file = "secrets/gitlab-token"'))
    assert_one_config_error(run_check(path, tmp_path, TOKENS),
                            f"{path}: gitlab.token_file: cannot read {tmp_path / 'secrets' / 'gitlab-token'}: ")
