"""The incident adapters against the sandbox AWS front through real boto3, and the store's fast key index
against the SqlStore it reads: containment, session deny, CloudTrail paging, throttling, minted sessions."""

from __future__ import annotations

import json
import math
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from rotator.adapters.cloudtrail import Backoff, cloudtrail_for_session
from rotator.adapters.db.key_index import tracked_key_owner
from rotator.adapters.db.store import SqlStore, make_engine, upgrade_to_head
from rotator.config.early import ContainmentSettings
from rotator.domain import Journal, KeyOwner, Phase
from rotator.errors import AwsThrottled, StoreError
from rotator.incident.audit.run import run_audit
from rotator.incident.containment import SESSION_DENY_POLICY, StepStatus, contain
from rotator.sandbox.aws import AwsSandbox
from rotator.sandbox.server import Fault
from rotator.wiring.containment import ContainmentWiring

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
QUICK = Backoff(base=0.02, cap=0.05, max_throttled=3, max_transient=1)


@pytest.fixture(autouse=True)
def _pointed_at_the_sandbox(aws: AwsSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Standard boto3 configuration, as a deployment would set it.
    for name, value in {"AWS_ENDPOINT_URL": aws.url, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    aws.lookup_rate = math.inf
    yield
    aws.faults.clear()


def user_with_key(aws: AwsSandbox) -> tuple[str, dict[str, str]]:
    iam = boto3.client("iam")
    name = f"ci-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return name, {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


def trail(rate: float = 50.0, backoff: Backoff | None = QUICK) -> Any:
    return cloudtrail_for_session(boto3.Session(), "us-east-1", rate=rate, backoff=backoff)


# --- the store's fast key index ---------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    url = sqlite_url if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))
    upgrade_to_head(url)
    return url


def test_key_index_answers_as_the_store_does(db_url: str) -> None:
    store = SqlStore(make_engine(db_url))
    try:
        tracked = f"AKIA{uuid.uuid4().hex[:16].upper()}"
        journaled = f"AKIA{uuid.uuid4().hex[:16].upper()}"
        store.remember_key(KeyOwner(tracked, "payments", "prod", "ci-payments", "AIDA1"), T0, status="Active")
        store.save_journal(Journal("r-1", "billing", "default", "ci-billing", "AIDA2", (), "AKIAOLDOLDOLDOLDOLD1",
                                   Phase.CREATED, T0, T0, new_key_id=journaled))
        for key_id in (tracked, journaled, "AKIANOBODYNOBODYNOBO"):
            assert tracked_key_owner(db_url, key_id) == store.key_owner(key_id)
        assert tracked_key_owner(db_url, tracked) == KeyOwner(tracked, "payments", "prod", "ci-payments", "AIDA1")
    finally:
        store.close()


def test_key_index_reads_the_t0_of_a_keys_first_incident(db_url: str) -> None:
    from rotator.adapters.db.key_index import earliest_incident_t0
    from rotator.domain import Incident

    store = SqlStore(make_engine(db_url))
    try:
        key_id = f"AKIA{uuid.uuid4().hex[:16].upper()}"
        assert earliest_incident_t0(db_url, key_id) is None
        for index, t0 in enumerate((T0 + timedelta(hours=2), T0)):
            store.save_incident(Incident(f"i-{key_id}-{index}", key_id, "default", "ci", "alice", "", t0))
        assert earliest_incident_t0(db_url, key_id) == T0
    finally:
        store.close()


def test_key_index_never_creates_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.db"
    assert tracked_key_owner(f"sqlite:///{missing}", "AKIAABCDEFGHIJKLMNOP") is None
    assert not missing.exists()
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(StoreError):  # there, but not migrated: say so, containment asks AWS instead
        tracked_key_owner(f"sqlite:///{empty}", "AKIAABCDEFGHIJKLMNOP")


# --- containment through boto3 ------------------------------------------------------------------------------


def test_containment_deactivates_and_denies_older_sessions(aws: AwsSandbox, tmp_path: Path) -> None:
    name, creds = user_with_key(aws)
    boto3.client("iam").create_login_profile(UserName=name, Password="Correct-Horse-9-Battery")
    key_id = creds["aws_access_key_id"]
    assert boto3.client("sts", **creds).get_caller_identity()["Arn"].endswith(name)
    wiring = ContainmentWiring(ContainmentSettings(source="test", database_url=f"sqlite:///{tmp_path}/none.db"))
    aws.log.clear()

    result = contain(key_id, wiring.containment_ports())

    assert result.contained and aws.key_status(key_id) == "Inactive"
    with pytest.raises(boto3.client("sts").exceptions.ClientError):
        boto3.client("sts", **creds).get_caller_identity()  # the front refuses the Inactive key
    document = boto3.client("iam").get_user_policy(UserName=name, PolicyName=SESSION_DENY_POLICY)
    condition = document["PolicyDocument"]["Statement"][0]["Condition"]
    assert condition == {"DateLessThan": {"aws:TokenIssueTime": result.t0.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    assert {s.name: s.status for s in result.steps}["console login"] is StepStatus.ATTENTION
    calls = [e.key for e in aws.log.entries() if e.detail.get("access_key_id") == "testing"]
    assert calls.index("iam:UpdateAccessKey") < calls.index("iam:PutUserPolicy")

    again = contain(key_id, wiring.containment_ports(), disable_console=True)
    statuses = {s.name: s.status for s in again.steps}
    # No incident was recorded (no store): the re-run takes T0 anew, and the one deny's T0 only moves later.
    assert statuses["deny sessions"] in (StepStatus.ALREADY, StepStatus.DONE) and again.t0 >= result.t0
    assert statuses["console login"] is StepStatus.DONE
    policies = boto3.client("iam").list_user_policies(UserName=name)["PolicyNames"]
    assert policies == [SESSION_DENY_POLICY]
    again_doc = boto3.client("iam").get_user_policy(UserName=name, PolicyName=SESSION_DENY_POLICY)
    assert again_doc["PolicyDocument"]["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"] == \
        again.t0.strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(boto3.client("iam").exceptions.NoSuchEntityException):
        boto3.client("iam").get_login_profile(UserName=name)


# --- CloudTrail ----------------------------------------------------------------------------------------------


def stage(aws: AwsSandbox, records: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(f"{aws.url}/_sandbox/cloudtrail/events", data=json.dumps(records).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


def test_lookup_paginates_and_waits_out_throttling(aws: AwsSandbox) -> None:
    key_id = f"AKIA{uuid.uuid4().hex[:16].upper()}"
    now = datetime.now(UTC)
    stage(aws, [{"eventName": "ListBuckets", "eventSource": "s3.amazonaws.com", "awsRegion": "eu-west-1",
                 "eventTime": (now - timedelta(minutes=i)).isoformat(), "userIdentity": {"accessKeyId": key_id}}
                for i in range(130)])
    aws.lookup_rate = 1  # the front allows 1/s; the adapter is told it may go faster, so the front throttles it
    patient = Backoff(base=0.2, cap=0.5, max_throttled=20)
    pages = list(trail(rate=40, backoff=patient).lookup_by_key("eu-west-1", key_id, now - timedelta(days=1), now))
    assert [len(p.records) for p in pages] == [50, 50, 30]
    assert len({r["eventID"] for p in pages for r in p.records}) == 130  # nothing dropped, nothing twice
    assert sum(p.throttled for p in pages) > 0


def test_a_region_that_keeps_throttling_is_reported_not_covered(aws: AwsSandbox) -> None:
    key_id = f"AKIA{uuid.uuid4().hex[:16].upper()}"
    aws.faults.add(Fault(match=r"cloudtrail:LookupEvents@sa-east-1$", status=400, error_code="ThrottlingException",
                         message="Rate exceeded"))
    now = datetime.now(UTC)
    with pytest.raises(AwsThrottled):
        list(trail().lookup_by_key("sa-east-1", key_id, now - timedelta(days=1), now))
    report = run_audit(trail(), key_id, start=now - timedelta(days=1), end=now, regions=["eu-west-1", "sa-east-1"])
    failed = {c.region: c for c in report.failed_lookups}
    assert set(failed) == {"sa-east-1"} and failed["sa-east-1"].throttled == 0  # no page came back at all
    assert "still throttled" in (failed["sa-east-1"].error or "")
    assert "coverage incomplete" in report.verdict


def test_audit_follows_a_minted_session_across_three_regions(aws: AwsSandbox) -> None:
    _, creds = user_with_key(aws)
    key_id = creds["aws_access_key_id"]
    boto3.client("iam", **creds).create_user(UserName=f"backdoor-{uuid.uuid4().hex[:6]}")
    session = boto3.client("sts", **creds).get_session_token()["Credentials"]
    minted = {"aws_access_key_id": session["AccessKeyId"], "aws_secret_access_key": session["SecretAccessKey"],
              "aws_session_token": session["SessionToken"]}
    boto3.client("ec2", region_name="eu-west-1", **minted).describe_instances()
    boto3.client("sts", region_name="ap-southeast-2", **minted).get_caller_identity()

    now = datetime.now(UTC) + timedelta(seconds=5)
    report = run_audit(trail(), key_id, start=now - timedelta(hours=1), end=now,
                       regions=["us-east-1", "eu-west-1", "ap-southeast-2"], account_id="123456789012")

    assert not report.failed, report.verdict
    assert [k.key_id for k in report.keys] == [key_id, session["AccessKeyId"]]
    by_key = dict(report.summary.by_key)
    assert by_key[session["AccessKeyId"]] >= 2
    assert {e.region for e in report.events} == {"us-east-1", "eu-west-1", "ap-southeast-2"}
    categories = {f.category.value for f in report.summary.findings}
    assert {"identity persistence", "session minting"} <= categories
    assert all(session["SecretAccessKey"] not in json.dumps(e.__dict__, default=str) for e in report.events)


def test_a_session_key_is_traced_to_its_role_and_upstream_key_through_lookup_events(aws: AwsSandbox) -> None:
    from rotator.incident.audit.origin import find_origin

    _, creds = user_with_key(aws)
    role_name = f"deploy-{uuid.uuid4().hex[:6]}"
    role_arn = boto3.client("iam").create_role(RoleName=role_name, Path="/deploy/",
                                               AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    session = boto3.client("sts", **creds).assume_role(RoleArn=role_arn, RoleSessionName="attacker")["Credentials"]
    now = datetime.now(UTC) + timedelta(seconds=5)

    origin = find_origin(trail(), session["AccessKeyId"], ["us-east-1", "eu-west-1"], now - timedelta(hours=1), now)

    assert origin.principal is not None
    assert (origin.principal.kind, origin.principal.name, origin.principal.path) == ("role", role_name, "/deploy/")
    assert origin.minted_via == "AssumeRole" and origin.upstream_key == creds["aws_access_key_id"]
    assert origin.upstream_command == f"rotator revoke --key {creds['aws_access_key_id']}"
    assert not origin.notes  # every lookup answered
