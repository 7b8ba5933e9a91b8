"""Several AWS accounts through moto's AssumeRole: rotator assumes a role in each configured account (with an
ExternalId where configured, once per account), rotates a credential in each, verifies each new key in the
account's own region, `check` probes every account, and discovery reports a key of a fourth, unconfigured
account as unknown.

moto picks the account of a request from its access key: keys minted by AssumeRole into
arn:aws:iam::X:role/... live in account X's IAM backend, so calls signed with them act in account X.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from rotator.config.settings import parse_settings
from rotator.inventory.discover import discover
from rotator.leases import new_holder
from rotator.rotation.batch import rotate_many
from rotator.rotation.results import Outcome
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import TargetSeed, gitlab_admin, pair_works, put_pair
from rotator.wiring.root import Root
from tests.sandbox_support import unique

EXTERNAL_ID = "external-id-for-a1"
TRUST = ('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", '
         '"Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]}')


@dataclass
class Account:
    name: str
    account_id: str
    user: str
    key_id: str
    secret: str
    project: str


def account_client(sandbox: Sandbox, account_id: str, service: str) -> Any:
    """A client acting in ``account_id``: the ambient (default-account) identity assumes a role there."""
    sts = boto3.client("sts", endpoint_url=sandbox.aws.url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/rotator", RoleSessionName="seed")["Credentials"]
    return boto3.client(service, endpoint_url=sandbox.aws.url, region_name="us-east-1",  # type: ignore[call-overload]
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


def seed_account(sandbox: Sandbox, name: str, account_id: str, prefix: str) -> Account:
    iam = account_client(sandbox, account_id, "iam")
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName="rotator", AssumeRolePolicyDocument=TRUST)  # what rotator assumes
    user = f"ci-{prefix}-{name}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    project = f"{prefix}/{name}/deployer"
    put_pair(gitlab_admin(sandbox.urls()), TargetSeed("project", project), key["AccessKeyId"], key["SecretAccessKey"])
    return Account(name, account_id, user, key["AccessKeyId"], key["SecretAccessKey"], project)


@pytest.fixture(scope="module")
def accounts(sandbox: Sandbox) -> list[Account]:
    prefix = unique("acct")
    ids = random.sample(range(10**11, 10**12), 4)
    return [seed_account(sandbox, name, str(account_id), prefix)
            for name, account_id in zip(("a1", "a2", "a3", "stranger"), ids, strict=True)]


def config_for(sandbox: Sandbox, accounts: list[Account], tmp_path: Path) -> str:
    urls = sandbox.urls()
    lines = ["[service]", f'database_url = "sqlite:///{tmp_path}/r.db"', "[aws]", 'region = "us-east-1"',
             "iam_requests_per_second = 100.0"]
    for account in accounts[:3]:
        lines += ["[[aws.accounts]]", f'name = "{account.name}"',
                  f'role_arn = "arn:aws:iam::{account.account_id}:role/rotator"']
        if account.name == "a1":
            lines.append('external_id_env = "ROTATOR_A1_EXTERNAL_ID"')
        if account.name == "a2":
            lines.append('region = "eu-west-1"')
    lines += ["[gitlab]", f'url = "{urls["gitlab_url"]}"', "requests_per_second = 1000.0",
              "[policy]", 'grace = "0s"', 'delete_after = "0s"', 'verify_timeout = "20s"']
    for account in accounts[:3]:
        lines += ["[[credentials]]", f'name = "cred-{account.name}"', f'iam_user = "{account.user}"',
                  f'account = "{account.name}"', "[[credentials.targets]]", f'project = "{account.project}"']
    return "\n".join(lines) + "\n"


@pytest.fixture(autouse=True)
def _env(sandbox_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATOR_A1_EXTERNAL_ID", EXTERNAL_ID)


def test_credentials_in_three_accounts_rotate_through_their_roles(
        sandbox: Sandbox, accounts: list[Account], tmp_path: Path) -> None:
    settings = parse_settings(config_for(sandbox, accounts, tmp_path))
    wiring = Root(settings, actor="multi-account-test")
    wiring.rotation.sync_credentials()
    sandbox.aws.log.clear()
    results = rotate_many(settings.credential_specs(), wiring.rotation.ports, holder=new_holder("t"),
                          lease_ttl=settings.service.lease_ttl, concurrency=3, force=True)
    assert [r.outcome for r in results] == [Outcome.ROTATED] * 3, [r.message for r in results]
    rotation_calls = sandbox.aws.log.entries()  # before this test's own checks add theirs
    state: Any = sandbox.gitlab
    for account, result in zip(accounts[:3], results, strict=True):
        key = state.state.get_variable("project", account.project, "AWS_ACCESS_KEY_ID")
        secret = state.state.get_variable("project", account.project, "AWS_SECRET_ACCESS_KEY")
        assert key.value == result.new_key_id and pair_works(sandbox.urls(), key.value, secret.value)
        # The new key lives in that account, and the old one is gone from it.
        iam = account_client(sandbox, account.account_id, "iam")
        keys = {k["AccessKeyId"] for k in iam.list_access_keys(UserName=account.user)["AccessKeyMetadata"]}
        assert keys == {result.new_key_id}
        owner = boto3.client("sts", endpoint_url=sandbox.aws.url, region_name="us-east-1",
                             aws_access_key_id=key.value, aws_secret_access_key=secret.value).get_caller_identity()
        assert owner["Account"] == account.account_id
    # One AssumeRole per account (sessions are cached), with the ExternalId where configured. Counted in the
    # calling account's trail: AWS delivers a copy of each cross-account AssumeRole to the role's account too.
    assumed = [e for e in sandbox.aws.events(account_id="123456789012") if e["eventName"] == "AssumeRole"
               and e["requestParameters"].get("roleSessionName") == "rotator"  # not the test's own "seed"
               and any(a.account_id in str(e["requestParameters"].get("roleArn")) for a in accounts[:3])]
    by_role = {str(e["requestParameters"].get("roleArn")): e["requestParameters"] for e in assumed}
    assert len(assumed) == 3 and len(by_role) == 3
    shared = {e["sharedEventID"] for e in assumed}
    for account in accounts[:3]:
        copies = [e for e in sandbox.aws.events(account_id=account.account_id) if e.get("sharedEventID") in shared]
        assert [e["userIdentity"]["type"] for e in copies] == ["AWSAccount"], account.name
    a1 = by_role[f"arn:aws:iam::{accounts[0].account_id}:role/rotator"]
    assert a1.get("externalId") == EXTERNAL_ID
    assert "externalId" not in by_role[f"arn:aws:iam::{accounts[2].account_id}:role/rotator"]
    # a2's new key was verified with STS in a2's own region.
    verify_regions = {e.detail["region"] for e in rotation_calls
                      if e.key == "sts:GetCallerIdentity" and e.detail.get("access_key_id") == results[1].new_key_id}
    assert verify_regions == {"eu-west-1"}


def test_check_probes_every_account_through_its_role(
        sandbox: Sandbox, accounts: list[Account], tmp_path: Path) -> None:
    wiring = Root(parse_settings(config_for(sandbox, accounts, tmp_path)), actor="t")
    probes = {p.name: p for p in wiring.checks.probes()}
    for account in accounts[:3]:
        probe = probes[f"aws[{account.name}] sts:GetCallerIdentity"]
        assert probe.ok and f"account {account.account_id}" in probe.detail and "assumed-role/rotator" in probe.detail
    assert "aws[default] sts:GetCallerIdentity" not in probes  # no credential lives in the ambient account


def test_discovery_resolves_each_configured_account_and_reports_a_fourth_as_unknown(
        sandbox: Sandbox, accounts: list[Account], tmp_path: Path) -> None:
    settings = parse_settings(config_for(sandbox, accounts, tmp_path))
    wiring = Root(settings, actor="t")
    report = discover(settings.credential_specs(), settings.policy.to_policy(), wiring.inventory.discovery_ports())
    by_project = {f.location.scope.path: f for f in report.findings}
    for account in accounts[:3]:
        finding = by_project[account.project]
        assert finding.tracked and finding.resolution.account == account.name
        assert finding.resolution.account_id == account.account_id
        assert finding.resolution.user_name == account.user
    stranger = by_project[accounts[3].project]
    assert not stranger.tracked and not stranger.resolution.known
    assert stranger.resolution.account is None and stranger.resolution.account_id == accounts[3].account_id
    assert "not configured" in (stranger.resolution.problem or "")
