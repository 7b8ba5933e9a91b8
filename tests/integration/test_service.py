"""The service in-process against the sandbox: ticks decided from the database, the endpoints, an
incident taking a rotation's lease, stopping mid-rotation, reloading the config."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families

from rotator.adapters.db.store import SqlStore, upgrade_to_head
from rotator.config.settings import Settings, load_settings
from rotator.domain import CredentialState, Incident, Phase
from rotator.incident.events import Outcome as ExposureOutcome
from rotator.leases import lease_name
from rotator.rotation.results import Outcome
from rotator.sandbox.runner import Sandbox
from rotator.service.runner import Service, run_service
from tests.service_support import (
    Seeded,
    age_keys,
    create_access_key_calls,
    drop_database,
    gitlab_key_id,
    http_get,
    key_created,
    key_ids,
    own_database,
    seed_fleet,
    service_config,
    service_env,
)

METRIC_NAMES = {"rotator_key_age_seconds", "rotator_rotations", "rotator_step_duration_seconds",
                "rotator_credentials", "rotator_last_tick_timestamp_seconds", "rotator_incidents"}


@pytest.fixture
def environment(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """boto3 reads os.environ; a SIGHUP-style reload reads the config's *_env secrets from it too."""
    env = service_env(sandbox, Fernet.generate_key().decode())
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
                 "ROTATOR_GITLAB_TOKEN", "ROTATOR_SLACK_TOKEN", "ROTATOR_STATE_KEY", "NO_PROXY"):
        monkeypatch.setenv(name, env[name])
    return env


def prefix() -> str:
    return f"s{uuid.uuid4().hex[:6]}"


def configure(tmp_path: Path, sandbox: Sandbox, seeded: list[Seeded], database_url: str, **options: Any) -> Settings:
    path = tmp_path / "rotator.toml"
    path.write_text(service_config(sandbox, seeded, database_url=database_url, **options))
    upgrade_to_head(database_url)
    return load_settings(str(path))


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def aws_calls(sandbox: Sandbox) -> int:
    return len(sandbox.aws.log.entries())


# --- ticks --------------------------------------------------------------------------------------------


def test_a_tick_rotates_what_is_due_then_an_idle_tick_calls_nobody(
        tmp_path: Path, sandbox: Sandbox, environment: dict[str, str], sqlite_url: str) -> None:
    name = prefix()
    seeded = seed_fleet(sandbox, 3, prefix=name)
    fresh = seeded[2]
    age_keys([fresh.iam_user], timedelta(days=1))  # well inside rotate_every: not due
    service = Service(configure(tmp_path, sandbox, seeded, sqlite_url))
    service.prepare()

    first = service.tick_once()
    outcomes = {r.credential: r.outcome for r in first.results}
    assert outcomes == {seeded[0].name: Outcome.ROTATED, seeded[1].name: Outcome.ROTATED,
                        fresh.name: Outcome.NOT_DUE}
    assert first.ok
    for item in seeded[:2]:
        held = gitlab_key_id(sandbox, item.project)
        assert held not in (None, item.key_id)
        assert key_ids(item.iam_user) == {held: "Active"}  # grace and delete_after are 0s: old key gone
    assert gitlab_key_id(sandbox, fresh.project) == fresh.key_id

    # The schedule is now in the database: the next tick decides "nothing due" without calling AWS or GitLab.
    aws_before, gitlab_before = aws_calls(sandbox), len(sandbox.gitlab.log.entries())  # type: ignore[attr-defined]
    second = service.tick_once()
    assert second.due == () and second.results == ()
    assert aws_calls(sandbox) == aws_before
    assert len(sandbox.gitlab.log.entries()) == gitlab_before  # type: ignore[attr-defined]
    service.stop()


def test_a_failing_quarantine_check_costs_the_tick_none_of_its_rotations(
        tmp_path: Path, sandbox: Sandbox, environment: dict[str, str], sqlite_url: str) -> None:
    seeded = seed_fleet(sandbox, 1, prefix=prefix())
    path = tmp_path / "rotator.toml"
    path.write_text(service_config(sandbox, seeded, database_url=sqlite_url) + "\n[events]\nquarantine_check = true\n")
    upgrade_to_head(sqlite_url)
    engine = sqlalchemy.create_engine(sqlite_url)
    with engine.begin() as connection:  # the quarantine ledger's table is gone: every read of it fails
        connection.execute(sqlalchemy.text("DROP TABLE exposure_reports"))
    engine.dispose()
    service = Service(load_settings(str(path)))
    service.prepare()
    summary = service.tick_once()
    assert {r.credential: r.outcome for r in summary.results} == {seeded[0].name: Outcome.ROTATED}
    [failed] = summary.exposures
    assert failed.outcome is ExposureOutcome.FAILED and failed.detail.startswith("quarantine check: ")
    service.stop()


def test_run_once_exit_code_is_1_when_a_credential_is_held(
        tmp_path: Path, sandbox: Sandbox, environment: dict[str, str], sqlite_url: str) -> None:
    seeded = seed_fleet(sandbox, 2, prefix=prefix())
    drifted = seeded[1]
    # Someone pasted another key into the variable: rotator must hold, not overwrite it.
    sandbox.gitlab.state.set_variable("project", drifted.project, "AWS_ACCESS_KEY_ID",  # type: ignore[attr-defined]
                                      "AKIAZZZZZZZZZZZZZZZZ", masked=True, protected=True)
    settings = configure(tmp_path, sandbox, seeded, sqlite_url)
    assert run_service(settings, once=True) == 1
    store = SqlStore.from_url(sqlite_url)
    try:
        held = store.get_status(drifted.name)
        assert held is not None and held.state is CredentialState.HELD
        ok = store.get_status(seeded[0].name)
        assert ok is not None and ok.state is CredentialState.OK and ok.last_rotated_at is not None
    finally:
        store.close()
    # Held credentials wait HELD_RETRY_AFTER before the next try: a second --once is clean.
    assert run_service(settings, once=True) == 0


def test_a_drift_check_holds_a_credential_whose_target_was_changed_by_hand(
        tmp_path: Path, sandbox: Sandbox, environment: dict[str, str], sqlite_url: str) -> None:
    seeded = seed_fleet(sandbox, 2, prefix=prefix(), age=timedelta(days=1))  # not due: only drift checks
    service = Service(configure(tmp_path, sandbox, seeded, sqlite_url), drift_every=timedelta(0))
    service.prepare()
    assert service.tick_once().ok  # first look: both are at rest, with their key recorded
    sandbox.gitlab.state.set_variable("project", seeded[0].project, "AWS_ACCESS_KEY_ID",  # type: ignore[attr-defined]
                                      "AKIAYYYYYYYYYYYYYYYY", masked=True, protected=True)
    summary = service.tick_once()
    outcomes = {d.credential: d.outcome for d in summary.drift}
    assert outcomes == {seeded[0].name: "drift", seeded[1].name: "clean"}
    assert not summary.ok
    status = service.root.store.get_status(seeded[0].name)
    assert status is not None and status.state is CredentialState.HELD
    assert "AKIAYYYYYYYYYYYYYYYY" in (status.last_error or "")
    assert key_ids(seeded[0].iam_user) == {seeded[0].key_id: "Active"}  # a check never changes IAM
    service.stop()


# --- leases: incidents and stopping ----------------------------------------------------------------------


def rotation_in_verify(tmp_path: Path, sandbox: Sandbox, sqlite_url: str) -> tuple[Service, Seeded, SqlStore]:
    """A service whose one due credential is stuck verifying (STS refuses new keys for a while)."""
    [item] = seed_fleet(sandbox, 1, prefix=prefix())
    service = Service(configure(tmp_path, sandbox, [item], sqlite_url, lease_ttl="20s"))
    service.prepare()
    return service, item, SqlStore.from_url(sqlite_url)


def tick_until_key_created(service: Service, store: SqlStore, item: Seeded) -> tuple[threading.Thread, dict[str, Any]]:
    """Start a tick in a thread; return once its rotation journaled the new key. box["summary"] is set at the end."""
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(summary=service.tick_once()), daemon=True)
    thread.start()
    wait_until(key_created(store, item.name), 20, "the rotation to create its key")
    return thread, box


def test_an_incident_takes_precedence_over_a_rotation_lease(
        tmp_path: Path, sandbox: Sandbox, environment: dict[str, str], sqlite_url: str) -> None:
    service, item, store = rotation_in_verify(tmp_path, sandbox, sqlite_url)
    sandbox.aws.set_propagation_delay(6)
    try:
        thread, box = tick_until_key_created(service, store, item)
        # What `rotator revoke` does to a credential under rotation: end the lease, then take it.
        name = lease_name(item.name)
        store.expire_lease(name)
        assert store.try_acquire_lease(name, "incident/test", timedelta(minutes=5)) is not None
        thread.join(timeout=30)
        assert not thread.is_alive()
    finally:
        sandbox.aws.set_propagation_delay(0)
    [result] = box["summary"].results
    assert result.outcome is Outcome.BUSY and "lost the lease" in result.message
    journal = store.open_journal(item.name)
    assert journal is not None and journal.phase is Phase.CREATED  # stopped at its next step, nothing further
    assert gitlab_key_id(sandbox, item.project) == item.key_id  # the new key was never published
    holder = store.lease_holder(name)
    assert holder is not None and holder[0] == "incident/test"  # the service did not release the incident's lease
    calls = create_access_key_calls(sandbox)[item.iam_user]
    again = service.tick_once()  # while the incident holds the lease, the service keeps off
    assert [r.outcome for r in again.results] == [Outcome.BUSY]
    assert create_access_key_calls(sandbox)[item.iam_user] == calls
    store.close()
    service.stop()


def test_stop_ends_a_rotation_at_a_journaled_point_and_the_next_start_resumes_it(
        tmp_path: Path, sandbox: Sandbox, environment: dict[str, str], sqlite_url: str) -> None:
    service, item, store = rotation_in_verify(tmp_path, sandbox, sqlite_url)
    sandbox.aws.set_propagation_delay(4)
    try:
        thread, box = tick_until_key_created(service, store, item)
        service.request_stop()
        thread.join(timeout=30)
        assert not thread.is_alive()
        [result] = box["summary"].results
        assert result.outcome is Outcome.BUSY and "stopping" in result.message
        assert box["summary"].ok  # an interrupted rotation is not a failure
        assert store.lease_holder(lease_name(item.name)) is None  # released
        journal = store.open_journal(item.name)
        assert journal is not None and journal.phase is Phase.CREATED and journal.new_key_id
        service.stop()

        restarted = Service(service.settings)
        restarted.prepare()
        [resumed] = restarted.tick_once().results
    finally:
        sandbox.aws.set_propagation_delay(0)
    assert resumed.outcome is Outcome.ROTATED
    assert gitlab_key_id(sandbox, item.project) == journal.new_key_id  # rolled forward with the journaled key
    assert create_access_key_calls(sandbox)[item.iam_user] == 2  # the seeded key and the one rotation
    store.close()
    restarted.stop()


# --- reload -----------------------------------------------------------------------------------------------


def test_a_broken_config_is_rejected_on_reload_and_a_good_one_applied(
        tmp_path: Path, sandbox: Sandbox, environment: dict[str, str], sqlite_url: str) -> None:
    seeded = seed_fleet(sandbox, 2, prefix=prefix(), age=timedelta(days=1))
    settings = configure(tmp_path, sandbox, seeded[:1], sqlite_url)
    events: list[tuple[str, Mapping[str, Any]]] = []
    service = Service(settings, on_event=lambda kind, data: events.append((kind, data)))
    service.prepare()
    path = Path(settings.source)
    good = path.read_text()

    path.write_text(good.replace('tick = "1s"', 'tick = "soon"'))
    assert service.reload() is False
    assert service.settings is settings
    assert any(kind == "reload_rejected" and "service.tick" in str(data["error"]) for kind, data in events)

    path.write_text(service_config(sandbox, seeded, database_url=sqlite_url, tick="2s"))
    assert service.reload() is True
    assert [c.name for c in service.settings.credentials] == [s.name for s in seeded]
    assert {r.credential for r in service.tick_once().results} == {s.name for s in seeded}

    path.write_text(service_config(sandbox, seeded, database_url=sqlite_url.replace("rotator.db", "other.db")))
    assert service.reload() is False  # a different database needs a restart
    service.stop()


def test_a_reload_during_a_rotation_keeps_its_lease_and_lets_it_finish(
        tmp_path: Path, sandbox: Sandbox, environment: dict[str, str], sqlite_url: str) -> None:
    service, item, store = rotation_in_verify(tmp_path, sandbox, sqlite_url)
    sandbox.aws.set_propagation_delay(3)
    try:
        thread, box = tick_until_key_created(service, store, item)
        before = store.lease_holder(lease_name(item.name))
        token = store.lease_token(lease_name(item.name))
        assert before is not None and before[0] == service.holder
        path = Path(service.settings.source)
        path.write_text(path.read_text().replace('tick = "1s"', 'tick = "2s"'))
        assert service.reload() is True
        thread.join(timeout=30)
        assert not thread.is_alive()
    finally:
        sandbox.aws.set_propagation_delay(0)
    [result] = box["summary"].results
    assert result.outcome is Outcome.ROTATED  # the reload neither interrupted it nor dropped its lease
    assert store.lease_token(lease_name(item.name)) == token  # one tenure from start to finish
    store.close()
    service.stop()


# --- endpoints ------------------------------------------------------------------------------------------


def test_metrics_parse_and_carry_every_metric(tmp_path: Path, sandbox: Sandbox, environment: dict[str, str],
                                              sqlite_url: str) -> None:
    seeded = seed_fleet(sandbox, 2, prefix=prefix())
    ticks: list[Mapping[str, Any]] = []
    service = Service(configure(tmp_path, sandbox, seeded, sqlite_url, tick="30s"),
                      on_event=lambda kind, data: ticks.append(data) if kind == "tick" else None)
    service.start()
    try:
        wait_until(lambda: bool(ticks), 30, "the first tick")
        url = service.url or ""
        assert http_get(f"{url}/healthz") == (200, "ok\n")
        assert http_get(f"{url}/readyz") == (200, "ready\n")
        service.root.store.save_incident(Incident(
            incident_id=str(uuid.uuid4()), key_id=seeded[0].key_id, account="default", user_name=None,
            actor="test", reason="test", t0=datetime.now(UTC)))
        status, body = http_get(f"{url}/metrics")
    finally:
        service.stop()
    assert status == 200
    families = {family.name: family for family in text_string_to_metric_families(body)}
    assert set(families) >= METRIC_NAMES
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("rotator_rotations_total", (("outcome", "rotated"),))] == 2
    assert samples[("rotator_rotations_total", (("outcome", "failed"),))] == 0
    assert samples[("rotator_credentials", (("state", "ok"),))] == 2
    assert samples[("rotator_incidents_total", ())] == 1
    assert samples[("rotator_last_tick_timestamp_seconds", ())] > 0
    for item in seeded:  # just rotated: the new key is seconds old
        assert 0 <= samples[("rotator_key_age_seconds", (("credential", item.name),))] < 3600
    steps = {dict(s.labels).get("step") for s in families["rotator_step_duration_seconds"].samples}
    assert {"intent", "create", "verify", "publish", "retire", "delete"} <= steps


@pytest.fixture
def throwaway_pg_url(pg_url: str) -> Iterator[str]:
    with own_database(pg_url) as url:
        yield url


def test_readyz_fails_when_the_database_is_gone(tmp_path: Path, sandbox: Sandbox, environment: dict[str, str],
                                                throwaway_pg_url: str) -> None:
    seeded = seed_fleet(sandbox, 1, prefix=prefix(), age=timedelta(days=1))
    ticks: list[str] = []
    service = Service(configure(tmp_path, sandbox, seeded, throwaway_pg_url, tick="30s"),
                      on_event=lambda kind, data: ticks.append(kind))
    service.start()
    try:
        wait_until(lambda: "tick" in ticks, 30, "the first tick")
        url = service.url or ""
        assert http_get(f"{url}/readyz")[0] == 200
        drop_database(throwaway_pg_url)
        status, body = http_get(f"{url}/readyz")
        assert status == 503
        assert "database unreachable" in body
        assert http_get(f"{url}/healthz")[0] == 200  # alive, just not ready
        assert http_get(f"{url}/metrics")[0] == 200  # still serves what the process knows
    finally:
        service.stop()
