"""Fixtures shared by every test directory. Keep this small and generic: put specific fixtures next to
the tests that use them (tests/<dir>/conftest.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from sqlalchemy import make_url

if TYPE_CHECKING:
    from rotator.sandbox.runner import Sandbox

PG_URL_ENV = "ROTATOR_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `-m "not postgres"` deselects every test that needs the server, however it asks for it.
    for item in items:
        if "pg_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file (not yet created) in the test's own directory."""
    return f"sqlite:///{tmp_path / 'rotator.db'}"


def _libpq_conninfo(sqlalchemy_url: str, database: str | None = None) -> str:
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test module, dropped afterwards.

    The server comes from $ROTATOR_TEST_PG_URL (default: postgres on 127.0.0.1:5432). Skips only when the
    server cannot be reached.
    """
    admin_url = os.environ.get(PG_URL_ENV, DEFAULT_PG_URL)
    try:
        admin = psycopg.connect(_libpq_conninfo(admin_url), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        where = make_url(admin_url).render_as_string(hide_password=True)
        pytest.skip(f"PostgreSQL at {where} is unreachable (set {PG_URL_ENV} to use another server): {exc}")
    database = f"rotator_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{database}"')
        try:
            yield make_url(admin_url).set(database=database).render_as_string(hide_password=False)
        finally:
            # FORCE: a connection a failed test leaked must not keep the database alive (PostgreSQL >= 13).
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """Every emulator (AWS front, GitLab, Slack) for this test module, GitLab's rate limit lifted.

    One per module: starting them takes seconds. Used by tests/integration and tests/e2e alike.
    """
    # Imported here, not at the top: the unit tests never need the emulators and should not pay for importing them.
    from tests.sandbox_support import running_sandbox

    with running_sandbox() as running:
        yield running
