"""SQS behind the AWS front, the AWS Health "credentials exposed" event as EventBridge delivers it to a queue,
and AWS's compromised-key quarantine policy, driven with real boto3 (and plain HTTP) against the sandbox."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from rotator.sandbox.aws import AwsSandbox, start_aws
from tests.integration.aws_support import DEFAULT_ACCOUNT, client, creds_of, error_code, lookup_all, new_user_with_key


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsSandbox]:
    sandbox = start_aws()
    sandbox.lookup_rate = float("inf")
    yield sandbox
    sandbox.stop()


def new_queue(aws: AwsSandbox, **credentials: str) -> str:
    return str(client(aws, "sqs", **credentials).create_queue(QueueName=f"health-{uuid.uuid4().hex[:8]}")["QueueUrl"])


def receive(aws: AwsSandbox, queue_url: str) -> list[dict[str, Any]]:
    answer = client(aws, "sqs").receive_message(QueueUrl=queue_url, WaitTimeSeconds=1, MaxNumberOfMessages=10)
    return list(answer.get("Messages", []))


def post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_sqs_is_served_behind_the_front_with_keys_checked_and_calls_recorded(aws: AwsSandbox) -> None:
    name, key = new_user_with_key(aws)
    queue = new_queue(aws, **key)
    sqs = client(aws, "sqs", **key)
    sqs.send_message(QueueUrl=queue, MessageBody="hello")
    [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    assert message["Body"] == "hello"

    wrong = {**key, "aws_secret_access_key": "W" * 40}
    with pytest.raises(ClientError) as forged:
        client(aws, "sqs", **wrong).list_queues()
    assert error_code(forged) == "InvalidSignatureException"
    client(aws, "iam").update_access_key(UserName=name, AccessKeyId=key["aws_access_key_id"], Status="Inactive")
    with pytest.raises(ClientError) as inactive:
        sqs.list_queues()
    assert error_code(inactive) == "UnrecognizedClientException"

    management = [e["EventName"] for e in lookup_all(aws, "us-east-1", "AccessKeyId", key["aws_access_key_id"])]
    assert "CreateQueue" in management and "SendMessage" not in management  # message calls are data events
    assert {"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage"} <= {e.key for e in aws.log.entries()}


def test_a_health_event_arrives_as_the_eventbridge_event_json(aws: AwsSandbox) -> None:
    _, key = new_user_with_key(aws)
    queue = new_queue(aws)
    delivered = aws.inject_health_event(queue, key["aws_access_key_id"])
    [message] = receive(aws, queue)
    assert message["MessageId"] == delivered.message_id
    event = json.loads(message["Body"])
    assert event == delivered.event
    assert {k: event[k] for k in ("version", "detail-type", "source", "account", "region", "resources")} == {
        "version": "0", "detail-type": "AWS Health Event", "source": "aws.health", "account": DEFAULT_ACCOUNT,
        "region": "us-east-1", "resources": []}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"])
    uuid.UUID(event["id"])
    detail = event["detail"]
    assert (detail["service"], detail["eventTypeCode"], detail["eventTypeCategory"]) == (
        "RISK", "AWS_RISK_CREDENTIALS_EXPOSED", "issue")
    assert detail["affectedEntities"] == [{"entityValue": key["aws_access_key_id"]}]
    assert detail["eventArn"].startswith("arn:aws:health:us-east-1::event/RISK/AWS_RISK_CREDENTIALS_EXPOSED/")
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", detail["startTime"])

    # The event names the account that owns the key, even when the queue lives elsewhere.
    admin = creds_of(client(aws, "sts").assume_role(RoleArn="arn:aws:iam::210987654321:role/setup",
                                                    RoleSessionName="setup")["Credentials"])
    _, remote_key = new_user_with_key(aws, **admin)
    aws.inject_health_event(queue, [remote_key["aws_access_key_id"], key["aws_access_key_id"]])
    [second] = receive(aws, queue)
    body = json.loads(second["Body"])
    assert body["account"] == "210987654321"
    assert [e["entityValue"] for e in body["detail"]["affectedEntities"]] == [
        remote_key["aws_access_key_id"], key["aws_access_key_id"]]


def test_health_events_can_be_injected_over_http(aws: AwsSandbox) -> None:
    queue = new_queue(aws)
    key_id = "AKIA" + uuid.uuid4().hex[:16].upper()
    status, answer = post(aws.health_event_url, {"queue_url": queue, "access_key_ids": [key_id],
                                                 "time": "2026-01-02T03:04:05Z"})
    assert status == 201
    [message] = receive(aws, queue)
    assert message["MessageId"] == answer["message_id"]
    event = json.loads(message["Body"])
    assert event["time"] == "2026-01-02T03:04:05Z" and event["account"] == DEFAULT_ACCOUNT  # the queue's
    assert event["detail"]["affectedEntities"] == [{"entityValue": key_id}]
    assert post(aws.health_event_url, {"queue_url": queue.rsplit("/", 1)[0] + "/no-such-queue",
                                       "access_key_ids": [key_id]})[0] == 400
    assert post(aws.health_event_url, {"queue_url": queue})[0] == 400


def test_the_quarantine_policy_is_attached_as_aws_does_and_enforced(aws: AwsSandbox) -> None:
    name, key = new_user_with_key(aws)
    iam = client(aws, "iam")
    arn = aws.quarantine_user(name)
    assert arn == "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3"  # what AWS attaches today
    attached = iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]
    assert attached == [{"PolicyName": "AWSCompromisedKeyQuarantineV3", "PolicyArn": arn}]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=iam.get_policy(PolicyArn=arn)["Policy"][
        "DefaultVersionId"])["PolicyVersion"]["Document"]
    assert "iam:CreateAccessKey" in json.dumps(document)

    # The key stays Active: what the policy denies is refused, the rest works.
    with pytest.raises(ClientError) as denied:
        client(aws, "iam", **key).create_access_key(UserName=name)
    assert error_code(denied) == "AccessDenied"
    assert denied.value.response["Error"]["Message"].endswith(f"identity-based policy: {arn}")
    with pytest.raises(ClientError) as lookup:
        client(aws, "cloudtrail", **key).lookup_events(MaxResults=1)
    assert error_code(lookup) == "AccessDeniedException"
    assert client(aws, "ec2", **key).describe_regions()["Regions"]
    assert client(aws, "sts", **key).get_session_token()["Credentials"]  # policies never control it

    # V2, the earlier version, for users quarantined before V3 existed.
    earlier, _ = new_user_with_key(aws)
    assert post(aws.quarantine_url, {"user_name": earlier, "version": "V2"}) == (
        201, {"policy_arn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"})

    # V3 over HTTP, by default: its second statement denies kms:CreateGrant when kms:ViaService is absent (Null).
    other, other_key = new_user_with_key(aws)
    status, answer = post(aws.quarantine_url, {"user_name": other})
    assert (status, answer) == (201, {"policy_arn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3"})
    with pytest.raises(ClientError) as grant:
        client(aws, "kms", **other_key).create_grant(KeyId="1234abcd-12ab-34cd-56ef-1234567890ab",
                                                     GranteePrincipal=f"arn:aws:iam::{DEFAULT_ACCOUNT}:root",
                                                     Operations=["Decrypt"])
    assert error_code(grant) == "AccessDeniedException"
    assert post(aws.quarantine_url, {"user_name": "nobody-" + other})[0] == 400
    assert post(aws.quarantine_url, {"user_name": other, "version": "V9"})[0] == 400


def test_aws_managed_policies_exist_in_every_account(aws: AwsSandbox) -> None:
    name, _ = new_user_with_key(aws)
    iam = client(aws, "iam")
    iam.attach_user_policy(UserName=name, PolicyArn="arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3")
    iam.attach_user_policy(UserName=name, PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
    assert {p["PolicyName"] for p in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]} == {
        "AWSCompromisedKeyQuarantineV3", "ReadOnlyAccess"}
    with pytest.raises(ClientError) as missing:
        iam.attach_user_policy(UserName=name, PolicyArn="arn:aws:iam::aws:policy/NoSuchPolicyAnywhere")
    assert error_code(missing) == "NoSuchEntity"
