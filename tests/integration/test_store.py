"""SqlStore against real SQLite files and a real PostgreSQL server, through the migrated schema."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import text

from rotator.adapters.db.service_queries import SqlServiceQueries
from rotator.adapters.db.store import SqlStore, make_engine, upgrade_to_head
from rotator.domain import (
    CredentialSpec,
    CredentialState,
    Event,
    Incident,
    Journal,
    KeyOwner,
    Phase,
    ScopeKind,
    TargetSpec,
)
from rotator.errors import LeaseLost, SchemaNotCurrent, StoreError
from rotator.ports import LeaseFence
from rotator.service.ports import QueuedNotification

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
TTL = timedelta(seconds=60)
TABLES = "credentials, targets, keys_seen, rotation_journal, events, incidents, leases, notification_outbox"


@pytest.fixture(scope="module")
def migrated_pg_url(pg_url: str) -> str:
    upgrade_to_head(pg_url)
    return pg_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        upgrade_to_head(sqlite_url)
        return sqlite_url
    url: str = request.getfixturevalue("migrated_pg_url")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY"))
    engine.dispose()
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    store = SqlStore.from_url(db_url)
    yield store
    store.close()


def spec(name: str, *targets: TargetSpec, owners: tuple[str, ...] = ("#team",)) -> CredentialSpec:
    return CredentialSpec(name=name, iam_user=f"ci-{name}", account="prod", owners=owners, targets=targets)


def journal(rotation_id: str, credential: str = "payments", phase: Phase = Phase.INTENT,
            started_at: datetime = T0, **changes: object) -> Journal:
    base = Journal(rotation_id=rotation_id, credential=credential, account="prod", user_name=f"ci-{credential}",
                   user_id="AIDAEXAMPLE", prior_key_ids=("AKIAOLD0000000000001",), old_key_id="AKIAOLD0000000000001",
                   phase=phase, started_at=started_at, updated_at=started_at)
    return replace(base, **changes)  # type: ignore[arg-type]


# --- credentials -------------------------------------------------------------------------------------------


def test_sync_upserts_credentials_and_targets_and_keeps_unconfigured_ones(store: SqlStore) -> None:
    api = TargetSpec(ScopeKind.PROJECT, "payments/api")
    web = TargetSpec(ScopeKind.GROUP, "payments", environment_scope="production", create_missing=True)
    store.sync_credentials([spec("payments", api, web), spec("billing")], T0)

    assert [s.name for s in store.list_statuses()] == ["billing", "payments"]
    status = store.get_status("payments")
    assert status is not None and status.state is CredentialState.OK and status.updated_at == T0

    store.set_status("payments", CredentialState.HELD, T0, last_error="two active keys")
    store.sync_credentials([spec("payments", web, owners=("#payments", "@alice"))], T0 + timedelta(hours=1))

    assert [s.name for s in store.list_statuses()] == ["payments"]
    assert store.get_status("billing") is not None, "unconfigured credentials stay for history"
    kept = store.get_status("payments")
    assert kept is not None and kept.state is CredentialState.HELD, "a config sync must not reset the state"
    with store.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT t.target_id, t.create_missing, c.owners FROM targets t JOIN credentials c ON c.name = t.credential"
        )).all()
    assert [(row[0], bool(row[1])) for row in rows] == [(web.target_id, True)]
    assert '"@alice"' in str(rows[0][2]) or rows[0][2] == ["#payments", "@alice"]


def test_set_status_keeps_unset_fields_but_always_overwrites_last_error(store: SqlStore) -> None:
    store.sync_credentials([spec("payments")], T0)
    store.set_status("payments", CredentialState.ROTATING, T0, current_key_id="AKIAOLD0000000000001",
                     key_created_at=T0 - timedelta(days=30), next_due_at=T0, last_error="throttled")
    later = T0 + timedelta(minutes=5)
    store.set_status("payments", CredentialState.OK, later, last_rotated_at=later)

    status = store.get_status("payments")
    assert status is not None
    assert status.state is CredentialState.OK
    assert status.current_key_id == "AKIAOLD0000000000001"
    assert status.key_created_at == T0 - timedelta(days=30)
    assert status.last_rotated_at == later and status.next_due_at == T0
    assert status.last_error is None and status.updated_at == later


def test_sync_moves_the_next_rotation_to_the_configured_rotate_every(store: SqlStore) -> None:
    store.sync_credentials([spec("payments")], T0)
    store.set_status("payments", CredentialState.OK, T0, current_key_id="AKIANEW0000000000001",
                     key_created_at=T0 - timedelta(minutes=1), last_rotated_at=T0,
                     next_due_at=T0 + timedelta(days=30))
    shorter = replace(spec("payments"), policy=replace(spec("payments").policy, rotate_every=timedelta(days=7)))
    store.sync_credentials([shorter], T0 + timedelta(hours=1))
    status = store.get_status("payments")
    assert status is not None and status.next_due_at == T0 + timedelta(days=7)
    due = SqlServiceQueries(store.engine).due_candidates(T0 + timedelta(days=8))
    assert [c.name for c in due] == ["payments"]  # the service sees it due a week after the rotation


def test_a_failure_on_an_unreachable_party_backs_off_until_another_outcome(store: SqlStore) -> None:
    store.sync_credentials([spec("payments")], T0)
    queries = SqlServiceQueries(store.engine)
    seen: list[int] = []

    def delay(failures: int) -> timedelta:
        seen.append(failures)
        return timedelta(minutes=failures)

    store.set_status("payments", CredentialState.FAILED, T0, last_error="GitLab unreachable")
    assert queries.note_unreachable("payments", T0, delay) == T0 + timedelta(minutes=1)
    store.set_status("payments", CredentialState.FAILED, T0, last_error="GitLab unreachable")
    assert queries.note_unreachable("payments", T0, delay) == T0 + timedelta(minutes=2)
    status = store.get_status("payments")
    assert status is not None and status.retry_at == T0 + timedelta(minutes=2)
    [candidate] = queries.due_candidates(T0)
    assert candidate.retry_at == T0 + timedelta(minutes=2)
    store.set_status("payments", CredentialState.OK, T0)  # it went well: the next failure starts afresh
    store.set_status("payments", CredentialState.FAILED, T0, last_error="GitLab unreachable")
    assert queries.note_unreachable("payments", T0, delay) == T0 + timedelta(minutes=1)
    assert seen == [1, 2, 1]


def test_a_minted_session_key_remembers_the_key_that_minted_it(store: SqlStore, db_url: str) -> None:
    from rotator.adapters.db.key_index import tracked_key_owner

    owner = KeyOwner("ASIAMINTED0000000001", "payments", "prod", "ci-payments", minted_by="AKIAPARENT0000000001")
    store.remember_key(owner, T0, status="minted")
    store.remember_key(replace(owner, minted_by=None), T0 + timedelta(hours=1), status="minted")  # never erased
    assert store.key_owner(owner.key_id) == owner
    assert tracked_key_owner(db_url, owner.key_id) == owner  # what `revoke` reads before containment


def test_the_outbox_keeps_messages_oldest_first(store: SqlStore) -> None:
    for minute, title in ((2, "second"), (1, "first"), (3, "third")):
        store.queue_notification(QueuedNotification("#team", title, ("a line", "another"), "ok",
                                                    T0 + timedelta(minutes=minute), thread="1.000"))
    kept = store.queued_notifications()
    assert [m.title for m in kept] == ["first", "second", "third"] and store.queued_count() == 3
    assert kept[0].lines == ("a line", "another") and kept[0].thread == "1.000" and kept[0].id is not None
    store.notification_failed(kept[0].id, "still refused")
    store.notification_delivered(kept[1].id or 0)
    again = store.queued_notifications()
    assert [(m.title, m.attempts, m.last_error) for m in again] == [("first", 1, "still refused"), ("third", 0, None)]


def test_set_status_of_unknown_credential_raises_with_hint(store: SqlStore) -> None:
    with pytest.raises(StoreError) as raised:
        store.set_status("nope", CredentialState.OK, T0)
    assert "nope" in str(raised.value) and raised.value.hint


# --- journal -----------------------------------------------------------------------------------------------


def test_journal_round_trips_every_field(store: SqlStore) -> None:
    full = journal("r1", phase=Phase.VERIFIED, new_key_id="AKIANEW0000000000001", sealed_secret=b"\x00sealed\xff",
                   targets_done=frozenset({"project:payments/api:*", "group:payments:*"}),
                   published_at=T0 + timedelta(seconds=1), deactivated_at=T0 + timedelta(seconds=2),
                   hold_reason="last used moved", error="GitLab 503", prior_key_ids=("AKIAA", "AKIAB"),
                   held_at=T0 + timedelta(seconds=3), old_last_used_at=T0 + timedelta(seconds=4))
    store.save_journal(full)
    assert store.open_journal("payments") == full

    done = replace(full, phase=Phase.DONE, sealed_secret=None, updated_at=T0 + timedelta(minutes=1))
    store.save_journal(done)
    assert store.open_journal("payments") is None
    assert store.journals("payments") == [done]


def test_open_journal_returns_only_the_unfinished_one(store: SqlStore) -> None:
    for index, phase in enumerate([Phase.DONE, Phase.ROLLED_BACK, Phase.SUPERSEDED, Phase.DISCARDED]):
        store.save_journal(journal(f"old{index}", phase=phase, started_at=T0 + timedelta(days=index)))
    store.save_journal(journal("other-credential", credential="billing", phase=Phase.CREATED))
    in_flight = journal("now", phase=Phase.PUBLISHED, started_at=T0 - timedelta(days=1))
    store.save_journal(in_flight)

    assert store.open_journal("payments") == in_flight
    assert [j.rotation_id for j in store.journals("payments")] == ["now", "old0", "old1", "old2", "old3"]


def test_a_second_unfinished_rotation_of_one_credential_is_refused(store: SqlStore) -> None:
    store.save_journal(journal("first", phase=Phase.CREATED))
    with pytest.raises(StoreError, match="already has an unfinished rotation") as raised:
        store.save_journal(journal("second", phase=Phase.INTENT))
    assert "rotator status" in raised.value.hint
    store.save_journal(journal("first", phase=Phase.SUPERSEDED))
    store.save_journal(journal("second", phase=Phase.INTENT))
    assert store.open_journal("payments") == journal("second", phase=Phase.INTENT)


def test_journals_with_key_finds_old_and_new_keys(store: SqlStore) -> None:
    first = journal("a", phase=Phase.DONE, old_key_id="AKIAK1", new_key_id="AKIAK2")
    second = journal("b", phase=Phase.RETIRED, old_key_id="AKIAK2", new_key_id="AKIAK3",
                     started_at=T0 + timedelta(days=30))
    store.save_journal(second)
    store.save_journal(first)
    assert store.journals_with_key("AKIAK2") == [first, second]
    assert store.journals_with_key("AKIAK3") == [second]
    assert store.journals_with_key("AKIAK9") == []


def test_sqlite_journal_is_durable_and_a_wiped_secret_leaves_no_trace(sqlite_url: str) -> None:
    upgrade_to_head(sqlite_url)
    store = SqlStore.from_url(sqlite_url)
    try:
        with store.engine.connect() as connection:
            pragmas = {name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                       for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "secure_delete")}
        assert pragmas == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 30_000,
                           "secure_delete": 1}
        canary = b"CANARY-SEALED-" + bytes(range(32))
        store.save_journal(journal("r", phase=Phase.CREATED, sealed_secret=canary))
        store.save_journal(journal("r", phase=Phase.PUBLISHED, sealed_secret=None))
        with store.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
    database = sqlite_url.removeprefix("sqlite:///")
    leftovers = [path for path in (database, f"{database}-wal") if os.path.exists(path)
                 and canary in open(path, "rb").read()]  # noqa: SIM115
    assert leftovers == []


# --- keys, events, incidents -------------------------------------------------------------------------------


def test_remember_key_upserts_without_erasing_known_fields(store: SqlStore) -> None:
    owner = KeyOwner("AKIAK1", "payments", "prod", "ci-payments", "AIDA1")
    store.remember_key(owner, T0, status="Active", created_at=T0 - timedelta(days=1))
    store.remember_key(KeyOwner("AKIAK1", None, "prod", "ci-payments"), T0 + timedelta(hours=1), status="Inactive")

    assert store.key_owner("AKIAK1") == owner
    with store.engine.connect() as connection:
        status, first_seen = connection.execute(
            text("SELECT status, first_seen_at FROM keys_seen WHERE key_id = 'AKIAK1'")).one()
    assert status == "Inactive"
    assert str(first_seen).startswith("2026-03-01 12:00:00")


def test_key_owner_falls_back_to_the_journal_then_none(store: SqlStore) -> None:
    store.save_journal(journal("r", phase=Phase.CREATED, new_key_id="AKIANEWONLYINJOURNAL"))
    assert store.key_owner("AKIANEWONLYINJOURNAL") == KeyOwner(
        "AKIANEWONLYINJOURNAL", "payments", "prod", "ci-payments", "AIDAEXAMPLE")
    assert store.key_owner("AKIAUNKNOWN000000000") is None


def test_events_come_back_newest_first_filtered_and_limited(store: SqlStore) -> None:
    for minute in range(5):
        store.append_event(Event(at=T0 + timedelta(minutes=minute), actor="rotator@host", action=f"step{minute}",
                                 outcome="ok", credential="payments" if minute % 2 == 0 else "billing",
                                 key_ids=("AKIAK1", "AKIAK2"),
                                 detail={"n": minute, "nested": {"a": [1, 2]}, "when": T0}))
    # Same instant as the newest: insertion order breaks the tie.
    store.append_event(Event(at=T0 + timedelta(minutes=4), actor="rotator@host", action="tie", outcome="ok"))

    assert [e.action for e in store.events()] == ["tie", "step4", "step3", "step2", "step1", "step0"]
    payments = store.events("payments", limit=2)
    assert [e.action for e in payments] == ["step4", "step2"]
    assert payments[0].key_ids == ("AKIAK1", "AKIAK2") and payments[0].detail == {"n": 4, "nested": {"a": [1, 2]},
                                                                      "when": T0.isoformat()}
    assert payments[0].at == T0 + timedelta(minutes=4)


def test_store_offers_no_way_to_change_events() -> None:
    assert not [name for name in dir(SqlStore) if "event" in name and name not in {"append_event", "events"}]


def test_incidents_insert_then_update(store: SqlStore) -> None:
    incident = Incident(incident_id="inc-1", key_id="AKIAK1", account="prod", user_name="ci-payments",
                        actor="alice", reason="leaked in a public repo", t0=T0, steps={"contain": "ok"})
    store.save_incident(incident)
    updated = replace(incident, steps={"contain": "ok", "notify": "failed"}, status="closed",
                      report_markdown="# Report", report_json='{"ok": true}', slack_thread="C1:123.4",
                      credential="payments")
    store.save_incident(updated)
    store.save_incident(replace(incident, incident_id="inc-0", t0=T0 - timedelta(days=1)))
    store.save_incident(replace(incident, incident_id="inc-other", key_id="AKIAK2"))

    found = store.incidents_for_key("AKIAK1")
    assert [i.incident_id for i in found] == ["inc-0", "inc-1"]
    assert found[1] == updated


def test_incidents_are_listed_open_first_so_a_limit_never_hides_an_open_one(store: SqlStore) -> None:
    old_open = Incident(incident_id="inc-a", key_id="AKIAK5", account="default", user_name="ci-payments",
                        actor="alice", reason="", t0=T0 - timedelta(days=3))
    store.save_incident(old_open)
    for day in (1, 2):
        store.save_incident(replace(old_open, incident_id=f"inc-closed-{day}", t0=T0 - timedelta(days=day),
                                    closed_at=T0))
    store.save_incident(replace(old_open, incident_id="inc-b", t0=T0 - timedelta(days=4)))
    assert [i.incident_id for i in store.list_incidents()] == ["inc-a", "inc-b", "inc-closed-1", "inc-closed-2"]
    assert [i.incident_id for i in store.list_incidents(limit=1)] == ["inc-a"]


def test_incident_follow_up_fields_round_trip_and_open_incidents_are_found(store: SqlStore) -> None:
    cut = {"principal": {"kind": "role", "name": "deploy", "account_id": "222222222222", "path": "/ci/",
                         "account": "prod"}, "status": "denied", "t0": "2026-03-01T12:03:00Z", "cut": True,
           "sessions": ["ASIA2222222222222222"], "line": "sessions of role deploy …: denied"}
    opened = Incident(incident_id="inc-open", key_id="AKIAK3", account="default", user_name="ci-payments",
                      actor="alice", reason="", t0=T0, account_id="123456789012",
                      contained_at=T0 - timedelta(minutes=3), follow_up_at=T0 + timedelta(minutes=20),
                      covered_until=T0 - timedelta(minutes=18),
                      slack_channel="#security", sessions=(cut,))
    closed = replace(opened, incident_id="inc-closed", key_id="AKIAK4", closed_at=T0 + timedelta(hours=1),
                     follow_up_at=None, role_name="deploy")
    store.save_incident(opened)
    store.save_incident(closed)
    assert store.incident("inc-open") == opened and store.incident("inc-closed") == closed
    assert store.incident("nope") is None
    assert [i.incident_id for i in store.open_incidents()] == ["inc-open"]
    store.save_incident(replace(opened, closed_at=T0 + timedelta(hours=2), follow_up_at=None))
    assert store.open_incidents() == []


# --- datetimes ---------------------------------------------------------------------------------------------


def test_datetimes_come_back_aware_utc_whatever_offset_went_in(store: SqlStore) -> None:
    paris = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    store.sync_credentials([spec("payments")], paris)
    status = store.get_status("payments")
    assert status is not None and status.updated_at is not None
    assert status.updated_at.tzinfo is UTC
    assert status.updated_at == paris and status.updated_at.hour == 12


def test_naive_datetimes_are_refused(store: SqlStore) -> None:
    with pytest.raises(StoreError, match="naive datetime"):
        store.sync_credentials([spec("payments")], datetime(2026, 3, 1, 12, 0))


# --- leases ------------------------------------------------------------------------------------------------


SHORT = timedelta(milliseconds=300)  # leases expire by the database's clock: tests wait them out for real


def _near(moment: datetime, expected: datetime) -> bool:
    return abs((moment - expected).total_seconds()) < 5


def test_lease_lifecycle_is_judged_by_the_database_clock(store: SqlStore) -> None:
    assert store.lease_holder("cred:payments") is None
    assert store.try_acquire_lease("cred:payments", "a", TTL) == 1
    holder, expires_at = store.lease_holder("cred:payments") or ("", T0)
    assert holder == "a" and _near(expires_at, datetime.now(UTC) + TTL), "the database's now + ttl"

    assert store.try_acquire_lease("cred:payments", "b", TTL) is None, "held by a"
    assert store.try_acquire_lease("cred:payments", "a", TTL) == 1, "re-acquiring a live lease of ours: same tenure"
    a = LeaseFence("cred:payments", "a", 1, SHORT)
    assert not store.renew_lease(replace(a, holder="b")), "wrong holder"
    assert not store.renew_lease(replace(a, token=7)), "wrong tenure"
    assert store.renew_lease(a)
    holder, expires_at = store.lease_holder("cred:payments") or ("", T0)
    assert _near(expires_at, datetime.now(UTC)), "renewed for SHORT from the database's now"
    assert store.lease_is_current(a) and not store.lease_is_current(replace(a, token=2))

    time.sleep(SHORT.total_seconds() + 0.2)
    assert not store.lease_is_current(a), "expired by the database's clock, even with nobody else holding it"
    assert store.try_acquire_lease("cred:payments", "b", SHORT) == 2, "expired: b takes over, a new tenure"
    assert not store.renew_lease(a), "a lost it"
    assert store.lease_is_current(LeaseFence("cred:payments", "b", 2, SHORT))

    store.release_lease("cred:payments", "a")
    assert (store.lease_holder("cred:payments") or ("",))[0] == "b", "only the holder can release"
    store.release_lease("cred:payments", "b")
    assert store.lease_holder("cred:payments") is None
    assert store.try_acquire_lease("cred:payments", "a", TTL) == 3


def test_expire_lease_lets_an_incident_preempt_the_holder(store: SqlStore) -> None:
    rotation = LeaseFence("cred:payments", "rotation", 1, TTL)
    assert store.try_acquire_lease("cred:payments", "rotation", TTL) == 1
    store.expire_lease("cred:payments")
    assert not store.renew_lease(rotation)
    assert store.try_acquire_lease("cred:payments", "incident", TTL) == 2
    assert (store.lease_holder("cred:payments") or ("",))[0] == "incident"


def _journal(rotation_id: str, phase: Phase = Phase.CREATED) -> Journal:
    return Journal(rotation_id, "payments", "default", "ci-payments", "AIDA1", ("AKIAOLD",), "AKIAOLD", phase, T0, T0)


def test_a_fenced_store_writes_only_while_its_tenure_is_current(store: SqlStore) -> None:
    store.sync_credentials([spec("payments")], T0)
    token = store.try_acquire_lease("credential:payments", "replica-a", SHORT)
    assert token == 1
    fenced = store.fenced(LeaseFence("credential:payments", "replica-a", token, SHORT))
    fenced.save_journal(_journal("r1"))
    fenced.append_event(Event(at=T0, actor="a", action="create_key", outcome="ok", credential="payments"))
    fenced.set_status("payments", CredentialState.ROTATING, T0)
    assert store.open_journal("payments") is not None
    # Each write extended the tenure: it is still ours after more than SHORT in all.
    for _ in range(3):
        time.sleep(SHORT.total_seconds() / 2)
        fenced.append_event(Event(at=T0, actor="a", action="verify", outcome="ok", credential="payments"))

    time.sleep(SHORT.total_seconds() + 0.2)  # replica a stalls past its lease; b takes over
    assert store.try_acquire_lease("credential:payments", "replica-b", TTL) == 2
    before = len(store.events("payments"))
    for write in (lambda: fenced.save_journal(replace(_journal("r1"), phase=Phase.VERIFIED)),
                  lambda: fenced.append_event(Event(at=T0, actor="a", action="publish", outcome="ok",
                                                    credential="payments")),
                  lambda: fenced.set_status("payments", CredentialState.OK, T0),
                  lambda: fenced.remember_key(KeyOwner("AKIANEW", "payments", "default", "ci-payments"), T0,
                                              status="Active")):
        with pytest.raises(LeaseLost, match="no longer ours"):
            write()
    journal = store.open_journal("payments")
    assert journal is not None and journal.phase is Phase.CREATED, "the stale replica changed nothing"
    assert len(store.events("payments")) == before and store.key_owner("AKIANEW") is None
    status = store.get_status("payments")
    assert status is not None and status.state is CredentialState.ROTATING


def test_an_incident_taking_the_lease_fences_the_rotation_out(store: SqlStore) -> None:
    store.sync_credentials([spec("payments")], T0)
    rotation = store.fenced(LeaseFence("credential:payments", "rotation", 1, TTL))
    assert store.try_acquire_lease("credential:payments", "rotation", TTL) == 1
    rotation.save_journal(_journal("r1"))
    store.expire_lease("credential:payments")
    assert store.try_acquire_lease("credential:payments", "incident", TTL) == 2
    store.save_journal(replace(_journal("r1"), phase=Phase.SUPERSEDED))  # the incident's own write
    with pytest.raises(LeaseLost):
        rotation.save_journal(replace(_journal("r1"), phase=Phase.VERIFIED))
    assert [j.phase for j in store.journals("payments")] == [Phase.SUPERSEDED]


def test_broken_targets_survive_a_round_trip(store: SqlStore) -> None:
    store.save_journal(replace(_journal("r1"), broken_targets=frozenset({"project:a:*", "group:g:prod"})))
    journal = store.open_journal("payments")
    assert journal is not None and journal.broken_targets == {"project:a:*", "group:g:prod"}


def test_racing_threads_on_a_new_lease_leave_exactly_one_winner(store: SqlStore) -> None:
    contenders = 8
    for round_number in range(5):
        name = f"race-{round_number}"
        barrier = threading.Barrier(contenders)

        def contend(holder: str, name: str = name, barrier: threading.Barrier = barrier) -> bool:
            barrier.wait()
            return store.try_acquire_lease(name, holder, TTL) is not None

        with ThreadPoolExecutor(contenders) as pool:
            wins = list(pool.map(contend, [f"t{i}" for i in range(contenders)]))
        assert wins.count(True) == 1, wins
        assert store.lease_token(name) == 1


def _hammer(url: str, holder: str, wins_needed: int, shared: Any) -> None:
    """Take and give back one lease ``wins_needed`` times, counting how often two holders were inside at once.

    ``shared`` holds multiprocessing primitives so the same code serves threads and processes.
    """
    store = SqlStore.from_url(url)
    shared.start.wait()
    wins = attempts = 0
    try:
        while wins < wins_needed and attempts < 20_000:
            attempts += 1
            if store.try_acquire_lease("hammered", holder, TTL) is None:
                time.sleep(0.001)  # a real contender backs off; spinning only starves the holder's release
                continue
            with shared.lock:
                shared.in_hold.value += 1
                if shared.in_hold.value > 1:
                    shared.overlaps.value += 1
            time.sleep(0.005)  # hold it for a moment, so a second holder would have the chance to show up
            with shared.lock:
                shared.in_hold.value -= 1
            store.release_lease("hammered", holder)
            wins += 1
    finally:
        store.close()
    with shared.lock:
        shared.wins.value += wins


def _shared(context: Any, parties: int) -> SimpleNamespace:
    return SimpleNamespace(lock=context.Lock(), start=context.Barrier(parties), in_hold=context.Value("i", 0),
                           overlaps=context.Value("i", 0), wins=context.Value("i", 0))


def test_threads_hammering_one_lease_never_hold_it_together(store: SqlStore, db_url: str) -> None:
    shared = _shared(multiprocessing.get_context("spawn"), 4)
    threads = [threading.Thread(target=_hammer, args=(db_url, f"thread{i}", 15, shared)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert shared.wins.value == 4 * 15
    assert shared.overlaps.value == 0
    token = store.lease_token("hammered")
    assert token is not None and token >= 4, "each of the 4 threads began at least one tenure"


def test_two_processes_hammering_one_lease_never_hold_it_together(store: SqlStore, db_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    shared = _shared(context, 2)
    wins_needed = 20
    processes = [context.Process(target=_hammer, args=(db_url, f"process{i}", wins_needed, shared))
                 for i in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0, 0]
    assert shared.wins.value == 2 * wins_needed
    assert shared.overlaps.value == 0
    assert store.lease_holder("hammered") is None


# --- schema guard ------------------------------------------------------------------------------------------


def test_store_refuses_a_database_that_is_not_migrated(sqlite_url: str) -> None:
    with pytest.raises(SchemaNotCurrent, match="head is"):
        SqlStore.from_url(sqlite_url)
    unchecked = SqlStore.from_url(sqlite_url, require_current_schema=False)
    try:
        with pytest.raises(SchemaNotCurrent, match="rotator db upgrade"):
            unchecked.get_status("payments")
    finally:
        unchecked.close()
