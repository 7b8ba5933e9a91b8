"""Build the CloudTrail record of one API call, with every secret taken out.

``responseElements`` come from botocore's own response parser applied to moto's answer, so they have the
shape boto3 users know (converted to CloudTrail's lowerCamelCase). Like CloudTrail, read-only calls carry
no ``responseElements``, except the STS calls that mint keys, whose minted key id an audit must follow.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import UnknownServiceError
from botocore.model import ServiceModel
from botocore.parsers import ResponseParserError, create_parser
from botocore.session import Session

from rotator.sandbox.aws.keys import Identity
from rotator.sandbox.aws.protocol import ApiCall

EVENT_VERSION = "1.08"
HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"

# Field names whose values are credentials. nextToken is a pagination cursor, not a secret.
_SECRET_NAME = re.compile(r"secret|password|token|privatekey", re.IGNORECASE)
_NOT_SECRET = {"nextToken", "NextToken"}

_RESPONSE_ALWAYS_RECORDED = {("sts", "GetSessionToken"), ("sts", "GetFederationToken"), ("sts", "AssumeRole")}


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


class ServiceModels:
    """botocore service models, loaded once per service (loading one takes tens of milliseconds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: Session | None = None
        self._models: dict[str, ServiceModel | None] = {}

    def get(self, service: str) -> ServiceModel | None:
        with self._lock:
            if service not in self._models:
                if self._session is None:
                    self._session = Session()
                try:
                    self._models[service] = self._session.get_service_model(service)
                except UnknownServiceError:  # such calls simply get no responseElements
                    self._models[service] = None
            return self._models[service]


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
    return redact(lower_camel(parsed)) or None


def request_parameters(call: ApiCall) -> dict[str, Any] | None:
    return redact(lower_camel(call.params)) or None


@dataclass(frozen=True)
class CallContext:
    """Facts about the HTTP exchange that go into the record besides the call itself."""

    source_ip: str
    user_agent: str
    request_id: str


def build_record(call: ApiCall, identity: Identity, access_key_id: str | None, context: CallContext, *,
                 error: tuple[str, str] | None, response: dict[str, Any] | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": identity.user_identity(access_key_id),
        "eventTime": iso_now(),
        "eventSource": f"{call.service}.amazonaws.com",
        "eventName": call.action,
        "awsRegion": call.region,
        "sourceIPAddress": context.source_ip,
        "userAgent": context.user_agent,
        "requestParameters": request_parameters(call),
        "responseElements": response,
        "requestID": context.request_id,
        "eventID": str(uuid.uuid4()),
        "readOnly": call.read_only,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": identity.account_id,
        "eventCategory": "Management",
    }
    if error is not None:
        record["errorCode"], record["errorMessage"] = error
    return record


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
