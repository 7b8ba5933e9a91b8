"""Who owns an access key id, read straight from the store's tables with the database driver alone.

`revoke` must contain a key in about a second, and importing SQLAlchemy and Alembic costs more than that
budget allows on a small machine (see benchmarks/containment_latency.py). This reader answers the questions
containment asks of the store, "is this key tracked, and whose is it?" and "when was the T0 of its first
incident?", with read-only queries through sqlite3 (standard library) or psycopg. It never creates, migrates
or writes anything: a database file that does not exist yet means "not tracked". SqlStore
(rotator.adapters.db.store) stays the store; this reads three of its tables, and
tests/integration/test_revoke_sandbox.py checks both agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from rotator.domain import KeyOwner
from rotator.errors import StoreError

_OWNER_SQL = "SELECT credential, account, user_name, user_id, minted_by FROM keys_seen WHERE key_id = {p}"
# A crash between CreateAccessKey and remembering the key leaves it only in the journal (as SqlStore.key_owner).
_JOURNAL_SQL = ("SELECT credential, account, user_name, user_id, NULL FROM rotation_journal "
                "WHERE old_key_id = {p} OR new_key_id = {p} ORDER BY started_at DESC LIMIT 1")


# The T0 of a key's first incident: a re-run of `revoke` on a key that is already Inactive keeps it.
_INCIDENT_SQL = "SELECT t0 FROM incidents WHERE key_id = {p} ORDER BY t0 LIMIT 1"


def earliest_incident_t0(database_url: str, key_id: str) -> datetime | None:
    """T0 of the first incident about ``key_id``; None when there is none (or no database yet).

    Raises StoreError when the database exists but cannot be read."""
    row = _first_row(database_url, [(_INCIDENT_SQL, (key_id,))])
    if row is None or row[0] is None:
        return None
    value = row[0]
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _first(connection: Any, queries: Sequence[tuple[str, tuple[str, ...]]], placeholder: str) -> Any:
    for sql, params in queries:
        row = connection.execute(sql.format(p=placeholder), params).fetchone()
        if row is not None:
            return row
    return None


def _first_row(database_url: str, queries: Sequence[tuple[str, tuple[str, ...]]]) -> Any:
    """The first row the first answering query returns, over one read-only connection to SQLite (no file yet:
    None) or PostgreSQL."""
    backend = database_url.split(":", 1)[0].lower().split("+", 1)[0]
    if backend == "sqlite":
        path = sqlite_path(database_url)
        if path is None or not Path(path).expanduser().is_file():
            return None
        import sqlite3  # only when there is a database to read: `revoke` of an untracked key never pays for it

        uri = f"file:{quote(str(Path(path).expanduser()))}?mode=ro"
        try:
            connection = sqlite3.connect(uri, uri=True, timeout=2)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path} read-only: {exc}", hint="check the file's permissions") from None
        try:
            return _first(connection, queries, "?")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {path}: {exc}",
                             hint="run `rotator db upgrade` once the incident is handled") from None
        finally:
            connection.close()
    if backend == "postgresql":
        import psycopg  # only when the store is PostgreSQL

        parts = urlsplit(database_url)
        try:
            with psycopg.connect(parts._replace(scheme="postgresql").geturl(), connect_timeout=3,
                                 autocommit=True) as pg:
                return _first(pg, queries, "%s")
        except psycopg.Error as exc:
            raise StoreError(f"cannot read PostgreSQL at {parts.hostname or 'the database'}: {type(exc).__name__}",
                             hint="check [service] database_url and that the server is up") from None
    raise StoreError(f"unsupported database scheme {database_url.split(':', 1)[0]!r}",
                     hint="use sqlite:/// or postgresql+psycopg://")


def tracked_key_owner(database_url: str, key_id: str) -> KeyOwner | None:
    """The owner the store knows for ``key_id``; None when the key (or the database) is unknown.

    Raises StoreError when the database exists but cannot be read (locked, not migrated, unreachable).
    """
    return _owner(_first_row(database_url, [(_OWNER_SQL, (key_id,)), (_JOURNAL_SQL, (key_id, key_id))]), key_id)


def _owner(row: Any, key_id: str) -> KeyOwner | None:
    if row is None:
        return None
    credential, account, user_name, user_id, minted_by = row
    return KeyOwner(key_id=key_id, credential=credential, account=str(account), user_name=str(user_name),
                    user_id=user_id, minted_by=minted_by)


def sqlite_path(database_url: str) -> str | None:
    """The file of a SQLAlchemy SQLite URL (``sqlite:///relative.db``, ``sqlite:////abs.db``); None for memory."""
    rest = database_url.split("://", 1)[1] if "://" in database_url else ""
    path = unquote(rest[1:].split("?", 1)[0]) if rest.startswith("/") else ""
    return None if path in ("", ":memory:") else path
