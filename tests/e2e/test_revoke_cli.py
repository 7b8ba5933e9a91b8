"""`rotator revoke` and `rotator audit` as a responder runs them: CLI subprocesses against the emulators,
checked through the emulators' own request logs, state and Slack messages."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rotator.adapters.db.store import SqlStore, make_engine, upgrade_to_head
from rotator.domain import KeyOwner
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import (
    CredentialSeed,
    TargetSeed,
    client_env,
    config_toml,
    gitlab_admin,
    pair_works,
    put_pair,
    seed_credentials,
    stage_attack,
)
from rotator.sandbox.server import Fault
from tests.sandbox_support import ROTATOR, run_rotator

SECURITY = "#security-incidents"
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")  # config_toml's audit_regions


@pytest.fixture(autouse=True)
def _clean_faults(sandbox: Sandbox) -> Iterator[None]:
    yield
    for emulator in (sandbox.aws, sandbox.gitlab, sandbox.slack):
        emulator.faults.clear()


@dataclass
class Case:
    sandbox: Sandbox
    tmp: Path
    config: Path
    env: dict[str, str]
    seed: CredentialSeed
    other: CredentialSeed
    database_url: str

    def run(self, *args: str, config: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        if config is not None or "--config" not in args:
            args = (*args, "--config", str(config or self.config))
        return run_rotator(*args, env=self.env, cwd=cwd or self.tmp)

    def forget_traffic(self) -> None:
        for emulator in (self.sandbox.aws, self.sandbox.gitlab, self.sandbox.slack):
            emulator.log.clear()


def make_case(sandbox: Sandbox, tmp_path: Path) -> Case:
    suffix = uuid.uuid4().hex[:6]
    urls = sandbox.urls()
    seeds = seed_credentials(urls, [
        CredentialSeed(f"payments-{suffix}", f"ci-payments-{suffix}",
                       (TargetSeed("project", f"payments-{suffix}/api", hidden_secret=False),),
                       owners=(f"#team-payments-{suffix}",)),
        CredentialSeed(f"deploy-{suffix}", f"ci-deploy-{suffix}", (TargetSeed("group", f"platform-{suffix}"),)),
    ])
    database_url = f"sqlite:///{tmp_path / 'rotator.db'}"
    config = tmp_path / "rotator.toml"
    config.write_text(config_toml(urls, seeds, database_url=database_url, security_channel=SECURITY,
                                  extra_service={"actor": "e2e-responder"}))
    return Case(sandbox, tmp_path, config, client_env(urls), seeds[0], seeds[1], database_url)


def attack(case: Case) -> str:
    """The leaked key at work before anyone noticed (see stage_attack). Returns the minted session key id."""
    return stage_attack(case.sandbox, case.seed, backdoor_user=f"backdoor-{uuid.uuid4().hex[:6]}")


def held_pair(sandbox: Sandbox, scope: str, path: str, key_var: str, secret_var: str,
              environment_scope: str = "*") -> tuple[str, str]:
    state = sandbox.gitlab.state
    key = state.get_variable(scope, path, key_var, environment_scope)
    secret = state.get_variable(scope, path, secret_var, environment_scope)
    assert key is not None and secret is not None
    return key.value, secret.value


def test_malformed_key_exits_2_with_zero_requests(sandbox: Sandbox, tmp_path: Path) -> None:
    case = make_case(sandbox, tmp_path)
    case.forget_traffic()
    for bad in ("AKIA123", "akia" + "a" * 16, case.seed.secret):
        finished = case.run("revoke", "--key", bad)
        assert finished.returncode == 2, finished.stderr
        assert "not an access key id" in finished.stderr
        assert case.seed.secret not in finished.stderr  # a pasted secret is not echoed back
    assert sandbox.aws.log.entries() == [] and sandbox.gitlab.log.entries() == [] and sandbox.slack.log.entries() == []


def test_unknown_key_exits_1_and_says_what_was_tried(sandbox: Sandbox, tmp_path: Path) -> None:
    case = make_case(sandbox, tmp_path)
    case.forget_traffic()
    finished = case.run("revoke", "--key", "AKIA" + uuid.uuid4().hex[:16].upper(), "--json")
    assert finished.returncode == 1, finished.stderr
    answer = json.loads(finished.stdout)
    assert answer["contained"] is False
    assert any("GetAccessKeyLastUsed" in attempt for attempt in answer["tried"])
    assert "iam:UpdateAccessKey" not in [e.key for e in sandbox.aws.log.entries()]
    assert sandbox.slack.log.entries() == [] and sandbox.gitlab.log.entries() == []


def test_tracked_key_resolves_from_the_store(sandbox: Sandbox, tmp_path: Path) -> None:
    case = make_case(sandbox, tmp_path)
    upgrade_to_head(case.database_url)
    store = SqlStore(make_engine(case.database_url))
    store.remember_key(KeyOwner(case.seed.key_id, case.seed.name, "default", case.seed.iam_user), datetime.now(UTC),
                       status="Active")
    store.close()
    case.forget_traffic()
    finished = case.run("revoke", "--key", case.seed.key_id, "--no-audit", "--json")
    assert finished.returncode == 0, finished.stderr
    answer = json.loads(finished.stdout)
    assert answer["identity"]["source"] == "store" and answer["identity"]["credential"] == case.seed.name
    keys = [e.key for e in sandbox.aws.log.entries()]
    assert keys[0] == "iam:UpdateAccessKey" and "sts:GetAccessKeyInfo" not in keys
    assert sandbox.aws.key_status(case.seed.key_id) == "Inactive"


def test_untracked_key_full_playbook(sandbox: Sandbox, tmp_path: Path) -> None:
    case = make_case(sandbox, tmp_path)
    # The same key was also pasted into the other credential's group: only scanning finds it.
    put_pair(gitlab_admin(sandbox.urls()), TargetSeed("group", f"platform-{case.seed.name.split('-')[-1]}"),
             case.seed.key_id, case.seed.secret, key_var="DEPLOY_AWS_ACCESS_KEY_ID",
             secret_var="DEPLOY_AWS_SECRET_ACCESS_KEY")
    minted = attack(case)
    case.forget_traffic()
    slack_before = len(sandbox.slack.messages())

    finished = case.run("revoke", "--key", case.seed.key_id, "--reason", "pasted in a public gist", "--replace",
                        "--json", "--output", str(tmp_path / "report"))

    assert finished.returncode == 0, finished.stdout + finished.stderr
    answer = json.loads(finished.stdout)
    assert answer["contained"] is True and answer["identity"]["source"] == "aws"
    assert sandbox.aws.key_status(case.seed.key_id) == "Inactive"  # kept as evidence, not deleted

    # Containment came first: UpdateAccessKey before any Slack, GitLab or CloudTrail request.
    update_at = next(e.at for e in sandbox.aws.log.entries() if e.key == "iam:UpdateAccessKey")
    later = [e.at for e in sandbox.slack.log.entries()] + [e.at for e in sandbox.gitlab.log.entries()] + [
        e.at for e in sandbox.aws.log.entries() if e.key.startswith("cloudtrail:")]
    assert later and update_at < min(later)

    # --replace: every target holds a pair AWS accepts; the old pair is refused.
    suffix = case.seed.name.split("-")[-1]
    pairs = [held_pair(sandbox, "project", f"payments-{suffix}/api", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
             held_pair(sandbox, "group", f"platform-{suffix}", "DEPLOY_AWS_ACCESS_KEY_ID",
                       "DEPLOY_AWS_SECRET_ACCESS_KEY")]
    assert pairs[0] == pairs[1] and pairs[0][0] != case.seed.key_id
    assert all(pair_works(sandbox.urls(), key, secret) for key, secret in pairs)
    assert not pair_works(sandbox.urls(), case.seed.key_id, case.seed.secret)
    other_pair = held_pair(sandbox, "group", f"platform-{suffix}", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    assert other_pair[0] == case.other.key_id  # the group's other credential was left alone

    # One Slack thread: the containment message first, the audit summary as a reply.
    messages = sandbox.slack.messages()[slack_before:]
    security = [m for m in messages if m["channel"] == SECURITY]
    root = security[0]
    assert root["thread_ts"] is None
    for expected in (case.seed.key_id, case.seed.iam_user, "account: default", "T0:", "e2e-responder",
                     "pasted in a public gist"):
        assert expected in root["text"]
    replies = security[1:]
    assert replies and all(m["thread_ts"] == root["ts"] for m in replies)
    assert any("CloudTrail audit" in (m["text"] or "") for m in replies)
    assert any(m["channel"] == case.seed.owners[0] for m in messages)

    # The audit found the attacker in three regions, including what the minted session did.
    audit = answer["audit"]
    # Nothing failed; the last minutes before T0 wait for the follow-up (CloudTrail delivers late).
    assert audit["coverage"]["failed"] is False and audit["coverage"]["state"] == "pending follow-up"
    assert audit["complete"] is False
    assert {k["key_id"] for k in audit["keys"]} == {case.seed.key_id, minted}
    assert set(audit["summary"]["by_region"]) == set(REGIONS)
    assert audit["summary"]["by_key"][minted] >= 3
    categories = {f["category"] for f in audit["findings"]}
    assert {"identity persistence", "session minting", "spend"} <= categories

    # Reports: --output and the store; never a secret anywhere.
    written = [Path(p) for p in answer["report_files"]]
    assert {p.suffix for p in written} == {".md", ".json"} and all(p.is_file() for p in written)
    store = SqlStore(make_engine(case.database_url))
    incident = store.incidents_for_key(case.seed.key_id)[-1]
    store.close()
    assert incident.report_markdown and "CloudTrail audit" in incident.report_markdown
    sinks = [finished.stdout, finished.stderr, json.dumps(messages), incident.report_markdown or "",
             incident.report_json or "", *(p.read_text() for p in written)]
    for secret in (case.seed.secret, pairs[0][1]):
        assert all(secret not in sink for sink in sinks)

    # `rotator audit` alone, later: the same findings, attached to the incident.
    alone = case.run("audit", "--key", case.seed.key_id, "--json")
    assert alone.returncode == 0, alone.stderr
    again = json.loads(alone.stdout)
    assert again["incident_id"] == incident.incident_id and again["coverage"]["failed"] is False
    assert minted in {k["key_id"] for k in again["keys"]}

    # Re-running revoke is safe and says what was already done.
    rerun = case.run("revoke", "--key", case.seed.key_id, "--no-audit", "--json")
    assert rerun.returncode == 0, rerun.stderr
    steps = {s["name"]: s["status"] for s in json.loads(rerun.stdout)["steps"]}
    assert steps["earlier incident"] == "already done" and steps["deny sessions"] == "already done"


def test_a_region_that_keeps_failing_is_coverage_incomplete_and_exit_3(sandbox: Sandbox, tmp_path: Path) -> None:
    case = make_case(sandbox, tmp_path)
    attack(case)
    sandbox.aws.faults.add(Fault(match=r"cloudtrail:LookupEvents@ap-southeast-2$", status=400,
                                 error_code="AccessDeniedException", message="not authorized in this region"))
    finished = case.run("revoke", "--key", case.seed.key_id, "--json")
    assert finished.returncode == 3, finished.stderr
    answer = json.loads(finished.stdout)
    assert answer["contained"] is True and sandbox.aws.key_status(case.seed.key_id) == "Inactive"
    assert "coverage incomplete" in answer["audit"]["verdict"]
    failed = [c for c in answer["audit"]["coverage"]["lookups"] if c["error"]]
    assert failed and {c["region"] for c in failed} == {"ap-southeast-2"}
    assert any(s["name"] == "audit" and s["status"] == "failed" for s in answer["steps"])


def test_revoke_runs_with_only_aws_in_the_config_and_with_no_config_at_all(sandbox: Sandbox, tmp_path: Path) -> None:
    case = make_case(sandbox, tmp_path)
    only_aws = tmp_path / "aws-only.toml"
    only_aws.write_text('[aws]\nregion = "us-east-1"\naudit_regions = ["us-east-1"]\n')
    finished = case.run("revoke", "--key", case.seed.key_id, "--json", config=only_aws)
    assert finished.returncode == 0, finished.stderr
    steps = {s["name"]: s["status"] for s in json.loads(finished.stdout)["steps"]}
    assert steps["deactivate"] == "done" and steps["notify"] == "skipped" and steps["audit"] == "done"

    (tmp_path / "second").mkdir()
    second = make_case(sandbox, tmp_path / "second")
    bare = tmp_path / "no-config"
    bare.mkdir()
    env = {k: v for k, v in second.env.items() if k != "ROTATOR_CONFIG"}
    command = [ROTATOR, "revoke", "--key", second.seed.key_id, "--no-audit", "--json"]
    finished = subprocess.run(command, env=env, cwd=bare, capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["contained"] is True
    assert sandbox.aws.key_status(second.seed.key_id) == "Inactive"
    assert not (bare / "rotator.toml").exists() and os.listdir(bare) == ["rotator.db"]  # the incident's record


def test_a_broken_config_outside_aws_never_blocks_containment(sandbox: Sandbox, tmp_path: Path) -> None:
    case = make_case(sandbox, tmp_path)
    broken = tmp_path / "broken.toml"
    broken.write_text(case.config.read_text().replace('grace = "0s"', 'grace = "soon"'))
    finished = case.run("revoke", "--key", case.seed.key_id, "--json", config=broken)
    assert finished.returncode == 3, finished.stderr
    answer = json.loads(finished.stdout)
    assert answer["contained"] is True and sandbox.aws.key_status(case.seed.key_id) == "Inactive"
    config_step = next(s for s in answer["steps"] if s["name"] == "config")
    assert config_step["status"] == "failed" and "policy.grace" in config_step["detail"]
