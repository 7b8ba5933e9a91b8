"""Building the SQLAlchemy engine for SQLite or PostgreSQL, and printing database URLs safely."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Set as AbstractSet
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from rotator.errors import ConfigError, SchemaNotCurrent, StoreError
from rotator.logs import redact_url

# Set on a Connection (``conn.execution_options(**WRITE_INTENT)``) before a transaction that will write.
# On SQLite such a transaction starts with BEGIN IMMEDIATE: it takes the write lock up front, so it waits
# for other writers (busy_timeout) instead of failing with SQLITE_BUSY when a read has to become a write.
WRITE_INTENT = {"rotator_write": True}

SQLITE_BUSY_TIMEOUT_S = 30
# PostgreSQL connections kept open per process. SQLAlchemy's default (5, plus 10 opened and closed again on
# demand) made a 16-worker fleet run open a new server connection (about 3 ms, a backend fork) for a large share
# of its store calls; a pool as large as the usual worker count keeps them.
PG_POOL_SIZE = 16
PG_MAX_OVERFLOW = 16


def make_engine(url: str | URL) -> Engine:
    """An engine safe to share between the threads of one process, and with other processes.

    SQLite: WAL, ``synchronous=FULL`` (a committed journal survives SIGKILL and power loss), 30 s busy
    timeout, foreign keys on; the file's directory is created. PostgreSQL: psycopg 3 with pre-ping.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError("config", "service.database_url", f"{redact_url(str(url))!r} is not a database URL",
                          hint="write sqlite:///path/to/rotator.db or postgresql+psycopg://user@host/dbname") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            # Plain postgresql:// would pick psycopg2, which rotator does not ship.
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True, pool_size=PG_POOL_SIZE, max_overflow=PG_MAX_OVERFLOW,
                             json_serializer=_json_dumps)
    where = redact_url(str(parsed))
    raise ConfigError("config", "service.database_url", f"unsupported database {backend!r} in {where}",
                      hint="use sqlite:///path/to/rotator.db or postgresql+psycopg://user@host/dbname")


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        json_serializer=_json_dumps,
    )
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself: pysqlite's own implicit BEGIN is always DEFERRED
    # and skips DDL, which would leave migrations half-applied after a crash.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Overwrite freed pages, so a wiped sealed secret does not linger in the file.
        cursor.execute("PRAGMA secure_delete=ON")
    finally:
        cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """PRAGMA journal_mode=WAL, retried: converting a new file needs an exclusive lock, and SQLite answers
    "database is locked" at once, without its busy handler, while another process is converting it
    (several replicas or `db upgrade` runs starting together)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _begin_sqlite_transaction(connection: Any) -> None:
    writes = connection.get_execution_options().get("rotator_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def _json_default(value: object) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, AbstractSet | tuple):
        return sorted(value) if isinstance(value, AbstractSet) else list(value)
    raise TypeError(f"{type(value).__name__} cannot be stored as JSON")


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


def store_error(url: str | URL, doing: str, exc: BaseException) -> StoreError:
    """A StoreError naming the database (password hidden), what failed, and the driver's reason.

    Only the driver's first line is kept: SQLAlchemy's full text would repeat the statement parameters.
    """
    orig = getattr(exc, "orig", None) or exc
    reason = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    where = redact_url(str(url))
    if _is_missing_table(orig):
        return SchemaNotCurrent(f"database {where} has no rotator schema: {doing} failed ({reason})",
                                hint="run `rotator db upgrade`")
    if isinstance(exc, OperationalError):
        return StoreError(f"database {where}: {doing} failed: {reason}",
                          hint="check [service] database_url, that the server is up and accepts this user, "
                               "and that a SQLite file's directory is writable")
    return StoreError(f"database {where}: {doing} failed: {reason}",
                      hint="this is likely a bug in rotator or a schema drift; run `rotator db upgrade`, "
                           "and report it with this message if it persists")


def _is_missing_table(orig: object) -> bool:
    # PostgreSQL: SQLSTATE 42P01 undefined_table. SQLite has no codes for it, only the message.
    return getattr(orig, "sqlstate", None) == "42P01" or "no such table" in str(orig)
