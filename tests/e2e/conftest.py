"""Fixtures for the end-to-end tests (the `sandbox` fixture itself lives in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rotator.sandbox.runner import Sandbox


@pytest.fixture
def gitlab(sandbox: Sandbox) -> Iterator[Any]:
    """The sandbox's GitLab, its settings (version, admin mode, limits...) put back after the test: the emulator
    serves the whole module."""
    emulator: Any = sandbox.gitlab
    saved = emulator.settings()
    yield emulator
    emulator.configure(**saved)
