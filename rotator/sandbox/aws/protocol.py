"""What an AWS request asks for (service, action, parameters) and how that service spells an error.

The wire protocol comes from botocore's service model (``metadata.protocol``), and botocore parses each
one's errors differently:

- ``query`` (iam, sts, sns): form body ``Action=...``; errors are ``<ErrorResponse><Error><Code>``.
- ``ec2``: the same form body; errors are ``<Response><Errors><Error><Code>``.
- ``json`` (cloudtrail, kms, sqs): ``X-Amz-Target: Prefix.Action`` and a JSON body; errors are ``{"__type": ...}``.
- ``rest-xml`` (s3) and ``rest-json`` (lambda): the operation is the method + URI (see
  :mod:`rotator.sandbox.aws.operations`); errors are ``<Error><Code>`` and JSON with ``x-amzn-ErrorType``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from rotator.sandbox.aws.operations import ServiceModels

# Actions that may be called unsigned; everything else without a signature is attributed to "unknown".
_UNSIGNED_ACTIONS = {"AssumeRoleWithWebIdentity": "sts", "AssumeRoleWithSAML": "sts"}

_READ_ONLY_PREFIXES = ("Get", "List", "Describe", "Lookup", "Head", "BatchGet", "Search", "Select", "Check")


@dataclass(frozen=True)
class ApiCall:
    """One AWS API request as the front understands it."""

    service: str
    action: str
    region: str
    protocol: str
    params: dict[str, Any] = field(default_factory=dict)
    # JSON services that kept their query-protocol error codes (botocore ``metadata.awsQueryCompatible``, SQS).
    query_compatible: bool = False

    @property
    def key(self) -> str:
        """The request-log key: ``"iam:CreateAccessKey"``."""
        return f"{self.service}:{self.action}"

    @property
    def fault_key(self) -> str:
        """The fault key: ``"cloudtrail:LookupEvents@eu-west-1"``; a fault's ``match`` is searched in it."""
        return f"{self.service}:{self.action}@{self.region}"

    @property
    def read_only(self) -> bool:
        return self.action.startswith(_READ_ONLY_PREFIXES)


@dataclass(frozen=True)
class RawRequest:
    """The parts of an HTTP request that name the call."""

    method: str
    path: str
    query_string: str
    content_type: str
    target: str | None
    headers: Mapping[str, str]
    body: bytes


def describe_call(models: ServiceModels, request: RawRequest, *, service: str | None,
                  region: str | None) -> ApiCall:
    """Work out service, action and parameters from the raw request."""
    query: dict[str, str] = dict(parse_qsl(request.query_string, keep_blank_values=True))
    target = request.target
    form: dict[str, str] = dict(query)
    if request.content_type.startswith("application/x-www-form-urlencoded") and request.body:
        form.update(parse_qsl(request.body.decode("utf-8", errors="replace"), keep_blank_values=True))
    action = form.get("Action") or (target.rsplit(".", 1)[-1] if target else "")
    if service is None:
        service = _UNSIGNED_ACTIONS.get(action, "unknown")
    protocol = models.protocol(service) or ("json" if target else "query")
    model = models.get(service)
    query_compatible = model is not None and "awsQueryCompatible" in model.metadata
    region = region or "us-east-1"

    if protocol in ("rest-xml", "rest-json"):
        operation = models.rest_operation(service, request.method, request.path, query, request.headers)
        if operation is None:
            return ApiCall(service, request.method.upper(), region, protocol, dict(query), query_compatible)
        labels: dict[str, Any] = dict(operation.labels)
        if service == "s3":
            # CloudTrail names S3's URI labels bucketName and key (IAM user guide, "Example AWS service AWS
            # STS API event in CloudTrail log file": "requestParameters": {"bucketName": ...}).
            labels = {("bucketName" if name == "Bucket" else name): value for name, value in labels.items()}
        return ApiCall(service, operation.name, region, protocol, {**query, **labels}, query_compatible)

    if protocol == "json":
        try:
            loaded = json.loads(request.body or b"{}")
        except ValueError:
            loaded = {}
        params: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
    else:
        params = {k: v for k, v in form.items() if k not in {"Action", "Version"}}
    return ApiCall(service=service, action=action or request.method.upper(), region=region, protocol=protocol,
                   params=params, query_compatible=query_compatible)


# --- errors ---------------------------------------------------------------------------------------

INVALID_TOKEN_MESSAGE = "The security token included in the request is invalid."
SIGNATURE_MESSAGE = ("The request signature we calculated does not match the signature you provided. "
                     "Check your AWS Secret Access Key and signing method. Consult the service documentation "
                     "for details.")
EC2_AUTH_MESSAGE = "AWS was not able to validate the provided access credentials"
# Amazon S3 API reference, "Error responses": InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied (all 403).
S3_INVALID_KEY_MESSAGE = "The AWS Access Key Id you provided does not exist in our records."
S3_ACCESS_DENIED_MESSAGE = "Access Denied"
EC2_UNAUTHORIZED_MESSAGE = "You are not authorized to perform this operation."

_JSON_LIKE = ("json", "rest-json")


@dataclass(frozen=True)
class AwsErrorResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    code: str
    message: str


def render_error(protocol: str, status: int, code: str, message: str,
                 extra_headers: list[tuple[str, str]] | None = None) -> AwsErrorResponse:
    """An error in the shape botocore's parser for ``protocol`` expects, so boto3 raises ClientError(code)."""
    request_id = str(uuid.uuid4())
    headers = [("x-amzn-RequestId", request_id), *(extra_headers or [])]
    if protocol in _JSON_LIKE:
        body = json.dumps({"__type": code, "message": message}).encode()
        headers += [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]
    elif protocol == "ec2":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{escape(code)}</Code>"
                f"<Message>{escape(message)}</Message></Error></Errors>"
                f"<RequestID>{request_id}</RequestID></Response>").encode()
        headers.append(("Content-Type", "text/xml"))
    elif protocol == "rest-xml":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{escape(code)}</Code>"
                f"<Message>{escape(message)}</Message><RequestId>{request_id}</RequestId>"
                f"<HostId>{uuid.uuid4().hex}</HostId></Error>").encode()
        headers.append(("Content-Type", "application/xml"))
    else:
        kind = "Receiver" if status >= 500 else "Sender"
        body = (f"<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>{kind}</Type>"
                f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        headers.append(("Content-Type", "text/xml"))
    return AwsErrorResponse(status=status, headers=headers, body=body, code=code, message=message)


def invalid_key_error(protocol: str) -> AwsErrorResponse:
    """How AWS answers a key id it does not accept (unknown, Inactive, deleted, or not yet propagated)."""
    if protocol == "json":
        return render_error(protocol, 400, "UnrecognizedClientException", INVALID_TOKEN_MESSAGE)
    if protocol == "rest-json":
        return render_error(protocol, 403, "UnrecognizedClientException", INVALID_TOKEN_MESSAGE)
    if protocol == "ec2":
        # EC2 never says InvalidClientTokenId: it answers 401 AuthFailure for any credential it rejects.
        return render_error(protocol, 401, "AuthFailure", EC2_AUTH_MESSAGE)
    if protocol == "rest-xml":
        return render_error(protocol, 403, "InvalidAccessKeyId", S3_INVALID_KEY_MESSAGE)
    return render_error(protocol, 403, "InvalidClientTokenId", INVALID_TOKEN_MESSAGE)


def bad_signature_error(protocol: str) -> AwsErrorResponse:
    if protocol in _JSON_LIKE:
        return render_error(protocol, 400 if protocol == "json" else 403, "InvalidSignatureException",
                            SIGNATURE_MESSAGE)
    if protocol == "ec2":
        return render_error(protocol, 401, "AuthFailure", EC2_AUTH_MESSAGE)
    return render_error(protocol, 403, "SignatureDoesNotMatch", SIGNATURE_MESSAGE)


def access_denied_error(call: ApiCall, message: str) -> AwsErrorResponse:
    """An authorization refusal in the shape of the call's protocol.

    Query services (IAM, STS) answer 403 ``AccessDenied``; EC2 403 ``UnauthorizedOperation``; S3 403
    ``AccessDenied`` "Access Denied"; JSON services 400 ``AccessDeniedException`` (the JSON services' "Common
    Errors" pages), REST-JSON services 403. A JSON service that kept its query error codes (SQS,
    ``awsQueryCompatible``) also sends them in ``x-amzn-query-error``, from which botocore takes the code.
    """
    if call.protocol == "ec2":
        return render_error("ec2", 403, "UnauthorizedOperation", f"{EC2_UNAUTHORIZED_MESSAGE} {message}")
    if call.protocol == "rest-xml":
        return render_error("rest-xml", 403, "AccessDenied", S3_ACCESS_DENIED_MESSAGE)
    if call.protocol == "json" and call.query_compatible:
        return render_error("json", 403, "AccessDeniedException", message,
                            [("x-amzn-query-error", "AccessDenied;Sender")])
    if call.protocol == "json":
        return render_error("json", 400, "AccessDeniedException", message)
    if call.protocol == "rest-json":
        return render_error("rest-json", 403, "AccessDeniedException", message)
    return render_error(call.protocol, 403, "AccessDenied", message)


def default_fault_code(protocol: str, status: int) -> str:
    """The code AWS would send with an injected status when the fault names none."""
    json_like = protocol in _JSON_LIKE
    if status in (400, 429) and protocol == "ec2":
        return "RequestLimitExceeded"
    if status in (400, 429):
        return "ThrottlingException" if json_like else "Throttling"
    if status == 403:
        return "AccessDeniedException" if json_like else "AccessDenied"
    if status == 503:
        return "ServiceUnavailableException" if json_like else "ServiceUnavailable"
    if status >= 500:
        return "InternalFailure"
    return "ValidationException" if json_like else "ValidationError"


_XML_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_XML_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")


def error_of(protocol: str, status: int, body: bytes,
             headers: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(code, message) of an error response from moto, or None for a success."""
    if status < 300:
        return None
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    if protocol in _JSON_LIKE:
        try:
            loaded = json.loads(body or b"{}")
        except ValueError:
            loaded = {}
        named = lowered.get("x-amzn-query-error", "").split(";", 1)[0] or lowered.get("x-amzn-errortype", "")
        if isinstance(loaded, dict):
            code = named.split(":", 1)[0] or str(loaded.get("__type", "")).rsplit("#", 1)[-1]
            message = str(loaded.get("message") or loaded.get("Message") or "")
            return code or f"HTTP{status}", message
        return named or f"HTTP{status}", ""
    code_match = _XML_CODE.search(body)
    message_match = _XML_MESSAGE.search(body)
    code = code_match.group(1).decode(errors="replace") if code_match else f"HTTP{status}"
    message = message_match.group(1).decode(errors="replace") if message_match else ""
    return code, message
