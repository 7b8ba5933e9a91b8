"""Temporary credentials through the AWS front, driven with real boto3 over HTTP: who each session belongs to,
what session credentials may call, and the aws:TokenIssueTime deny that cuts sessions (IAM user guide,
"Revoke IAM role temporary security credentials", "Disabling permissions for temporary security credentials")."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from rotator.sandbox.aws import AwsSandbox
from rotator.sandbox.aws.identities import MintedSession, Principal
from tests.integration.aws_support import (
    DEFAULT_ACCOUNT,
    client,
    control,
    creds_of,
    lookup_all,
    new_user_with_key,
)

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": f"arn:aws:iam::{DEFAULT_ACCOUNT}:root"}}]})


@pytest.fixture(scope="module")
def other_account() -> str:
    return str(random.randrange(10**11, 10**12))


def account_admin(aws: AwsSandbox, account_id: str) -> dict[str, str]:
    """Credentials acting in ``account_id``: the ambient root assumes a role there (moto needs no such role)."""
    minted = client(aws, "sts").assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/setup",
                                            RoleSessionName="setup")["Credentials"]
    return creds_of(minted)


def new_role(aws: AwsSandbox, **credentials: str) -> dict[str, Any]:
    role: dict[str, Any] = client(aws, "iam", **credentials).create_role(
        RoleName=f"deploy-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=TRUST)["Role"]
    return role


def assume(aws: AwsSandbox, role_arn: str, name: str = "attacker", **credentials: str) -> dict[str, str]:
    answer = client(aws, "sts", **credentials).assume_role(RoleArn=role_arn, RoleSessionName=name)
    return creds_of(answer["Credentials"])


def session_of(aws: AwsSandbox, credentials: dict[str, str]) -> MintedSession:
    session = aws.session(credentials["aws_access_key_id"])
    assert session is not None, "the front did not remember this session"
    return session


def revoke_document(t0: dt.datetime, operator: str = "DateLessThan", key: str = "aws:TokenIssueTime") -> str:
    """AWS's AWSRevokeOlderSessions policy ("Revoke IAM role temporary security credentials")."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Action": ["*"], "Resource": ["*"],
        "Condition": {operator: {key: t0.strftime("%Y-%m-%dT%H:%M:%SZ")}}}]})


def after(session: MintedSession) -> dt.datetime:
    """A T0 one second after the session was issued."""
    return session.issued_at + dt.timedelta(seconds=1)


def wait_past(moment: dt.datetime) -> None:
    while dt.datetime.now(dt.UTC) < moment:
        time.sleep(0.05)


def refused(call: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


# --- who a session belongs to ---------------------------------------------------------------------


def test_get_session_token_mints_its_own_distinct_keys_owned_by_the_user(aws: AwsSandbox) -> None:
    name, key = new_user_with_key(aws)
    sts = client(aws, "sts", **key)
    first, second = (creds_of(sts.get_session_token()["Credentials"]) for _ in range(2))
    assert first["aws_access_key_id"] != second["aws_access_key_id"]
    assert first["aws_access_key_id"].startswith("ASIA") and "EXAMPLE" not in first["aws_access_key_id"]
    session = session_of(aws, first)
    user_arn = f"arn:aws:iam::{DEFAULT_ACCOUNT}:user/{name}"
    assert session.principal == Principal("user", DEFAULT_ACCOUNT, name, user_arn)
    assert (session.action, session.minted_by, session.account_id) == (
        "GetSessionToken", key["aws_access_key_id"], DEFAULT_ACCOUNT)
    assert session.issued_at.tzinfo is not None and session.issued_at.microsecond == 0
    assert client(aws, "sts", **first).get_caller_identity()["Arn"] == user_arn


def test_federation_token_session_is_a_federated_user_governed_by_the_user(aws: AwsSandbox) -> None:
    name, key = new_user_with_key(aws)
    minted = creds_of(client(aws, "sts", **key).get_federation_token(Name="bob")["Credentials"])
    session = session_of(aws, minted)
    assert session.principal is not None and (session.principal.kind, session.principal.name) == ("user", name)
    identity = client(aws, "sts", **minted).get_caller_identity()
    assert identity["Arn"] == f"arn:aws:sts::{DEFAULT_ACCOUNT}:federated-user/bob"
    assert identity["Account"] == DEFAULT_ACCOUNT


def test_role_sessions_remember_their_role_across_accounts_and_chains(aws: AwsSandbox, other_account: str) -> None:
    _, key = new_user_with_key(aws)
    local = new_role(aws)
    remote = new_role(aws, **account_admin(aws, other_account))
    same = assume(aws, local["Arn"], **key)
    cross = assume(aws, remote["Arn"], "cross", **key)
    chained = assume(aws, remote["Arn"], "chained", **same)  # a role session assuming another role

    assert session_of(aws, same).principal == Principal("role", DEFAULT_ACCOUNT, local["RoleName"], local["Arn"])
    assert session_of(aws, cross).principal == Principal("role", other_account, remote["RoleName"], remote["Arn"])
    link = session_of(aws, chained)
    assert link.principal == session_of(aws, cross).principal
    assert link.minted_by == same["aws_access_key_id"] and link.session_name == "chained"
    assert session_of(aws, cross).minted_by == key["aws_access_key_id"]
    # The role session acts in the role's account; moto keeps the key there.
    assert client(aws, "sts", **cross).get_caller_identity()["Arn"] == (
        f"arn:aws:sts::{other_account}:assumed-role/{remote['RoleName']}/cross")
    assert [s.access_key_id for s in aws.sessions(minted_by=same["aws_access_key_id"])] == [
        chained["aws_access_key_id"]]
    listed = control(aws, f"aws/sessions?minted_by={key['aws_access_key_id']}")
    assert {s["access_key_id"] for s in listed} == {same["aws_access_key_id"], cross["aws_access_key_id"]}
    assert all("session_token" not in s and "secret" not in json.dumps(s).lower() for s in listed)


def test_web_identity_session_is_governed_by_its_role(aws: AwsSandbox) -> None:
    role = new_role(aws)
    sts = client(aws, "sts", aws_access_key_id="unused", aws_secret_access_key="unused")
    answer = sts.assume_role_with_web_identity(RoleArn=role["Arn"], RoleSessionName="gitlab-job-7",
                                               WebIdentityToken="header.payload.signature")
    session = session_of(aws, creds_of(answer["Credentials"]))
    assert session.principal == Principal("role", DEFAULT_ACCOUNT, role["RoleName"], role["Arn"])
    assert session.action == "AssumeRoleWithWebIdentity" and session.minted_by is None



def test_a_web_identity_assumption_is_recorded_in_the_roles_account_as_a_web_identity_user(aws: AwsSandbox) -> None:
    """IAM user guide, "Logging IAM and AWS STS API calls with AWS CloudTrail", the AssumeRoleWithWebIdentity
    example: userIdentity is a WebIdentityUser (principalId provider:audience:subject, userName, identityProvider,
    no accountId), the role is the resource, and the minted key is in responseElements."""
    role = new_role(aws)

    def part(claims: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    subject = "project_path:payments/api:ref_type:branch:ref:main"
    token = ".".join((part({"alg": "RS256"}), part({"iss": "https://gitlab.example.com", "aud": "sts.amazonaws.com",
                                                    "sub": subject}), "signature"))
    sts = client(aws, "sts", aws_access_key_id="unused", aws_secret_access_key="unused")
    minted = sts.assume_role_with_web_identity(RoleArn=role["Arn"], RoleSessionName="job-7",
                                               WebIdentityToken=token)["Credentials"]["AccessKeyId"]
    [record] = [r for r in aws.events() if r["eventName"] == "AssumeRoleWithWebIdentity"
                and r["responseElements"]["credentials"]["accessKeyId"] == minted]
    assert record["userIdentity"] == {"type": "WebIdentityUser", "userName": subject,
                                      "principalId": f"gitlab.example.com:sts.amazonaws.com:{subject}",
                                      "identityProvider": "gitlab.example.com"}
    assert record["recipientAccountId"] == DEFAULT_ACCOUNT
    assert record["resources"] == [{"ARN": role["Arn"], "accountId": DEFAULT_ACCOUNT, "type": "AWS::IAM::Role"}]
    assert record["requestParameters"]["roleArn"] == role["Arn"]
    assert token not in json.dumps(record)


# --- what session credentials may call ------------------------------------------------------------


def test_session_credentials_are_limited_as_sts_documents(aws: AwsSandbox) -> None:
    _, key = new_user_with_key(aws)
    role = new_role(aws)
    user_session = creds_of(client(aws, "sts", **key).get_session_token()["Credentials"])
    federated = creds_of(client(aws, "sts", **key).get_federation_token(Name="fed")["Credentials"])
    role_session = assume(aws, role["Arn"], **key)

    # GetSessionToken credentials: no IAM without MFA, in STS only AssumeRole and GetCallerIdentity.
    no_iam = refused(lambda: client(aws, "iam", **user_session).list_users())
    assert no_iam.response["Error"]["Code"] == "InvalidClientTokenId"
    no_info = refused(lambda: client(aws, "sts", **user_session).get_access_key_info(
        AccessKeyId=key["aws_access_key_id"]))
    assert no_info.response["Error"]["Code"] == "AccessDenied"
    again = refused(lambda: client(aws, "sts", **user_session).get_session_token())
    assert again.response["Error"] == {"Type": "Sender", "Code": "AccessDenied",
                                       "Message": "Cannot call GetSessionToken with session credentials"}
    assert session_of(aws, assume(aws, role["Arn"], "from-user-session", **user_session)).principal is not None
    assert client(aws, "ec2", **user_session).describe_regions()["Regions"]

    # GetFederationToken credentials: no IAM, in STS only GetCallerIdentity.
    assert refused(lambda: client(aws, "iam", **federated).list_users()).response["Error"]["Code"] == (
        "InvalidClientTokenId")
    assert refused(lambda: assume(aws, role["Arn"], **federated)).response["Error"]["Code"] == "AccessDenied"

    # Role sessions may call IAM, but neither GetSessionToken nor GetFederationToken.
    assert client(aws, "iam", **role_session).list_users()["Users"]
    for mint in (lambda: client(aws, "sts", **role_session).get_session_token(),
                 lambda: client(aws, "sts", **role_session).get_federation_token(Name="xx")):
        assert refused(mint).response["Error"]["Code"] == "AccessDenied"


# --- the aws:TokenIssueTime deny ------------------------------------------------------------------


def test_a_role_deny_cuts_the_role_sessions_issued_before_t0_and_nothing_else(aws: AwsSandbox) -> None:
    name, key = new_user_with_key(aws)
    role = new_role(aws)
    before = assume(aws, role["Arn"], **key)
    t0 = after(session_of(aws, before))

    # The user's policies do not govern a role session.
    client(aws, "iam").put_user_policy(UserName=name, PolicyName="revoke", PolicyDocument=revoke_document(t0))
    assert client(aws, "iam", **before).list_roles()["Roles"]

    client(aws, "iam").put_role_policy(RoleName=role["RoleName"], PolicyName="AWSRevokeOlderSessions",
                                       PolicyDocument=revoke_document(t0))
    denied = refused(lambda: client(aws, "iam", **before).list_roles())
    assert denied.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert denied.response["Error"] == {
        "Type": "Sender", "Code": "AccessDenied",
        "Message": f"User: arn:aws:sts::{DEFAULT_ACCOUNT}:assumed-role/{role['RoleName']}/attacker is not "
                   "authorized to perform: iam:ListRoles on resource: * with an explicit deny in an "
                   "identity-based policy"}
    # The session cannot mint another session either, but still learns who it is (no permission needed).
    assert refused(lambda: assume(aws, role["Arn"], "again", **before)).response["Error"]["Code"] == "AccessDenied"
    assert client(aws, "sts", **before).get_caller_identity()["Account"] == DEFAULT_ACCOUNT
    # The long-lived key carries no aws:TokenIssueTime, so neither deny applies to it.
    assert client(aws, "iam", **key).list_roles()["Roles"]

    wait_past(t0)
    later = assume(aws, role["Arn"], "after-t0", **key)
    assert client(aws, "iam", **later).list_roles()["Roles"]

    [record] = [json.loads(e["CloudTrailEvent"]) for e in lookup_all(aws, "us-east-1", "AccessKeyId",
                                                                      before["aws_access_key_id"])
                if e["EventName"] == "ListRoles"][:1]
    assert record["errorCode"] == "AccessDenied" and record["userIdentity"]["type"] == "AssumedRole"


def test_a_user_deny_cuts_its_session_tokens_and_federation_tokens_not_its_key(aws: AwsSandbox) -> None:
    name, key = new_user_with_key(aws)
    user_session = creds_of(client(aws, "sts", **key).get_session_token()["Credentials"])
    federated = creds_of(client(aws, "sts", **key).get_federation_token(Name="fed")["Credentials"])
    assert client(aws, "ec2", **user_session).describe_regions()["Regions"]
    t0 = max(after(session_of(aws, user_session)), after(session_of(aws, federated)))
    client(aws, "iam").put_user_policy(UserName=name, PolicyName="revoke", PolicyDocument=revoke_document(t0))

    for session in (user_session, federated):
        ec2 = refused(lambda session=session: client(aws, "ec2", **session).describe_regions())  # type: ignore[misc]
        assert ec2.response["Error"]["Code"] == "UnauthorizedOperation"
        assert ec2.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert client(aws, "iam", **key).list_users()["Users"]
    assert client(aws, "ec2", **key).describe_regions()["Regions"]
    # GetSessionToken is never refused by a policy; its new session is issued after T0 once T0 has passed.
    wait_past(t0)
    fresh = creds_of(client(aws, "sts", **key).get_session_token()["Credentials"])
    assert client(aws, "ec2", **fresh).describe_regions()["Regions"]


def test_cross_account_and_chained_sessions_are_cut_in_the_role_account(aws: AwsSandbox, other_account: str) -> None:
    _, key = new_user_with_key(aws)
    admin = account_admin(aws, other_account)
    local, remote = new_role(aws), new_role(aws, **admin)
    hop = assume(aws, local["Arn"], "hop", **key)
    cross = assume(aws, remote["Arn"], "cross", **key)
    chained = assume(aws, remote["Arn"], "chained", **hop)
    t0 = max(after(session_of(aws, s)) for s in (hop, cross, chained))

    # A deny on the role of the *first* account leaves the sessions of the remote role alone...
    client(aws, "iam").put_role_policy(RoleName=local["RoleName"], PolicyName="revoke",
                                       PolicyDocument=revoke_document(t0))
    assert refused(lambda: client(aws, "iam", **hop).list_roles()).response["Error"]["Code"] == "AccessDenied"
    for session in (cross, chained):
        assert client(aws, "iam", **session).list_roles()["Roles"]
    # ...and a deny on the remote role, put in its own account, cuts both.
    client(aws, "iam", **admin).put_role_policy(RoleName=remote["RoleName"], PolicyName="revoke",
                                                PolicyDocument=revoke_document(t0))
    for session in (cross, chained):
        assert refused(lambda session=session: client(aws, "sqs", **session).list_queues()).response[  # type: ignore[misc]
            "Error"]["Code"] == "AccessDenied"


def test_refusals_take_the_shape_of_each_protocol(aws: AwsSandbox) -> None:
    _, key = new_user_with_key(aws)
    role = new_role(aws)
    session = assume(aws, role["Arn"], **key)
    client(aws, "iam").put_role_policy(RoleName=role["RoleName"], PolicyName="revoke",
                                       PolicyDocument=revoke_document(after(session_of(aws, session))))

    def shape(call: Any) -> tuple[int, str]:
        error = refused(call)
        return error.response["ResponseMetadata"]["HTTPStatusCode"], str(error.response["Error"]["Code"])

    assert shape(lambda: client(aws, "sts", **session).get_access_key_info(AccessKeyId=key["aws_access_key_id"])) == (
        403, "AccessDenied")
    assert shape(lambda: client(aws, "ec2", **session).describe_instances()) == (403, "UnauthorizedOperation")
    assert shape(lambda: client(aws, "kms", **session).list_keys()) == (400, "AccessDeniedException")
    assert shape(lambda: client(aws, "cloudtrail", **session).lookup_events(MaxResults=1)) == (
        400, "AccessDeniedException")
    assert shape(lambda: client(aws, "sqs", **session).list_queues()) == (403, "AccessDenied")
    s3 = refused(lambda: client(aws, "s3", **session).list_buckets())
    assert s3.response["Error"]["Code"] == "AccessDenied" and s3.response["Error"]["Message"] == "Access Denied"


def test_conditions_actions_and_policy_kinds(aws: AwsSandbox) -> None:
    name, key = new_user_with_key(aws)
    iam = client(aws, "iam")
    # aws:CurrentTime is in every request: a deny from a past moment on applies to the long-lived key too.
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    iam.put_user_policy(UserName=name, PolicyName="freeze",
                        PolicyDocument=revoke_document(past, "DateGreaterThan", "aws:CurrentTime"))
    assert refused(lambda: client(aws, "iam", **key).list_users()).response["Error"]["Code"] == "AccessDenied"
    iam.delete_user_policy(UserName=name, PolicyName="freeze")
    assert client(aws, "iam", **key).list_users()["Users"]

    # ...IfExists: a key absent from the request (no token issue time for a long-lived key) makes it true.
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    iam.put_user_policy(UserName=name, PolicyName="if-exists",
                        PolicyDocument=revoke_document(future, "DateLessThanIfExists"))
    assert refused(lambda: client(aws, "ec2", **key).describe_regions()).response["Error"]["Code"] == (
        "UnauthorizedOperation")
    iam.delete_user_policy(UserName=name, PolicyName="if-exists")

    # Several values of one key OR together; several keys under one operator AND together; NotAction.
    session = creds_of(client(aws, "sts", **key).get_session_token()["Credentials"])
    issued = session_of(aws, session).issued_at
    iam.put_user_policy(UserName=name, PolicyName="combined", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Deny", "NotAction": ["sts:*"], "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": ["2001-01-01T00:00:00Z",
                                                                  (issued + dt.timedelta(seconds=1)).isoformat()],
                                           "aws:CurrentTime": (issued + dt.timedelta(days=1)).isoformat()}}}]}))
    assert refused(lambda: client(aws, "ec2", **session).describe_regions()).response["Error"]["Code"] == (
        "UnauthorizedOperation")
    assert session_of(aws, assume(aws, new_role(aws)["Arn"], **session)).principal  # NotAction spares sts:*
    assert client(aws, "ec2", **key).describe_regions()["Regions"]  # no token issue time: the AND fails
    iam.delete_user_policy(UserName=name, PolicyName="combined")

    # An action-scoped deny (with a wildcard) refuses only what it names, in a managed policy of a group.
    group = f"g-{uuid.uuid4().hex[:6]}"
    iam.create_group(GroupName=group)
    iam.add_user_to_group(GroupName=group, UserName=name)
    policy = iam.create_policy(PolicyName=f"no-list-{group}", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "iam:List*", "Resource": "*"}]}))
    iam.attach_group_policy(GroupName=group, PolicyArn=policy["Policy"]["Arn"])
    denied = refused(lambda: client(aws, "iam", **key).list_users())
    assert denied.response["Error"]["Message"].endswith(f"identity-based policy: {policy['Policy']['Arn']}")
    assert client(aws, "iam", **key).get_user(UserName=name)["User"]["UserName"] == name
    assert client(aws, "ec2", **key).describe_regions()["Regions"]


def test_s3_operations_are_authorized_as_the_iam_action_the_reference_names(aws: AwsSandbox) -> None:
    """Service Authorization Reference for S3: PutBucketLifecycleConfiguration is s3:PutLifecycleConfiguration,
    a multipart upload is s3:PutObject, ListMultipartUploads is s3:ListBucketMultipartUploads; a deny naming
    the IAM action refuses the operation, one naming the operation's own name would not exist."""
    name, key = new_user_with_key(aws)
    bucket = f"evidence-{uuid.uuid4().hex[:8]}"
    s3 = client(aws, "s3", **key)
    s3.create_bucket(Bucket=bucket)
    client(aws, "iam").put_user_policy(UserName=name, PolicyName="no-lifecycle", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Deny", "Resource": "*",
            "Action": ["s3:PutLifecycleConfiguration", "s3:PutObject", "s3:ListBucketMultipartUploads"]}]}))
    lifecycle = {"Rules": [{"ID": "expire", "Status": "Enabled", "Filter": {"Prefix": ""},
                            "Expiration": {"Days": 1}}]}
    for operation in (
            lambda: s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=lifecycle),
            lambda: s3.create_multipart_upload(Bucket=bucket, Key="dump"),
            lambda: s3.list_multipart_uploads(Bucket=bucket)):
        assert refused(operation).response["Error"]["Code"] == "AccessDenied"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0  # s3:ListBucket is not denied


def test_get_access_key_info_answers_the_account_that_owns_the_key(aws: AwsSandbox, other_account: str) -> None:
    admin = account_admin(aws, other_account)
    remote_user, remote_key = new_user_with_key(aws, **admin)
    _, local_key = new_user_with_key(aws)
    remote_role = new_role(aws, **admin)
    cross = assume(aws, remote_role["Arn"], **local_key)
    user_session = creds_of(client(aws, "sts", **local_key).get_session_token()["Credentials"])

    for asker in ({}, local_key):
        sts = client(aws, "sts", **asker)
        assert sts.get_access_key_info(AccessKeyId=remote_key["aws_access_key_id"])["Account"] == other_account
        assert sts.get_access_key_info(AccessKeyId=cross["aws_access_key_id"])["Account"] == other_account
        assert sts.get_access_key_info(AccessKeyId=user_session["aws_access_key_id"])["Account"] == DEFAULT_ACCOUNT
    assert client(aws, "sts", **admin).get_access_key_info(
        AccessKeyId=local_key["aws_access_key_id"])["Account"] == DEFAULT_ACCOUNT
    # A key deleted from IAM still belongs to its account.
    client(aws, "iam", **admin).delete_access_key(UserName=remote_user, AccessKeyId=remote_key["aws_access_key_id"])
    assert client(aws, "sts").get_access_key_info(AccessKeyId=remote_key["aws_access_key_id"])["Account"] == (
        other_account)
