"""WSGI middleware in front of moto: what AWS does that moto does not.

For each request, in order: injected faults (latency, then an error; moto is never called for a faulted
request), authentication as AWS does it (Inactive, deleted and not-yet-propagated keys refused; the SigV4
signature and the session token checked for keys IAM knows), authorization for what the sandbox models (the
limits of session credentials, :mod:`rotator.sandbox.aws.sts_sessions`; explicit Deny statements of the
governing principal's identity policies, :mod:`rotator.sandbox.aws.authorize`), ``cloudtrail:LookupEvents``
served from our own trail, the STS answers moto gets wrong, everything else forwarded to moto. Every call,
refused or not, becomes CloudTrail records (two for a cross-account AssumeRole) and a request-log entry.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from moto.iam.models import mark_account_as_visited
from werkzeug.http import HTTP_STATUS_CODES

from rotator.sandbox.aws import managed_policies
from rotator.sandbox.aws.authorize import explicit_denial
from rotator.sandbox.aws.cloudtrail import CloudTrailStore
from rotator.sandbox.aws.events import CallContext, build_records, response_elements
from rotator.sandbox.aws.identities import MintedSession, root_identity
from rotator.sandbox.aws.keys import KeyLookup, KeyRegistry, default_account
from rotator.sandbox.aws.lookup import RateLimiter, lookup_events
from rotator.sandbox.aws.operations import ServiceModels
from rotator.sandbox.aws.protocol import (
    ApiCall,
    AwsErrorResponse,
    RawRequest,
    bad_signature_error,
    default_fault_code,
    describe_call,
    error_of,
    invalid_key_error,
    render_error,
)
from rotator.sandbox.aws.sigv4 import SignedBy, parse_authorization, signature_matches
from rotator.sandbox.aws.sts_sessions import mint, own_answer, session_restriction, web_identity_caller
from rotator.sandbox.server import FaultPlan, LoggedRequest, RequestLog, WsgiApp, sleep_for_latency

StartResponse = Callable[..., Any]
_ACCESS_KEY_ID = re.compile(rb"<AccessKeyId>([^<]+)</AccessKeyId>")


@dataclass(frozen=True)
class _Incoming:
    method: str
    url: str
    path: str
    raw_path: str  # still percent-encoded, as REST operations are matched on it
    headers: dict[str, str]
    body: bytes
    signed: SignedBy | None


@dataclass
class _Outcome:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    error: tuple[str, str] | None = None
    response: dict[str, Any] | None = None
    minted: MintedSession | None = None


class AwsFront:
    def __init__(self, backend: WsgiApp, *, faults: FaultPlan, log: RequestLog, trail: CloudTrailStore,
                 keys: KeyRegistry, limiter: RateLimiter, control: Callable[[dict[str, Any]], Any | None]) -> None:
        self._backend = backend
        self._faults = faults
        self._log = log
        self._trail = trail
        self._keys = keys
        self._limiter = limiter
        self._control = control
        self._models = ServiceModels()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        control = self._control(environ)
        if control is not None:
            result: Iterable[bytes] = control(environ, start_response)
            return result
        if str(environ.get("PATH_INFO", "")).startswith("/moto-api"):
            return self._backend(environ, start_response)

        incoming = _read(environ)
        signed = incoming.signed
        call = describe_call(self._models, RawRequest(
            method=incoming.method, path=incoming.raw_path, query_string=str(environ.get("QUERY_STRING", "")),
            content_type=str(environ.get("CONTENT_TYPE", "")), target=environ.get("HTTP_X_AMZ_TARGET"),
            headers=incoming.headers, body=incoming.body),
            service=signed.service if signed else None, region=signed.region if signed else None)
        account_hint = incoming.headers.get("x-moto-account-id")
        key = (self._keys.lookup(signed.access_key_id, account_hint) if signed
               else KeyLookup("unknown", root_identity(account_hint or default_account())))
        context = CallContext(source_ip=str(environ.get("REMOTE_ADDR", "127.0.0.1")),
                              user_agent=incoming.headers.get("user-agent", ""), request_id=str(uuid.uuid4()))

        outcome = self._answer(environ, incoming, call, key)
        access_key_id = signed.access_key_id if signed else None
        identity = key.identity
        if signed is None and call.service == "sts" and call.action == "AssumeRoleWithWebIdentity":
            identity = web_identity_caller(call)
        for record in build_records(call, identity, access_key_id, context, error=outcome.error,
                                    response=outcome.response, minted=outcome.minted):
            self._trail.record(record)
        self._log.record(LoggedRequest(
            at=time.time(), method=incoming.method, path=incoming.path, key=call.key, status=outcome.status,
            detail={"region": call.region, "access_key_id": access_key_id,
                    "error_code": outcome.error[0] if outcome.error else None}))
        reason = HTTP_STATUS_CODES.get(outcome.status, "Unknown")
        headers = [(k, v) for k, v in outcome.headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(outcome.body))))
        start_response(f"{outcome.status} {reason}", headers)
        return [outcome.body]

    def _answer(self, environ: dict[str, Any], incoming: _Incoming, call: ApiCall, key: KeyLookup) -> _Outcome:
        # Latency is slept here, outside every lock, so concurrent callers overlap their waits.
        sleep_for_latency(self._faults, call.fault_key)
        fault = self._faults.take(call.fault_key)
        if fault is not None and fault.status is not None:
            extra = [("Retry-After", str(fault.retry_after))] if fault.retry_after is not None else []
            code = fault.error_code or default_fault_code(call.protocol, fault.status)
            return _from_error(render_error(call.protocol, fault.status, code,
                                            fault.message or "Injected by the sandbox", extra))

        refusal = (self._authenticate(incoming, call, key) or session_restriction(call, key)
                   or explicit_denial(call, key, dt.datetime.now(dt.UTC)))
        if refusal is not None:
            return _from_error(refusal)

        if call.service == "cloudtrail" and call.action == "LookupEvents":
            return self._lookup(call, key, incoming)

        answered = own_answer(call, key, self._keys)
        if answered is not None:
            self._mark_used(call, key, incoming)
            return _Outcome(200, [("Content-Type", "text/xml"), ("x-amzn-RequestId", str(uuid.uuid4()))], answered)

        if call.service == "iam":
            self._before_iam(call, key)

        status, headers, body = self._forward(environ, incoming.body)
        error = error_of(call.protocol, status, body, dict(headers))
        minted = None
        if error is None:
            body, minted = self._after_success(call, key, incoming, body)
        response = response_elements(self._models, call, status, dict(headers), body) if error is None else None
        return _Outcome(status, headers, body, error, response, minted)

    def _before_iam(self, call: ApiCall, key: KeyLookup) -> None:
        if call.action in ("DeleteAccessKey", "DeleteUser"):
            self._keys.note_before_delete(key.identity.account_id, call.params.get("AccessKeyId"),
                                          call.params.get("UserName") if call.action == "DeleteUser" else None)
        policy_arn = str(call.params.get("PolicyArn", ""))
        if policy_arn.startswith(managed_policies.AWS_MANAGED_PREFIX):
            managed_policies.ensure(key.identity.account_id, policy_arn)

    def _mark_used(self, call: ApiCall, key: KeyLookup, incoming: _Incoming) -> None:
        if incoming.signed is not None:
            mark_account_as_visited(account_id=key.identity.account_id, access_key=incoming.signed.access_key_id,
                                    service=call.service, region=call.region)

    def _authenticate(self, incoming: _Incoming, call: ApiCall, key: KeyLookup) -> AwsErrorResponse | None:
        signed = incoming.signed
        if signed is None or key.state == "unknown":
            return None  # unsigned calls and keys IAM never issued are left to moto, which accepts them
        if key.state != "active":
            return invalid_key_error(call.protocol)
        if key.session is not None and incoming.headers.get("x-amz-security-token") != key.session.session_token:
            return invalid_key_error(call.protocol)
        if key.secret is not None and not signature_matches(
                signed, key.secret, method=incoming.method, url=incoming.url, headers=incoming.headers,
                body=incoming.body):
            return bad_signature_error(call.protocol)
        return None

    def _lookup(self, call: ApiCall, key: KeyLookup, incoming: _Incoming) -> _Outcome:
        account = key.identity.account_id
        answer = lookup_events(self._trail, self._limiter, account, call.region, call.params)
        if answer.status < 300:
            self._mark_used(call, key, incoming)
        body = json.dumps(answer.body, default=str).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", str(uuid.uuid4()))]
        if answer.error is not None:
            headers.append(("x-amzn-ErrorType", answer.error[0]))
        return _Outcome(answer.status, headers, body, answer.error)

    def _after_success(self, call: ApiCall, key: KeyLookup, incoming: _Incoming,
                       body: bytes) -> tuple[bytes, MintedSession | None]:
        if call.service == "iam" and call.action == "CreateAccessKey":
            created = _ACCESS_KEY_ID.search(body)
            if created:
                self._keys.note_created(created.group(1).decode())
        if call.service == "sts":
            return mint(call, key, incoming.signed.access_key_id if incoming.signed else None, self._keys, body)
        return body, None

    def _forward(self, environ: dict[str, Any], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        captured: dict[str, Any] = {}
        chunks: list[bytes] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return chunks.append

        result = self._backend(environ, capture)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return int(str(captured["status"]).split()[0]), list(captured["headers"]), b"".join(chunks)


def _from_error(error: AwsErrorResponse) -> _Outcome:
    return _Outcome(error.status, error.headers, error.body, (error.code, error.message))


def _read(environ: dict[str, Any]) -> _Incoming:
    stream = environ["wsgi.input"]
    length = str(environ.get("CONTENT_LENGTH") or "")
    if length.isdigit():
        body = stream.read(int(length)) if int(length) else b""
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    headers = {name[5:].replace("_", "-").lower(): str(value) for name, value in environ.items()
               if name.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    if environ.get("CONTENT_LENGTH"):
        headers["content-length"] = str(environ["CONTENT_LENGTH"])
    raw_uri = str(environ.get("REQUEST_URI") or environ.get("RAW_URI") or environ.get("PATH_INFO") or "/")
    raw_path = raw_uri.split("?", 1)[0] or "/"
    query = str(environ.get("QUERY_STRING", ""))
    url = f"http://{headers.get('host', 'localhost')}{raw_path}" + (f"?{query}" if query else "")
    return _Incoming(method=str(environ.get("REQUEST_METHOD", "GET")), url=url,
                     path=str(environ.get("PATH_INFO", "/")), raw_path=raw_path, headers=headers, body=body,
                     signed=parse_authorization(headers.get("authorization")))
