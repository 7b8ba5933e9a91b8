"""The rotation protocol through the real adapters (boto3, python-gitlab, slack_sdk, SQLAlchemy) against the
emulators: the refusals and failures that depend on real protocol behaviour (429 + Retry-After, 409, 403, hidden
variables, eventual consistency, throttling)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.fernet import Fernet

from rotator.config.settings import parse_settings
from rotator.leases import new_holder
from rotator.rotation.batch import rotate_many
from rotator.rotation.results import Outcome, RotationResult
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import CredentialSeed, TargetSeed, config_toml
from rotator.sandbox.server import Fault
from rotator.wiring.root import Root
from tests.sandbox_support import (
    every_target_works,
    max_keys_ever,
    refuse_key_id_after_its_preflight,
    seed_one,
    target_pair,
    unique,
    user_keys,
)


@pytest.fixture(autouse=True)
def _clean(sandbox: Sandbox, sandbox_env: dict[str, str]) -> Iterator[None]:
    yield
    gitlab = sandbox.gitlab
    for faults in (sandbox.aws.faults, gitlab.faults, sandbox.slack.faults):  # type: ignore[attr-defined]
        faults.clear()
    sandbox.aws.set_propagation_delay(0)


def rotate(sandbox: Sandbox, seed: CredentialSeed, tmp_path: Path, **policy: str) -> RotationResult:
    [result] = rotate_all(sandbox, [seed], tmp_path, **policy)
    return result


def rotate_all(sandbox: Sandbox, seeds: list[CredentialSeed], tmp_path: Path, *, gitlab_rps: float | None = None,
               concurrency: int = 1, **policy: str) -> list[RotationResult]:
    text = config_toml(sandbox.urls(), seeds, database_url=f"sqlite:///{tmp_path}/r.db",
                       policy={"rotate_every": "30d", "grace": "0s", "delete_after": "0s", "verify_timeout": "8s",
                               **policy})
    if gitlab_rps is not None:
        text = text.replace('token_env = "ROTATOR_GITLAB_TOKEN"',
                            f'token_env = "ROTATOR_GITLAB_TOKEN"\nrequests_per_second = {gitlab_rps}')
    settings = parse_settings(text)
    wiring = Root(settings, actor="test")
    wiring.rotation.sync_credentials()
    return rotate_many(settings.credential_specs(), wiring.rotation.ports, holder=new_holder("test"),
                       lease_ttl=settings.service.lease_ttl, force=True, concurrency=concurrency)


def test_a_key_id_refused_after_a_readable_secret_was_written_gets_the_old_secret_back(
        sandbox: Sandbox, tmp_path: Path) -> None:
    name = unique("restore")
    seed = seed_one(sandbox, name=name, targets=(TargetSeed("project", f"{name}/api"),
                                                 TargetSeed("group", f"{name}-group", "production",
                                                            hidden_secret=False)))
    refused = seed.targets[1]
    armed = refuse_key_id_after_its_preflight(sandbox, refused)
    result = rotate(sandbox, seed, tmp_path)
    armed.join(timeout=5)
    assert result.outcome is Outcome.HELD, result.message
    assert "put back" in result.message and f"holds {seed.key_id} again" in result.message
    assert target_pair(sandbox, refused) == (seed.key_id, seed.secret)  # its old pair, whole
    assert every_target_works(sandbox, seed) == []
    assert user_keys(sandbox, seed.iam_user)[seed.key_id] == "Active"


def test_at_one_request_per_second_the_two_puts_of_a_pair_still_arrive_back_to_back(
        sandbox: Sandbox, tmp_path: Path) -> None:
    seeds = [seed_one(sandbox, targets=(TargetSeed("project", f"{unique('pair')}/api"),)) for _ in range(2)]
    gitlab: Any = sandbox.gitlab
    gitlab.log.clear()
    # [gitlab] requests_per_second = 1, two credentials competing for it: every other request waits ~1 s.
    results = rotate_all(sandbox, seeds, tmp_path, gitlab_rps=1.0, concurrency=2, grace="1h")
    assert [r.outcome for r in results] == [Outcome.WAITING] * 2, [r.message for r in results]
    entries = sorted(gitlab.log.entries(), key=lambda e: e.at)
    windows = []
    for seed in seeds:
        path = quote(seed.targets[0].path or "", safe="")
        secret = next(i for i, e in enumerate(entries)
                      if e.key == f"PUT /api/v4/projects/{path}/variables/AWS_SECRET_ACCESS_KEY")
        following = entries[secret + 1]  # the very next request GitLab saw, from any thread
        assert following.key == f"PUT /api/v4/projects/{path}/variables/AWS_ACCESS_KEY_ID"
        assert entries[secret].status == following.status == 200
        windows.append(following.at - entries[secret].at)
    gaps = [b.at - a.at for a, b in pairwise(entries)]
    paced = sorted(gaps)[len(gaps) // 2]
    assert paced >= 0.8, gaps  # the pacer held GitLab to 1 request/s ...
    assert max(windows) < 0.25, windows  # ... and the pairs' two PUTs still went back to back
    for seed in seeds:
        assert every_target_works(sandbox, seed) == []


def test_full_rotation_through_real_clients(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    result = rotate(sandbox, seed, tmp_path)
    assert result.outcome is Outcome.ROTATED, result.message
    assert every_target_works(sandbox, seed) == []
    assert list(user_keys(sandbox, seed.iam_user)) == [result.new_key_id]
    assert max_keys_ever(sandbox, seed.iam_user) == 2
    # the group target's environment scope was respected: the '*' scope is untouched
    state = sandbox.gitlab.state  # type: ignore[attr-defined]
    assert state.get_variable("group", f"{seed.name}-group", "AWS_ACCESS_KEY_ID", "*") is None
    owners = [m for m in sandbox.slack.messages() if m.get("channel") == "#team-payments"]
    assert any("rotated" in str(m.get("text")) for m in owners)


def test_gitlab_429_with_retry_after_succeeds_after_waiting(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    sandbox.gitlab.faults.add(Fault(match=r"^PUT .*/variables/AWS_SECRET_ACCESS_KEY", status=429,  # type: ignore[attr-defined]
                                    retry_after=1, count=2))
    result = rotate(sandbox, seed, tmp_path)
    assert result.outcome is Outcome.ROTATED, result.message
    statuses = [e.status for e in sandbox.gitlab.log.entries() if "PUT" in e.key]  # type: ignore[attr-defined]
    assert statuses.count(429) == 2
    assert every_target_works(sandbox, seed) == []


def test_409_is_permanent_and_names_the_scope(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    sandbox.gitlab.faults.add(Fault(  # type: ignore[attr-defined]
        match=r"^GET .*groups/.*/variables/AWS_ACCESS_KEY_ID", status=409,
        message="There are multiple variables with provided parameters. Please use 'filter[environment_scope]'"))
    before = user_keys(sandbox, seed.iam_user)
    result = rotate(sandbox, seed, tmp_path)
    assert result.outcome is Outcome.FAILED
    assert "environment_scope=production" in result.message and "409" in result.message
    assert user_keys(sandbox, seed.iam_user) == before


def test_forbidden_on_one_target_holds_with_both_keys_active(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    old = seed.key_id
    sandbox.gitlab.faults.add(Fault(match=r"^PUT .*/groups/", status=403, message="403 Forbidden"))  # type: ignore[attr-defined]
    result = rotate(sandbox, seed, tmp_path)
    assert result.outcome is Outcome.HELD and "403" in result.message
    keys = user_keys(sandbox, seed.iam_user)
    assert set(keys.values()) == {"Active"} and len(keys) == 2 and old in keys
    assert every_target_works(sandbox, seed) == []
    told = [m for m in sandbox.slack.messages() if m.get("channel") == "#team-payments"]
    assert any("held" in str(m.get("text")) for m in told)


def test_hidden_secret_rotates_and_is_checked_by_key_id_read_back(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox, targets=[TargetSeed("project", f"{seed_name()}/svc", hidden_secret=True)])
    result = rotate(sandbox, seed, tmp_path)
    assert result.outcome is Outcome.ROTATED
    key_id, secret = target_pair(sandbox, seed.targets[0])
    assert key_id == result.new_key_id and secret and every_target_works(sandbox, seed) == []
    variable = sandbox.gitlab.state.get_variable("project", seed.targets[0].path,  # type: ignore[attr-defined]
                                                 "AWS_SECRET_ACCESS_KEY")
    assert variable.hidden and variable.masked and variable.protected  # flags kept


def test_eventual_consistency_is_waited_out(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    sandbox.aws.set_propagation_delay(2.5)
    result = rotate(sandbox, seed, tmp_path)
    assert result.outcome is Outcome.ROTATED, result.message
    assert any("attempt" in step and "verify" in step for step in result.steps)


def test_never_accepted_deletes_the_new_key(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    sandbox.aws.set_propagation_delay("forever")
    result = rotate(sandbox, seed, tmp_path, verify_timeout="3s")
    assert result.outcome is Outcome.FAILED and "did not accept" in result.message
    assert user_keys(sandbox, seed.iam_user) == {seed.key_id: "Active"}
    assert every_target_works(sandbox, seed) == []


def test_iam_throttling_is_retried_by_botocore(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    sandbox.aws.faults.add(Fault(match="iam:CreateAccessKey", status=400, error_code="Throttling", count=2))
    result = rotate(sandbox, seed, tmp_path)
    assert result.outcome is Outcome.ROTATED, result.message
    throttled = [e for e in sandbox.aws.log.entries() if e.key == "iam:CreateAccessKey" and e.status == 400]
    assert len(throttled) == 2


def test_slack_outage_does_not_fail_the_rotation(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    sandbox.slack.faults.add(Fault(match="chat.postMessage", status=500))
    result = rotate(sandbox, seed, tmp_path)
    assert result.outcome is Outcome.ROTATED
    assert every_target_works(sandbox, seed) == []


def seed_name() -> str:
    import uuid

    return f"h-{uuid.uuid4().hex[:8]}"


def test_state_key_seals_the_journal(tmp_path: Path) -> None:
    # a key that is not a Fernet key is a clear error, not a crash mid-rotation
    from rotator.adapters.sealing import FernetSealer
    from rotator.domain import Secret
    from rotator.errors import StateKeyError

    with pytest.raises(StateKeyError, match="not a Fernet key"):
        FernetSealer(Secret("not-a-key"))
    sealer = FernetSealer(Secret(Fernet.generate_key().decode()))
    sealed = sealer.seal(Secret("canary-secret-value"))
    assert b"canary-secret-value" not in sealed and sealer.open(sealed).reveal() == "canary-secret-value"
    with pytest.raises(StateKeyError, match="does not open"):
        FernetSealer(Secret(Fernet.generate_key().decode())).open(sealed)
