"""Build the CloudTrail records of one API call, with every secret taken out.

``responseElements`` come from botocore's own response parser applied to moto's answer, so they have the
shape boto3 users know (converted to CloudTrail's lowerCamelCase). Like CloudTrail, read-only calls carry
no ``responseElements``, except the STS calls that mint keys, whose minted key id an audit must follow.

Field by field this follows the CloudTrail user guide, "CloudTrail record contents" (``sharedEventID``,
``recipientAccountId``, ``managementEvent``, ``eventCategory``, ``resources``) and the IAM user guide,
"Logging IAM and AWS STS API calls with AWS CloudTrail" (the AssumeRole examples).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

from botocore.parsers import ResponseParserError, create_parser

from rotator.sandbox.aws.identities import Identity, MintedSession
from rotator.sandbox.aws.operations import ServiceModels
from rotator.sandbox.aws.protocol import ApiCall

EVENT_VERSION = "1.08"
HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"

# Field names whose values are credentials. nextToken is a pagination cursor, not a secret. SQS message bodies
# are hidden too (Amazon SQS developer guide, "Logging Amazon SQS API calls using AWS CloudTrail": the
# SendMessage data event shows "messageBody": "HIDDEN_DUE_TO_SECURITY_REASONS").
_SECRET_NAME = re.compile(r"secret|password|token|privatekey|^messagebody$", re.IGNORECASE)
_NOT_SECRET = {"nextToken", "NextToken"}

_RESPONSE_ALWAYS_RECORDED = {("sts", "GetSessionToken"), ("sts", "GetFederationToken"), ("sts", "AssumeRole"),
                             ("sts", "AssumeRoleWithWebIdentity")}

# Data events: recorded by a trail only when asked for, never in Event history / LookupEvents.
# - S3: the object-level actions, and ListObjects(V2) / ListObjectVersions / HeadBucket, which are logged as
#   object-level actions (Amazon S3 user guide, "Amazon S3 CloudTrail events"; CloudTrail user guide, "Logging
#   data events": "Amazon S3 object-level API activity (for example, GetObject, DeleteObject, and PutObject)").
# - Lambda Invoke and DynamoDB item-level calls (CloudTrail user guide, "Logging data events").
# - SQS message operations (Amazon SQS developer guide, "Logging Amazon SQS API calls using AWS CloudTrail":
#   "operations performed on an Amazon SQS queue, such as SendMessage, are categorized as data events").
# - SNS Publish and PublishBatch on topics (CloudTrail user guide, "Logging data events", resource type
#   AWS::SNS::Topic).
DATA_EVENTS: dict[str, frozenset[str]] = {
    "s3": frozenset({
        "AbortMultipartUpload", "CompleteMultipartUpload", "DeleteObjects", "DeleteObject", "GetObject",
        "GetObjectAcl", "GetObjectAttributes", "GetObjectTagging", "HeadObject", "CreateMultipartUpload",
        "ListParts", "PostObject", "RestoreObject", "PutObject", "PutObjectAcl", "PutObjectTagging", "CopyObject",
        "UploadPart", "UploadPartCopy", "ListObjects", "ListObjectsV2", "ListObjectVersions", "HeadBucket"}),
    "lambda": frozenset({"Invoke"}),
    "dynamodb": frozenset({"GetItem", "PutItem", "DeleteItem", "UpdateItem", "BatchGetItem", "BatchWriteItem",
                           "Query", "Scan", "TransactGetItems", "TransactWriteItems"}),
    "sqs": frozenset({"SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage", "DeleteMessageBatch",
                      "ChangeMessageVisibility", "ChangeMessageVisibilityBatch"}),
    "sns": frozenset({"Publish", "PublishBatch"}),
}

# S3 operations CloudTrail names differently from botocore (Amazon S3 user guide, "Amazon S3 CloudTrail
# events", the bucket-level event names).
_S3_EVENT_NAMES = {
    "GetBucketLifecycleConfiguration": "GetBucketLifecycle", "PutBucketLifecycleConfiguration": "PutBucketLifecycle",
    "GetBucketNotificationConfiguration": "GetBucketNotification",
    "PutBucketNotificationConfiguration": "PutBucketNotification",
    "GetPublicAccessBlock": "GetBucketPublicAccessBlock", "PutPublicAccessBlock": "PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "DeleteBucketPublicAccessBlock",
}


def is_data_event(call: ApiCall) -> bool:
    return call.action in DATA_EVENTS.get(call.service, frozenset())


def event_name(call: ApiCall) -> str:
    return _S3_EVENT_NAMES.get(call.action, call.action) if call.service == "s3" else call.action


def iso_now() -> str:
    return iso_time(dt.datetime.now(dt.UTC))


def iso_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-named field's value replaced by CloudTrail's placeholder."""
    if isinstance(value, dict):
        return {k: (HIDDEN if _SECRET_NAME.search(k) and k not in _NOT_SECRET else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def lower_camel(value: Any) -> Any:
    """CloudTrail spells request and response members lowerCamelCase: ``UserName`` -> ``userName``."""
    if isinstance(value, dict):
        return {(k[:1].lower() + k[1:] if isinstance(k, str) else k): lower_camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_camel(v) for v in value]
    if isinstance(value, dt.datetime):
        return iso_time(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    if isinstance(value, bytes):
        return HIDDEN
    return value


def response_elements(models: ServiceModels, call: ApiCall, status: int, headers: dict[str, str],
                      body: bytes) -> dict[str, Any] | None:
    """What CloudTrail would store as ``responseElements`` for a successful call, secrets hidden."""
    if status >= 300 or (call.read_only and (call.service, call.action) not in _RESPONSE_ALWAYS_RECORDED):
        return None
    model = models.get(call.service)
    if model is None or call.action not in model.operation_names:
        return None
    operation = model.operation_model(call.action)
    if operation.output_shape is None:
        return None
    parser = create_parser(model.metadata["protocol"])
    try:
        parsed = parser.parse({"status_code": status, "headers": headers, "body": body}, operation.output_shape)
    except (ResponseParserError, ValueError):
        return None  # moto answered something botocore cannot read; the client will say so, not the trail
    parsed.pop("ResponseMetadata", None)
    credentials = parsed.get("Credentials")
    if isinstance(credentials, dict):
        # The minted secret is never in the record; the session token is ("<encoded session token blob>" in
        # the IAM user guide's examples) but is hidden here like every other credential.
        credentials.pop("SecretAccessKey", None)
    return redact(lower_camel(parsed)) or None


def request_parameters(call: ApiCall) -> dict[str, Any] | None:
    return redact(lower_camel(call.params)) or None


@dataclass(frozen=True)
class CallContext:
    """Facts about the HTTP exchange that go into the record besides the call itself."""

    source_ip: str
    user_agent: str
    request_id: str


def _resources(call: ApiCall, identity: Identity) -> list[dict[str, str]] | None:
    if call.service == "sts" and call.action.startswith("AssumeRole") and call.params.get("RoleArn"):
        role_arn = str(call.params["RoleArn"])
        account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else identity.account_id
        return [{"ARN": role_arn, "accountId": account, "type": "AWS::IAM::Role"}]
    if call.service == "s3" and is_data_event(call) and call.params.get("bucketName"):
        # S3 data events name the object and its bucket (CloudTrail user guide, "Logging data events",
        # resources.type AWS::S3::Object).
        bucket = str(call.params["bucketName"])
        found = [{"type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"}]
        if call.params.get("Key"):
            found.insert(0, {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{call.params['Key']}"})
        return found
    return None


def build_records(call: ApiCall, identity: Identity, access_key_id: str | None, context: CallContext, *,
                  error: tuple[str, str] | None, response: dict[str, Any] | None,
                  minted: MintedSession | None = None) -> list[dict[str, Any]]:
    """The call's CloudTrail record, plus the copy AWS delivers to the role's account when the call assumed
    a role in another account ("That operation is logged in the calling account and the account where the
    AWS STS operation is performed", IAM user guide, "Logging sign-in events for temporary credentials")."""
    data = is_data_event(call)
    record: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": identity.user_identity(access_key_id),
        "eventTime": iso_now(),
        "eventSource": f"{call.service}.amazonaws.com",
        "eventName": event_name(call),
        "awsRegion": call.region,
        "sourceIPAddress": context.source_ip,
        "userAgent": context.user_agent,
        "requestParameters": request_parameters(call),
        "responseElements": response,
        "requestID": context.request_id,
        "eventID": str(uuid.uuid4()),
        "readOnly": call.read_only,
        "eventType": "AwsApiCall",
        "managementEvent": not data,
        "recipientAccountId": identity.account_id,
        "eventCategory": "Data" if data else "Management",
    }
    resources = _resources(call, identity)
    if resources:
        record["resources"] = resources
    if error is not None:
        record["errorCode"], record["errorMessage"] = error
    if minted is None or minted.account_id == identity.account_id or error is not None:
        return [record]
    # The role account's copy: the caller appears as "AWSAccount" with its principal id and account, without
    # its access key; both copies share a sharedEventID ("Example cross-account AWS STS API events").
    shared = str(uuid.uuid4())
    record["sharedEventID"] = shared
    copy = {k: v for k, v in record.items() if k != "resources"}
    copy.update({"userIdentity": {"type": "AWSAccount", "principalId": identity.principal_id,
                                  "accountId": identity.account_id},
                 "eventID": str(uuid.uuid4()), "recipientAccountId": minted.account_id})
    return [record, copy]


def resources_of(record: dict[str, Any]) -> list[dict[str, str]]:
    """LookupEvents' ``Resources`` for a record: from its ``resources`` list, else from its parameters."""
    listed = record.get("resources")
    if isinstance(listed, list) and listed:
        found = []
        for item in listed:
            if isinstance(item, dict):
                name = item.get("ResourceName") or item.get("resourceName") or item.get("ARN")
                kind = item.get("ResourceType") or item.get("resourceType") or item.get("type")
                found.append({"ResourceType": str(kind or ""), "ResourceName": str(name or "")})
        return found
    found = []
    params = record.get("requestParameters") or {}
    response = record.get("responseElements") or {}
    if isinstance(params, dict):
        if params.get("userName"):
            found.append({"ResourceType": "AWS::IAM::User", "ResourceName": str(params["userName"])})
        if params.get("accessKeyId"):
            found.append({"ResourceType": "AWS::IAM::AccessKey", "ResourceName": str(params["accessKeyId"])})
        if params.get("roleArn"):
            found.append({"ResourceType": "AWS::IAM::Role", "ResourceName": str(params["roleArn"])})
    if isinstance(response, dict):
        created = response.get("accessKey")
        if isinstance(created, dict) and created.get("accessKeyId"):
            found.append({"ResourceType": "AWS::IAM::AccessKey", "ResourceName": str(created["accessKeyId"])})
    return found
