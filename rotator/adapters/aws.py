"""botocore adapters for IAM and STS, and per-account sessions.

Standard boto3/botocore configuration throughout: ambient credentials, AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE>.
botocore's "standard" retry mode handles throttling and 5xx with backoff; what survives it becomes a
typed error here. Throttling is never read as "key invalid".
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.config import Config
from botocore.credentials import CredentialProvider, CredentialResolver, Credentials, RefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.parsers import ResponseParserError

from rotator.domain import AccessKey, IamUser, KeyLastUsed, KeyStatus, NewAccessKey, Secret
from rotator.errors import (
    AwsAccessDenied,
    AwsError,
    AwsInvalidCredentials,
    AwsLimitExceeded,
    AwsNoCredentials,
    AwsNotFound,
    AwsThrottled,
    AwsUnavailable,
)

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_sts import STSClient

    from rotator.ratelimit import Pacer

THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
})
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess"})
INVALID_CREDENTIAL_CODES = frozenset({
    "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException", "InvalidAccessKeyId",
    "ExpiredToken", "ExpiredTokenException", "AuthFailure", "InvalidSignatureException",
})
UNAVAILABLE_CODES = frozenset({"ServiceUnavailable", "InternalFailure", "InternalError", "ServiceFailure"})

# botocore's standard mode retries throttling, 5xx and connection errors with a jittered exponential backoff
# (at most 1, 2, 4, 8 s here). Five attempts keep an unreachable endpoint to about 15 s of backoff plus the
# connect timeouts, instead of minutes; throttling that outlives them slows the pacer down and comes back as
# AwsThrottled, which the caller retries later.
RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=5,
    read_timeout=30,
    user_agent_extra="rotator",
)


def translate(exc: Exception, operation: str, subject: str = "") -> AwsError:
    """One ClientError/BotoCoreError → the matching typed error with the operator's next step."""
    where = f"{operation}{f' ({subject})' if subject else ''}"
    if isinstance(exc, NoCredentialsError):
        return AwsNoCredentials(f"{where}: no AWS credentials found: nothing was sent to AWS", code="NoCredentials",
                                operation=operation,
                                hint="give the process credentials the standard boto3 way (instance role, IRSA, "
                                     "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE)")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = f"{where}: {code}: {message}"
        if code in THROTTLING_CODES:
            return AwsThrottled(text, code=code, operation=operation,
                                hint="AWS is throttling; retry later or lower the request rate")
        if code in DENIED_CODES:
            return AwsAccessDenied(text, code=code, operation=operation,
                                   hint="grant rotator's principal this action (see deploy/iam-policy.json)")
        if code == "NoSuchEntity":
            return AwsNotFound(text, code=code, operation=operation,
                               hint="check the IAM user name and the account in the config")
        if code == "LimitExceeded":
            return AwsLimitExceeded(text, code=code, operation=operation)
        if code in INVALID_CREDENTIAL_CODES:
            return AwsInvalidCredentials(text, code=code, operation=operation,
                                         hint="check the credentials rotator itself runs with")
        if code in UNAVAILABLE_CODES or status >= 500:
            return AwsUnavailable(text, code=code or str(status), operation=operation,
                                  hint="AWS is failing; retry later")
        return AwsError(text, code=code, operation=operation)
    if isinstance(exc, ResponseParserError):
        # Not a BotoCoreError: what answered was no AWS API response (an HTML error page of a proxy, or of an
        # endpoint that does not implement the operation), and botocore's retries do not cover it.
        return AwsUnavailable(f"{where}: the endpoint's answer is not an AWS API response", code="ResponseParserError",
                              operation=operation, hint="check AWS_ENDPOINT_URL and any proxy in between; retry later")
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        # EndpointConnectionError (refused, DNS), ConnectTimeoutError, ReadTimeoutError, reset connections:
        # what survived botocore's retries. The message names the endpoint URL, never a query or a header.
        return AwsUnavailable(f"{where}: AWS endpoint unreachable: {exc}", code=type(exc).__name__,
                              operation=operation,
                              hint="check network access to the AWS endpoint (AWS_ENDPOINT_URL if set); the call "
                                   "was already retried with backoff")
    if isinstance(exc, BotoCoreError):
        return AwsUnavailable(f"{where}: {type(exc).__name__}: {exc}", code=type(exc).__name__, operation=operation,
                              hint="check network access to the AWS endpoint (AWS_ENDPOINT_URL if set)")
    raise TypeError(f"not an AWS error: {type(exc).__name__}")


@contextmanager
def aws_call(operation: str, subject: str = "") -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        raise translate(exc, operation, subject) from None


def aware_utc(value: Any) -> datetime | None:
    """A datetime botocore parsed, as timezone-aware UTC; None for anything else."""
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def pace(client: Any, pacer: Pacer) -> Any:
    """Hold every HTTP attempt of a boto3 client (botocore's retries included) to ``pacer``; an answer that
    says Throttling slows the pacer down, so the other threads back off too, not only the refused one."""
    service = client.meta.service_model.service_id.hyphenize()

    def before_send(**_: Any) -> None:
        pacer.acquire()

    def needs_retry(response: Any = None, **_: Any) -> None:
        if isinstance(response, tuple) and len(response) == 2 and isinstance(response[1], dict):
            code = response[1].get("Error", {}).get("Code")
            if code in THROTTLING_CODES:
                pacer.throttled()

    # Both handlers return None, so botocore's own decisions (send, retry or not) are untouched.
    client.meta.events.register(f"before-send.{service}", before_send)
    client.meta.events.register(f"needs-retry.{service}", needs_retry)
    return client


class AssumedRoleProvider(CredentialProvider):
    """Credentials of one role, assumed with the ambient session and refreshed before they expire.

    Built from botocore's public credential API: ``RefreshableCredentials.create_from_metadata`` calls
    ``fetch`` again when less than its advisory window (15 min) is left, and blocks every caller on it in
    the mandatory window (10 min), so a role session never expires mid-rotation (botocore/credentials.py,
    ``RefreshableCredentials._refresh``). ``CredentialResolver`` with this one provider, registered as the
    session's ``credential_provider`` component, is how botocore sessions load credentials
    (botocore/session.py ``Session.get_credentials``).
    AssumeRole runs at the first request made with the session, never when a client is built, so wiring
    an account that is never used calls nothing and a refusal surfaces in the operation that needed it.
    """

    METHOD = "custom-rotator-assume-role"
    # botocore asks non-botocore providers to prefix their canonical name with "custom".
    CANONICAL_NAME = "custom-rotator-assume-role"

    def __init__(self, sts_client: STSClient, role_arn: str, external_id: str | None, session_name: str) -> None:
        super().__init__()
        self._sts = sts_client
        self._role_arn = role_arn
        self._request: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": session_name}
        if external_id:
            self._request["ExternalId"] = external_id

    def load(self) -> RefreshableCredentials:
        # Starts expired: the first signed request refreshes, i.e. assumes the role (see the class docstring).
        never_fetched = {"access_key": "", "secret_key": "", "token": "",
                         "expiry_time": datetime.fromtimestamp(0, UTC).isoformat()}
        return RefreshableCredentials.create_from_metadata(never_fetched, self.fetch, self.METHOD)

    def fetch(self) -> dict[str, str]:
        """sts:AssumeRole, in the metadata shape RefreshableCredentials refreshes from."""
        with aws_call("sts:AssumeRole", self._role_arn):
            answer = self._sts.assume_role(**self._request)["Credentials"]
        return {"access_key": answer["AccessKeyId"], "secret_key": answer["SecretAccessKey"],
                "token": answer["SessionToken"], "expiry_time": answer["Expiration"].isoformat()}


class AwsSessions:
    """One botocore session per configured account, cached; role sessions refresh themselves before expiry.

    Clients come straight from botocore (``Session.create_client``, its public API): containment needs no
    more, and importing boto3 (which pulls in s3transfer) would cost `revoke` tens of milliseconds before
    UpdateAccessKey. A boto3 session over the same botocore session is built only when asked for.
    """

    def __init__(self, region: str, roles: dict[str, tuple[str, str | None, str]] | None = None) -> None:
        """``roles`` maps an account name to (role_arn, external_id, session_name); "default" is ambient."""
        self.region = region
        self._roles = roles or {}
        self._cores: dict[str, botocore.session.Session] = {}
        self._wrapped: dict[str, Any] = {}
        self._lock = threading.Lock()
        # botocore sessions are not thread-safe (boto3 docs, "Multithreading or multiprocessing with resources"):
        # clients are built one at a time, then shared (the service's tick, its event consumer, an incident's
        # audit and role cuts build theirs from different threads).
        self._client_lock = threading.Lock()

    def core(self, account: str = "default") -> botocore.session.Session:
        with self._lock:
            if account not in self._cores:
                self._cores[account] = self._build(account)
            return self._cores[account]

    def session(self, account: str = "default") -> Any:
        """A boto3 session over the account's botocore session (same credentials, same cached models)."""
        core = self.core(account)
        with self._lock:
            if account not in self._wrapped:
                import boto3

                self._wrapped[account] = boto3.Session(botocore_session=core, region_name=self.region)
            return self._wrapped[account]

    def _build(self, account: str) -> botocore.session.Session:
        base = botocore.session.Session()
        base.set_config_variable("region", self.region)
        if account == "default" or account not in self._roles:
            return base
        role_arn, external_id, session_name = self._roles[account]
        if base.get_credentials() is None:
            raise AwsNoCredentials(f"no ambient AWS credentials to assume account {account}'s role with: nothing was "
                                   "sent to AWS", code="NoCredentials", operation="sts:AssumeRole",
                                   hint="give the process credentials the standard boto3 way (instance role, IRSA, "
                                        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE)")
        # The STS client reads AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_STS like every other client.
        sts: Any = base.create_client("sts", region_name=self.region, config=RETRY_CONFIG)
        provider = AssumedRoleProvider(sts, role_arn, external_id, session_name)
        core = botocore.session.Session()
        core.set_config_variable("region", self.region)
        core.register_component("credential_provider", CredentialResolver([provider]))
        return core

    @property
    def client_lock(self) -> threading.Lock:
        """Held while a client is built from one of these sessions (see ``client``)."""
        return self._client_lock

    def warm_up(self, services: Sequence[str], accounts: Sequence[str]) -> None:
        """Build these clients now (and drop them), so botocore has loaded their service models and credentials
        providers when they are needed. Only a head start: a failure here is left to the real call to report."""
        for service in services:
            for account in accounts:
                try:
                    self.client(service, account)
                except (BotoCoreError, AwsError):
                    return

    def client(self, service: str, account: str = "default", *, region: str | None = None,
               config: Config = RETRY_CONFIG) -> Any:
        """A client of ``account``'s session (its loaded service models are shared by every client of it)."""
        core = self.core(account)
        with self._client_lock:
            return core.create_client(service, region_name=region or self.region, config=config)


class BotoIam:
    """ports.Iam for one account."""

    def __init__(self, client: IAMClient) -> None:
        self._iam = client

    def get_user(self, user_name: str) -> IamUser:
        with aws_call("iam:GetUser", user_name):
            user = self._iam.get_user(UserName=user_name)["User"]
        return IamUser(name=user["UserName"], user_id=user["UserId"], arn=user["Arn"])

    def list_access_keys(self, user_name: str) -> list[AccessKey]:
        keys: list[AccessKey] = []
        with aws_call("iam:ListAccessKeys", user_name):
            for page in self._iam.get_paginator("list_access_keys").paginate(UserName=user_name):
                for meta in page["AccessKeyMetadata"]:
                    keys.append(AccessKey(
                        key_id=meta["AccessKeyId"],
                        status=KeyStatus(meta["Status"]),
                        created_at=aware_utc(meta.get("CreateDate")) or datetime.min.replace(tzinfo=UTC),
                    ))
        return keys

    def create_access_key(self, user_name: str) -> NewAccessKey:
        with aws_call("iam:CreateAccessKey", user_name):
            key = self._iam.create_access_key(UserName=user_name)["AccessKey"]
        return NewAccessKey(
            key_id=key["AccessKeyId"],
            secret=Secret(key["SecretAccessKey"]),
            created_at=aware_utc(key.get("CreateDate")) or datetime.now(UTC),
        )

    def set_access_key_status(self, user_name: str, key_id: str, *, active: bool) -> None:
        with aws_call("iam:UpdateAccessKey", key_id):
            self._iam.update_access_key(UserName=user_name, AccessKeyId=key_id,
                                        Status="Active" if active else "Inactive")

    def delete_access_key(self, user_name: str, key_id: str) -> None:
        try:
            with aws_call("iam:DeleteAccessKey", key_id):
                self._iam.delete_access_key(UserName=user_name, AccessKeyId=key_id)
        except AwsNotFound:
            return  # already gone: deleting is idempotent

    def get_access_key_last_used(self, key_id: str) -> KeyLastUsed:
        with aws_call("iam:GetAccessKeyLastUsed", key_id):
            answer = self._iam.get_access_key_last_used(AccessKeyId=key_id)
        used = answer.get("AccessKeyLastUsed", {})
        service = used.get("ServiceName")
        region = used.get("Region")
        return KeyLastUsed(
            key_id=key_id,
            user_name=answer.get("UserName"),
            last_used_at=aware_utc(used.get("LastUsedDate")),
            service=None if service in (None, "N/A") else service,
            region=None if region in (None, "N/A") else region,
        )


# BotoSts's client: unsigned (each call is signed with the pair being checked), few retries.
VERIFY_CONFIG = Config(signature_version=UNSIGNED, retries={"mode": "standard", "max_attempts": 3},
                       connect_timeout=5, read_timeout=15, user_agent_extra="rotator")


class BotoSts:
    """ports.Sts: checks a new key pair with GetCallerIdentity signed by that pair.

    One client serves every check: it is built unsigned, and a ``request-created`` handler signs each
    attempt (botocore's retries included) with the pair of the call in progress on that thread. Building a
    botocore client per check costs milliseconds of CPU, which an emergency rotation of hundreds of keys
    pays hundreds of times.
    """

    def __init__(self, region: str, client: Any = None) -> None:
        """``client``: an STS client built with VERIFY_CONFIG (unsigned), e.g. from a session whose service models
        are already loaded (a session of its own loads botocore's endpoint data again: megabytes)."""
        self._region = region
        self._pair = threading.local()
        self._client: Any = client if client is not None else botocore.session.get_session().create_client(
            "sts", region_name=region, config=VERIFY_CONFIG)
        self._client.meta.events.register_last("request-created.sts", self._sign)

    def _sign(self, request: Any, **_: Any) -> None:
        credentials = getattr(self._pair, "credentials", None)
        if credentials is None:
            return
        signing = (getattr(request, "context", None) or {}).get("signing", {})
        SigV4Auth(credentials, signing.get("signing_name", "sts"), signing.get("region", self._region)).add_auth(
            request)

    def caller_arn(self, key: NewAccessKey) -> str | None:
        self._pair.credentials = Credentials(key.key_id, key.secret.reveal())
        try:
            with aws_call("sts:GetCallerIdentity", key.key_id):
                return str(self._client.get_caller_identity()["Arn"])
        except AwsInvalidCredentials:
            return None  # not accepted yet: IAM is eventually consistent
        finally:
            self._pair.credentials = None


def sts_account_for_key(client: STSClient, key_id: str) -> str:
    """sts:GetAccessKeyInfo: the account that owns a key id (works for any account's key)."""
    with aws_call("sts:GetAccessKeyInfo", key_id):
        return client.get_access_key_info(AccessKeyId=key_id)["Account"]


def caller_identity(client: STSClient) -> dict[str, str]:
    with aws_call("sts:GetCallerIdentity"):
        answer = client.get_caller_identity()
    return {"account": answer["Account"], "arn": answer["Arn"], "user_id": answer["UserId"]}
