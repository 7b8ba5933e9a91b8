"""The exposure ledger (rotator.incident.exposure.ExposureLedger) on SQLAlchemy Core, over the table
``exposure_reports`` of the same database as SqlStore. Every method is one short transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from rotator.adapters.db.engine import WRITE_INTENT, store_error
from rotator.adapters.db.models import ExposureRow
from rotator.errors import StoreError
from rotator.incident.events import QUARANTINE, ExposureRecord, Outcome, QuarantineState

_TABLE = cast(Table, ExposureRow.__table__)


class SqlExposureLedger:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def _connection(self, doing: str, *, write: bool = False) -> Iterator[Connection]:
        try:
            with self._engine.connect() as connection:
                if write:
                    connection.execution_options(**WRITE_INTENT)
                with connection.begin():
                    yield connection
        except SQLAlchemyError as exc:
            raise store_error(self._engine.url, doing, exc) from exc

    def get(self, signal_id: str) -> ExposureRecord | None:
        with self._connection("reading an exposure report") as connection:
            row = connection.execute(select(_TABLE).where(_TABLE.c.signal_id == signal_id)).mappings().first()
        return None if row is None else _record(row)

    def for_key(self, key_id: str) -> list[ExposureRecord]:
        with self._connection(f"reading the exposure reports of {key_id}") as connection:
            rows = connection.execute(select(_TABLE).where(_TABLE.c.key_id == key_id)
                                      .order_by(_TABLE.c.first_seen_at)).mappings().all()
        return [_record(row) for row in rows]

    def quarantines(self) -> list[ExposureRecord]:
        with self._connection("reading the quarantined users") as connection:
            rows = connection.execute(select(_TABLE).where(_TABLE.c.source == QUARANTINE)).mappings().all()
        return [_record(row) for row in rows]

    def recent(self, limit: int) -> list[ExposureRecord]:
        with self._connection("reading the latest exposure reports") as connection:
            rows = connection.execute(select(_TABLE).order_by(_TABLE.c.last_seen_at.desc()).limit(limit)
                                      ).mappings().all()
        return [_record(row) for row in rows]

    def save(self, record: ExposureRecord) -> None:
        values = {
            "signal_id": record.signal_id, "source": record.source, "actor": record.actor,
            "account": record.account, "user_name": record.user_name, "key_id": record.key_id,
            "action": record.action, "outcome": record.outcome.value, "detail": record.detail,
            "incident_id": record.incident_id,
            "quarantine": record.quarantine.value if record.quarantine else None,
            "first_seen_at": record.first_seen_at, "last_seen_at": record.last_seen_at,
        }
        with self._connection(f"saving exposure report {record.signal_id}", write=True) as connection:
            dialect = connection.dialect.name
            if dialect not in ("postgresql", "sqlite"):
                raise StoreError(f"unsupported database {dialect!r}", hint="use SQLite or PostgreSQL")
            insert = (postgresql.insert(_TABLE) if dialect == "postgresql" else sqlite.insert(_TABLE)).values(**values)
            connection.execute(insert.on_conflict_do_update(
                index_elements=["signal_id"],
                set_={column: insert.excluded[column] for column in values
                      if column not in ("signal_id", "first_seen_at")}))


def _record(row: Any) -> ExposureRecord:
    return ExposureRecord(
        signal_id=row["signal_id"], source=row["source"], actor=row["actor"], account=row["account"],
        user_name=row["user_name"], key_id=row["key_id"], action=row["action"], outcome=Outcome(row["outcome"]),
        detail=row["detail"], first_seen_at=row["first_seen_at"], last_seen_at=row["last_seen_at"],
        incident_id=row["incident_id"],
        quarantine=QuarantineState(row["quarantine"]) if row["quarantine"] else None)
