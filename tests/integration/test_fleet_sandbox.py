"""Emergency rotation through the real adapters against the emulators: many credentials at once under the
GitLab emulator's own rate limit (real 429 + Retry-After) and injected IAM Throttling. Every credential
still ends with a working pair or is held safely; the buckets slowed down instead of failing anything;
owners got one batched message per channel and the security channel one summary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.config.settings import parse_settings
from rotator.domain import ScopeKind, TargetSpec
from rotator.leases import new_holder
from rotator.rotation.fleet import exposed_to, select_credentials
from rotator.rotation.results import Outcome
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import CredentialSeed, TargetSeed, aws_client, config_toml, seed_credentials
from rotator.sandbox.server import Fault
from rotator.wiring.root import Root
from tests.sandbox_support import every_target_works, unique, user_keys

SECURITY = "#security-incidents"


@pytest.fixture(autouse=True)
def _env(sandbox: Sandbox, sandbox_env: dict[str, str]) -> Iterator[None]:
    yield
    for emulator in (sandbox.aws, sandbox.gitlab, sandbox.slack):
        emulator.faults.clear()  # type: ignore[attr-defined]


def seed_fleet(sandbox: Sandbox, count: int) -> tuple[str, list[CredentialSeed]]:
    prefix = unique("fleet")
    seeds = [CredentialSeed(f"{prefix}-{i}", f"ci-{prefix}-{i}",
                            (TargetSeed("project", f"{prefix}/{'alpha' if i % 2 else 'beta'}/svc-{i}"),),
                            owners=(f"#team-{'alpha' if i % 2 else 'beta'}-{prefix}",))
             for i in range(count)]
    return prefix, seed_credentials(sandbox.urls(), seeds)


def wiring_for(sandbox: Sandbox, seeds: list[CredentialSeed], tmp_path: Path, gitlab_rate: float) -> Root:
    text = config_toml(sandbox.urls(), seeds, database_url=f"sqlite:///{tmp_path}/r.db",
                       security_channel=SECURITY, policy={"rotate_every": "30d", "grace": "0s",
                                                          "delete_after": "0s", "verify_timeout": "20s"})
    text = text.replace('token_env = "ROTATOR_GITLAB_TOKEN"',
                        f'token_env = "ROTATOR_GITLAB_TOKEN"\nrequests_per_second = {gitlab_rate}')
    text = text.replace('region = "us-east-1"', 'region = "us-east-1"\niam_requests_per_second = 50.0', 1)
    settings = parse_settings(text)
    wiring = Root(settings, actor="fleet-test")
    wiring.rotation.sync_credentials()
    return wiring


def test_emergency_rotation_under_pushback_rotates_everything_and_batches_slack(
        sandbox: Sandbox, tmp_path: Path) -> None:
    prefix, seeds = seed_fleet(sandbox, 12)
    stuck = seeds[3]
    aws_client(sandbox.urls(), "iam").create_access_key(UserName=stuck.iam_user)  # two Active keys: held
    gitlab: Any = sandbox.gitlab
    gitlab.state.rate_limit_per_period = 25  # GitLab's own limiter answers 429 + Retry-After beyond this
    gitlab.state.rate_limit_period_seconds = 1.0
    gitlab.reset_rate_limits()
    sandbox.aws.faults.add(Fault(match="iam:CreateAccessKey", status=400, error_code="Throttling", count=3))
    wiring = wiring_for(sandbox, seeds, tmp_path, gitlab_rate=200.0)  # far above what GitLab allows
    specs = wiring.settings.credential_specs()
    try:
        report = wiring.rotation.fleet(specs, holder=new_holder("fleet-test"), concurrency=8, force=True,
                                       scope="every configured credential")
    finally:
        gitlab.state.rate_limit_per_period = 1_000_000
        gitlab.state.rate_limit_period_seconds = 60.0

    outcomes = {r.credential: r.outcome for r in report.results}
    assert outcomes.pop(stuck.name) is Outcome.HELD
    assert set(outcomes.values()) == {Outcome.ROTATED}, [r.message for r in report.results]
    for seed in seeds:
        assert every_target_works(sandbox, seed) == [], seed.name
        if seed is not stuck:
            assert seed.key_id not in user_keys(sandbox, seed.iam_user)  # the old key is gone
    # GitLab pushed back with real 429s, and the bucket slowed down instead of failing anyone.
    refused = [e for e in gitlab.log.entries() if e.status == 429]
    assert refused
    buckets = {b.name: b for b in report.buckets}
    assert buckets["gitlab"].throttled >= 1 and buckets["iam:default"].throttled >= 1
    # Slack: one batched message per owner channel, one summary for security.
    messages = [m for m in sandbox.slack.messages() if prefix in str(m["channel"]) or m["channel"] == SECURITY]
    per_channel = {channel: sum(1 for m in messages if m["channel"] == channel)
                   for channel in {m["channel"] for m in messages}}
    assert per_channel == {f"#team-alpha-{prefix}": 1, f"#team-beta-{prefix}": 1, SECURITY: 1}
    alpha = next(m for m in messages if m["channel"] == f"#team-alpha-{prefix}")
    assert stuck.name in str(alpha["text"]) and "held" in str(alpha["text"])  # its hold reason, batched
    summary = next(m for m in messages if m["channel"] == SECURITY)
    assert "11 rotated" in str(summary["text"]) and "1 held" in str(summary["text"])
    assert stuck.name in str(summary["text"])
    digest_events = [e for e in wiring.store.events(limit=500) if e.action == "notify_digest"]
    assert sorted(str(e.detail["channel"]) for e in digest_events) == sorted(
        [f"#team-alpha-{prefix}", f"#team-beta-{prefix}"])


def test_selection_by_project_and_group_paths() -> None:
    project = TargetSpec(ScopeKind.PROJECT, "pay/api/service")
    group = TargetSpec(ScopeKind.GROUP, "pay/api")
    instance = TargetSpec(ScopeKind.INSTANCE, None)
    assert exposed_to(project, projects=["pay/api/service"]) and not exposed_to(project, projects=["pay/api"])
    assert exposed_to(project, groups=["pay"]) and not exposed_to(project, groups=["payments"])
    assert exposed_to(group, projects=["pay/api/service"])  # a group variable reaches the projects below it
    assert exposed_to(group, groups=["pay"]) and exposed_to(group, groups=["pay/api/sub"])
    assert not exposed_to(group, groups=["other"])
    assert exposed_to(instance, groups=["anything"])  # instance variables reach every pipeline
    from rotator.domain import CredentialSpec

    specs = [CredentialSpec("a", "u", targets=(project,)), CredentialSpec("b", "u2", targets=(
        TargetSpec(ScopeKind.PROJECT, "web/site"),))]
    assert [s.name for s in select_credentials(specs, groups=["pay"])] == ["a"]
    assert [s.name for s in select_credentials(specs)] == ["a", "b"]
