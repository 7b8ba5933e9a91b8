"""AwsSessions' account sessions, built on botocore's public credential API, against the sandbox's STS:
the role is assumed at the first request (not when a client is built), once per account, with the
ExternalId and session name configured, and the credentials are botocore's refreshable ones."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import boto3
import pytest
from botocore.credentials import RefreshableCredentials

from rotator.adapters.aws import AssumedRoleProvider, AwsSessions
from rotator.sandbox.runner import Sandbox
from tests.sandbox_support import unique

TRUST = ('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", '
         '"Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]}')


# Every test talks to the sandbox through os.environ, as rotator does in a deployment.
pytestmark = pytest.mark.usefixtures("sandbox_env")


def role_in_new_account(sandbox: Sandbox) -> str:
    account_id = str(random.randrange(10**11, 10**12))
    sts = boto3.client("sts", endpoint_url=sandbox.aws.url, region_name="us-east-1")
    seed = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/rotator", RoleSessionName="seed")["Credentials"]
    iam: Any = boto3.client("iam", endpoint_url=sandbox.aws.url, region_name="us-east-1",
                            aws_access_key_id=seed["AccessKeyId"], aws_secret_access_key=seed["SecretAccessKey"],
                            aws_session_token=seed["SessionToken"])
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName="rotator", AssumeRolePolicyDocument=TRUST)
    return f"arn:aws:iam::{account_id}:role/rotator"


def assumed(sandbox: Sandbox, session_name: str) -> list[dict[str, Any]]:
    # Counted in the caller's account: CloudTrail also delivers a cross-account AssumeRole to the role's account,
    # where the caller shows as userIdentity type AWSAccount.
    return [e["requestParameters"] for e in sandbox.aws.events()
            if e["eventName"] == "AssumeRole" and e["requestParameters"].get("roleSessionName") == session_name
            and e["userIdentity"].get("type") != "AWSAccount"]


def test_the_role_is_assumed_at_the_first_request_once_with_external_id_and_session_name(sandbox: Sandbox) -> None:
    role_arn = role_in_new_account(sandbox)
    session_name = unique("rotator")
    sessions = AwsSessions("us-east-1", {"acct": (role_arn, "the-external-id", session_name)})
    iam = sessions.client("iam", "acct")
    sts = sessions.client("sts", "acct")
    assert assumed(sandbox, session_name) == []  # building clients calls nothing
    identity = sts.get_caller_identity()
    iam.list_users()
    assert identity["Arn"].startswith(f"arn:aws:sts::{role_arn.split(':')[4]}:assumed-role/rotator/{session_name}")
    [request] = assumed(sandbox, session_name)  # one AssumeRole for every client of the account
    assert request["roleArn"] == role_arn and request["externalId"] == "the-external-id"
    credentials = sessions.session("acct").get_credentials()
    assert isinstance(credentials, RefreshableCredentials) and credentials.method == AssumedRoleProvider.METHOD
    assert not credentials.refresh_needed()  # fresh from STS: the next refresh is scheduled before expiry


def test_the_default_account_uses_the_ambient_credentials_and_assumes_nothing(sandbox: Sandbox) -> None:
    session_name = unique("rotator")
    sessions = AwsSessions("us-east-1", {"acct": (role_in_new_account(sandbox), None, session_name)})
    answer = sessions.client("sts").get_caller_identity()
    assert answer["Account"] == "123456789012" and assumed(sandbox, session_name) == []
