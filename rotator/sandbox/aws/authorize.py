"""Authorization as AWS does it for the part the sandbox models: the explicit Deny statements of the identity
policies of the principal that governs the request, read from moto's IAM at request time.

The governing principal is the IAM user for the user's own access keys and for its GetSessionToken /
GetFederationToken sessions, the role for role sessions (see :class:`MintedSession`), and nobody for the
account root (and so for every key IAM never issued: moto treats those as the account itself). Its policies
are read from moto's IAM backend of the principal's account on every request, so a policy put after a
session was minted applies to that session's next call, as AWS documents ("Permissions assigned to temporary
security credentials are evaluated each time they are used to make an AWS request", IAM user guide,
"Disabling permissions for temporary security credentials"). The identity policies are the principal's
inline policies, its attached managed policies and, for a user, the inline and managed policies of its
groups. What is evaluated inside a policy is in :mod:`rotator.sandbox.aws.policy`.

Two STS operations are never refused by a policy: GetCallerIdentity ("No permissions are required to
perform this operation. If an administrator attaches a policy to your identity that explicitly denies access
to the sts:GetCallerIdentity action, you can still perform this operation", STS API reference) and
GetSessionToken ("You can include the GetSessionToken action in your policies, but it has no effect", IAM
user guide, "Permissions for GetSessionToken").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from moto.iam.models import Group, ManagedPolicy, Role, User, iam_backends

from rotator.sandbox.aws.identities import Principal
from rotator.sandbox.aws.keys import KeyLookup
from rotator.sandbox.aws.policy import PolicySource, RequestContext, explicit_deny
from rotator.sandbox.aws.protocol import ApiCall, AwsErrorResponse, access_denied_error

NEVER_DENIED = frozenset({("sts", "GetCallerIdentity"), ("sts", "GetSessionToken")})

# S3 operations whose IAM action is not "s3:<operation>" (Service Authorization Reference, "Actions,
# resources, and condition keys for Amazon S3": each API operation's "Actions" column; the multipart and
# batch-delete operations are authorized by the object action they perform). Operations not listed here
# are authorized as s3:<operation>, which the reference confirms for the common ones (GetObject,
# PutObject, DeleteObject, CreateBucket, DeleteBucket, GetBucketPolicy, PutBucketPolicy, ...).
_S3_ACTIONS = {
    "ListBuckets": "ListAllMyBuckets", "ListObjects": "ListBucket", "ListObjectsV2": "ListBucket",
    "HeadBucket": "ListBucket", "HeadObject": "GetObject", "ListObjectVersions": "ListBucketVersions",
    "CreateMultipartUpload": "PutObject", "UploadPart": "PutObject", "UploadPartCopy": "PutObject",
    "CompleteMultipartUpload": "PutObject", "CopyObject": "PutObject", "DeleteObjects": "DeleteObject",
    "ListMultipartUploads": "ListBucketMultipartUploads", "ListParts": "ListMultipartUploadParts",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "PutLifecycleConfiguration",
    # The deprecated operations share their successors' HTTP request, and their IAM actions.
    "GetBucketLifecycle": "GetLifecycleConfiguration", "PutBucketLifecycle": "PutLifecycleConfiguration",
    "GetBucketEncryption": "GetEncryptionConfiguration", "PutBucketEncryption": "PutEncryptionConfiguration",
    "DeleteBucketEncryption": "PutEncryptionConfiguration",
    "GetPublicAccessBlock": "GetBucketPublicAccessBlock", "PutPublicAccessBlock": "PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "PutBucketPublicAccessBlock",
    "GetBucketReplication": "GetReplicationConfiguration", "PutBucketReplication": "PutReplicationConfiguration",
    "DeleteBucketReplication": "PutReplicationConfiguration",
    "GetBucketNotificationConfiguration": "GetBucketNotification",
    "PutBucketNotificationConfiguration": "PutBucketNotification",
}


def iam_action(call: ApiCall) -> str:
    """The IAM action a call is authorized as: ``iam:ListUsers``, ``s3:ListBucket`` for ListObjectsV2."""
    if call.service == "s3":
        return f"s3:{_S3_ACTIONS.get(call.action, call.action)}"
    return f"{call.service}:{call.action}"


def governing_principal(key: KeyLookup) -> Principal | None:
    if key.session is not None:
        return key.session.principal
    identity = key.identity
    if identity.type == "IAMUser" and identity.user_name:
        return Principal("user", identity.account_id, identity.user_name, identity.arn)
    return None


def _default_document(policy: ManagedPolicy) -> str:
    return next((v.document for v in policy.versions if v.is_default), "")


def _managed(policies: dict[str, ManagedPolicy], owner: str) -> Iterator[PolicySource]:
    for arn, policy in list(policies.items()):
        yield PolicySource(_default_document(policy), f"managed policy {arn} attached to {owner}", arn)


def _inline(policies: dict[str, str], owner: str) -> Iterator[PolicySource]:
    for name, document in list(policies.items()):
        yield PolicySource(document, f"inline policy {name} of {owner}")


def identity_policies(principal: Principal) -> list[PolicySource]:
    """Every identity-based policy of ``principal`` as moto's IAM holds it right now."""
    if principal.account_id not in iam_backends:
        return []
    found: list[PolicySource] = []
    for backend in list(iam_backends[principal.account_id].values()):
        if principal.kind == "role":
            roles: list[Role] = [r for r in list(backend.roles.values()) if r.name == principal.name]
            for role in roles:
                found += _inline(role.policies, f"role {role.name}")
                found += _managed(role.managed_policies, f"role {role.name}")
            continue
        user: User | None = backend.users.get(principal.name)
        if user is None:
            continue
        found += _inline(user.policies, f"user {user.name}")
        found += _managed(user.managed_policies, f"user {user.name}")
        groups: list[Group] = [g for g in list(backend.groups.values()) if user in g.users]
        for group in groups:
            found += _inline(group.policies, f"group {group.name}")
            found += _managed(group.managed_policies, f"group {group.name}")
    return found


def _resource(call: ApiCall, principal: Principal) -> str:
    if call.params.get("RoleArn"):
        return str(call.params["RoleArn"])
    if call.service == "iam" and call.params.get("UserName"):
        return f"arn:aws:iam::{principal.account_id}:user/{call.params['UserName']}"
    return "*"


def explicit_denial(call: ApiCall, key: KeyLookup, now: dt.datetime) -> AwsErrorResponse | None:
    """AccessDenied, in the call's protocol, when a Deny statement of the governing principal applies."""
    if (call.service, call.action) in NEVER_DENIED:
        return None
    principal = governing_principal(key)
    if principal is None:
        return None
    dates = {"aws:currenttime": now, "aws:epochtime": now}
    absent = {"kms:viaservice"}
    if key.session is not None:
        dates["aws:tokenissuetime"] = key.session.issued_at
    else:
        absent.add("aws:tokenissuetime")  # long-lived keys carry no token issue time
    action = iam_action(call)
    context = RequestContext(action=action, dates=dates, absent=frozenset(absent))
    denial = explicit_deny(identity_policies(principal), context)
    if denial is None:
        return None
    # IAM user guide, "Troubleshoot access denied error messages": "User: <arn> is not authorized to perform:
    # <action> on resource: <arn> with an explicit deny in an identity-based policy[: <policy arn>]".
    which = f": {denial.source.managed_arn}" if denial.source.managed_arn else ""
    return access_denied_error(call, f"User: {key.identity.arn} is not authorized to perform: {action} on "
                                     f"resource: {_resource(call, principal)} with an explicit deny in an "
                                     f"identity-based policy{which}")
