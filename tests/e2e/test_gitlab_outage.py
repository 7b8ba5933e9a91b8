"""GitLab's port closed (a relay in front of the emulator stops listening, so python-gitlab sees "connection
refused"; the emulator keeps its state for when it comes back), through the real CLI and `rotator run`:
`check` answers within the retry budget naming GitLab, /readyz names GitLab, and once GitLab is back the
failed credential is retried within its backoff and finishes."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from rotator.adapters.db.store import SqlStore
from rotator.domain import CredentialState
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import CredentialSeed, client_env
from tests.outage_support import TcpRelay, config_with_timeout, free_port
from tests.sandbox_support import ROTATOR, every_target_works, seed_one, user_keys
from tests.service_support import ServiceProcess, age_keys, http_get

GITLAB_TIMEOUT = 6.0  # one retry, 2 s after the first refusal; a request gives up within 2 x 6 s


@pytest.fixture
def relay(sandbox: Sandbox) -> Iterator[TcpRelay]:
    relay = TcpRelay(int(urlsplit(sandbox.gitlab.url).port or 0))
    yield relay
    relay.close()


def _config(sandbox: Sandbox, tmp_path: Path, relay: TcpRelay, seeds: list[CredentialSeed], **service: str) -> Path:
    return config_with_timeout(tmp_path, {**sandbox.urls(), "gitlab_url": relay.url}, seeds,
                               after='token_env = "ROTATOR_GITLAB_TOKEN"', timeout=f"{GITLAB_TIMEOUT:.0f}s", **service)


def test_check_answers_within_the_budget_naming_gitlab(sandbox: Sandbox, tmp_path: Path, relay: TcpRelay) -> None:
    seed = seed_one(sandbox)
    config = _config(sandbox, tmp_path, relay, [seed])  # the relay is not listening: connection refused
    started = time.monotonic()
    done = subprocess.run([ROTATOR, "check", "--json", "--config", str(config)], env=client_env(sandbox.urls()),
                          text=True, capture_output=True, timeout=120, check=False)
    took = time.monotonic() - started
    print(f"\ncheck with GitLab closed answered in {took:.1f}s ([gitlab] timeout {GITLAB_TIMEOUT:.0f}s)")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert took < 2 * GITLAB_TIMEOUT + 5  # the budget, plus starting the interpreter
    probes = {p["name"]: p for p in json.loads(done.stdout)["probes"]}
    user = probes["gitlab GET /user"]
    assert not user["ok"] and "cannot reach GitLab" in user["detail"] and "connection refused" in user["detail"]
    variables = [p for name, p in probes.items() if name.startswith("gitlab variables of")]
    assert len(variables) == len(seed.targets) and all("not tried" in p["detail"] for p in variables)
    assert probes["slack auth.test"]["ok"] and probes["database"]["ok"]
    assert "GitLab unreachable (connection refused), retry 1/1 in 2 s" in done.stderr  # each retry logged


def test_the_service_names_gitlab_and_retries_within_its_backoff_once_it_is_back(
        sandbox: Sandbox, tmp_path: Path, relay: TcpRelay) -> None:
    seed = seed_one(sandbox)
    age_keys([seed.iam_user], timedelta(days=40))  # due under rotate_every = 30d
    listen = free_port()
    config = _config(sandbox, tmp_path, relay, [seed], tick="1s", listen=f"127.0.0.1:{listen}",
                     retry_unreachable_after="3s", retry_unreachable_max="6s")
    env = client_env(sandbox.urls())
    assert subprocess.run([ROTATOR, "db", "upgrade", "--config", str(config)], env=env, capture_output=True,
                          timeout=60, check=False).returncode == 0
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'rotator.db'}")
    service = ServiceProcess(config, env, log_path=tmp_path / "run.log")
    try:
        def failed_with_retry() -> bool:
            status = store.get_status(seed.name)
            return status is not None and status.state is CredentialState.FAILED and status.retry_at is not None

        service.wait_for(failed_with_retry, 60, "the credential to fail on GitLab, with a retry time")
        code, body = http_get(f"http://127.0.0.1:{listen}/readyz", timeout=5)
        assert code == 503 and "GitLab unreachable" in body and "connection refused" in body
        shown = json.loads(subprocess.run([ROTATOR, "status", "--json", "--config", str(config)], env=env,
                                          text=True, capture_output=True, timeout=60, check=False).stdout)
        [row] = shown["credentials"]
        assert row["state"] == "failed" and row["retry_at"] and "cannot reach GitLab" in row["last_error"]
        assert list(user_keys(sandbox, seed.iam_user)) == [seed.key_id]  # nothing was left behind

        relay.open()  # GitLab is back
        back = time.monotonic()

        def rotated() -> bool:
            status = store.get_status(seed.name)
            return status is not None and status.last_rotated_at is not None

        # At most retry_unreachable_max (6 s) after GitLab answers again, plus a tick and the rotation itself.
        service.wait_for(rotated, 30, "the rotation after GitLab came back")
        print(f"\nrotated {time.monotonic() - back:.1f}s after GitLab came back (backoff 3s doubling, max 6s)")
        assert every_target_works(sandbox, seed) == [] and len(user_keys(sandbox, seed.iam_user)) == 1
        deadline = time.monotonic() + 20
        while http_get(f"http://127.0.0.1:{listen}/readyz", timeout=5)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert http_get(f"http://127.0.0.1:{listen}/readyz", timeout=5) == (200, "ready\n")
    finally:
        service.kill()
