"""The state store: one engine (one connection pool) per process, the Store and the service's fleet queries."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rotator.wiring.lazy import Lazy

if TYPE_CHECKING:
    from rotator.adapters.db.store import SqlStore
    from rotator.service.ports import ServiceQueries


class Database:
    def __init__(self, url: str, *, create_new_database: bool = True) -> None:
        """``create_new_database`` False (the service) refuses an empty SQLite file like any database not at
        head, instead of creating the schema: a long-running process never migrates on its own."""
        self.url = url
        self._create_new_database = create_new_database
        self._store: Lazy[SqlStore] = Lazy(self._open)
        self._queries: Lazy[ServiceQueries] = Lazy(self._build_queries)

    @property
    def store(self) -> SqlStore:
        return self._store.get()

    @property
    def outbox(self) -> SqlStore:
        return self.store

    @property
    def service_queries(self) -> ServiceQueries:
        return self._queries.get()

    @property
    def opened(self) -> bool:
        return self._store.built

    def upgrade(self) -> tuple[str | None, str]:
        """Migrate to the newest schema (several processes at once take turns): (revision before, after)."""
        from rotator.adapters.db.store import upgrade_to_head

        return upgrade_to_head(self.url)

    def read_only_store(self) -> SqlStore:
        """A dry run creates no database: it reads one that exists, or says there is none."""
        from rotator.adapters.db.key_index import sqlite_path
        from rotator.adapters.db.store import SqlStore
        from rotator.errors import StoreError

        path = sqlite_path(self.url) if self.url.startswith("sqlite") else None
        if path is not None and not Path(path).expanduser().is_file():
            raise StoreError(f"no database at {path} yet (a dry run creates none)")
        return SqlStore.from_url(self.url)  # refuses a database not at head

    def close(self) -> None:
        if self._store.built:
            self.store.close()

    def _open(self) -> SqlStore:
        from rotator.adapters.db.store import SqlStore, current_revision, ensure_at_head, make_engine, upgrade_to_head

        engine = make_engine(self.url)
        if self._create_new_database and self.url.startswith("sqlite") and current_revision(engine) is None:
            upgrade_to_head(self.url)  # a brand-new local SQLite file holds nothing to lose: create it
        ensure_at_head(engine)
        return SqlStore(engine)

    def _build_queries(self) -> ServiceQueries:
        from rotator.adapters.db.service_queries import SqlServiceQueries

        return SqlServiceQueries(self.store.engine)
