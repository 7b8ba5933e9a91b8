"""Two replicas on one PostgreSQL database, as real processes: leases are judged by the database's clock and
fenced by their token.

- Replicas whose clocks differ by far more than lease_ttl (one started an hour ahead through
  ROTATOR_CLOCK_OFFSET) still rotate each credential exactly once: one CreateAccessKey, one pair of PUTs per
  target, and every history event of a rotation from one replica.
- A replica paused (SIGSTOP) past lease_ttl in the middle of a rotation, then resumed (SIGCONT) after the
  other replica took over and finished, writes nothing more: no AWS or GitLab write and no journal or
  history row after it resumed; it ends busy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from rotator.adapters.db.store import SqlStore
from rotator.domain import Phase
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import CredentialSeed, TargetSeed, client_env, config_toml
from tests.sandbox_support import ROTATOR, every_target_works, seed_one, unique, user_keys

STATE_KEY = Fernet.generate_key().decode()
AWS_READS = ("Get", "List", "Describe", "Lookup")


@pytest.fixture(autouse=True)
def _no_delay(sandbox: Sandbox) -> Iterator[None]:
    yield
    sandbox.aws.set_propagation_delay(0)


def replica_config(sandbox: Sandbox, tmp_path: Path, seeds: list[CredentialSeed], database_url: str, actor: str,
                   lease_ttl: str, rotate_every: str = "30d") -> Path:
    path = tmp_path / f"{actor}.toml"
    path.write_text(config_toml(sandbox.urls(), seeds, database_url=database_url,
                                extra_service={"actor": actor, "lease_ttl": lease_ttl},
                                policy={"rotate_every": rotate_every, "grace": "0s", "delete_after": "0s",
                                        "verify_timeout": "60s"}))
    return path


def env_for(sandbox: Sandbox, **extra: str) -> dict[str, str]:
    return {**client_env(sandbox.urls(), state_key=STATE_KEY), "ROTATOR_LOG_LEVEL": "warning", **extra}


def upgrade(sandbox: Sandbox, config: Path) -> None:
    done = subprocess.run([ROTATOR, "db", "upgrade", "--config", str(config)], env=env_for(sandbox),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def create_calls(sandbox: Sandbox) -> Counter[str]:
    return Counter(str((e.get("requestParameters") or {}).get("userName"))
                   for e in sandbox.aws.events(region="us-east-1")
                   if e["eventName"] == "CreateAccessKey" and not e.get("errorCode"))


def test_replicas_whose_clocks_differ_by_an_hour_rotate_each_credential_exactly_once(
        sandbox: Sandbox, tmp_path: Path, pg_url: str) -> None:
    seeds = [seed_one(sandbox, targets=(TargetSeed("project", f"{unique('skew')}/api"),)) for _ in range(6)]
    # Clocks two and three hours ahead: both replicas find the fresh seeded keys due under a 90-minute policy,
    # and neither finds a key due again once either replica rotated it. They differ by an hour, >> lease_ttl.
    a = replica_config(sandbox, tmp_path, seeds, pg_url, "replica-a", lease_ttl="5s", rotate_every="90m")
    b = replica_config(sandbox, tmp_path, seeds, pg_url, "replica-b", lease_ttl="5s", rotate_every="90m")
    upgrade(sandbox, a)
    sandbox.aws.set_propagation_delay(3)  # every rotation spends ~3 s in verify: the replicas overlap
    gitlab: Any = sandbox.gitlab
    gitlab.log.clear()
    seeded = create_calls(sandbox)
    # At info level: the tick lines say which credentials each replica found busy.
    runs = [subprocess.Popen([ROTATOR, "run", "--once", "--config", str(config)],
                             env=env_for(sandbox, ROTATOR_LOG_LEVEL="info", **offset),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for config, offset in ((a, {"ROTATOR_CLOCK_OFFSET": "7200"}), (b, {"ROTATOR_CLOCK_OFFSET": "10800"}))]
    outputs = [run.communicate(timeout=180)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    # They did contend: the replica an hour ahead found leases the other held live (judged by its own clock
    # they had expired an hour ago) and stayed off.
    assert any('"busy"' in line for output in outputs for line in output.splitlines() if '"tick"' in line), outputs
    created = create_calls(sandbox)
    store = SqlStore.from_url(pg_url)
    try:
        for seed in seeds:
            assert created[seed.iam_user] - seeded[seed.iam_user] == 1, (seed.name, outputs)
            assert every_target_works(sandbox, seed) == []
            assert list(user_keys(sandbox, seed.iam_user).values()) == ["Active"]
            secret_puts = [e for e in gitlab.log.entries() if e.method == "PUT" and e.status == 200
                           and e.path.endswith("/variables/AWS_SECRET_ACCESS_KEY")
                           and (seed.targets[0].path or "").replace("/", "%2F") in e.path]
            assert len(secret_puts) == 1, seed.name
            actors = {e.actor for e in store.events(seed.name, limit=200) if e.action != "notify_digest"}
            assert len(actors) == 1, (seed.name, actors)  # one replica did the whole rotation
            [journal] = store.journals(seed.name)
            assert journal.phase is Phase.DONE
    finally:
        store.close()


def test_a_replica_paused_past_its_lease_writes_nothing_after_the_other_took_over(
        sandbox: Sandbox, tmp_path: Path, pg_url: str) -> None:
    seed = seed_one(sandbox)
    a = replica_config(sandbox, tmp_path, [seed], pg_url, "paused-a", lease_ttl="3s")
    b = replica_config(sandbox, tmp_path, [seed], pg_url, "taker-b", lease_ttl="3s")
    upgrade(sandbox, a)
    sandbox.aws.set_propagation_delay(6)  # replica a waits in verify, renewing its lease about once a second
    store = SqlStore.from_url(pg_url)
    seeded = create_calls(sandbox)
    paused = subprocess.Popen([ROTATOR, "rotate", seed.name, "--force", "--json", "--config", str(a)],
                              env=env_for(sandbox), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            journal = store.open_journal(seed.name)
            if journal is not None and journal.phase is Phase.CREATED:
                break
            time.sleep(0.05)
        else:
            pytest.fail("replica a never created its key")
        os.kill(paused.pid, signal.SIGSTOP)
        stopped_at = time.time()
        time.sleep(4)  # past lease_ttl (3 s) by the database's clock
        taker = subprocess.run([ROTATOR, "rotate", seed.name, "--json", "--config", str(b)], env=env_for(sandbox),
                               capture_output=True, text=True, timeout=120, check=False)
        assert taker.returncode == 0, taker.stdout + taker.stderr
        [taken] = json.loads(taker.stdout)["results"]
        assert taken["outcome"] == "rotated" and taken["new_key_id"] == journal.new_key_id  # resumed a's rotation
        resumed_at = time.time()
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    out, err = paused.communicate(timeout=60)
    try:
        assert paused.returncode == 1, out + err
        [result] = json.loads(out)["results"]
        assert result["outcome"] == "busy" and "lease" in result["message"]
        aws_writes = [e.key for e in sandbox.aws.log.entries()
                      if e.at >= resumed_at and not e.key.split(":", 1)[-1].startswith(AWS_READS)]
        gitlab: Any = sandbox.gitlab
        gitlab_writes = [e.key for e in gitlab.log.entries() if e.at >= resumed_at and e.method != "GET"]
        assert aws_writes == [] and gitlab_writes == []
        late = [e.action for e in store.events(seed.name, limit=200)
                if e.actor == "paused-a" and e.at.timestamp() >= stopped_at]
        assert late == []  # nothing in history from a after it was paused
        [journal_after] = store.journals(seed.name)
        assert journal_after.phase is Phase.DONE
        assert create_calls(sandbox)[seed.iam_user] - seeded[seed.iam_user] == 1
        assert every_target_works(sandbox, seed) == []
        assert list(user_keys(sandbox, seed.iam_user)) == [journal.new_key_id]
    finally:
        store.close()
