"""boto3 adapter for the move to GitLab OIDC: rotator.oidc.ports.OidcIam for one account.

Reads what an IAM user may do (attached and inline policies, its groups', its permissions boundary) and
creates the OIDC provider and the role that replaces the user's keys. Creation is idempotent: an existing
provider gets the audience added (and a pinned thumbprint set), an existing role gets the trust policy
and the policies put again. AccessDenied always raises: "cannot read" is never "no policies".
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from rotator.adapters.aws import aws_call
from rotator.errors import AwsError
from rotator.oidc.ports import OidcResources, UserPermissions

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


def _document(document: Any) -> str:
    """boto3 hands policy documents back URL-decoded and parsed; older paths give URL-encoded text."""
    return unquote(document) if isinstance(document, str) else json.dumps(document, sort_keys=True)


def _host(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


class BotoOidcIam:
    def __init__(self, client: IAMClient, account_id: str, partition: str = "aws") -> None:
        self._iam = client
        self._account_id = account_id
        self._partition = partition

    # --- reading the user's permissions ---------------------------------------------------------------
    def user_permissions(self, user_name: str) -> UserPermissions:
        with aws_call("iam:GetUser", user_name):
            user = self._iam.get_user(UserName=user_name)["User"]
        boundary = user.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
        managed = self._attached("user", user_name)
        inline = [(name, self._inline("user", user_name, name)) for name in self._inline_names("user", user_name)]
        notes: list[str] = []
        with aws_call("iam:ListGroupsForUser", user_name):
            pages = self._iam.get_paginator("list_groups_for_user").paginate(UserName=user_name)
            groups = [group["GroupName"] for page in pages for group in page["Groups"]]
        for group in groups:
            from_group = self._attached("group", group)
            group_inline = [(f"{group}-{name}"[:128], self._inline("group", group, name))
                            for name in self._inline_names("group", group)]
            if from_group or group_inline:
                notes.append(f"from group {group}: {len(from_group)} managed, {len(group_inline)} inline")
            managed += [arn for arn in from_group if arn not in managed]
            inline += group_inline
        return UserPermissions(tuple(managed), tuple(inline), boundary, tuple(notes))

    # Each call spelled out (no f-string action names): tests/test_deploy.py scans these for the IAM policy.
    def _attached(self, kind: str, name: str) -> list[str]:
        if kind == "user":
            with aws_call("iam:ListAttachedUserPolicies", name):
                pages: Any = self._iam.get_paginator("list_attached_user_policies").paginate(UserName=name)
                return [policy["PolicyArn"] for page in pages for policy in page["AttachedPolicies"]]
        with aws_call("iam:ListAttachedGroupPolicies", name):
            pages = self._iam.get_paginator("list_attached_group_policies").paginate(GroupName=name)
            return [policy["PolicyArn"] for page in pages for policy in page["AttachedPolicies"]]

    def _inline_names(self, kind: str, name: str) -> list[str]:
        if kind == "user":
            with aws_call("iam:ListUserPolicies", name):
                pages: Any = self._iam.get_paginator("list_user_policies").paginate(UserName=name)
                return [policy for page in pages for policy in page["PolicyNames"]]
        with aws_call("iam:ListGroupPolicies", name):
            pages = self._iam.get_paginator("list_group_policies").paginate(GroupName=name)
            return [policy for page in pages for policy in page["PolicyNames"]]

    def _inline(self, kind: str, name: str, policy: str) -> str:
        if kind == "user":
            with aws_call("iam:GetUserPolicy", f"{name}/{policy}"):
                answer: Any = self._iam.get_user_policy(UserName=name, PolicyName=policy)
        else:
            with aws_call("iam:GetGroupPolicy", f"{name}/{policy}"):
                answer = self._iam.get_group_policy(GroupName=name, PolicyName=policy)
        return _document(answer["PolicyDocument"])

    # --- creating the provider and the role ---------------------------------------------------------
    def apply(self, resources: OidcResources) -> list[str]:
        done = self._provider(resources)
        done += self._role(resources)
        permissions = resources.permissions
        for arn in permissions.managed_policy_arns:
            with aws_call("iam:AttachRolePolicy", f"{resources.role_name} {arn}"):
                self._iam.attach_role_policy(RoleName=resources.role_name, PolicyArn=arn)
            done.append(f"attached {arn} to role {resources.role_name}")
        for name, document in permissions.inline_policies:
            with aws_call("iam:PutRolePolicy", f"{resources.role_name}/{name}"):
                self._iam.put_role_policy(RoleName=resources.role_name, PolicyName=name, PolicyDocument=document)
            done.append(f"put inline policy {name} on role {resources.role_name}")
        return done

    def _provider(self, resources: OidcResources) -> list[str]:
        arn = f"arn:{self._partition}:iam::{self._account_id}:oidc-provider/{_host(resources.provider_url)}"
        try:
            with aws_call("iam:GetOpenIDConnectProvider", arn):
                existing: Any = self._iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        except AwsError as exc:
            if exc.code != "NoSuchEntity":
                raise
            request: dict[str, Any] = {"Url": resources.provider_url, "ClientIDList": [resources.audience],
                                       "Tags": [{"Key": k, "Value": v} for k, v in resources.tags]}
            if resources.thumbprints:
                request["ThumbprintList"] = list(resources.thumbprints)
            with aws_call("iam:CreateOpenIDConnectProvider", resources.provider_url):
                created = self._iam.create_open_id_connect_provider(**request)
            return [f"created OIDC provider {created['OpenIDConnectProviderArn']}"]
        done: list[str] = []
        if resources.audience not in existing.get("ClientIDList", []):
            with aws_call("iam:AddClientIDToOpenIDConnectProvider", arn):
                self._iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn,
                                                                    ClientID=resources.audience)
            done.append(f"added audience {resources.audience} to OIDC provider {arn}")
        if resources.thumbprints and set(resources.thumbprints) != set(existing.get("ThumbprintList", [])):
            with aws_call("iam:UpdateOpenIDConnectProviderThumbprint", arn):
                self._iam.update_open_id_connect_provider_thumbprint(OpenIDConnectProviderArn=arn,
                                                                     ThumbprintList=list(resources.thumbprints))
            done.append(f"pinned the thumbprint of OIDC provider {arn}")
        return done or [f"OIDC provider {arn} already exists"]

    def _role(self, resources: OidcResources) -> list[str]:
        request: dict[str, Any] = {
            "RoleName": resources.role_name, "AssumeRolePolicyDocument": resources.trust_policy,
            "Description": resources.description, "MaxSessionDuration": 3600,
            "Tags": [{"Key": k, "Value": v} for k, v in resources.tags],
        }
        if resources.permissions.boundary_arn:
            request["PermissionsBoundary"] = resources.permissions.boundary_arn
        try:
            with aws_call("iam:CreateRole", resources.role_name):
                created = self._iam.create_role(**request)
        except AwsError as exc:
            if exc.code != "EntityAlreadyExists":
                raise
            with aws_call("iam:UpdateAssumeRolePolicy", resources.role_name):
                self._iam.update_assume_role_policy(RoleName=resources.role_name,
                                                    PolicyDocument=resources.trust_policy)
            return [f"role {resources.role_name} already exists: trust policy updated"]
        return [f"created role {created['Role']['Arn']}"]

    def role_last_used(self, role_name: str) -> datetime | None:
        with aws_call("iam:GetRole", role_name):
            role = self._iam.get_role(RoleName=role_name)["Role"]
        used = role.get("RoleLastUsed", {}).get("LastUsedDate")
        if not isinstance(used, datetime):
            return None
        return used if used.tzinfo else used.replace(tzinfo=UTC)
