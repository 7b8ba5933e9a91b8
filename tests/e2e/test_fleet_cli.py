"""The fleet commands as an operator runs them: CLI subprocesses against the emulators.

`rotate --all --group PATH --force` over a dozen credentials (progress bar, final table, batched Slack);
`rotate --all --project PATH` narrowing to one; usage errors; `discover --json` and `--emit-config` with
zero write requests in the emulators' logs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from rotator.config.settings import parse_settings
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import (
    CredentialSeed,
    TargetSeed,
    aws_client,
    client_env,
    config_toml,
    create_iam_user,
    gitlab_admin,
    put_pair,
    seed_credentials,
)
from tests.sandbox_support import clear_logs, every_target_works, run_rotator, unique, writes_in

SECURITY = "#security-incidents"


def rotator(args: list[str], sandbox: Sandbox) -> subprocess.CompletedProcess[str]:
    return run_rotator(*args, env=client_env(sandbox.urls()))


def fleet(sandbox: Sandbox, tmp_path: Path, count: int) -> tuple[str, list[CredentialSeed], Path]:
    prefix = unique("ops")
    seeds = seed_credentials(sandbox.urls(), [
        CredentialSeed(f"{prefix}-{i}", f"ci-{prefix}-{i}",
                       (TargetSeed("project", f"{prefix}/{'red' if i < count - 1 else 'blue'}/svc-{i}"),),
                       owners=(f"#owners-{prefix}",))
        for i in range(count)])
    config = tmp_path / "rotator.toml"
    text = config_toml(sandbox.urls(), seeds, database_url=f"sqlite:///{tmp_path / 'r.db'}", security_channel=SECURITY)
    config.write_text(text.replace('token_env = "ROTATOR_GITLAB_TOKEN"',
                                   'token_env = "ROTATOR_GITLAB_TOKEN"\nrequests_per_second = 500.0'))
    return prefix, seeds, config


def test_emergency_rotation_of_a_group_with_one_held(sandbox: Sandbox, tmp_path: Path) -> None:
    prefix, seeds, config = fleet(sandbox, tmp_path, 13)
    stuck = seeds[0]
    aws_client(sandbox.urls(), "iam").create_access_key(UserName=stuck.iam_user)  # two Active keys: held
    done = rotator(["rotate", "--all", "--group", f"{prefix}/red", "--force", "--concurrency", "6",
                    "--config", str(config)], sandbox)
    assert done.returncode == 1, done.stderr
    red, blue = seeds[:-1], seeds[-1]
    for seed in red:
        assert seed.name in done.stdout  # the final table lists every selected credential
        assert every_target_works(sandbox, seed) == []
    assert blue.name not in done.stdout
    assert done.stdout.count("rotated") >= 11 and "held" in done.stdout
    assert f"{stuck.name}  held" in done.stderr  # printed above the progress bar as it happened
    assert "publish" not in done.stderr  # no step lines for a dozen credentials
    messages = sandbox.slack.messages()
    owners = [m for m in messages if m["channel"] == f"#owners-{prefix}"]
    assert len(owners) == 1 and "12 of your credential(s)" in str(owners[0]["text"])
    summaries = [m for m in messages if m["channel"] == SECURITY and f"{prefix}/red" in str(m["text"])]
    assert len(summaries) == 1 and "11 rotated" in str(summaries[0]["text"])


def test_a_project_filter_narrows_to_what_its_pipelines_read(sandbox: Sandbox, tmp_path: Path) -> None:
    prefix, seeds, config = fleet(sandbox, tmp_path, 3)
    done = rotator(["rotate", "--all", "--project", f"{prefix}/blue/svc-2", "--force", "--json",
                    "--config", str(config)], sandbox)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert [r["credential"] for r in payload["results"]] == [seeds[2].name] and payload["ok"]
    assert "fleet" not in payload  # one credential: the usual per-rotation messages, no digest
    nothing = rotator(["rotate", "--all", "--group", f"{prefix}/nowhere", "--config", str(config)], sandbox)
    assert nothing.returncode == 2 and "no configured credential" in nothing.stderr
    both = rotator(["rotate", seeds[0].name, "--group", prefix, "--config", str(config)], sandbox)
    assert both.returncode == 2


def test_discover_json_and_emit_config_write_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    prefix, seeds, config = fleet(sandbox, tmp_path, 1)
    urls = sandbox.urls()
    untracked_user = f"ci-{prefix}-legacy"
    key_id, secret = create_iam_user(aws_client(urls, "iam"), untracked_user)
    put_pair(gitlab_admin(urls), TargetSeed("group", f"{prefix}/legacy/sub", hidden_secret=True), key_id, secret)
    clear_logs(sandbox)
    found = rotator(["discover", "--json", "--config", str(config)], sandbox)
    emitted = rotator(["discover", "--emit-config", "--config", str(config)], sandbox)
    assert writes_in(sandbox) == {"aws": [], "gitlab": [], "slack": []}
    assert found.returncode == 0, found.stderr
    assert found.stderr == ""  # --json: no progress bar
    keys = {k["key_id"]: k for k in json.loads(found.stdout)["keys"]}
    assert keys[seeds[0].key_id]["tracked"] and keys[seeds[0].key_id]["credential"] == seeds[0].name
    assert not keys[key_id]["tracked"] and keys[key_id]["user_name"] == untracked_user
    assert emitted.returncode == 0, emitted.stderr
    assert "reading CI/CD variables" in emitted.stderr  # the progress bar went to stderr
    settings = parse_settings(config.read_text() + "\n" + emitted.stdout)
    added = [s for s in settings.credential_specs() if s.iam_user == untracked_user]
    assert len(added) == 1 and added[0].targets[0].path == f"{prefix}/legacy/sub"
