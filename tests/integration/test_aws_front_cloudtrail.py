"""CloudTrail records of the AWS front as real CloudTrail writes them, driven with real boto3 over HTTP: the
records of minting calls and of the sessions they minted, cross-account delivery, one trail per account and
region, management events only, REST calls named by operation, and the delivery delay."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from rotator.sandbox.aws import AwsSandbox
from rotator.sandbox.server import Fault
from tests.integration.aws_support import (
    DEFAULT_ACCOUNT,
    client,
    control,
    creds_of,
    error_code,
    lookup_all,
    new_user_with_key,
)


@pytest.fixture(autouse=True)
def _reset(aws: AwsSandbox) -> Iterator[None]:
    aws.lookup_rate = math.inf  # these tests look events up many times a second; throttling is tested elsewhere
    yield
    aws.cloudtrail_delay = 0
    aws.deliver_pending()
    aws.faults.clear()


def records(aws: AwsSandbox, key_id: str, region: str = "us-east-1", **credentials: str) -> list[dict[str, Any]]:
    """Every record LookupEvents returns for an access key, oldest first."""
    found = lookup_all(aws, region, "AccessKeyId", key_id, **credentials)
    return [json.loads(e["CloudTrailEvent"]) for e in reversed(found)]


def in_other_account(aws: AwsSandbox, account_id: str) -> dict[str, str]:
    answer = client(aws, "sts").assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/setup", RoleSessionName="setup")
    return creds_of(answer["Credentials"])


def test_assume_role_and_the_sessions_own_calls_are_recorded_as_cloudtrail_does(aws: AwsSandbox) -> None:
    _, key = new_user_with_key(aws)
    role = client(aws, "iam").create_role(RoleName=f"deploy-{uuid.uuid4().hex[:6]}", AssumeRolePolicyDocument="{}")
    role_arn, role_id = role["Role"]["Arn"], role["Role"]["RoleId"]
    answer = client(aws, "sts", **key).assume_role(RoleArn=role_arn, RoleSessionName="attacker")
    session = creds_of(answer["Credentials"])
    client(aws, "ec2", "eu-west-1", **session).describe_regions()

    [minting] = [r for r in records(aws, key["aws_access_key_id"]) if r["eventName"] == "AssumeRole"]
    assert minting["requestParameters"] == {"roleArn": role_arn, "roleSessionName": "attacker"}
    credentials = minting["responseElements"]["credentials"]
    assert credentials["accessKeyId"] == session["aws_access_key_id"]
    assert "secretAccessKey" not in credentials and credentials["sessionToken"] == "HIDDEN_DUE_TO_SECURITY_REASONS"
    assert minting["responseElements"]["assumedRoleUser"] == {
        "assumedRoleId": answer["AssumedRoleUser"]["AssumedRoleId"], "arn": answer["AssumedRoleUser"]["Arn"]}
    assert minting["resources"] == [{"ARN": role_arn, "accountId": DEFAULT_ACCOUNT, "type": "AWS::IAM::Role"}]
    assert minting["userIdentity"]["type"] == "IAMUser" and minting["recipientAccountId"] == DEFAULT_ACCOUNT

    [used] = records(aws, session["aws_access_key_id"], "eu-west-1")
    issued = aws.session(session["aws_access_key_id"])
    assert issued is not None
    assert used["userIdentity"] == {
        "type": "AssumedRole", "principalId": f"{role_id}:attacker", "arn": answer["AssumedRoleUser"]["Arn"],
        "accountId": DEFAULT_ACCOUNT, "accessKeyId": session["aws_access_key_id"],
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "principalId": role_id, "arn": role_arn, "accountId": DEFAULT_ACCOUNT,
                              "userName": role["Role"]["RoleName"]},
            "webIdFederationData": {},
            "attributes": {"creationDate": issued.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "mfaAuthenticated": "false"}}}
    looked_up = lookup_all(aws, "eu-west-1", "AccessKeyId", session["aws_access_key_id"])
    assert looked_up[0]["Username"] == "attacker"


def test_session_token_sessions_act_as_the_user_with_a_session_context(aws: AwsSandbox) -> None:
    name, key = new_user_with_key(aws)
    session = creds_of(client(aws, "sts", **key).get_session_token()["Credentials"])
    client(aws, "ec2", **session).describe_regions()
    [used] = records(aws, session["aws_access_key_id"])
    identity = used["userIdentity"]
    assert (identity["type"], identity["userName"], identity["accessKeyId"]) == (
        "IAMUser", name, session["aws_access_key_id"])
    assert identity["arn"] == f"arn:aws:iam::{DEFAULT_ACCOUNT}:user/{name}"
    assert set(identity["sessionContext"]["attributes"]) == {"creationDate", "mfaAuthenticated"}


def test_cross_account_assume_role_is_delivered_to_both_accounts(aws: AwsSandbox) -> None:
    other = str(random.randrange(10**11, 10**12))
    admin = in_other_account(aws, other)
    role = client(aws, "iam", **admin).create_role(RoleName="target", AssumeRolePolicyDocument="{}")["Role"]
    _, key = new_user_with_key(aws)
    session = creds_of(client(aws, "sts", **key).assume_role(RoleArn=role["Arn"],
                                                            RoleSessionName="cross")["Credentials"])
    client(aws, "iam", **session).list_roles()

    [caller_copy] = [r for r in records(aws, key["aws_access_key_id"]) if r["eventName"] == "AssumeRole"]
    assert caller_copy["recipientAccountId"] == DEFAULT_ACCOUNT
    # The role's account has its own trail: looked up with credentials of that account.
    in_role_account = client(aws, "cloudtrail", **admin).lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "AssumeRole"}])["Events"]
    [role_copy] = [json.loads(e["CloudTrailEvent"]) for e in in_role_account
                   if json.loads(e["CloudTrailEvent"]).get("sharedEventID") == caller_copy["sharedEventID"]]
    assert role_copy["recipientAccountId"] == other and role_copy["eventID"] != caller_copy["eventID"]
    caller = caller_copy["userIdentity"]
    assert role_copy["userIdentity"] == {"type": "AWSAccount", "principalId": caller["principalId"],
                                         "accountId": DEFAULT_ACCOUNT}
    assert role_copy["responseElements"]["credentials"]["accessKeyId"] == session["aws_access_key_id"]
    # The session acts in the role's account: its calls are in that account's trail only.
    assert [r["eventName"] for r in records(aws, session["aws_access_key_id"], **admin)] == ["ListRoles"]
    assert records(aws, session["aws_access_key_id"]) == []


def test_each_account_and_region_has_its_own_trail(aws: AwsSandbox) -> None:
    other = str(random.randrange(10**11, 10**12))
    admin = in_other_account(aws, other)
    _, remote_key = new_user_with_key(aws, **admin)
    client(aws, "ec2", "ap-southeast-2", **remote_key).describe_regions()
    assert [r["eventName"] for r in records(aws, remote_key["aws_access_key_id"], "ap-southeast-2",
                                            **remote_key)] == ["DescribeRegions"]
    assert records(aws, remote_key["aws_access_key_id"], "ap-southeast-2") == []  # the default account's trail
    assert records(aws, remote_key["aws_access_key_id"], "us-east-1", **remote_key) == []  # another region


def test_lookup_events_returns_management_events_only(aws: AwsSandbox) -> None:
    _, key = new_user_with_key(aws)
    bucket = f"evidence-{uuid.uuid4().hex[:8]}"
    s3 = client(aws, "s3", **key)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="dump/users.csv", Body=b"x")
    s3.copy_object(Bucket=bucket, Key="copy.csv", CopySource={"Bucket": bucket, "Key": "dump/users.csv"})
    s3.get_object(Bucket=bucket, Key="dump/users.csv")["Body"].read()
    s3.list_objects_v2(Bucket=bucket)
    s3.get_bucket_location(Bucket=bucket)
    sqs = client(aws, "sqs", **key)
    queue = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="exfiltrated")
    sns = client(aws, "sns", **key)
    topic = sns.create_topic(Name=f"t-{uuid.uuid4().hex[:8]}")["TopicArn"]
    sns.publish(TopicArn=topic, Message="exfiltrated")

    seen = [r["eventName"] for r in records(aws, key["aws_access_key_id"])]
    assert seen == ["CreateBucket", "GetBucketLocation", "CreateQueue", "CreateTopic"]
    everything = [r for r in aws.events() if r["userIdentity"].get("accessKeyId") == key["aws_access_key_id"]]
    data = {r["eventName"]: r for r in everything if r["managementEvent"] is False}
    assert set(data) == {"PutObject", "CopyObject", "GetObject", "ListObjectsV2", "SendMessage", "Publish"}
    assert all(r["eventCategory"] == "Data" for r in data.values())
    assert data["GetObject"]["requestParameters"]["bucketName"] == bucket
    assert data["GetObject"]["requestParameters"]["key"] == "dump/users.csv"
    assert {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/dump/users.csv"} in data["GetObject"]["resources"]
    assert data["SendMessage"]["requestParameters"]["messageBody"] == "HIDDEN_DUE_TO_SECURITY_REASONS"


def test_rest_calls_are_named_by_their_operation(aws: AwsSandbox) -> None:
    bucket = f"named-{uuid.uuid4().hex[:8]}"
    s3 = client(aws, "s3")
    aws.log.clear()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a/b c.txt", Body=b"x")
    s3.head_object(Bucket=bucket, Key="a/b c.txt")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": []}))
    s3.delete_object(Bucket=bucket, Key="a/b c.txt")
    assert [e.key for e in aws.log.entries()] == [
        "s3:CreateBucket", "s3:PutObject", "s3:HeadObject", "s3:PutBucketPolicy", "s3:DeleteObject"]
    # Faults match the operation too.
    aws.faults.add(Fault(match="s3:PutObject@", status=503, count=1))
    with pytest.raises(ClientError) as unavailable:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert error_code(unavailable) == "ServiceUnavailable"


def test_delivery_delay_hides_records_until_they_are_delivered(aws: AwsSandbox) -> None:
    _, key = new_user_with_key(aws)
    assert control(aws, "aws/settings", {"cloudtrail_delay": 3600})["cloudtrail_delay"] == 3600
    client(aws, "iam", **key).list_users()
    assert records(aws, key["aws_access_key_id"]) == []
    assert [r["eventName"] for r in aws.events() if r["userIdentity"].get("accessKeyId") == key["aws_access_key_id"]
            ] == ["ListUsers"]  # it happened; CloudTrail has not delivered it yet
    assert control(aws, "cloudtrail/deliver", {})["delivered"] >= 1
    assert [r["eventName"] for r in records(aws, key["aws_access_key_id"])] == ["ListUsers"]

    aws.cloudtrail_delay = 0.5
    client(aws, "iam", **key).get_user()
    assert [r["eventName"] for r in records(aws, key["aws_access_key_id"])] == ["ListUsers"]
    deadline = time.monotonic() + 10
    while len(records(aws, key["aws_access_key_id"])) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [r["eventName"] for r in records(aws, key["aws_access_key_id"])] == ["ListUsers", "GetUser"]


def test_a_staged_record_can_arrive_after_its_event_time(aws: AwsSandbox) -> None:
    key_id = "AKIA" + uuid.uuid4().hex[:16].upper()
    minted = "ASIA" + uuid.uuid4().hex[:16].upper()
    happened = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10)
    late = {"eventName": "AssumeRole", "eventSource": "sts.amazonaws.com", "eventTime": happened.isoformat(),
            "userIdentity": {"type": "IAMUser", "userName": "ci", "accessKeyId": key_id},
            "requestParameters": {"roleArn": f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/deploy",
                                  "roleSessionName": "late"},
            "responseElements": {"credentials": {"accessKeyId": minted}}}
    assert aws.stage_events([late], deliver_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)) == 1
    window = {"StartTime": happened - dt.timedelta(minutes=1), "EndTime": happened + dt.timedelta(minutes=1)}
    trail = client(aws, "cloudtrail")
    by_key = [{"AttributeKey": "AccessKeyId", "AttributeValue": key_id}]
    assert trail.lookup_events(LookupAttributes=by_key, **window)["Events"] == []
    aws.deliver_pending()
    [found] = trail.lookup_events(LookupAttributes=by_key, **window)["Events"]
    assert found["EventTime"] == happened and json.loads(found["CloudTrailEvent"])["responseElements"][
        "credentials"]["accessKeyId"] == minted

    # The same over HTTP, for processes that do not share the sandbox object.
    other_key = "AKIA" + uuid.uuid4().hex[:16].upper()
    body = {"records": [{**late, "userIdentity": {"accessKeyId": other_key}}], "deliver_at": time.time() + 3600}
    request = urllib.request.Request(f"{aws.url}/_sandbox/cloudtrail/events", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request) as response:
        assert json.loads(response.read()) == {"staged": 1}
    assert records(aws, other_key) == []
    aws.deliver_pending()
    assert [r["eventName"] for r in records(aws, other_key)] == ["AssumeRole"]


def test_lookup_pagination_skips_undelivered_records(aws: AwsSandbox) -> None:
    key_id = "AKIA" + uuid.uuid4().hex[:16].upper()
    base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    staged = [{"eventName": f"Call{i}", "eventSource": "ec2.amazonaws.com", "awsRegion": "ca-central-1",
               "eventTime": (base + dt.timedelta(seconds=i)).isoformat(), "userIdentity": {"accessKeyId": key_id}}
              for i in range(60)]
    aws.stage_events(staged[::2])
    aws.stage_events(staged[1::2], deliver_at=time.time() + 3600)
    trail = client(aws, "cloudtrail", "ca-central-1")
    first = trail.lookup_events(LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": key_id}],
                                MaxResults=20)
    assert [e["EventName"] for e in first["Events"]] == [f"Call{i}" for i in range(58, 18, -2)]
    rest = trail.lookup_events(LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": key_id}],
                               MaxResults=20, NextToken=first["NextToken"])
    assert [e["EventName"] for e in rest["Events"]] == [f"Call{i}" for i in range(18, -1, -2)]
    assert "NextToken" not in rest
    with pytest.raises(urllib.error.HTTPError) as bad:
        control(aws, "aws/settings", {"cloudtrail_delay": -1})
    assert bad.value.code == 400
