"""Alembic, configured in code: there is no alembic.ini to ship, find or keep in step.

The migrations live in the repository's top-level ``migrations/`` directory; an installed wheel carries
the same files as ``rotator/_migrations``.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import URL, Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from rotator.adapters.db.engine import WRITE_INTENT, make_engine, store_error
from rotator.errors import SchemaNotCurrent, StoreError
from rotator.logs import redact_url

_HERE = Path(__file__).resolve()
# A wheel installs the migrations next to the package; a source checkout (or editable install) has them
# at the repository root. The packaged copy wins: a stray site-packages/migrations belongs to someone else.
_PACKAGE = _HERE.parents[2]  # rotator/ (this file is rotator/adapters/db/migrate.py)
_CANDIDATE_DIRS = (_PACKAGE / "_migrations", _PACKAGE.parent / "migrations")

# Alembic's `context` and `op` are process-wide proxies: two migrations in one process must not overlap.
# (Other processes are kept in turn by the database itself; see migrations/env.py.)
_ALEMBIC_IN_USE = threading.Lock()


def migrations_dir() -> Path:
    for candidate in _CANDIDATE_DIRS:
        if (candidate / "env.py").is_file() and (candidate / "versions").is_dir():
            return candidate
    looked = ", ".join(str(c) for c in _CANDIDATE_DIRS)
    raise StoreError(f"the database migrations are missing (looked in {looked})",
                     hint="reinstall rotator: the package must include rotator/_migrations")


def alembic_config(*, connection: Connection | None = None, url: str | URL | None = None) -> Config:
    """An Alembic Config for rotator's migrations. migrations/env.py uses ``connection`` if given, else
    builds an engine from ``url``; the URL never goes through Alembic's ini parser (a '%' in a
    password would break it)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    if url is not None:
        config.attributes["url"] = url
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StoreError(f"no migration found in {migrations_dir()}", hint="reinstall rotator")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty database."""
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise store_error(engine.url, "reading the schema revision", exc) from exc


def ensure_at_head(engine: Engine) -> None:
    """Raise SchemaNotCurrent unless the database is migrated to exactly the revision this code expects."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    hint = "run `rotator db upgrade`"
    if current is not None and current not in known:
        hint = ("the database was migrated by a newer rotator: run that version, "
                "or upgrade this installation of rotator")
    raise SchemaNotCurrent(
        f"database {redact_url(str(engine.url))} is at revision {current or 'none (empty database)'}, head is {head}",
        hint=hint,
    )


def upgrade_to_head(url: str | URL) -> tuple[str | None, str]:
    """Migrate the database to head. Returns (revision before, revision after). Safe to run from several
    processes at once: the migration takes the database's write lock (SQLite) or an advisory lock
    (PostgreSQL) first, then re-reads the revision."""
    engine = make_engine(url)
    try:
        before = current_revision(engine)
        try:
            with _ALEMBIC_IN_USE, engine.connect() as connection:
                connection.execution_options(**WRITE_INTENT)
                command.upgrade(alembic_config(connection=connection), "head")
        except SQLAlchemyError as exc:
            raise store_error(engine.url, "migrating the schema", exc) from exc
        except CommandError as exc:
            raise StoreError(f"database {redact_url(str(engine.url))}: migration failed: {exc}",
                             hint="the database may have been migrated by a newer rotator; "
                                  "check `rotator --version` against the one that migrated it") from exc
        after = current_revision(engine)
    finally:
        engine.dispose()
    if after is None:
        raise StoreError(f"database {redact_url(str(engine.url))}: migration left no revision behind",
                         hint="report this as a bug in rotator")
    return before, after


def downgrade_to(url: str | URL, revision: str) -> None:
    """Undo migrations down to ``revision`` ("base" empties the schema). For tests and emergencies."""
    engine = make_engine(url)
    try:
        with _ALEMBIC_IN_USE, engine.connect() as connection:
            connection.execution_options(**WRITE_INTENT)
            command.downgrade(alembic_config(connection=connection), revision)
    except SQLAlchemyError as exc:
        raise store_error(engine.url, "downgrading the schema", exc) from exc
    finally:
        engine.dispose()
