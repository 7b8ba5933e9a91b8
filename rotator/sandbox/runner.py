"""Start every emulator together: the AWS front over moto, the GitLab fake and the Slack fake."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from rotator.errors import RotatorError
from rotator.sandbox.aws import AwsSandbox, start_aws
from rotator.sandbox.slack import SlackSandbox, start_slack


class SandboxError(RotatorError):
    """An emulator could not be started or does not answer."""


class GitLabEmulator(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def admin_token(self) -> str: ...

    def stop(self) -> None: ...


@dataclass
class Sandbox:
    aws: AwsSandbox
    gitlab: GitLabEmulator
    slack: SlackSandbox

    def urls(self) -> dict[str, str]:
        """What a client needs, with the keys of the ``rotator sandbox --json`` line."""
        return {
            "aws_endpoint_url": self.aws.url,
            "gitlab_url": self.gitlab.url,
            "gitlab_token": self.gitlab.admin_token,
            "slack_api_url": self.slack.api_url,
            "slack_token": self.slack.token,
            # POST {"queue_url": ..., "access_key_ids": [...]}: an AWS Health "credentials exposed" event
            "aws_health_event_url": self.aws.health_event_url,
            # POST {"user_name": ..., "account_id": ..., "version": "V3"}: AWS's quarantine policy on a user
            "aws_quarantine_url": self.aws.quarantine_url,
        }

    def health_urls(self) -> list[str]:
        return [f"{base.rstrip('/')}/_sandbox/health" for base in (self.aws.url, self.gitlab.url, self.slack.url)]

    def wait_until_healthy(self, timeout: float = 10.0) -> None:
        """Return once every emulator answers ``/_sandbox/health`` with 200; raise SandboxError otherwise."""
        deadline = time.monotonic() + timeout
        for url in self.health_urls():
            while True:
                problem = _health_problem(url)
                if problem is None:
                    break
                if time.monotonic() > deadline:
                    raise SandboxError(f"emulator at {url} does not answer: {problem}",
                                       hint="check that nothing else holds the port, then start it again")
                time.sleep(0.05)

    def stop(self) -> None:
        for emulator in (self.slack, self.gitlab, self.aws):
            emulator.stop()


def _health_problem(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http://127.0.0.1 URL
            body = json.loads(response.read() or b"{}")
            return None if response.status == 200 and body.get("ok") else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(exc)


def _start_gitlab(host: str, port: int, settings: Mapping[str, object] | None) -> GitLabEmulator:
    # Imported here so that the AWS and Slack emulators stay usable on their own.
    try:
        from rotator.sandbox.gitlab import start_gitlab
    except ImportError as exc:
        raise SandboxError(f"the GitLab emulator is not available: {exc}",
                           hint="reinstall rotator with its sandbox extra: pip install 'rotator[sandbox]'") from exc
    try:
        return start_gitlab(host=host, port=port, settings=settings)
    except ValueError as bad:
        raise SandboxError(f"the GitLab emulator cannot play that: {bad}",
                           hint="choose settings listed in rotator/sandbox/gitlab/settings.py") from bad


def start_sandbox(host: str = "127.0.0.1", port_base: int | None = None,
                  gitlab_settings: Mapping[str, object] | None = None) -> Sandbox:
    """Start AWS, GitLab and Slack emulators on ``host``.

    With ``port_base`` N they listen on N (AWS), N+1 (GitLab) and N+2 (Slack); otherwise on free ports.
    ``gitlab_settings`` chooses the GitLab instance played (rotator/sandbox/gitlab/settings.py), e.g.
    ``{"version": "16.8", "admin_mode": True}``; a running one changes with ``PUT /_sandbox/settings``.
    """
    def port(offset: int) -> int:
        return 0 if port_base is None else port_base + offset

    aws = start_aws(host, port(0))
    try:
        gitlab = _start_gitlab(host, port(1), gitlab_settings)
    except BaseException:
        aws.stop()
        raise
    try:
        slack = start_slack(host, port(2))
    except BaseException:
        gitlab.stop()
        aws.stop()
        raise
    return Sandbox(aws=aws, gitlab=gitlab, slack=slack)
