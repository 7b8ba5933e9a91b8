"""Fixtures for the GitLab emulator's conformance tests; test modules load them with
``pytest_plugins = ["tests.integration.gitlab_fixtures"]``.

One emulator serves a whole test module (stopping a server costs half a second, too much per test);
every test seeds its own uniquely named groups and projects over HTTP, the way one seeds a real
GitLab, and ``gitlab_fake`` puts settings, faults, log and rate-limit counters back afterwards.
Names carry a ``gitlab_`` prefix so that no other conftest fixture can shadow them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rotator.sandbox.gitlab import GitLabSandbox, start_gitlab
from tests.integration.gitlab_support import Seeder, World, forget_traffic


@pytest.fixture(scope="module")
def gitlab_server() -> Iterator[GitLabSandbox]:
    sandbox = start_gitlab()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def gitlab_fake(gitlab_server: GitLabSandbox) -> Iterator[GitLabSandbox]:
    """The module's emulator, with settings (every knob of settings.py: version, admin mode, limits...),
    faults, log and rate-limit counters reset after the test."""
    saved = gitlab_server.settings()
    yield gitlab_server
    gitlab_server.configure(**saved)
    gitlab_server.faults.clear()
    forget_traffic(gitlab_server)


@pytest.fixture
def gitlab_seed(gitlab_fake: GitLabSandbox) -> Seeder:
    return Seeder(gitlab_fake)


@pytest.fixture
def gitlab_world(gitlab_seed: Seeder) -> World:
    """Seeded over HTTP; the log and the rate-limit counters start empty for the test's own requests."""
    group = gitlab_seed.group()
    created = World(group=group, project=gitlab_seed.project(group["id"]))
    forget_traffic(gitlab_seed.sandbox)
    return created

