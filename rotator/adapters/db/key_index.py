"""Who owns an access key id, read straight from the store's tables with the database driver alone.

`revoke` must contain a key in about a second, and importing SQLAlchemy and Alembic costs more than that
budget allows on a small machine (see benchmarks/containment_latency.py). This reader answers the one
question containment asks of the store, "is this key tracked, and whose is it?", with one read-only query
through sqlite3 (standard library) or psycopg. It never creates, migrates or writes anything: a database
file that does not exist yet means "not tracked". SqlStore (rotator.adapters.db.store) stays the store; this
reads two of its tables, and tests/integration/test_revoke_sandbox.py checks both agree.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from rotator.domain import KeyOwner
from rotator.errors import StoreError

_OWNER_SQL = "SELECT credential, account, user_name, user_id, minted_by FROM keys_seen WHERE key_id = {p}"
# A crash between CreateAccessKey and remembering the key leaves it only in the journal (as SqlStore.key_owner).
_JOURNAL_SQL = ("SELECT credential, account, user_name, user_id, NULL FROM rotation_journal "
                "WHERE old_key_id = {p} OR new_key_id = {p} ORDER BY started_at DESC LIMIT 1")


def tracked_key_owner(database_url: str, key_id: str) -> KeyOwner | None:
    """The owner the store knows for ``key_id``; None when the key (or the database) is unknown.

    Raises StoreError when the database exists but cannot be read (locked, not migrated, unreachable).
    """
    scheme = database_url.split(":", 1)[0].lower()
    backend = scheme.split("+", 1)[0]
    if backend == "sqlite":
        return _from_sqlite(database_url, key_id)
    if backend == "postgresql":
        return _from_postgres(database_url, key_id)
    raise StoreError(f"unsupported database scheme {scheme!r}", hint="use sqlite:/// or postgresql+psycopg://")


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


def _from_sqlite(database_url: str, key_id: str) -> KeyOwner | None:
    path = sqlite_path(database_url)
    if path is None or not Path(path).expanduser().is_file():
        return None  # no database yet: nothing is tracked, and creating one is not containment's job
    uri = f"file:{quote(str(Path(path).expanduser()))}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=2)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path} read-only: {exc}", hint="check the file's permissions") from None
    try:
        row = connection.execute(_OWNER_SQL.format(p="?"), (key_id,)).fetchone()
        if row is None:
            row = connection.execute(_JOURNAL_SQL.format(p="?"), (key_id, key_id)).fetchone()
        return _owner(row, key_id)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read keys from {path}: {exc}",
                         hint="run `rotator db upgrade` once the incident is handled") from None
    finally:
        connection.close()


def _from_postgres(database_url: str, key_id: str) -> KeyOwner | None:
    import psycopg  # only when the store is PostgreSQL

    parts = urlsplit(database_url)
    conninfo = parts._replace(scheme="postgresql").geturl()
    try:
        with psycopg.connect(conninfo, connect_timeout=3, autocommit=True) as connection:
            row = connection.execute(_OWNER_SQL.format(p="%s"), (key_id,)).fetchone()
            if row is None:
                row = connection.execute(_JOURNAL_SQL.format(p="%s"), (key_id, key_id)).fetchone()
            return _owner(row, key_id)
    except psycopg.Error as exc:
        where = parts.hostname or "the database"
        raise StoreError(f"cannot read keys from PostgreSQL at {where}: {type(exc).__name__}",
                         hint="check [service] database_url and that the server is up") from None
