"""Fixtures for the integration tests (the `sandbox` fixture itself lives in tests/conftest.py; the GitLab
conformance fixtures in tests/integration/gitlab_fixtures.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rotator.sandbox.aws import AwsSandbox, start_aws
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import client_env


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsSandbox]:
    """The AWS front alone, one per test module (starting it takes a moment)."""
    sandbox = start_aws()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def sandbox_env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """os.environ pointed at the sandbox for one test (endpoints and dummy credentials): rotator's adapters and
    boto3 read them there, as in a deployment."""
    env = client_env(sandbox.urls(), base={})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
