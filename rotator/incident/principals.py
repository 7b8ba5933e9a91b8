"""Who a session acts as: an IAM user or an IAM role, in one AWS account.

A session's permissions are its creator's (IAM User Guide, "Disabling permissions for temporary security
credentials"): AssumeRole, AssumeRoleWithSAML and AssumeRoleWithWebIdentity sessions are the role's, so a
deny on the role cuts them; GetSessionToken and GetFederationToken sessions are the calling user's, so a deny
on the user cuts them. Pure: standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

# arn:aws:iam::222222222222:role/deploy/payments → account, path "/deploy/", name "payments"
_ENTITY_ARN = re.compile(r"arn:aws[\w-]*:iam::(\d{12}):(user|role)(/(?:[^/]+/)*)?([^/]+)")
# arn:aws:sts::222222222222:assumed-role/payments/session-name (the role's path is not in it)
_ASSUMED_ROLE_ARN = re.compile(r"arn:aws[\w-]*:sts::(\d{12}):assumed-role/([^/]+)/.+")
# The calls whose sessions act as the role they name (requestParameters.roleArn).
ROLE_SESSION_CALLS = frozenset({"AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity"})
# The calls whose sessions act as the IAM user who made them.
USER_SESSION_CALLS = frozenset({"GetSessionToken", "GetFederationToken"})
# IAM Identity Center's roles (IAM User Guide / IAM Identity Center guide: "IAM roles created by IAM Identity
# Center"): IAM refuses changes to them ("this role is only modifiable by AWS").
IDENTITY_CENTER_PREFIX = "AWSReservedSSO_"
# Service-linked roles live under this path; their sessions cannot be revoked (IAM User Guide, "Revoke IAM
# role temporary security credentials": "You cannot revoke the session for a service-linked role").
SERVICE_LINKED_PATH = "/aws-service-role/"


@dataclass(frozen=True)
class Principal:
    kind: str  # "user" or "role"
    name: str
    account_id: str | None
    path: str = "/"
    account: str | None = None  # the configured account that reaches account_id; None when none does

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity for de-duplication: the same role found through two sessions is one principal. A configured
        account is known by its name (its id may be learnt later: the ambient account's comes from STS)."""
        return (self.kind, self.account or self.account_id or "", self.name)

    @property
    def arn(self) -> str | None:
        return f"arn:aws:iam::{self.account_id}:{self.kind}{self.path}{self.name}" if self.account_id else None

    def describe(self) -> str:
        where = (f" in account {self.account} ({self.account_id})" if self.account and self.account_id else
                 f" in account {self.account}" if self.account else
                 f" in account {self.account_id}" if self.account_id else "")
        return f"{self.kind} {self.name}{where}"

    def in_account(self, account: str | None) -> Principal:
        return replace(self, account=account)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "account_id": self.account_id, "path": self.path,
                "account": self.account}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Principal:
        return cls(kind=str(data["kind"]), name=str(data["name"]), account_id=data.get("account_id"),
                   path=str(data.get("path") or "/"), account=data.get("account"))


def principal_of_arn(arn: str | None) -> Principal | None:
    """The user or role an IAM ARN (or an assumed-role session ARN) names; None for anything else."""
    if not arn:
        return None
    entity = _ENTITY_ARN.fullmatch(arn)
    if entity is not None:
        account_id, kind, path, name = entity.groups()
        return Principal(kind, name, account_id, path or "/")
    assumed = _ASSUMED_ROLE_ARN.fullmatch(arn)
    if assumed is not None:
        account_id, name = assumed.groups()
        return Principal("role", name, account_id)
    return None


def role_of_session_call(role_arn: str | None, assumed_arn: str | None) -> Principal | None:
    """The role an AssumeRole* record names: requestParameters.roleArn (it carries the role's path), else the
    account and name in responseElements.assumedRoleUser.arn."""
    found = principal_of_arn(role_arn)
    if found is not None and found.kind == "role":
        return found
    found = principal_of_arn(assumed_arn)
    return found if found is not None and found.kind == "role" else None


def under_paths(principal: Principal, paths: tuple[str, ...]) -> bool:
    """IAM paths nest like directories: /ci/deploy/ is under /ci/."""
    return any(principal.path.startswith(path) for path in paths)
