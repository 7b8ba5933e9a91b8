"""boto3 adapters for containing a compromised key: rotator.incident.ports.IncidentIam and rotator.ports.KeyDirectory.

The IAM client comes with botocore's "standard" retries (rotator.adapters.aws.RETRY_CONFIG); what
survives them becomes a typed error. A missing policy or login profile is an answer (None), never an error;
AccessDenied always raises: "cannot look" is not "nothing there".
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from rotator.adapters.aws import BotoIam, aware_utc, aws_call, caller_identity, sts_account_for_key
from rotator.errors import AwsNotFound

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_sts import STSClient


def _document_text(document: Any) -> str:
    """boto3 returns inline policy documents URL-decoded and parsed into a dict; older paths give text."""
    if isinstance(document, str):
        return unquote(document)
    return json.dumps(document, sort_keys=True)


class BotoIncidentIam(BotoIam):
    """IncidentIam for one account: BotoIam plus inline policies and the console login profile."""

    def __init__(self, client: IAMClient) -> None:
        super().__init__(client)
        self._client = client

    def user_policy(self, user_name: str, policy_name: str) -> str | None:
        try:
            with aws_call("iam:GetUserPolicy", f"{user_name}/{policy_name}"):
                answer = self._client.get_user_policy(UserName=user_name, PolicyName=policy_name)
        except AwsNotFound:
            return None
        return _document_text(answer["PolicyDocument"])

    def put_user_policy(self, user_name: str, policy_name: str, document: str) -> None:
        with aws_call("iam:PutUserPolicy", f"{user_name}/{policy_name}"):
            self._client.put_user_policy(UserName=user_name, PolicyName=policy_name, PolicyDocument=document)

    def role_policy(self, role_name: str, policy_name: str) -> str | None:
        try:
            with aws_call("iam:GetRolePolicy", f"{role_name}/{policy_name}"):
                answer = self._client.get_role_policy(RoleName=role_name, PolicyName=policy_name)
        except AwsNotFound:
            return None
        return _document_text(answer["PolicyDocument"])

    def put_role_policy(self, role_name: str, policy_name: str, document: str) -> None:
        with aws_call("iam:PutRolePolicy", f"{role_name}/{policy_name}"):
            self._client.put_role_policy(RoleName=role_name, PolicyName=policy_name, PolicyDocument=document)

    def login_profile_created(self, user_name: str) -> datetime | None:
        try:
            with aws_call("iam:GetLoginProfile", user_name):
                profile = self._client.get_login_profile(UserName=user_name)["LoginProfile"]
        except AwsNotFound:
            return None  # NoSuchEntity: the user has no console password
        return aware_utc(profile.get("CreateDate"))

    def delete_login_profile(self, user_name: str) -> None:
        try:
            with aws_call("iam:DeleteLoginProfile", user_name):
                self._client.delete_login_profile(UserName=user_name)
        except AwsNotFound:
            return

    def users_with_policy(self, policy_arn: str) -> list[str]:
        # EntityFilter=User: only users (IAM API Reference, ListEntitiesForPolicy); a policy the account does
        # not have (NoSuchEntity) is attached to nobody.
        users: list[str] = []
        try:
            with aws_call("iam:ListEntitiesForPolicy", policy_arn):
                for page in self._client.get_paginator("list_entities_for_policy").paginate(
                        PolicyArn=policy_arn, EntityFilter="User"):
                    users += [user["UserName"] for user in page.get("PolicyUsers", [])]
        except AwsNotFound:
            return []
        return users


class StsKeyDirectory:
    """KeyDirectory over an STS client signed with the ambient credentials."""

    def __init__(self, client: STSClient) -> None:
        self._sts = client

    def account_of_key(self, key_id: str) -> str:
        return sts_account_for_key(self._sts, key_id)

    def ambient_account(self) -> str:
        return caller_identity(self._sts)["account"]
