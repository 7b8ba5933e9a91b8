"""`rotator revoke` against the sessions a leaked key spawned, as an attacker would spawn them: CLI subprocesses
against the emulators, every claim checked through the AWS front by USING each session afterwards.

The AWS front (rotator.sandbox.aws) mints its own session keys that remember their principal and issue time,
refuses a session whose principal carries an explicit ``aws:TokenIssueTime`` deny, records AssumeRole in both
accounts of a cross-account call, answers GetAccessKeyInfo with the account that owns a session, and delays
CloudTrail delivery on demand.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from rotator.adapters.db.store import SqlStore, make_engine, upgrade_to_head
from rotator.domain import KeyOwner, KeyStatus, Phase
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import CredentialSeed, TargetSeed, client_env, config_toml, pair_works, seed_credentials
from tests.sandbox_support import ROTATOR, run_rotator

SECURITY = "#security-incidents"
HOME = "123456789012"  # moto's default account: the ambient credentials'
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": f"arn:aws:iam::{HOME}:root"}}]})

@pytest.fixture(autouse=True)
def _clean(sandbox: Sandbox) -> Iterator[None]:
    yield
    sandbox.aws.cloudtrail_delay = 0  # type: ignore[attr-defined]
    sandbox.aws.deliver_pending()  # type: ignore[attr-defined]
    for emulator in (sandbox.aws, sandbox.gitlab, sandbox.slack):
        emulator.faults.clear()


# --- the world the attacker found ------------------------------------------------------------------------------


def client(sandbox: Sandbox, service: str, **credentials: str) -> Any:
    creds = credentials or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return boto3.client(service, endpoint_url=sandbox.aws.url, region_name="us-east-1", **creds)  # type: ignore


def creds_of(minted: dict[str, Any]) -> dict[str, str]:
    found = {"aws_access_key_id": str(minted["AccessKeyId"]), "aws_secret_access_key": str(minted["SecretAccessKey"])}
    if minted.get("SessionToken"):
        found["aws_session_token"] = str(minted["SessionToken"])
    return found


def in_account(sandbox: Sandbox, account_id: str) -> dict[str, str]:
    """Credentials acting in ``account_id`` (moto needs no role to assume)."""
    return creds_of(client(sandbox, "sts").assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/setup",
                                                       RoleSessionName="setup")["Credentials"])


def new_role(sandbox: Sandbox, name: str, path: str = "/", **credentials: str) -> str:
    role = client(sandbox, "iam", **credentials).create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=TRUST)
    return str(role["Role"]["Arn"])


def works(sandbox: Sandbox, session: dict[str, str]) -> bool:
    """The session can still act: SQS ListQueues through the front (a policy-evaluated call any principal may make).
    Raises for anything but a refusal by policy."""
    try:
        client(sandbox, "sqs", **session).list_queues()
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "AccessDenied", exc.response
        return False
    return True


@dataclass
class Attack:
    seed: CredentialSeed
    key: dict[str, str]
    second: str  # a second configured account
    foreign: str  # an account rotator has no role in
    roles: dict[str, str]  # name → ARN
    sessions: dict[str, dict[str, str]]  # "home", "second", "foreign", "user" → credentials
    config: Path
    env: dict[str, str]
    database_url: str
    tmp: Path

    def run(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run_rotator(*args, "--config", str(config or self.config), env=self.env, cwd=self.tmp, timeout=240)

    def store(self) -> SqlStore:
        return SqlStore(make_engine(self.database_url))


def attack(sandbox: Sandbox, tmp: Path, *, revoke: str = "", policy: dict[str, str] | None = None,
           service: dict[str, str] | None = None) -> Attack:
    """A tracked credential whose key assumed a role in its own account, one in a second configured account and
    one in an account rotator does not know, and minted a GetSessionToken session; each session used once."""
    suffix = uuid.uuid4().hex[:6]
    urls = sandbox.urls()
    [seed] = seed_credentials(urls, [CredentialSeed(f"payments-{suffix}", f"ci-payments-{suffix}",
                                                    (TargetSeed("project", f"payments-{suffix}/api"),),
                                                    owners=(f"#team-payments-{suffix}",))])
    second, foreign = (str(random.randrange(10**11, 10**12)) for _ in range(2))
    admin_second, admin_foreign = in_account(sandbox, second), in_account(sandbox, foreign)
    new_role(sandbox, "rotator", **admin_second)  # what rotator assumes in the second account
    roles = {"home": new_role(sandbox, f"deploy-{suffix}", "/deploy/"),
             "second": new_role(sandbox, f"release-{suffix}", "/ci/", **admin_second),
             "foreign": new_role(sandbox, f"audit-{suffix}", **admin_foreign)}
    key = {"aws_access_key_id": seed.key_id, "aws_secret_access_key": seed.secret}
    sts = client(sandbox, "sts", **key)
    sessions = {name: creds_of(sts.assume_role(RoleArn=arn, RoleSessionName="attacker")["Credentials"])
                for name, arn in roles.items()}
    sessions["user"] = creds_of(sts.get_session_token()["Credentials"])
    assert all(works(sandbox, session) for session in sessions.values())
    database_url = f"sqlite:///{tmp / 'rotator.db'}"
    text = config_toml(urls, [seed], database_url=database_url, security_channel=SECURITY,
                       extra_service={"actor": "e2e-responder", **(service or {})}, policy=policy)
    text += f'\n[[aws.accounts]]\nname = "second"\nrole_arn = "arn:aws:iam::{second}:role/rotator"\n'
    text += "\n[revoke]\n" + revoke
    config = tmp / "rotator.toml"
    config.write_text(text)
    return Attack(seed, key, second, foreign, roles, sessions, config, client_env(urls), database_url, tmp)


def thread_of(sandbox: Sandbox, since: int) -> list[dict[str, Any]]:
    messages = [m for m in sandbox.slack.messages()[since:] if m["channel"] == SECURITY]
    root = messages[0]
    assert root["thread_ts"] is None and all(m["thread_ts"] == root["ts"] for m in messages[1:])
    return messages


def report_sessions(markdown: str) -> list[str]:
    found = re.search(r"^## Sessions\n\n(.*?)\n\n", markdown, flags=re.MULTILINE | re.DOTALL)
    assert found is not None, markdown
    return [line[2:] for line in found.group(1).splitlines()]


# --- the proofs ----------------------------------------------------------------------------------------------------


def test_every_session_is_cut_where_it_lives_and_the_rest_is_named(sandbox: Sandbox, tmp_path: Path) -> None:
    case = attack(sandbox, tmp_path)
    slack_before = len(sandbox.slack.messages())

    finished = case.run("revoke", "--key", case.seed.key_id, "--json", "--output", str(tmp_path / "report"))

    assert finished.returncode == 3, finished.stdout + finished.stderr  # one session cannot be cut
    answer = json.loads(finished.stdout)
    assert sandbox.aws.key_status(case.seed.key_id) == "Inactive"
    # Using each session now: refused at the front, except the one in the unconfigured account.
    for name in ("home", "second", "user"):
        assert not works(sandbox, case.sessions[name]), name
    assert works(sandbox, case.sessions["foreign"])  # honestly reported as NOT cut, below
    assert answer["contained"] is False and answer["key_inactive"] is True
    [gap] = answer["not_cut"]
    foreign_role = case.roles["foreign"].rsplit("/", 1)[-1]
    assert f"account {case.foreign} is not configured" in gap
    assert f"aws iam put-role-policy --role-name {foreign_role} --policy-name rotator-deny-sessions" in gap
    assert case.sessions["foreign"]["aws_access_key_id"] in gap
    cut = {s["principal"]["name"]: s for s in answer["sessions"]}
    assert cut[case.seed.iam_user]["cut"] and case.sessions["user"]["aws_access_key_id"] in cut[
        case.seed.iam_user]["sessions"]
    second_role = case.roles["second"].rsplit("/", 1)[-1]
    assert cut[second_role]["cut"] and f"in account second ({case.second})" in cut[second_role]["line"]
    # The audit followed the session in the second account there, and named the foreign one as a gap.
    coverage = answer["audit"]["coverage"]
    assert coverage["failed"] is True and any(case.foreign in gap for gap in coverage["gaps"])
    assert any(c["account_id"] == case.second for c in coverage["lookups"])

    # The Slack thread and the report say the same thing, line for line.
    thread = thread_of(sandbox, slack_before)
    [sessions_reply] = [m for m in thread if m["text"].startswith("rotator: sessions of")]
    posted = sessions_reply["text"].split("\n")[1:]
    store = case.store()
    incident = store.incidents_for_key(case.seed.key_id)[-1]
    store.close()
    assert incident.report_markdown is not None
    assert report_sessions(incident.report_markdown) == posted == answer["session_lines"]
    written = next(p for p in (tmp_path / "report").iterdir() if p.suffix == ".md")
    assert report_sessions(written.read_text()) == posted
    # Never a secret in any sink.
    for secret in (case.seed.secret, *(s["aws_secret_access_key"] for s in case.sessions.values())):
        assert secret not in finished.stdout + finished.stderr + json.dumps(thread) + incident.report_markdown


def test_a_key_from_the_store_gets_the_same_cross_account_treatment(sandbox: Sandbox, tmp_path: Path) -> None:
    case = attack(sandbox, tmp_path)
    upgrade_to_head(case.database_url)
    store = case.store()
    store.remember_key(KeyOwner(case.seed.key_id, case.seed.name, "default", case.seed.iam_user),
                       sandbox_now(), status="Active")
    store.close()

    finished = case.run("revoke", "--key", case.seed.key_id, "--json")

    assert finished.returncode == 3, finished.stderr
    answer = json.loads(finished.stdout)
    assert answer["identity"]["source"] == "store"
    assert answer["audit"]["account_id"] == HOME  # the ambient account's id, asked before the audit
    assert not works(sandbox, case.sessions["second"]) and not works(sandbox, case.sessions["home"])
    assert [case.foreign in line for line in answer["not_cut"]] == [True]


def sandbox_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_revoke_of_a_session_key_finds_its_role_checks_role_and_names_the_upstream_key(
        sandbox: Sandbox, tmp_path: Path) -> None:
    case = attack(sandbox, tmp_path)
    home_role = case.roles["home"].rsplit("/", 1)[-1]
    second_role = case.roles["second"].rsplit("/", 1)[-1]

    wrong = case.run("revoke", "--key", case.sessions["second"]["aws_access_key_id"], "--role", home_role)
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert f"role {second_role}" in wrong.stderr and f"role {home_role}" in wrong.stderr
    assert works(sandbox, case.sessions["second"])  # refused before any write

    right = case.run("revoke", "--key", case.sessions["home"]["aws_access_key_id"], "--role", home_role, "--json")
    assert right.returncode == 0, right.stdout + right.stderr
    answer = json.loads(right.stdout)
    assert answer["identity"]["role_name"] == home_role and answer["identity"]["source"] == "cloudtrail, matches --role"
    assert answer["origin"]["upstream_key"] == case.seed.key_id
    assert any(f"contain it: rotator revoke --key {case.seed.key_id}" in line for line in answer["session_lines"])
    assert not works(sandbox, case.sessions["home"])
    assert works(sandbox, case.key)  # the long-lived key is not touched by a session revoke

    found = case.run("revoke", "--key", case.sessions["second"]["aws_access_key_id"], "--json")
    assert found.returncode == 0, found.stdout + found.stderr
    answer = json.loads(found.stdout)
    assert (answer["identity"]["role_name"], answer["identity"]["account"]) == (second_role, "second")
    assert answer["origin"]["upstream_key"] == case.seed.key_id  # read from the caller account's copy
    assert not works(sandbox, case.sessions["second"])


def test_a_session_delivered_late_is_cut_by_the_services_follow_up(sandbox: Sandbox, tmp_path: Path) -> None:
    case = attack(sandbox, tmp_path, revoke='consistency_margin = "1s"\ndelivery_delay = "2s"\n'
                                            'follow_up = ["6s", "12s"]\n',
                  service={"tick": "1s", "listen": "127.0.0.1:0"})
    # One more role, assumed just before the leak was reported, whose record CloudTrail delivers late.
    late_role = new_role(sandbox, f"late-{uuid.uuid4().hex[:6]}")
    sandbox.aws.cloudtrail_delay = 3600  # type: ignore[attr-defined]
    late = creds_of(client(sandbox, "sts", **case.key).assume_role(RoleArn=late_role,
                                                                   RoleSessionName="late")["Credentials"])
    sandbox.aws.cloudtrail_delay = 0  # type: ignore[attr-defined]
    slack_before = len(sandbox.slack.messages())

    revoked = case.run("revoke", "--key", case.seed.key_id, "--json")
    answer = json.loads(revoked.stdout)
    assert late["aws_access_key_id"] not in json.dumps(answer["sessions"])  # not delivered yet
    assert works(sandbox, late)
    incident_id = answer["incident_id"]
    assert answer["follow_up_at"] and answer["audit"]["coverage"]["state"] != "complete"
    sandbox.aws.deliver_pending()  # type: ignore[attr-defined]  # CloudTrail delivers it now, after T0

    service = subprocess.Popen([ROTATOR, "run", "--config", str(case.config)], env=case.env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        closed = None
        while time.monotonic() < deadline:
            store = case.store()
            incident = store.incident(incident_id)
            store.close()
            if incident is not None and incident.closed_at is not None:
                closed = incident
                break
            time.sleep(0.5)
    finally:
        service.terminate()
        service.wait(timeout=60)
    assert closed is not None, "the service never closed the incident"
    assert not works(sandbox, late)  # cut by the follow-up
    late_name = late_role.rsplit("/", 1)[-1]
    assert any(s["principal"]["name"] == late_name and s["cut"] for s in closed.sessions)
    thread = thread_of(sandbox, slack_before)
    follow_ups = [m for m in thread if "follow-up audit" in m["text"]]
    assert follow_ups and any(f"sessions of role {late_name}" in m["text"] and "denied" in m["text"]
                              for m in follow_ups)
    assert "closed" in follow_ups[-1]["text"]
    assert closed.report_markdown is not None and f"sessions of role {late_name}" in closed.report_markdown
    status = case.run("status", "--json")
    assert incident_id not in status.stdout  # no longer listed as open
    listed = json.loads(case.run("incidents", "--json").stdout)["incidents"]
    assert [i["open"] for i in listed if i["incident_id"] == incident_id] == [False]


def test_audit_incident_follows_up_by_hand(sandbox: Sandbox, tmp_path: Path) -> None:
    case = attack(sandbox, tmp_path, revoke='consistency_margin = "1s"\ndelivery_delay = "1s"\n'
                                            'follow_up = ["2s", "3s"]\n')
    revoked = json.loads(case.run("revoke", "--key", case.seed.key_id, "--json").stdout)
    listed = json.loads(case.run("status", "--json").stdout)
    assert revoked["incident_id"] in {i["incident_id"] for i in listed["open_incidents"]}
    time.sleep(4)
    by_hand = case.run("audit", "--incident", revoked["incident_id"], "--json")
    assert by_hand.returncode == 3, by_hand.stdout + by_hand.stderr  # the foreign role is still not cut
    answer = json.loads(by_hand.stdout)
    assert answer["closed"] is True and any(case.foreign in line for line in answer["not_cut"])


def test_replace_inside_the_grace_period(sandbox: Sandbox, tmp_path: Path) -> None:
    case = attack(sandbox, tmp_path, policy={"rotate_every": "30d", "grace": "1h", "delete_after": "7d"})
    rotated = case.run("rotate", case.seed.name, "--force", "--json")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    store = case.store()
    [journal] = store.journals(case.seed.name)
    store.close()
    assert journal.phase is Phase.PUBLISHED and journal.new_key_id  # the old key waits out its grace
    leaked = journal.new_key_id

    finished = case.run("revoke", "--key", leaked, "--replace", "--no-audit", "--json")

    assert finished.returncode == 0, finished.stdout + finished.stderr
    steps = {s["name"]: s["status"] for s in json.loads(finished.stdout)["steps"]}
    assert steps["retire replaced key"] == "done" and steps["replace"] == "done"
    iam = client(sandbox, "iam")
    keys = {k["AccessKeyId"]: k["Status"] for k in
            iam.list_access_keys(UserName=case.seed.iam_user)["AccessKeyMetadata"]}
    assert len(keys) <= 2 and keys[leaked] == KeyStatus.INACTIVE.value
    held = sandbox.gitlab.state.get_variable("project", case.seed.targets[0].path, "AWS_ACCESS_KEY_ID")  # type: ignore
    secret = sandbox.gitlab.state.get_variable("project", case.seed.targets[0].path,  # type: ignore[attr-defined]
                                               "AWS_SECRET_ACCESS_KEY")
    assert pair_works(sandbox.urls(), held.value, secret.value) and held.value not in (leaked, case.seed.key_id)
    store = case.store()
    journals = store.journals(case.seed.name)
    store.close()
    for key_id, status in keys.items():  # no Active key without a journal to retire it
        if status == "Active":
            assert any(j.new_key_id == key_id and j.phase is not Phase.SUPERSEDED for j in journals)


def test_an_old_key_and_an_audit_ending_inside_the_delivery_delay_are_both_named(
        sandbox: Sandbox, tmp_path: Path) -> None:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.core.utils import utcnow
    from moto.iam.models import iam_backends

    case = attack(sandbox, tmp_path)
    for key in iam_backends[DEFAULT_ACCOUNT_ID]["global"].get_user(case.seed.iam_user).access_keys:
        key.create_date = utcnow() - timedelta(days=200)

    finished = case.run("audit", "--key", case.seed.key_id, "--json")

    answer = json.loads(finished.stdout)
    coverage = answer["coverage"]
    assert coverage["state"] == "incomplete" and coverage["complete"] is False and answer["complete"] is False
    assert any("more than 90 days ago" in gap for gap in coverage["gaps"])
    assert any("pending follow-up" in line for line in coverage["lines"])
    assert "management events only" in coverage["not_in_lookup_events"]
    text = case.run("audit", "--key", case.seed.key_id).stdout
    assert "**complete**" not in text and "coverage: complete" not in text
    assert "more than 90 days ago" in text and "pending follow-up" in text
