"""Who signs a request: the CloudTrail ``userIdentity`` of a key, and for a temporary key, the session it
belongs to (whose policies govern it, when it was issued, which key minted it)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Identity:
    """The CloudTrail ``userIdentity`` of whoever signs with a key (without the key id itself)."""

    type: str
    principal_id: str
    arn: str
    account_id: str
    user_name: str | None = None
    session_context: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    extra: dict[str, Any] | None = field(default=None, hash=False, compare=False)

    def user_identity(self, access_key_id: str | None) -> dict[str, Any]:
        record: dict[str, Any] = {"type": self.type, "principalId": self.principal_id}
        if self.arn:
            record["arn"] = self.arn
        if self.type != "WebIdentityUser":
            # The IAM user guide's AssumeRoleWithWebIdentity example names the provider, not an account:
            # a web identity belongs to no AWS account (the record is the role account's own).
            record["accountId"] = self.account_id
        if access_key_id:
            record["accessKeyId"] = access_key_id
        if self.user_name:
            record["userName"] = self.user_name
        if self.session_context:
            record["sessionContext"] = self.session_context
        if self.extra:
            record.update(self.extra)
        return record


def root_identity(account_id: str) -> Identity:
    """The identity of a key IAM never issued: moto (and so the sandbox) treats it as the account itself."""
    return Identity(type="Root", principal_id=account_id, arn=f"arn:aws:iam::{account_id}:root",
                    account_id=account_id)


def user_identity_of(account_id: str, user_name: str, user_id: str | None = None, path: str = "/") -> Identity:
    return Identity(type="IAMUser", principal_id=user_id or user_name,
                    arn=f"arn:aws:iam::{account_id}:user{path}{user_name}", account_id=account_id,
                    user_name=user_name)


@dataclass(frozen=True)
class Principal:
    """The IAM user or role whose policies govern a request (IAM user guide, "Policy evaluation logic")."""

    kind: Literal["user", "role"]
    account_id: str
    name: str
    arn: str


@dataclass(frozen=True)
class MintedSession:
    """A temporary (``ASIA``) key minted through the front, and everything AWS knows about it.

    ``principal`` is whose policies govern its requests: the role for AssumeRole and
    AssumeRoleWithWebIdentity ("Revoke IAM role temporary security credentials": the deny goes on the role),
    the IAM user for GetSessionToken and GetFederationToken ("Disabling permissions for temporary security
    credentials": deny on the user), None for sessions the account root minted (their permissions "cannot be
    changed"). ``issued_at`` is the request's ``aws:TokenIssueTime`` and the records'
    ``sessionContext.attributes.creationDate``, to the second.
    """

    access_key_id: str
    action: str  # AssumeRole | AssumeRoleWithWebIdentity | GetSessionToken | GetFederationToken
    principal: Principal | None
    identity: Identity
    issued_at: dt.datetime
    session_token: str = field(repr=False)
    minted_by: str | None = None  # the access key id that signed the minting call
    session_name: str | None = None

    @property
    def account_id(self) -> str:
        """The account that owns the session (the role's account for a role session)."""
        return self.identity.account_id
