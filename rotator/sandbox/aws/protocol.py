"""What an AWS request asks for (service, action, parameters) and how that service spells an error.

Three wire protocols matter here, and botocore parses each one's errors differently:

- ``query`` (iam, sts): form body ``Action=...``; errors are ``<ErrorResponse><Error><Code>``.
- ``ec2``: the same form body; errors are ``<Response><Errors><Error><Code>``.
- ``json`` (cloudtrail, kms): ``X-Amz-Target: Prefix.Action`` and a JSON body; errors are ``{"__type": ...}``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

# Signing name -> wire protocol, for the services this sandbox is used with. Anything else is guessed
# from the request itself (a target header means JSON, an Action parameter means query).
KNOWN_PROTOCOLS: dict[str, str] = {
    "iam": "query",
    "sts": "query",
    "ec2": "ec2",
    "cloudtrail": "json",
    "kms": "json",
    "logs": "json",
    "secretsmanager": "json",
    "ssm": "json",
    "sns": "query",
    "sqs": "json",
}

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


def describe_call(
    *, service: str | None, region: str | None, method: str, query_string: str, content_type: str,
    target: str | None, body: bytes,
) -> ApiCall:
    """Work out service, action and parameters from the raw request."""
    form: dict[str, str] = dict(parse_qsl(query_string, keep_blank_values=True))
    if content_type.startswith("application/x-www-form-urlencoded") and body:
        form.update(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    json_body: dict[str, Any] = {}
    if target:
        try:
            loaded = json.loads(body or b"{}")
        except ValueError:
            loaded = {}
        json_body = loaded if isinstance(loaded, dict) else {}

    action = form.get("Action") or (target.rsplit(".", 1)[-1] if target else "") or method.upper()
    if service is None:
        service = _UNSIGNED_ACTIONS.get(action, "unknown")
    protocol = KNOWN_PROTOCOLS.get(service) or ("json" if target else "query")
    form_params = {k: v for k, v in form.items() if k not in {"Action", "Version"}}
    params = json_body if protocol == "json" else form_params
    return ApiCall(service=service, action=action, region=region or "us-east-1", protocol=protocol, params=params)


# --- errors ---------------------------------------------------------------------------------------

INVALID_TOKEN_MESSAGE = "The security token included in the request is invalid."
SIGNATURE_MESSAGE = ("The request signature we calculated does not match the signature you provided. "
                     "Check your AWS Secret Access Key and signing method. Consult the service documentation "
                     "for details.")
EC2_AUTH_MESSAGE = "AWS was not able to validate the provided access credentials"


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
    if protocol == "json":
        body = json.dumps({"__type": code, "message": message}).encode()
        headers += [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]
    elif protocol == "ec2":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{escape(code)}</Code>"
                f"<Message>{escape(message)}</Message></Error></Errors>"
                f"<RequestID>{request_id}</RequestID></Response>").encode()
        headers.append(("Content-Type", "text/xml"))
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
    if protocol == "ec2":
        # EC2 never says InvalidClientTokenId: it answers 401 AuthFailure for any credential it rejects.
        return render_error(protocol, 401, "AuthFailure", EC2_AUTH_MESSAGE)
    return render_error(protocol, 403, "InvalidClientTokenId", INVALID_TOKEN_MESSAGE)


def bad_signature_error(protocol: str) -> AwsErrorResponse:
    if protocol == "json":
        return render_error(protocol, 400, "InvalidSignatureException", SIGNATURE_MESSAGE)
    if protocol == "ec2":
        return render_error(protocol, 401, "AuthFailure", EC2_AUTH_MESSAGE)
    return render_error(protocol, 403, "SignatureDoesNotMatch", SIGNATURE_MESSAGE)


def default_fault_code(protocol: str, status: int) -> str:
    """The code AWS would send with an injected status when the fault names none."""
    json_like = protocol == "json"
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


def error_of(protocol: str, status: int, body: bytes) -> tuple[str, str] | None:
    """(code, message) of an error response from moto, or None for a success."""
    if status < 300:
        return None
    if protocol == "json":
        try:
            loaded = json.loads(body or b"{}")
        except ValueError:
            loaded = {}
        if isinstance(loaded, dict):
            code = str(loaded.get("__type", "")).rsplit("#", 1)[-1]
            message = str(loaded.get("message") or loaded.get("Message") or "")
            return code or f"HTTP{status}", message
        return f"HTTP{status}", ""
    code_match = _XML_CODE.search(body)
    message_match = _XML_MESSAGE.search(body)
    code = code_match.group(1).decode(errors="replace") if code_match else f"HTTP{status}"
    message = message_match.group(1).decode(errors="replace") if message_match else ""
    return code, message
