"""SIGKILL `rotator rotate` at random moments across every step, run it again, and check both invariants.

Each trial starts a forced rotation as a real subprocess against the sandbox (latency injected so every
step takes a while), waits for a randomly chosen step to begin, kills the process after a random delay,
then runs `rotator rotate` again. After every trial:

- every GitLab target's pair authenticates through the AWS front (which rejects Inactive, deleted and
  wrongly-signed keys);
- the user never had more than two keys (replayed from the CloudTrail record) and never hit LimitExceeded;
- every key the user has is held by a target or named by an unfinished journal.

ROTATOR_KILL_TRIALS sets the number of trials (default 50; `benchmarks/kill_trials.py` runs 500).
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from rotator.adapters.db.store import SqlStore
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import CredentialSeed, TargetSeed, client_env, config_toml
from rotator.sandbox.server import Fault
from tests.sandbox_support import (
    ROTATOR,
    every_target_works,
    max_keys_ever,
    seed_one,
    target_pair,
    unique,
    user_keys,
)

# Steps as printed by `rotate` on stderr ("<credential>  <step> <detail>"); publish appears once per target.
KILL_POINTS = ["startup", "intent", "create", "verify", "publish#1", "publish#2", "retire", "delete"]

pytestmark = pytest.mark.slow


@dataclass
class Trial:
    point: str
    delay: float
    seen: list[str] = field(default_factory=list)
    killed: bool = False


def _run_and_kill(cmd: list[str], env: dict[str, str], trial: Trial) -> int:
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()

    def kill_later(delay: float) -> None:
        time.sleep(delay)
        if process.poll() is None:
            process.kill()
            trial.killed = True

    if trial.point == "startup":
        threading.Thread(target=kill_later, args=(trial.delay * 4,), daemon=True).start()
    publishes = 0
    assert process.stderr is not None
    for line in process.stderr:
        words = line.split()
        if len(words) < 2:
            continue
        step = words[1]
        if step == "publish":
            publishes += 1
            step = f"publish#{publishes}"
        trial.seen.append(step)
        if step == trial.point:
            threading.Thread(target=kill_later, args=(trial.delay,), daemon=True).start()
    process.wait(timeout=120)
    assert time.monotonic() - started < 120
    return process.returncode


def _accounted_keys(sandbox: Sandbox, seed: CredentialSeed, db_url: str) -> set[str]:
    held = {target_pair(sandbox, t)[0] for t in seed.targets}
    store = SqlStore.from_url(db_url)
    try:
        journal = store.open_journal(seed.name)
    finally:
        store.close()
    if journal is not None:
        held |= {journal.old_key_id, journal.new_key_id}
    return {k for k in held if k}


@pytest.mark.timeout(900)  # 50 trials of a killed run and its recovery: minutes, not the default 300 s
def test_sigkill_at_random_moments_never_breaks_the_invariants(sandbox: Sandbox, tmp_path: Path) -> None:
    trials = int(os.environ.get("ROTATOR_KILL_TRIALS", "50"))
    rng = random.Random(int(os.environ.get("ROTATOR_KILL_SEED", "20261201")))
    name = unique("kill")
    seed = seed_one(sandbox, name=name, targets=[TargetSeed("project", f"{name}/api", hidden_secret=True),
                                                 TargetSeed("group", f"{name}-grp", environment_scope="production")])
    db_url = f"sqlite:///{tmp_path / 'rotator.db'}"
    config = tmp_path / "rotator.toml"
    config.write_text(config_toml(sandbox.urls(), [seed], database_url=db_url, policy={
        "rotate_every": "30d", "grace": "0s", "delete_after": "0s", "verify_timeout": "30s"}))
    env = client_env(sandbox.urls(), state_key=Fernet.generate_key().decode())
    # Slow every step down so that a kill lands inside it, and make IAM eventually consistent.
    sandbox.gitlab.faults.add(Fault(match=r"/variables/", latency=0.04))  # type: ignore[attr-defined]
    sandbox.aws.faults.add(Fault(match=r"^iam:", latency=0.05))
    sandbox.aws.set_propagation_delay(0.8)
    hits: Counter[str] = Counter()
    try:
        for number in range(trials):
            point = rng.choice(KILL_POINTS)
            # retire and delete are one IAM call each: kill soon after their line or the run is over
            trial = Trial(point=point, delay=rng.uniform(0.0, 0.04 if point in ("retire", "delete") else 0.25))
            code = _run_and_kill([ROTATOR, "rotate", name, "--force", "--config", str(config)], env, trial)
            last = trial.seen[-1] if trial.seen else "startup"
            hits[last if trial.killed else "completed"] += 1
            assert trial.killed or code == 0, f"trial {number}: unkilled run exited {code} after {trial.seen}"
            # The next run resumes from the journal (or finds nothing due) and must end ok.
            rerun = subprocess.run([ROTATOR, "rotate", name, "--config", str(config)], env=env, text=True,
                                   capture_output=True, timeout=120, check=False)
            assert rerun.returncode == 0, f"trial {number} (killed after {trial.seen}): {rerun.stderr[-2000:]}"
            broken = every_target_works(sandbox, seed)
            assert broken == [], f"trial {number} (killed after {trial.seen}): targets rejected: {broken}"
            keys = user_keys(sandbox, seed.iam_user)
            assert len(keys) <= 2
            unaccounted = set(keys) - _accounted_keys(sandbox, seed, db_url)
            assert unaccounted == set(), f"trial {number}: keys nobody accounts for: {unaccounted}"
    finally:
        sandbox.aws.set_propagation_delay(0)
        sandbox.aws.faults.clear()
        sandbox.gitlab.faults.clear()  # type: ignore[attr-defined]
    assert max_keys_ever(sandbox, seed.iam_user) <= 2
    limit_hits = [e for e in sandbox.aws.events(region="us-east-1")
                  if e["eventName"] == "CreateAccessKey" and e.get("errorCode") == "LimitExceeded"]
    assert limit_hits == []
    # The kills really did land across the protocol, not only at start-up.
    landed = {point for point in hits if point not in ("completed", "startup")}
    print(f"\nkill points hit over {trials} trials: {dict(hits)}")
    assert len(landed) >= min(5, trials // 6), hits
