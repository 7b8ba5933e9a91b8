"""The Alembic migrations produce exactly the models' schema, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, make_url, text

from rotator.adapters.db.store import (
    current_revision,
    downgrade_to,
    ensure_at_head,
    head_revision,
    make_engine,
    metadata,
    upgrade_to_head,
)
from rotator.errors import SchemaNotCurrent
from rotator.logs import redact_url

ROTATOR = [sys.executable, "-m", "rotator"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url
        return
    url: str = request.getfixturevalue("pg_url")
    engine = make_engine(url)
    with engine.begin() as connection:  # every test starts from an empty database
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    yield url


def schema_diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_upgrade_from_empty_matches_the_models_exactly(empty_db_url: str) -> None:
    assert upgrade_to_head(empty_db_url) == (None, head_revision())
    assert schema_diff(empty_db_url) == []
    engine = make_engine(empty_db_url)
    try:
        ensure_at_head(engine)
        indexes = {index["name"] for index in inspect(engine).get_indexes("rotation_journal")}
    finally:
        engine.dispose()
    assert {"ix_rotation_journal_credential_phase", "ix_rotation_journal_old_key_id",
            "ix_rotation_journal_new_key_id", "uq_rotation_journal_one_unfinished"} <= indexes


def test_downgrade_to_base_then_upgrade_again(empty_db_url: str) -> None:
    upgrade_to_head(empty_db_url)
    downgrade_to(empty_db_url, "base")
    engine = make_engine(empty_db_url)
    try:
        assert current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    assert upgrade_to_head(empty_db_url) == (None, head_revision())
    assert schema_diff(empty_db_url) == []


def test_incidents_recorded_before_the_follow_up_existed_are_closed_by_the_upgrade(empty_db_url: str) -> None:
    """Older incidents were never followed up: after the upgrade no service starts re-auditing them."""
    upgrade_to_head(empty_db_url)
    downgrade_to(empty_db_url, "0004")  # the revision before the incident follow-up
    engine = make_engine(empty_db_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO incidents (incident_id, key_id, actor, reason, t0, steps, status, created_at, updated_at) "
                "VALUES ('old', 'AKIAOLDOLDOLDOLDOLD1', 'alice', '', '2026-01-01 12:00:00', '{}', 'contained', "
                "'2026-01-01 12:00:00', '2026-01-01 12:05:00')"))
    finally:
        engine.dispose()
    upgrade_to_head(empty_db_url)
    from rotator.adapters.db.store import SqlStore

    store = SqlStore(make_engine(empty_db_url))
    try:
        old = store.incident("old")
        assert old is not None and old.closed_at is not None and old.sessions == ()
        assert store.open_incidents() == []
    finally:
        store.close()


def test_ensure_at_head_refuses_an_empty_database_with_the_next_step(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        with pytest.raises(SchemaNotCurrent) as raised:
            ensure_at_head(engine)
    finally:
        engine.dispose()
    assert f"head is {head_revision()}" in str(raised.value)
    assert "none" in raised.value.message
    assert raised.value.hint == "run `rotator db upgrade`"


REPLICA = """
import os, pathlib, time
from rotator.adapters.db.store import upgrade_to_head
sync = pathlib.Path(os.environ["SYNC_DIR"])
(sync / f"ready-{os.getpid()}").touch()
while not (sync / "go").exists():
    time.sleep(0.002)
print(upgrade_to_head(os.environ["ROTATOR_TEST_DB_URL"])[1])
"""


def test_replicas_upgrading_at_once_take_turns(empty_db_url: str, tmp_path: Path) -> None:
    # Separate processes, like replicas: Alembic's proxies are per process, and so is SQLite's file locking.
    # Each one loads everything first, then all start migrating at the same moment.
    env = {**os.environ, "ROTATOR_TEST_DB_URL": empty_db_url, "SYNC_DIR": str(tmp_path)}
    replicas = [subprocess.Popen([sys.executable, "-c", REPLICA], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for _ in range(6000):
        if len(list(tmp_path.glob("ready-*"))) == len(replicas) or any(r.poll() is not None for r in replicas):
            break
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outcomes = [replica.communicate(timeout=120) for replica in replicas]
    assert [replica.returncode for replica in replicas] == [0, 0, 0], [err for _, err in outcomes]
    assert [out.strip() for out, _ in outcomes] == [head_revision()] * 3
    assert schema_diff(empty_db_url) == []


def test_redact_url_never_shows_a_password() -> None:
    assert redact_url("postgresql+psycopg://rotator:s3cr%40t@db:5432/rotator") == \
        "postgresql+psycopg://rotator:***@db:5432/rotator"
    assert "hunter2" not in redact_url("not a url://user:hunter2@host")
    assert redact_url("sqlite:///x.db") == "sqlite:///x.db"


# --- the CLI -----------------------------------------------------------------------------------------------


def run_rotator(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROTATOR_")}
    return subprocess.run([*ROTATOR, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def test_db_upgrade_command_creates_then_reports_already_at_head(tmp_path: Path) -> None:
    database = tmp_path / "state" / "nested" / "rotator.db"  # the directory does not exist yet
    config = tmp_path / "rotator.toml"
    config.write_text(f'[service]\ndatabase_url = "sqlite:///{database}"\n', encoding="utf-8")

    first = run_rotator("db", "upgrade", "--config", str(config), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"database sqlite:///{database}: empty → {head_revision()}"
    assert database.is_file()

    second = run_rotator("db", "upgrade", "--config", str(config), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "already at head" in second.stdout

    as_json = run_rotator("db", "upgrade", "--config", str(config), "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {"database": f"sqlite:///{database}", "from": head_revision(),
                                          "to": head_revision(), "changed": False}


def test_db_upgrade_command_on_postgres(pg_url: str, tmp_path: Path) -> None:
    if make_url(pg_url).password:
        pytest.skip("the config refuses a password in database_url; this server needs one")
    config = tmp_path / "rotator.toml"
    config.write_text(f'[service]\ndatabase_url = "{pg_url}"\n', encoding="utf-8")
    result = run_rotator("db", "upgrade", "--config", str(config), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["to"] == head_revision()


def test_db_upgrade_command_names_an_unreachable_database(tmp_path: Path) -> None:
    config = tmp_path / "rotator.toml"
    config.write_text('[service]\ndatabase_url = "postgresql+psycopg://rotator@127.0.0.1:9/rotator"\n',
                      encoding="utf-8")
    result = run_rotator("db", "upgrade", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "127.0.0.1:9" in result.stderr and "next step" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_command_help_and_lazy_imports(tmp_path: Path) -> None:
    help_text = run_rotator("db", "upgrade", "--help", cwd=tmp_path)
    assert help_text.returncode == 0
    assert "rotator db upgrade --config" in help_text.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, rotator.cli.db_cmd; print('sqlalchemy' in sys.modules)"],
        capture_output=True, text=True, timeout=60, check=True)
    assert probe.stdout.strip() == "False"
