"""`rotator run` as real processes against the sandbox: replicas sharing PostgreSQL, SIGKILL, SIGTERM,
SIGHUP, and the refusal to start on a database not at head."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, inspect

from rotator.adapters.db.store import SqlStore, upgrade_to_head
from rotator.domain import CredentialState, Phase
from rotator.leases import lease_name
from rotator.sandbox.runner import Sandbox
from tests.sandbox_support import ROTATOR
from tests.service_support import (
    ServiceProcess,
    create_access_key_calls,
    gitlab_key_id,
    key_created,
    key_ids,
    own_database,
    seed_fleet,
    service_config,
    service_env,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def database(pg_url: str) -> Iterator[str]:
    with own_database(pg_url) as url:
        upgrade_to_head(url)
        yield url


@pytest.fixture
def env(sandbox: Sandbox) -> dict[str, str]:
    return service_env(sandbox, Fernet.generate_key().decode())


def start(tmp_path: Path, name: str, config: Path, env: dict[str, str], *extra: str) -> ServiceProcess:
    return ServiceProcess(config, env, *extra, log_path=tmp_path / f"{name}.log")


def test_replicas_on_postgresql_rotate_each_due_credential_exactly_once(
        tmp_path: Path, sandbox: Sandbox, database: str, env: dict[str, str]) -> None:
    seeded = seed_fleet(sandbox, 200, prefix="replica")
    config = tmp_path / "rotator.toml"
    config.write_text(service_config(sandbox, seeded, database_url=database))
    before = create_access_key_calls(sandbox)
    store = SqlStore.from_url(database)
    replicas = [start(tmp_path, f"replica-{i}", config, env) for i in range(2)]
    try:
        def all_rotated() -> bool:
            statuses = store.list_statuses()
            return len(statuses) == 200 and all(s.last_rotated_at is not None for s in statuses)

        replicas[0].wait_for(all_rotated, 150, "every credential to be rotated")
        for replica in replicas:
            replica.signal(signal.SIGTERM)
        assert [replica.wait(30) for replica in replicas] == [0, 0]
    finally:
        for replica in replicas:
            replica.kill()
    after = create_access_key_calls(sandbox)
    rotations = {item.iam_user: after[item.iam_user] - before[item.iam_user] for item in seeded}
    assert Counter(rotations.values()) == Counter({1: 200})  # each exactly once, across both replicas
    for item in seeded:
        status = store.get_status(item.name)
        assert status is not None and status.state is CredentialState.OK  # none held, none failed
        assert store.open_journal(item.name) is None
        held = gitlab_key_id(sandbox, item.project)
        assert key_ids(item.iam_user) == {held: "Active"}
    # Each rotation finished once, and both replicas took a share of the work.
    done_by = Counter(line["credential"] for replica in replicas for line in replica.lines()
                      if line.get("event") == "rotation step" and line.get("step") == "delete")
    assert sum(done_by.values()) == 200 and max(done_by.values()) == 1
    per_replica = [sum(1 for line in replica.lines() if line.get("event") == "rotation step"
                       and line.get("step") == "delete") for replica in replicas]
    assert all(count > 0 for count in per_replica), per_replica
    store.close()


def test_a_replica_killed_mid_rotation_loses_its_lease_and_the_other_finishes(
        tmp_path: Path, sandbox: Sandbox, database: str, env: dict[str, str]) -> None:
    [item] = seed_fleet(sandbox, 1, prefix="killed")
    config = tmp_path / "rotator.toml"
    config.write_text(service_config(sandbox, [item], database_url=database, lease_ttl="3s"))
    store = SqlStore.from_url(database)
    sandbox.aws.set_propagation_delay(6)  # the first replica sits in verify, renewing its lease
    first = start(tmp_path, "first", config, env)
    second: ServiceProcess | None = None
    try:
        first.wait_for(key_created(store, item.name), 30, "the first replica to create the new key")
        journal = store.open_journal(item.name)
        assert journal is not None and journal.new_key_id
        second = start(tmp_path, "second", config, env)
        # While the first lives, the second finds the credential leased and keeps off.
        second.wait_for(lambda: any(line.get("busy") for line in second.events("tick")), 30,  # type: ignore[union-attr]
                        "the second replica to meet the lease")
        first.kill()  # SIGKILL: no release, the lease must expire
        second.wait_for(lambda: (s := store.get_status(item.name)) is not None and s.last_rotated_at is not None,
                        60, "the second replica to finish the rotation")
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        sandbox.aws.set_propagation_delay(0)
        first.kill()
        if second is not None:
            second.kill()
    assert create_access_key_calls(sandbox)[item.iam_user] == 2  # the seeded key and one rotation: resumed
    assert gitlab_key_id(sandbox, item.project) == journal.new_key_id  # the journaled key, rolled forward
    assert key_ids(item.iam_user) == {journal.new_key_id: "Active"}
    finished = [line for line in second.lines() if line.get("event") == "rotation step"]
    assert {"recover", "verify", "publish", "delete"} <= {line.get("step") for line in finished}
    assert store.lease_holder(lease_name(item.name)) is None
    store.close()


def test_sigterm_exits_0_and_leaves_no_half_done_step(tmp_path: Path, sandbox: Sandbox, database: str,
                                                      env: dict[str, str]) -> None:
    [item] = seed_fleet(sandbox, 1, prefix="term")
    config = tmp_path / "rotator.toml"
    config.write_text(service_config(sandbox, [item], database_url=database, stop_timeout="15s"))
    store = SqlStore.from_url(database)
    sandbox.aws.set_propagation_delay(8)
    service = start(tmp_path, "term", config, env)
    try:
        service.wait_for(key_created(store, item.name), 30, "the rotation to create its key")
        service.signal(signal.SIGTERM)
        assert service.wait(20) == 0
    finally:
        sandbox.aws.set_propagation_delay(0)
        service.kill()
    journal = store.open_journal(item.name)
    assert journal is not None and journal.phase is Phase.CREATED  # stopped between two journaled steps
    assert journal.targets_done == frozenset()  # nothing half-published
    assert gitlab_key_id(sandbox, item.project) == item.key_id
    assert store.lease_holder(lease_name(item.name)) is None  # released on the way out
    assert any(line.get("event") == "service stopped" and line.get("clean") for line in service.lines())
    # The next start resumes it from the journal.
    resumed = subprocess.run([ROTATOR, "run", "--once", "--config", str(config)], check=False, env=env,
                             capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert gitlab_key_id(sandbox, item.project) == journal.new_key_id
    store.close()


def test_sighup_with_a_broken_config_keeps_running_on_the_old_one(tmp_path: Path, sandbox: Sandbox,
                                                                  database: str, env: dict[str, str]) -> None:
    seeded = seed_fleet(sandbox, 2, prefix="hup")
    config = tmp_path / "rotator.toml"
    good = service_config(sandbox, seeded[:1], database_url=database)
    config.write_text(good)
    service = start(tmp_path, "hup", config, env)
    try:
        url = service.listen_url()
        service.wait_for(lambda: bool(service.events("tick")), 30, "the first tick")
        config.write_text(good.replace("[policy]", "[policy\n"))  # not TOML any more
        service.signal(signal.SIGHUP)
        service.wait_for(lambda: bool(service.events("config reload rejected; still running on the previous config")),
                         30, "the reload to be rejected")
        ticks = len(service.events("tick"))
        service.wait_for(lambda: len(service.events("tick")) > ticks, 30, "a tick after the rejected reload")
        assert service.process.poll() is None
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
            assert response.status == 200
        # A good config is applied by the next SIGHUP: the second credential starts being rotated.
        config.write_text(service_config(sandbox, seeded, database_url=database))
        service.signal(signal.SIGHUP)
        service.wait_for(lambda: bool(service.events("config reloaded")), 30, "the reload")
        store = SqlStore.from_url(database)
        service.wait_for(lambda: (s := store.get_status(seeded[1].name)) is not None
                         and s.last_rotated_at is not None, 60, "the added credential to be rotated")
        store.close()
        service.signal(signal.SIGTERM)
        assert service.wait(30) == 0
    finally:
        service.kill()
    [rejected] = service.events("config reload rejected; still running on the previous config")
    assert "rotator.toml" in str(rejected["error"])


def test_startup_refuses_a_database_not_at_head(tmp_path: Path, sandbox: Sandbox, env: dict[str, str]) -> None:
    [item] = seed_fleet(sandbox, 1, prefix="schema")
    database = tmp_path / "rotator.db"
    config = tmp_path / "rotator.toml"
    config.write_text(service_config(sandbox, [item], database_url=f"sqlite:///{database}"))
    for extra in (["--once"], []):
        result = subprocess.run([ROTATOR, "run", "--config", str(config), *extra], check=False, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert "rotator db upgrade" in result.stderr
    # The service did not migrate behind the operator's back (no table at all, not even alembic_version).
    engine = create_engine(f"sqlite:///{database}")
    assert inspect(engine).get_table_names() == []
    engine.dispose()
    assert create_access_key_calls(sandbox)[item.iam_user] == 1  # nothing touched AWS either
