"""rotator.service.ports.ServiceQueries on SQLAlchemy: the fleet-wide reads of the long-running service.

Plain Core SELECTs over the tables SqlStore writes (no ORM objects: a snapshot of 10,000 credentials
is built on every /metrics scrape). One write: the retry time of a credential whose party was unreachable.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, func, or_, select, union, update
from sqlalchemy.exc import SQLAlchemyError

from rotator.adapters.db.engine import WRITE_INTENT, store_error
from rotator.adapters.db.models import UNFINISHED_PHASES, CredentialRow, IncidentRow, JournalRow
from rotator.domain import CredentialState, Phase
from rotator.service.ports import DueCandidate, FleetSnapshot


class SqlServiceQueries:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def due_candidates(self, now: datetime) -> list[DueCandidate]:
        # Two selective halves: what the schedule says is due (or never looked at, or not ok), and every
        # unfinished rotation. An idle fleet matches neither, so the answer is empty and cheap.
        credential, journal = CredentialRow, JournalRow
        scheduled = select(credential.name).where(
            credential.configured.is_(True),
            or_(credential.next_due_at.is_(None), credential.next_due_at <= now,
                credential.state != CredentialState.OK.value),
        )
        in_flight = select(journal.credential).where(journal.phase.in_(UNFINISHED_PHASES))
        names = union(scheduled, in_flight).subquery()
        query = (
            select(credential.name, credential.state, credential.updated_at, credential.next_due_at,
                   credential.retry_at, journal.phase, journal.published_at, journal.deactivated_at,
                   journal.hold_reason)
            .join(names, names.c.name == credential.name)
            .outerjoin(journal, and_(journal.credential == credential.name, journal.phase.in_(UNFINISHED_PHASES)))
            .where(credential.configured.is_(True))
            .order_by(credential.name)
        )
        try:
            with self._engine.connect() as connection:
                rows = connection.execute(query).all()
        except SQLAlchemyError as exc:
            raise store_error(self._engine.url, "finding due credentials", exc) from exc
        return [
            DueCandidate(
                name=row.name, state=CredentialState(row.state), updated_at=row.updated_at,
                next_due_at=row.next_due_at, phase=Phase(row.phase) if row.phase else None,
                published_at=row.published_at, deactivated_at=row.deactivated_at,
                held=row.hold_reason is not None, retry_at=row.retry_at,
            )
            for row in rows
        ]

    def fleet_snapshot(self) -> FleetSnapshot:
        credential = CredentialRow
        try:
            with self._engine.connect() as connection:
                ages = connection.execute(
                    select(credential.name, credential.key_created_at, credential.state)
                    .where(credential.configured.is_(True))).all()
                incidents = connection.execute(select(func.count()).select_from(IncidentRow)).scalar_one()
                # Only credentials in the broken state have unfinished rotations with broken targets: few rows.
                broken = connection.execute(
                    select(JournalRow.broken_targets)
                    .join(credential, credential.name == JournalRow.credential)
                    .where(credential.configured.is_(True), credential.state == CredentialState.BROKEN.value,
                           JournalRow.phase.in_(UNFINISHED_PHASES))).scalars().all()
        except SQLAlchemyError as exc:
            raise store_error(self._engine.url, "reading the fleet for /metrics", exc) from exc
        states: dict[CredentialState, int] = dict.fromkeys(CredentialState, 0)
        for row in ages:
            states[CredentialState(row.state)] += 1
        return FleetSnapshot(key_created_at={row.name: row.key_created_at for row in ages}, states=states,
                             incidents=int(incidents), broken_targets=sum(len(targets or ()) for targets in broken))

    def ping(self) -> None:
        try:
            with self._engine.connect() as connection:
                connection.execute(select(1)).scalar_one()
        except SQLAlchemyError as exc:
            raise store_error(self._engine.url, "checking the database", exc) from exc

    def note_unreachable(self, name: str, now: datetime, delay_for: Callable[[int], timedelta]) -> datetime:
        credential = CredentialRow
        try:
            with self._engine.connect() as connection:
                connection.execution_options(**WRITE_INTENT)
                with connection.begin():
                    failures = connection.execute(
                        update(credential).where(credential.name == name)
                        .values(unreachable_failures=credential.unreachable_failures + 1)
                        .returning(credential.unreachable_failures)).scalar_one_or_none() or 1
                    retry_at = now + delay_for(int(failures))
                    connection.execute(update(credential).where(credential.name == name).values(retry_at=retry_at))
        except SQLAlchemyError as exc:
            raise store_error(self._engine.url, f"scheduling the retry of {name}", exc) from exc
        return retry_at
