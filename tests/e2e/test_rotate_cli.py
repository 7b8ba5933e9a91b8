"""`rotator rotate` and `rotator status` as an operator runs them: real subprocesses against the sandbox."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.fernet import Fernet

from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import CredentialSeed, aws_client, client_env, config_toml
from tests.sandbox_support import (
    ROTATOR,
    clear_logs,
    every_target_works,
    run_rotator,
    seed_one,
    target_pair,
    user_keys,
    writes_in,
)


def _config(sandbox: Sandbox, tmp_path: Path, seeds: list[CredentialSeed], **policy: str) -> Path:
    path = tmp_path / "rotator.toml"
    path.write_text(config_toml(sandbox.urls(), seeds, database_url=f"sqlite:///{tmp_path / 'rotator.db'}",
                                policy={"rotate_every": "30d", "grace": "0s", "delete_after": "0s", **policy}))
    return path


def _rotator(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_rotator(*args, env=env, timeout=120)


def test_dry_run_prints_the_plan_and_makes_zero_write_calls(sandbox: Sandbox, tmp_path: Path) -> None:
    seeds = [seed_one(sandbox), seed_one(sandbox)]
    config = _config(sandbox, tmp_path, seeds, rotate_every="1d")
    env = client_env(sandbox.urls())
    clear_logs(sandbox)
    before = {s.iam_user: user_keys(sandbox, s.iam_user) for s in seeds}
    done = _rotator(["rotate", "--all", "--dry-run", "--force", "--config", str(config)], env)
    assert done.returncode == 0, done.stderr
    for seed in seeds:
        assert seed.name in done.stdout
    assert "create a new access key" in done.stdout and "publish to project" in done.stdout
    assert writes_in(sandbox) == {"aws": [], "gitlab": [], "slack": []}
    # it did read: the plan comes from the real state, not from the config alone
    assert any(e.key == "iam:ListAccessKeys" for e in sandbox.aws.log.entries())
    assert {s.iam_user: user_keys(sandbox, s.iam_user) for s in seeds} == before


def test_rotate_then_status_json(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    config = _config(sandbox, tmp_path, [seed])
    env = client_env(sandbox.urls())
    done = _rotator(["rotate", seed.name, "--force", "--json", "--config", str(config)], env)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)  # stdout is nothing but the JSON document
    [result] = payload["results"]
    assert result["outcome"] == "rotated" and payload["ok"] is True
    assert every_target_works(sandbox, seed) == []
    status = _rotator(["status", "--json", "--config", str(config)], env)
    assert status.returncode == 0, status.stderr
    [row] = json.loads(status.stdout)["credentials"]
    assert row["state"] == "ok" and row["key_id"] == result["new_key_id"] and row["next_rotation_at"]


def test_failures_are_reported_together_and_exit_1(sandbox: Sandbox, tmp_path: Path) -> None:
    healthy, stuck = seed_one(sandbox), seed_one(sandbox)
    aws_client(sandbox.urls(), "iam").create_access_key(UserName=stuck.iam_user)  # two Active keys: held
    config = _config(sandbox, tmp_path, [healthy, stuck])
    done = _rotator(["rotate", "--all", "--force", "--config", str(config)], client_env(sandbox.urls()))
    assert done.returncode == 1
    assert "rotated" in done.stdout and "held" in done.stdout and stuck.name in done.stdout
    assert every_target_works(sandbox, healthy) == [] and len(user_keys(sandbox, stuck.iam_user)) == 2


def test_usage_errors_exit_2(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    config = _config(sandbox, tmp_path, [seed])
    env = client_env(sandbox.urls())
    neither = _rotator(["rotate", "--config", str(config)], env)
    unknown = _rotator(["rotate", "no-such-credential", "--config", str(config)], env)
    assert neither.returncode == 2 and "--all" in neither.stderr
    assert unknown.returncode == 2 and "no-such-credential" in unknown.stderr and seed.name in unknown.stderr


def test_canary_secrets_never_reach_any_sink(sandbox: Sandbox, tmp_path: Path) -> None:
    """The old and new secrets, the GitLab and Slack tokens and the state key never appear in stdout,
    stderr (logs included), the database file or Slack payloads; the in-flight secret only sealed."""
    seed = seed_one(sandbox)
    config = _config(sandbox, tmp_path, [seed])
    state_key = Fernet.generate_key().decode()
    env = client_env(sandbox.urls(), state_key=state_key)
    env["ROTATOR_LOG_LEVEL"] = "debug"  # the most talkative setting must still be clean
    # First run: killed right after the first target is published, so the sealed secret is in the journal.
    process = subprocess.Popen([ROTATOR, "rotate", seed.name, "--force", "--config", str(config)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    first_err = []
    for line in process.stderr:
        first_err.append(line)
        if " publish " in line:
            process.send_signal(signal.SIGKILL)
            break
    first_out, rest = process.communicate(timeout=60)
    first_err.append(rest)
    db_files = [tmp_path / "rotator.db", tmp_path / "rotator.db-wal"]
    in_flight = b"".join(p.read_bytes() for p in db_files if p.exists())
    second = _rotator(["rotate", seed.name, "--config", str(config)], env)
    assert second.returncode == 0, second.stderr
    new_key, new_secret = target_pair(sandbox, seed.targets[0])
    assert new_secret and new_key != seed.key_id
    time.sleep(0.2)
    at_rest = b"".join(p.read_bytes() for p in db_files if p.exists())
    sinks = {
        "stdout": first_out + second.stdout,
        "stderr": "".join(first_err) + second.stderr,
        "slack": json.dumps(sandbox.slack.messages()),
    }
    canaries = {"old secret": seed.secret, "new secret": new_secret, "gitlab token": sandbox.urls()["gitlab_token"],
                "slack token": sandbox.urls()["slack_token"], "state key": state_key}
    for sink, text in sinks.items():
        for label, canary in canaries.items():
            assert canary not in text, f"{label} leaked into {sink}"
    for label, canary in canaries.items():
        assert canary.encode() not in in_flight, f"{label} in the database while in flight"
        assert canary.encode() not in at_rest, f"{label} in the database at rest"
    assert new_key is not None and new_key.encode() in at_rest  # key ids are recorded (they are not secrets)
    assert "debug" in sinks["stderr"].lower() or "rotation step" in sinks["stderr"]  # logs were produced


def test_rotate_recovers_every_interrupted_rotation_not_only_the_named_one(sandbox: Sandbox, tmp_path: Path) -> None:
    crashed, other = seed_one(sandbox), seed_one(sandbox)
    config = _config(sandbox, tmp_path, [crashed, other])
    env = client_env(sandbox.urls())
    process = subprocess.Popen([ROTATOR, "rotate", crashed.name, "--force", "--config", str(config)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        if " publish " in line:  # the first of two targets is done: the second still holds the old pair
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert len(user_keys(sandbox, crashed.iam_user)) == 2
    done = _rotator(["rotate", other.name, "--force", "--json", "--config", str(config)], env)
    assert done.returncode == 0, done.stderr
    outcomes = {r["credential"]: r["outcome"] for r in json.loads(done.stdout)["results"]}
    assert outcomes == {crashed.name: "rotated", other.name: "rotated"}
    assert every_target_works(sandbox, crashed) == [] and len(user_keys(sandbox, crashed.iam_user)) == 1


def test_status_for_daily_use(sandbox: Sandbox, tmp_path: Path) -> None:
    """The key and its age from IAM before any rotation, numbers in JSON, exit 1 when a credential is not ok,
    and the next rotation following the config's rotate_every (a shorter one moves rotated credentials)."""
    seed, broken = seed_one(sandbox), seed_one(sandbox)
    config = _config(sandbox, tmp_path, [seed, broken])
    env = client_env(sandbox.urls())
    before = _rotator(["status", "--json", "--config", str(config)], env)
    assert before.returncode == 0, before.stderr
    rows = {row["name"]: row for row in json.loads(before.stdout)["credentials"]}
    assert rows[seed.name]["key_id"] == seed.key_id and rows[seed.name]["key_source"] == "iam"
    assert isinstance(rows[seed.name]["age_seconds"], int) and rows[seed.name]["age_seconds"] >= 0
    assert rows[seed.name]["state"] == "ok" and rows[seed.name]["ok"] is True

    assert _rotator(["rotate", seed.name, "--force", "--config", str(config)], env).returncode == 0
    aws_client(sandbox.urls(), "iam").create_access_key(UserName=broken.iam_user)  # two Active keys: held
    assert _rotator(["rotate", broken.name, "--force", "--config", str(config)], env).returncode == 1
    after = _rotator(["status", "--json", "--config", str(config)], env)
    assert after.returncode == 1  # a held credential is not ok
    rows = {row["name"]: row for row in json.loads(after.stdout)["credentials"]}
    assert rows[broken.name]["state"] == "held" and rows[broken.name]["ok"] is False
    rotated = rows[seed.name]
    assert rotated["state"] == "ok" and rotated["key_source"] == "store" and rotated["key_id"] != seed.key_id
    due_30d = datetime.fromisoformat(rotated["next_rotation_at"])

    config.write_text(config.read_text().replace('rotate_every = "30d"', 'rotate_every = "1d"'))
    shorter = _rotator(["status", "--json", "--config", str(config)], env)
    row = next(r for r in json.loads(shorter.stdout)["credentials"] if r["name"] == seed.name)
    assert datetime.fromisoformat(row["next_rotation_at"]) == due_30d - timedelta(days=29)
    table = _rotator(["status", "--config", str(config)], env)
    assert table.returncode == 1 and "held" in table.stdout and broken.name in table.stderr
