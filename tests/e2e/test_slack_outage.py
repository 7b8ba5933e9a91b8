"""Slack's port closed (the config points at a port nothing listens on, so slack_sdk sees "connection refused"),
through the real CLI and `rotator run` against the other emulators: nothing crashes, notifications never decide
an outcome, and once Slack is back the owners receive what was kept, in order. Also `check` and the state key.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

from rotator.adapters.db.store import SqlStore
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import CredentialSeed, client_env, config_toml
from rotator.sandbox.slack import SlackSandbox
from tests.outage_support import config_with_timeout, free_port
from tests.sandbox_support import every_target_works, run_rotator, seed_one, user_keys
from tests.service_support import ServiceProcess, age_keys, http_get

SLACK_TIMEOUT = "3s"  # one retry, 2 s after the first refusal: a closed Slack costs a process about 2 s


def _config(sandbox: Sandbox, tmp_path: Path, seeds: list[CredentialSeed], *, slack_port: int,
            **service: str) -> Path:
    urls = {**sandbox.urls(), "slack_api_url": f"http://127.0.0.1:{slack_port}/api/"}
    return config_with_timeout(tmp_path, urls, seeds, after='security_channel = "#security-incidents"',
                               timeout=SLACK_TIMEOUT, **service)


def test_revoke_with_slack_closed_contains_reports_audits_and_exits_3(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    config = _config(sandbox, tmp_path, [seed], slack_port=free_port())
    env = client_env(sandbox.urls())
    done = run_rotator("revoke", "--key", seed.key_id, "--reason", "leaked", "--json", "--output",
                    str(tmp_path / "report"), "--config", str(config), env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    answer = json.loads(done.stdout)
    steps = {s["name"]: s for s in answer["steps"]}
    assert answer["contained"] is True and user_keys(sandbox, seed.iam_user)[seed.key_id] == "Inactive"
    assert steps["notify"]["status"] == "failed" and "cannot reach Slack" in steps["notify"]["detail"]
    assert "kept in the database and sent once Slack answers, by `rotator run`" in steps["notify"]["detail"]
    # Nothing failed; the minutes before T0 wait for the follow-up audit (CloudTrail delivers late).
    assert steps["audit"]["status"] == "done" and answer["audit"]["coverage"]["failed"] is False
    assert steps["record"]["status"] == "done"
    written = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert any(name.endswith(".md") for name in written) and any(name.endswith(".json") for name in written)
    # `rotator incidents` lists it, open
    listed = run_rotator("incidents", "--json", "--config", str(config), env=env)
    assert listed.returncode == 0, listed.stderr
    [incident] = json.loads(listed.stdout)["incidents"]
    assert incident["key_id"] == seed.key_id and incident["open"] is True
    assert incident["principal"] == f"user {seed.iam_user} (default)" and incident["actor"]


def test_rotate_with_slack_closed_rotates_says_so_and_exits_0(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    config = _config(sandbox, tmp_path, [seed], slack_port=free_port())
    done = run_rotator("rotate", seed.name, "--force", "--config", str(config), env=client_env(sandbox.urls()))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "rotated" in done.stdout and "owners could not be told" in done.stdout.replace("\n", " ")
    assert every_target_works(sandbox, seed) == [] and len(user_keys(sandbox, seed.iam_user)) == 1
    assert SqlStore.from_url(f"sqlite:///{tmp_path / 'rotator.db'}").queued_count() == 1


def test_check_with_slack_closed_prints_every_probe_and_exits_1(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    config = _config(sandbox, tmp_path, [seed], slack_port=free_port())
    done = run_rotator("check", "--config", str(config), env=client_env(sandbox.urls()))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    names = [line.split(": ", 1)[0][2:] for line in lines]
    # Every party before Slack answered, in the order check probes them (least-privilege lines sit between AWS
    # and GitLab).
    order = ["database", "state key", "aws[default] sts:GetCallerIdentity", "gitlab GET /user"]
    assert [name for name in names if name in order] == order
    assert sum(name.startswith("gitlab variables of") for name in names) == len(seed.targets)
    assert all(line.startswith("✔") for line in lines[:-1])
    assert lines[-1].startswith("✘ slack auth.test: cannot reach Slack") and "connection refused" in lines[-1]


@pytest.mark.parametrize(("value", "expected"), [
    (None, "ROTATOR_STATE_KEY"), ("not-a-fernet-key", "is not a Fernet key"),
])
def test_check_names_a_missing_or_malformed_state_key(sandbox: Sandbox, tmp_path: Path, value: str | None,
                                                     expected: str) -> None:
    seed = seed_one(sandbox)
    config = tmp_path / "rotator.toml"
    config.write_text(config_toml(sandbox.urls(), [seed], database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    env = client_env(sandbox.urls())
    if value is None:
        del env["ROTATOR_STATE_KEY"]
    else:
        env["ROTATOR_STATE_KEY"] = value
    done = run_rotator("check", "--config", str(config), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = [line for line in done.stdout.splitlines() if line[2:].startswith("state key")]
    assert line.startswith("✘") and expected in line
    others = [line for line in done.stdout.splitlines() if not line[2:].startswith("state key")]
    assert others and all(line.startswith("✔") for line in others)  # the rest was still checked


def test_the_service_rotates_with_slack_closed_and_delivers_once_slack_is_back(sandbox: Sandbox,
                                                                                tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    age_keys([seed.iam_user], timedelta(days=40))  # due under rotate_every = 30d
    slack_port, listen = free_port(), free_port()
    config = _config(sandbox, tmp_path, [seed], slack_port=slack_port, tick="1s", listen=f"127.0.0.1:{listen}")
    env = client_env(sandbox.urls())
    assert run_rotator("db", "upgrade", "--config", str(config), env=env).returncode == 0
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'rotator.db'}")
    service = ServiceProcess(config, env, log_path=tmp_path / "run.log")
    back: SlackSandbox | None = None
    try:
        def rotated() -> bool:
            status = store.get_status(seed.name)
            return status is not None and status.last_rotated_at is not None

        service.wait_for(rotated, 60, "the rotation")
        service.wait_for(lambda: store.queued_count() >= 1, 30, "the owners' message to be kept")
        assert every_target_works(sandbox, seed) == []
        status, body = http_get(f"http://127.0.0.1:{listen}/readyz", timeout=5)
        assert status == 503 and "Slack unreachable" in body
        metrics = http_get(f"http://127.0.0.1:{listen}/metrics", timeout=5)[1]
        failed = [line for line in metrics.splitlines()
                  if line.startswith('rotator_notifications_failed_total{reason="unreachable"}')]
        assert failed and float(failed[0].split()[-1]) >= 1
        kept = [m.title for m in store.queued_notifications()]

        back = SlackSandbox(port=slack_port)
        back.token = sandbox.slack.token  # the same workspace, answering again
        back.start()

        def delivered() -> bool:
            return store.queued_count() == 0 and len(back.messages()) >= len(kept) if back else False

        service.wait_for(delivered, 60, "the kept messages to be delivered")
        received = back.messages()
        assert [m["text"].split("\n", 1)[0] for m in received[:len(kept)]] == kept  # oldest first
        assert any(m["channel"] == "#team-payments" and f"{seed.name} rotated" in m["text"] for m in received)
        deadline = time.monotonic() + 30
        while http_get(f"http://127.0.0.1:{listen}/readyz", timeout=5)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert http_get(f"http://127.0.0.1:{listen}/readyz", timeout=5) == (200, "ready\n")
    finally:
        service.kill()
        if back is not None:
            back.stop()
