"""SIGTERM and SIGINT to `rotator rotate --all --force` of 10 credentials, with latency injected at GitLab so
the signal lands mid-run: every credential in flight finishes its current step, the results table says what
was interrupted and not started, the batched Slack messages go out, the exit code is 143 / 130, `status`
never shows a user with two Active keys as ok, and the next `rotate` finishes every one."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import CredentialSeed, TargetSeed, client_env, config_toml
from rotator.sandbox.server import Fault
from tests.sandbox_support import ROTATOR, every_target_works, user_keys
from tests.service_support import seed_fleet

SECURITY = "#security-incidents"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_finishes_the_steps_in_flight_reports_and_the_next_run_finishes(
        sandbox: Sandbox, tmp_path: Path, signum: signal.Signals, code: int) -> None:
    prefix = f"sig{uuid.uuid4().hex[:6]}"
    seeded = seed_fleet(sandbox, 10, prefix=prefix)
    seeds = [CredentialSeed(s.name, s.iam_user, (TargetSeed("project", s.project),), ("#team-fleet",), s.key_id,
                            s.secret) for s in seeded]
    config = tmp_path / "rotator.toml"
    config.write_text(config_toml(sandbox.urls(), seeds, database_url=f"sqlite:///{tmp_path / 'rotator.db'}",
                                  security_channel=SECURITY))
    env = client_env(sandbox.urls())
    sandbox.gitlab.faults.add(Fault(match="^PUT ", latency=0.4))  # type: ignore[attr-defined]
    slack_before = len(sandbox.slack.messages())
    try:
        process = subprocess.Popen([ROTATOR, "rotate", "--all", "--force", "--concurrency", "3", "--config",
                                    str(config)], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stderr is not None
        seen = []
        for line in process.stderr:  # step lines: interrupt once some credentials are mid-rotation
            seen.append(line)
            if sum(" create " in item for item in seen) >= 2:
                process.send_signal(signum)
                break
        out, err = process.communicate(timeout=120)
    finally:
        sandbox.gitlab.faults.clear()  # type: ignore[attr-defined]
    err = "".join(seen) + err
    assert process.returncode == code, out + err
    assert "Traceback" not in err
    assert "rotation results" in out and f"interrupted by {signum.name}; not started:" in out
    not_started = out.split("not started:", 1)[1].split("(run", 1)[0].replace("\n", " ")
    started = [s for s in seeded if s.name not in not_started]
    assert 2 <= len(started) < len(seeded), out  # some were in flight, the rest never began
    assert all(len(user_keys(sandbox, s.iam_user)) == 1 for s in seeded if s.name in not_started)
    # The security summary went out, saying what was not started.
    summaries = [m for m in sandbox.slack.messages()[slack_before:] if m["channel"] == SECURITY]
    assert summaries and "not started" in summaries[-1]["text"]

    shown = subprocess.run([ROTATOR, "status", "--json", "--config", str(config)], env=env, text=True,
                           capture_output=True, timeout=60, check=False)
    rows = {row["name"]: row for row in json.loads(shown.stdout)["credentials"]}
    two_active = [s.name for s in seeded if list(user_keys(sandbox, s.iam_user).values()).count("Active") == 2]
    assert two_active  # the signal came after two CreateAccessKey: those users hold two Active keys now
    for name in two_active:
        assert rows[name]["state"] != "ok" and not rows[name]["ok"], rows[name]
    assert shown.returncode == (1 if two_active or any(not r["ok"] for r in rows.values()) else 0)

    again = subprocess.run([ROTATOR, "rotate", "--all", "--json", "--config", str(config)], env=env, text=True,
                           capture_output=True, timeout=120, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    for item, seed in zip(seeded, seeds, strict=True):
        assert len(user_keys(sandbox, item.iam_user)) == 1, item.name
        assert every_target_works(sandbox, seed) == [], item.name
    final = json.loads(subprocess.run([ROTATOR, "status", "--json", "--config", str(config)], env=env, text=True,
                                      capture_output=True, timeout=60, check=False).stdout)
    assert all(row["state"] == "ok" and row["in_flight"] is None for row in final["credentials"])


def test_sigterm_during_revoke_follow_up_keeps_the_key_contained_and_says_so(sandbox: Sandbox,
                                                                             tmp_path: Path) -> None:
    seeded = seed_fleet(sandbox, 1, prefix=f"rvk{uuid.uuid4().hex[:6]}")
    [item] = seeded
    seed = CredentialSeed(item.name, item.iam_user, (TargetSeed("project", item.project),), ("#team-fleet",),
                          item.key_id, item.secret)
    config = tmp_path / "rotator.toml"
    config.write_text(config_toml(sandbox.urls(), [seed], database_url=f"sqlite:///{tmp_path / 'rotator.db'}"))
    sandbox.aws.faults.add(Fault(match="cloudtrail:LookupEvents", latency=3.0))  # a slow audit
    try:
        process = subprocess.Popen([ROTATOR, "revoke", "--key", item.key_id, "--config", str(config)],
                                   env=client_env(sandbox.urls()), text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        assert process.stderr is not None
        first = process.stderr.readline()  # the containment line comes before any follow-up
        assert "CONTAINED" in first, first
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        sandbox.aws.faults.clear()
    assert process.returncode == 143, first + err
    assert "interrupted by SIGTERM" in err and "contained (Inactive, verified)" in err and "Traceback" not in err
    assert user_keys(sandbox, item.iam_user)[item.key_id] == "Inactive"
