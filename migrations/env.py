"""Alembic environment for rotator. Alembic runs this file; rotator configures Alembic in code
(rotator/adapters/db_migrate.py), so there is no alembic.ini.

Apply migrations:  rotator db upgrade --config rotator.toml
Write a new one (against a database at head), then review and tidy what autogenerate wrote:

    python -c "from alembic import command; from rotator.adapters.db.migrate import alembic_config; \
command.revision(alembic_config(url='sqlite:///dev.db'), message='what changed', autogenerate=True)"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from rotator.adapters.db.engine import WRITE_INTENT, make_engine
from rotator.adapters.db.store import metadata

# Any constant works; it only has to be the same in every replica that may migrate at once.
_PG_MIGRATION_LOCK = 7_264_173_402

config = context.config
target_metadata = metadata


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (alembic --sql)."""
    context.configure(
        url=config.attributes["url"],
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _migrate(connection: Connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things: Alembic copies the table instead ("batch" mode).
        render_as_batch=is_sqlite,
        # make_engine issues BEGIN itself on SQLite, so DDL is transactional there too: a crash mid-migration
        # leaves the previous revision intact rather than half a schema.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Replicas starting together: the second waits here, then finds the schema already at head.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        context.run_migrations()


def _migrate_sqlite_without_cascades(connection: Connection) -> None:
    # Batch mode drops and recreates tables; with foreign keys on, dropping `credentials` would cascade into
    # `targets`. The pragma is ignored inside a transaction, so it goes straight to the driver beforehand.
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        _migrate(connection)
        violations = driver.execute("PRAGMA foreign_key_check").fetchall()
        if violations:
            raise RuntimeError(f"migration left {len(violations)} rows violating foreign keys: {violations[:5]}")
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = make_engine(config.attributes["url"])
    try:
        with engine.connect() as own_connection:
            own_connection.execution_options(**WRITE_INTENT)
            _run_on(own_connection)
    finally:
        engine.dispose()


def _run_on(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        _migrate_sqlite_without_cascades(connection)
    else:
        _migrate(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
