"""The sandbox AWS front, driven with real boto3 over HTTP: key checks, CloudTrail, LookupEvents, faults."""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from rotator.sandbox.aws import AwsSandbox, start_aws
from rotator.sandbox.server import Fault
from tests.integration.aws_support import client, control, error_code, lookup_all, new_user_with_key


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsSandbox]:
    sandbox = start_aws()
    assert sandbox.lookup_rate == 2  # AWS's documented limit is the default
    yield sandbox
    sandbox.stop()


@pytest.fixture(autouse=True)
def _clean_settings(aws: AwsSandbox) -> Iterator[None]:
    # Most tests look events up several times a second; the throttling test puts AWS's limit back.
    aws.lookup_rate = math.inf
    yield
    aws.faults.clear()
    aws.set_propagation_delay(0)


# --- authentication -----------------------------------------------------------------------------


def test_active_key_is_accepted_and_marked_last_used(aws: AwsSandbox) -> None:
    name, creds = new_user_with_key(aws)
    identity = client(aws, "sts", **creds).get_caller_identity()
    assert identity["Arn"].endswith(f":user/{name}")
    last_used = client(aws, "iam").get_access_key_last_used(AccessKeyId=creds["aws_access_key_id"])
    assert last_used["UserName"] == name
    assert last_used["AccessKeyLastUsed"]["ServiceName"] == "sts"
    assert last_used["AccessKeyLastUsed"]["Region"] == "us-east-1"
    assert "LastUsedDate" in last_used["AccessKeyLastUsed"]


def test_inactive_key_is_refused_in_each_protocol(aws: AwsSandbox) -> None:
    name, creds = new_user_with_key(aws)
    client(aws, "iam").update_access_key(UserName=name, AccessKeyId=creds["aws_access_key_id"], Status="Inactive")

    with pytest.raises(ClientError) as sts_error:
        client(aws, "sts", **creds).get_caller_identity()
    assert error_code(sts_error) == "InvalidClientTokenId"
    assert sts_error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert sts_error.value.response["Error"]["Message"] == "The security token included in the request is invalid."
    with pytest.raises(ClientError) as iam_error:
        client(aws, "iam", **creds).list_users()
    assert error_code(iam_error) == "InvalidClientTokenId"
    with pytest.raises(ClientError) as json_error:
        client(aws, "cloudtrail", **creds).lookup_events()
    assert error_code(json_error) == "UnrecognizedClientException"
    with pytest.raises(ClientError) as ec2_error:
        client(aws, "ec2", **creds).describe_regions()
    assert error_code(ec2_error) == "AuthFailure"
    assert aws.key_status(creds["aws_access_key_id"]) == "Inactive"

    client(aws, "iam").update_access_key(UserName=name, AccessKeyId=creds["aws_access_key_id"], Status="Active")
    assert client(aws, "sts", **creds).get_caller_identity()["Account"] == "123456789012"


def test_wrong_secret_fails_the_signature_check(aws: AwsSandbox) -> None:
    _, creds = new_user_with_key(aws)
    wrong = {**creds, "aws_secret_access_key": "W" * 40}
    with pytest.raises(ClientError) as sts_error:
        client(aws, "sts", **wrong).get_caller_identity()
    assert error_code(sts_error) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as json_error:
        client(aws, "kms", **wrong).list_keys()
    assert error_code(json_error) == "InvalidSignatureException"
    # A refused call leaves IAM untouched: the key has never been used.
    last_used = client(aws, "iam").get_access_key_last_used(AccessKeyId=creds["aws_access_key_id"])
    assert "LastUsedDate" not in last_used["AccessKeyLastUsed"]


def test_deleted_key_is_refused(aws: AwsSandbox) -> None:
    name, creds = new_user_with_key(aws)
    client(aws, "iam").delete_access_key(UserName=name, AccessKeyId=creds["aws_access_key_id"])
    with pytest.raises(ClientError) as refused:
        client(aws, "sts", **creds).get_caller_identity()
    assert error_code(refused) == "InvalidClientTokenId"
    assert aws.key_status(creds["aws_access_key_id"]) == "deleted"
    events = lookup_all(aws, "us-east-1", "AccessKeyId", creds["aws_access_key_id"])
    assert [json.loads(e["CloudTrailEvent"]).get("errorCode") for e in events] == ["InvalidClientTokenId"]


def test_unknown_dummy_credentials_are_accepted_like_moto(aws: AwsSandbox) -> None:
    assert client(aws, "sts").get_caller_identity()["Account"] == "123456789012"
    assert client(aws, "sts").get_access_key_info(AccessKeyId="AKIAIOSFODNN7EXAMPLE")["Account"]
    assert any(r["RegionName"] == "eu-west-1" for r in client(aws, "ec2").describe_regions()["Regions"])


def test_new_key_is_refused_until_it_propagates(aws: AwsSandbox) -> None:
    assert control(aws, "aws/settings", {"propagation_delay": "forever"})["propagation_delay"] == "forever"
    _, never = new_user_with_key(aws)
    with pytest.raises(ClientError) as refused:
        client(aws, "sts", **never).get_caller_identity()
    assert error_code(refused) == "InvalidClientTokenId"
    assert control(aws, f"aws/keys/{never['aws_access_key_id']}") == {"status": "Active"}  # IAM has it already

    aws.set_propagation_delay(0.3)
    _, soon = new_user_with_key(aws)
    with pytest.raises(ClientError):
        client(aws, "sts", **soon).get_caller_identity()
    deadline = time.monotonic() + 10
    accepted = False
    while not accepted and time.monotonic() < deadline:
        try:
            client(aws, "sts", **soon).get_caller_identity()
            accepted = True
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "InvalidClientTokenId"
            time.sleep(0.1)
    assert accepted
    with pytest.raises(ClientError):  # "forever" still holds for the first key
        client(aws, "sts", **never).get_caller_identity()


# --- CloudTrail ---------------------------------------------------------------------------------


def test_calls_are_recorded_as_cloudtrail_events(aws: AwsSandbox) -> None:
    name, creds = new_user_with_key(aws)
    iam = client(aws, "iam", **creds)
    iam.create_access_key(UserName=name)
    with pytest.raises(ClientError):
        iam.get_user(UserName="nobody-" + name)

    events = lookup_all(aws, "us-east-1", "AccessKeyId", creds["aws_access_key_id"])
    assert [e["EventName"] for e in events] == ["GetUser", "CreateAccessKey"]  # newest first
    failed, created = (json.loads(e["CloudTrailEvent"]) for e in events)
    assert created["eventSource"] == "iam.amazonaws.com"
    assert created["awsRegion"] == "us-east-1"
    assert created["eventType"] == "AwsApiCall"
    assert created["readOnly"] is False
    assert created["requestParameters"] == {"userName": name}
    assert created["responseElements"]["accessKey"]["userName"] == name
    assert created["responseElements"]["accessKey"]["accessKeyId"].startswith("AKIA")
    identity = created["userIdentity"]
    assert identity["type"] == "IAMUser"
    assert identity["userName"] == name
    assert identity["accessKeyId"] == creds["aws_access_key_id"]
    assert identity["arn"] == f"arn:aws:iam::123456789012:user/{name}"
    assert {"eventID", "requestID", "eventTime", "sourceIPAddress", "userAgent"} <= set(created)
    assert failed["errorCode"] == "NoSuchEntity"
    assert failed["readOnly"] is True
    assert events[1]["Username"] == name
    assert {"ResourceType": "AWS::IAM::User", "ResourceName": name} in events[1]["Resources"]


def test_minted_session_keys_are_attributed_to_their_source(aws: AwsSandbox) -> None:
    name, creds = new_user_with_key(aws)
    minted = client(aws, "sts", **creds).get_session_token()["Credentials"]
    assert minted["AccessKeyId"].startswith("ASIA")
    session = {"aws_access_key_id": minted["AccessKeyId"], "aws_secret_access_key": minted["SecretAccessKey"],
               "aws_session_token": minted["SessionToken"]}
    assert client(aws, "sts", **session).get_caller_identity()["Arn"].endswith(f":user/{name}")
    client(aws, "ec2", **session).describe_regions()  # IAM refuses GetSessionToken credentials without MFA
    forged = {**session, "aws_session_token": "not-the-token"}
    with pytest.raises(ClientError) as refused:
        client(aws, "sts", **forged).get_caller_identity()
    assert error_code(refused) == "InvalidClientTokenId"

    by_source = lookup_all(aws, "us-east-1", "AccessKeyId", creds["aws_access_key_id"])
    minting = json.loads(next(e for e in by_source if e["EventName"] == "GetSessionToken")["CloudTrailEvent"])
    assert minting["responseElements"]["credentials"]["accessKeyId"] == minted["AccessKeyId"]
    by_session = lookup_all(aws, "us-east-1", "AccessKeyId", minted["AccessKeyId"])
    assert {e["EventName"] for e in by_session} >= {"GetCallerIdentity", "DescribeRegions"}
    for event in by_session:
        identity = json.loads(event["CloudTrailEvent"])["userIdentity"]
        assert identity["accessKeyId"] == minted["AccessKeyId"]
        assert identity["userName"] == name
        assert event["Username"] == name

    role = client(aws, "iam").create_role(RoleName=f"r-{name}", AssumeRolePolicyDocument="{}")["Role"]
    assumed = client(aws, "sts", **creds).assume_role(RoleArn=role["Arn"], RoleSessionName="s1")["Credentials"]
    role_session = {"aws_access_key_id": assumed["AccessKeyId"], "aws_secret_access_key": assumed["SecretAccessKey"],
                    "aws_session_token": assumed["SessionToken"]}
    client(aws, "sts", **role_session).get_caller_identity()
    (event,) = lookup_all(aws, "us-east-1", "AccessKeyId", assumed["AccessKeyId"])
    identity = json.loads(event["CloudTrailEvent"])["userIdentity"]
    assert identity["type"] == "AssumedRole"
    assert identity["sessionContext"]["sessionIssuer"]["arn"] == role["Arn"]
    assert event["Username"] == "s1"


def test_lookup_events_paginates_newest_first(aws: AwsSandbox) -> None:
    key_id = "AKIA" + uuid.uuid4().hex[:16].upper()
    base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=100)
    aws.stage_events({"eventName": f"Call{i}", "eventSource": "ec2.amazonaws.com", "awsRegion": "sa-east-1",
                      "eventTime": (base + dt.timedelta(seconds=i)).isoformat(),
                      "userIdentity": {"accessKeyId": key_id, "userName": "attacker"}} for i in range(120))
    trail = client(aws, "cloudtrail", "sa-east-1")
    attrs = [{"AttributeKey": "AccessKeyId", "AttributeValue": key_id}]
    window = {"StartTime": base - dt.timedelta(days=1), "EndTime": base + dt.timedelta(days=1)}

    names: list[str] = []
    page_sizes = []
    token: str | None = None
    while True:
        page = trail.lookup_events(LookupAttributes=attrs, **window, **({"NextToken": token} if token else {}))
        page_sizes.append(len(page["Events"]))
        names += [e["EventName"] for e in page["Events"]]
        token = page.get("NextToken")
        if token is None:
            break
    assert page_sizes == [50, 50, 20]
    assert names == [f"Call{i}" for i in reversed(range(120))]

    narrow = trail.lookup_events(LookupAttributes=attrs, MaxResults=5, StartTime=base + dt.timedelta(seconds=10),
                                 EndTime=base + dt.timedelta(seconds=19))
    assert [e["EventName"] for e in narrow["Events"]] == [f"Call{i}" for i in range(19, 14, -1)]
    assert "NextToken" in narrow
    with pytest.raises(ClientError) as bad_token:
        trail.lookup_events(LookupAttributes=attrs, **window, NextToken="bm90IGEgdG9rZW4=")
    assert error_code(bad_token) == "InvalidNextTokenException"
    with pytest.raises(ClientError) as other_params:  # a token is only valid with its own parameters
        trail.lookup_events(**window, NextToken=narrow["NextToken"])
    assert error_code(other_params) == "InvalidNextTokenException"
    with pytest.raises(ClientError) as too_many:
        trail.lookup_events(LookupAttributes=attrs, MaxResults=51)
    assert error_code(too_many) == "InvalidMaxResultsException"
    with pytest.raises(ClientError) as two_attributes:
        trail.lookup_events(LookupAttributes=attrs * 2)
    assert error_code(two_attributes) == "InvalidLookupAttributesException"
    with pytest.raises(ClientError) as backwards:
        trail.lookup_events(StartTime=base, EndTime=base - dt.timedelta(days=1))
    assert error_code(backwards) == "InvalidTimeRangeException"
    # Without StartTime LookupEvents covers the last 90 days only, like AWS: these events are 100 days old.
    assert trail.lookup_events(LookupAttributes=attrs)["Events"] == []


def test_lookup_events_is_throttled_per_region(aws: AwsSandbox) -> None:
    aws.lookup_rate = 2
    throttled = None
    for _ in range(10):
        try:
            client(aws, "cloudtrail", "ap-south-1").lookup_events(MaxResults=1)
        except ClientError as exc:
            throttled = exc
            break
    assert throttled is not None
    assert throttled.response["Error"] == {"Code": "ThrottlingException", "Message": "Rate exceeded"}
    assert throttled.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "Events" in client(aws, "cloudtrail", "ap-northeast-1").lookup_events(MaxResults=1)


def test_staged_events_are_indexed_per_region_and_key(aws: AwsSandbox) -> None:
    leaked = "AKIA" + uuid.uuid4().hex[:16].upper()
    other = "AKIA" + uuid.uuid4().hex[:16].upper()
    regions = ["us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2"]
    now = time.time()
    records = [{"eventName": "RunInstances" if i % 2 else "CreateUser",
                "eventSource": "ec2.amazonaws.com" if i % 2 else "iam.amazonaws.com",
                "awsRegion": regions[i % 4], "eventTime": now - 3600 - i,
                "userIdentity": {"accessKeyId": leaked if i % 5 == 0 else other, "userName": "mallory"}}
               for i in range(20_000)]
    request = urllib.request.Request(f"{aws.url}/_sandbox/cloudtrail/events", data=json.dumps(records).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request) as response:
        assert json.loads(response.read()) == {"staged": 20_000}
    trail = client(aws, "cloudtrail", "eu-west-1")
    # i % 5 == 0 and i % 4 == 1 (eu-west-1): i = 5, 25, 45, ...: one in twenty.
    found = lookup_all(aws, "eu-west-1", "AccessKeyId", leaked)
    assert len(found) == 1000
    assert {e["EventName"] for e in found} == {"RunInstances"}
    assert trail.lookup_events(LookupAttributes=[{"AttributeKey": "EventSource",
                                                  "AttributeValue": "iam.amazonaws.com"}])["Events"] == []
    bad = urllib.request.Request(f"{aws.url}/_sandbox/cloudtrail/events", data=b'[{"eventName": "X"}]',
                                 headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as rejected:
        urllib.request.urlopen(bad)
    assert rejected.value.code == 400


# --- faults -------------------------------------------------------------------------------------


def test_faults_apply_per_action_before_moto(aws: AwsSandbox) -> None:
    name = f"ci-{uuid.uuid4().hex[:8]}"
    iam = client(aws, "iam")
    iam.create_user(UserName=name)
    aws.faults.add(Fault(match="iam:CreateAccessKey", status=400, count=1))
    with pytest.raises(ClientError) as throttled:
        iam.create_access_key(UserName=name)
    assert error_code(throttled) == "Throttling"
    assert iam.list_access_keys(UserName=name)["AccessKeyMetadata"] == []  # moto never saw it
    assert iam.create_access_key(UserName=name)["AccessKey"]["UserName"] == name  # count=1 used up

    aws.faults.add(Fault(match="sts:GetCallerIdentity", status=403, error_code="AccessDenied", message="nope"))
    with pytest.raises(ClientError) as denied:
        client(aws, "sts").get_caller_identity()
    assert denied.value.response["Error"] == {"Code": "AccessDenied", "Message": "nope", "Type": "Sender"}
    aws.faults.add(Fault(match="kms:ListKeys", status=503))
    with pytest.raises(ClientError) as unavailable:
        client(aws, "kms").list_keys()
    assert error_code(unavailable) == "ServiceUnavailableException"
    entry = [e for e in aws.log.entries() if e.key == "kms:ListKeys"][-1]
    assert entry.status == 503
    assert entry.detail == {"region": "us-east-1", "access_key_id": "testing",
                            "error_code": "ServiceUnavailableException"}


def test_faults_can_target_one_region(aws: AwsSandbox) -> None:
    aws.faults.add(Fault(match=r"cloudtrail:LookupEvents@eu-west-1$", status=500, error_code="InternalFailure"))
    with pytest.raises(ClientError) as failed:
        client(aws, "cloudtrail", "eu-west-1").lookup_events(MaxResults=1)
    assert error_code(failed) == "InternalFailure"
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert "Events" in client(aws, "cloudtrail", "us-west-2").lookup_events(MaxResults=1)


# --- secret hygiene -----------------------------------------------------------------------------


def test_no_secret_reaches_the_trail_or_the_request_log(aws: AwsSandbox) -> None:
    name, creds = new_user_with_key(aws)
    canaries = [creds["aws_secret_access_key"]]
    second = client(aws, "iam", **creds).create_access_key(UserName=name)["AccessKey"]
    canaries.append(second["SecretAccessKey"])
    minted = client(aws, "sts", **creds).get_session_token()["Credentials"]
    canaries += [minted["SecretAccessKey"], minted["SessionToken"]]
    client(aws, "iam").create_login_profile(UserName=name, Password="Canary-Pa55word-" + name)
    canaries.append("Canary-Pa55word-" + name)

    trail_dump = json.dumps(aws.events())
    with urllib.request.urlopen(f"{aws.url}/_sandbox/requests") as response:
        log_dump = response.read().decode()
    for canary in canaries:
        assert canary not in trail_dump
        assert canary not in log_dump
    assert second["AccessKeyId"] in trail_dump  # the key *id* is evidence and must stay
