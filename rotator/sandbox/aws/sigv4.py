"""Read and check the SigV4 signature of an incoming request.

The check reuses botocore's own canonical-request, string-to-sign and signature helpers, fed with the
request's own ``X-Amz-Date`` and exactly the headers the client says it signed, so it agrees with every
client botocore agrees with instead of with a second, hand-written SigV4.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

_AUTH_HEADER = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-fA-F]+)\s*$"
)


@dataclass(frozen=True)
class SignedBy:
    """What the ``Authorization`` header claims: who signed, for which region and service, and how."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(header: str | None) -> SignedBy | None:
    """The parts of a SigV4 ``Authorization`` header, or None when the request is not SigV4-signed."""
    if not header:
        return None
    match = _AUTH_HEADER.match(header.strip())
    if match is None:
        return None
    scope = match.group("credential").split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        return None
    access_key_id, date, region, service, _ = scope
    return SignedBy(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=service.lower(),
        signed_headers=tuple(h.strip().lower() for h in match.group("signed").split(";") if h.strip()),
        signature=match.group("signature").lower(),
    )


class _ReplaySigner(SigV4Auth):
    """SigV4Auth that signs exactly the headers named in the request's ``SignedHeaders``.

    botocore's own selection drops a few headers (User-Agent, Expect, ...) that another client may have
    signed; replaying the client's list keeps the canonical request identical to the client's.
    """

    def __init__(self, credentials: Credentials, service: str, region: str, signed: tuple[str, ...]) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        selected = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                selected[name] = value
        return selected


class _S3ReplaySigner(_ReplaySigner, S3SigV4Auth):
    """S3 signs its path as sent, without SigV4's second round of percent-encoding."""


def signature_matches(
    signed_by: SignedBy,
    secret_access_key: str,
    *,
    method: str,
    url: str,
    headers: dict[str, str] | Any,
    body: bytes,
) -> bool:
    """True when ``signed_by.signature`` is the signature of this request under ``secret_access_key``.

    ``url`` must carry the raw (still percent-encoded) query string exactly as it arrived.
    """
    amz_date = _header(headers, "x-amz-date")
    if amz_date is None:
        return False
    request = AWSRequest(method=method, url=url, headers=dict(headers.items()), data=body)
    request.context["timestamp"] = amz_date
    signer_class = _S3ReplaySigner if signed_by.service == "s3" else _ReplaySigner
    signer = signer_class(Credentials(signed_by.access_key_id, secret_access_key), signed_by.service,
                           signed_by.region, signed_by.signed_headers)
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    expected: str = signer.signature(string_to_sign, request)
    return hmac.compare_digest(expected, signed_by.signature)


def _header(headers: Any, name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None
