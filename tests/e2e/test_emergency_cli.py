"""`rotate --emergency` and the never-split-a-pair rules as an operator meets them: real CLI processes against the
emulators, outcomes checked through the real services (a pair "works" when STS through the AWS front accepts it).

GitLab's refusals are injected at the emulator (a 403 on one variable's PUT), as a protected-variable rule or a
role change would answer (reference/gitlab-variables-api.md section 4: 403 {"message":"403 Forbidden"}).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from rotator.adapters.db.service_queries import SqlServiceQueries
from rotator.adapters.db.store import SqlStore
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import CredentialSeed, client_env, config_toml
from rotator.sandbox.server import Fault
from rotator.service.observability import Metrics
from tests.sandbox_support import (
    every_target_works,
    refuse_key_id_after_its_preflight,
    run_rotator,
    seed_one,
    target_pair,
    unique,
    user_keys,
    variable_put,
)

SECURITY = "#security-incidents"
STATE_KEY = Fernet.generate_key().decode()  # one for every process of this module: journals stay readable


@pytest.fixture(autouse=True)
def no_faults(sandbox: Sandbox) -> Iterator[None]:
    yield
    gitlab: Any = sandbox.gitlab
    gitlab.faults.clear()


def rotator(args: list[str], sandbox: Sandbox, config: Path) -> subprocess.CompletedProcess[str]:
    return run_rotator(*args, "--config", str(config), env=client_env(sandbox.urls(), state_key=STATE_KEY))


def write_config(sandbox: Sandbox, tmp_path: Path, seeds: list[CredentialSeed], **policy: str) -> Path:
    config = tmp_path / "rotator.toml"
    config.write_text(config_toml(sandbox.urls(), seeds, database_url=f"sqlite:///{tmp_path / 'r.db'}",
                                  security_channel=SECURITY,
                                  policy={"rotate_every": "30d", "grace": "0s", "delete_after": "0s", **policy}))
    return config


def slack_to(sandbox: Sandbox, channel: str, since: int = 0) -> list[dict[str, Any]]:
    return [m for m in sandbox.slack.messages()[since:] if m["channel"] == channel]


def test_emergency_with_a_one_hour_grace_closes_every_exposed_key(sandbox: Sandbox, tmp_path: Path) -> None:
    owners = (f"#{unique('owners')}",)
    seeds = [seed_one(sandbox, owners=owners) for _ in range(3)]
    config = write_config(sandbox, tmp_path, seeds, grace="1h", delete_after="7d")
    before = len(sandbox.slack.messages())
    done = rotator(["rotate", "--all", "--emergency", "--json"], sandbox, config)
    assert done.returncode == 0, done.stdout + done.stderr
    payload = json.loads(done.stdout)
    assert payload["fleet"]["emergency"] is True and payload["fleet"]["still_exposed"] == []
    for seed in seeds:
        assert every_target_works(sandbox, seed) == [], seed.name  # the new pair works everywhere
        keys = user_keys(sandbox, seed.iam_user)
        assert keys[seed.key_id] == "Inactive", seed.name  # the exposed key: Inactive despite the 1h grace
        assert sorted(keys.values()) == ["Active", "Inactive"]  # kept as evidence, not deleted
        key_id, _ = target_pair(sandbox, seed.targets[0])
        assert key_id is not None and keys[key_id] == "Active"
    [summary] = slack_to(sandbox, SECURITY, before)  # one security summary
    assert "every exposed key is Inactive" in str(summary["text"])
    for seed in seeds:
        assert seed.name in str(summary["text"]) and seed.key_id in str(summary["text"])
    assert len(slack_to(sandbox, owners[0], before)) == 1  # owners: one batched message


def test_emergency_needs_credentials_and_its_dry_run_shows_the_plan(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    config = write_config(sandbox, tmp_path, [seed], grace="1h")
    usage = rotator(["rotate", "--emergency"], sandbox, config)
    assert usage.returncode == 2 and "--emergency needs" in usage.stderr
    plan = rotator(["rotate", "--all", "--emergency", "--dry-run"], sandbox, config)
    assert plan.returncode == 0, plan.stderr
    assert f"deactivate {seed.key_id} as soon as every target holds the new pair" in plan.stdout
    assert "prove AWS_ACCESS_KEY_ID can be written" in plan.stdout
    assert user_keys(sandbox, seed.iam_user) == {seed.key_id: "Active"}


def test_a_key_id_variable_gitlab_refuses_leaves_its_target_working_and_names_the_variable(
        sandbox: Sandbox, tmp_path: Path) -> None:
    owners = (f"#{unique('owners')}",)
    seed = seed_one(sandbox, owners=owners)
    refused = seed.targets[1]  # the group target
    gitlab: Any = sandbox.gitlab
    gitlab.faults.add(Fault(match=variable_put(refused), status=403, message="403 Forbidden"))  # every time
    config = write_config(sandbox, tmp_path, [seed])
    before = len(sandbox.slack.messages())
    done = rotator(["rotate", seed.name, "--force"], sandbox, config)
    assert done.returncode == 1, done.stdout + done.stderr
    assert every_target_works(sandbox, seed) == []  # the project has the new pair, the group its old one
    assert user_keys(sandbox, seed.iam_user)[seed.key_id] == "Active"
    assert target_pair(sandbox, refused)[0] == seed.key_id
    told = " ".join(str(m["text"]) for m in slack_to(sandbox, owners[0], before))
    assert "AWS_ACCESS_KEY_ID" in told and "403" in told and refused.path in told  # type: ignore[operator]
    puts = [e for e in gitlab.log.entries() if re.search(variable_put(refused), e.key)]
    assert [e.status for e in puts] == [403]  # the preflight only: the secret was never written there


def test_a_refusal_after_the_secret_was_written_is_reported_broken_and_repaired(
        sandbox: Sandbox, tmp_path: Path) -> None:
    owners = (f"#{unique('owners')}",)
    seed = seed_one(sandbox, owners=owners)  # hidden secrets: the old one cannot be read back to restore
    refused = seed.targets[1]
    gitlab: Any = sandbox.gitlab
    armed = refuse_key_id_after_its_preflight(sandbox, refused)
    config = tmp_path / "rotator.toml"
    config.write_text(config_toml(sandbox.urls(), [seed], database_url=f"sqlite:///{tmp_path / 'r.db'}",
                                  security_channel=SECURITY, extra_service={"retry_broken_after": "1s"}))
    before = len(sandbox.slack.messages())
    done = rotator(["rotate", seed.name, "--force", "--json"], sandbox, config)
    armed.join(timeout=5)
    assert done.returncode == 1, done.stdout + done.stderr
    [result] = json.loads(done.stdout)["results"]
    assert result["outcome"] == "broken" and result["state"] == "broken"
    assert "still holds the old key" not in result["message"]
    assert f"AWS_SECRET_ACCESS_KEY holds the secret of {result['new_key_id']}" in result["message"]
    assert f"AWS_ACCESS_KEY_ID still holds {seed.key_id}" in result["message"]
    assert target_pair(sandbox, refused)[0] == seed.key_id  # half a pair, as reported
    keys = user_keys(sandbox, seed.iam_user)
    assert keys == {seed.key_id: "Active", result["new_key_id"]: "Active"}
    for channel in (owners[0], SECURITY):  # told at once, both of them
        [alarm] = [m for m in slack_to(sandbox, channel, before) if "BROKEN" in str(m["text"])]
        assert "AWS_ACCESS_KEY_ID" in str(alarm["text"])
    status = rotator(["status", "--json"], sandbox, config)
    [row] = json.loads(status.stdout)["credentials"]
    assert row["state"] == "broken" and row["broken_targets"] and refused.path in row["broken_targets"][0]
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        metrics = Metrics(SqlServiceQueries(store.engine).fleet_snapshot, time_now)
        assert b"rotator_targets_broken 1.0" in metrics.exposition()
    finally:
        store.close()
    # GitLab accepts the key id again: the service's next tick (after retry_broken_after) completes the pair.
    gitlab.faults.clear()
    time.sleep(1.1)
    tick = rotator(["run", "--once"], sandbox, config)
    assert tick.returncode == 0, tick.stdout + tick.stderr
    assert every_target_works(sandbox, seed) == []
    assert target_pair(sandbox, refused)[0] == result["new_key_id"]
    assert seed.key_id not in user_keys(sandbox, seed.iam_user)


def time_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
