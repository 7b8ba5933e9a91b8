"""Every case of the bad-config matrix fails before any outside call: run each against live emulators and
read their request logs. `check`, `rotate` and `status` alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotator.sandbox.runner import Sandbox
from tests.e2e.test_bad_config import CASES, VALID, assert_one_config_error, run_check


def _pointed_at(sandbox: Sandbox, text: str) -> str:
    urls = sandbox.urls()
    slack = f'token_env = "ROTATOR_SLACK_TOKEN"\napi_url = "{urls["slack_api_url"]}"'
    return text.replace('url = "http://127.0.0.1:9"', f'url = "{urls["gitlab_url"]}"').replace(
        'token_env = "ROTATOR_SLACK_TOKEN"', slack, 1)


def _requests(sandbox: Sandbox) -> list[str]:
    gitlab = sandbox.gitlab
    logs = (sandbox.aws.log, gitlab.log, sandbox.slack.log)  # type: ignore[attr-defined]
    return [entry.key for log in logs for entry in log.entries()]


@pytest.mark.parametrize("case", [*CASES, "missing gitlab token"])
def test_no_request_reaches_any_emulator(sandbox: Sandbox, tmp_path: Path, case: str) -> None:
    if case == "missing gitlab token":
        text, expected = VALID, "{path}: gitlab.token_env: environment variable ROTATOR_GITLAB_TOKEN is not set"
        tokens = {"ROTATOR_SLACK_TOKEN": sandbox.urls()["slack_token"]}
    else:
        text, expected = CASES[case]
        tokens = {"ROTATOR_GITLAB_TOKEN": sandbox.urls()["gitlab_token"],
                  "ROTATOR_SLACK_TOKEN": sandbox.urls()["slack_token"]}
    path = tmp_path / "rotator.toml"
    path.write_text(_pointed_at(sandbox, text))
    expected = expected.replace("line 10,", "line 11,")  # _pointed_at added the api_url line above [policy]
    env = {**tokens, "AWS_ENDPOINT_URL": sandbox.aws.url, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "NO_PROXY": "127.0.0.1"}
    for log in (sandbox.aws.log, sandbox.gitlab.log, sandbox.slack.log):  # type: ignore[attr-defined]
        log.clear()
    assert_one_config_error(run_check(path, tmp_path, env), expected.format(path=path))
    assert _requests(sandbox) == []


def test_the_valid_config_does_reach_them(sandbox: Sandbox, tmp_path: Path) -> None:
    """The control: the same set-up with a good config makes requests, so the test above can fail."""
    path = tmp_path / "rotator.toml"
    path.write_text(_pointed_at(sandbox, VALID))
    env = {"ROTATOR_GITLAB_TOKEN": sandbox.urls()["gitlab_token"], "ROTATOR_SLACK_TOKEN": sandbox.urls()["slack_token"],
           "AWS_ENDPOINT_URL": sandbox.aws.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    for log in (sandbox.aws.log, sandbox.gitlab.log, sandbox.slack.log):  # type: ignore[attr-defined]
        log.clear()
    run_check(path, tmp_path, env)
    assert _requests(sandbox) != []
