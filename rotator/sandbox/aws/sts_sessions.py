"""STS as the front serves it: the sessions it mints, what they may call, and the answers moto gets wrong.

- Minting (AssumeRole, AssumeRoleWithWebIdentity, GetSessionToken, GetFederationToken): every successful call
  is remembered as a :class:`MintedSession` (principal, issue time, minting key). moto answers
  GetSessionToken and GetFederationToken with one fixed example key for everybody, so the front swaps in a
  fresh key pair that moto itself holds (calls signed with it verify) and a fresh session token. AssumeRole
  already mints a distinct key in moto, in the role's account (cross-account works: the key lives in the
  account named by the role ARN).
- Limits of session credentials (STS API reference, GetSessionToken and GetFederationToken, and IAM user
  guide "Permissions for GetSessionToken"): both operations "must be called by using the long-term AWS
  security credentials" (refused for any session key); GetSessionToken credentials "cannot call any IAM API
  operations unless MFA authentication information is included in the request" (IAM then answers
  InvalidClientTokenId, as aws-vault#15 and aws-sdk-js#460 show) and "cannot call any AWS STS API except
  AssumeRole or GetCallerIdentity"; GetFederationToken credentials cannot call IAM or any STS operation
  except GetCallerIdentity. Sessions minted here never carry MFA.
- GetCallerIdentity of a GetSessionToken / GetFederationToken key, and GetAccessKeyInfo of any key: moto
  answers from the caller's account, AWS from the key's owner ("returns the ID of the AWS account to which
  the keys belong", STS API reference, GetAccessKeyInfo).
"""

from __future__ import annotations

import binascii
import datetime as dt
import json
import re
import secrets
import uuid
from base64 import b64encode, urlsafe_b64decode
from typing import Any

from moto.iam.models import iam_backends

from rotator.sandbox.aws.identities import Identity, MintedSession, Principal
from rotator.sandbox.aws.keys import KeyLookup, KeyRegistry
from rotator.sandbox.aws.protocol import ApiCall, AwsErrorResponse, access_denied_error, invalid_key_error

MINTING_ACTIONS = frozenset({"GetSessionToken", "GetFederationToken", "AssumeRole", "AssumeRoleWithWebIdentity"})
_ROLE_SESSIONS = frozenset({"AssumeRole", "AssumeRoleWithWebIdentity"})
_STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
# What session credentials of each kind may call in STS; IAM refuses both kinds (no MFA here).
_STS_ALLOWED = {"GetSessionToken": frozenset({"AssumeRole", "GetCallerIdentity"}),
                "GetFederationToken": frozenset({"GetCallerIdentity"})}


def _text(tag: str, body: str) -> str | None:
    match = re.search(rf"<{tag}>([^<]*)</{tag}>", body)
    return match.group(1) if match else None


def _replace(tag: str, value: str, body: str) -> str:
    return re.sub(rf"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", body, count=1)


def iso_seconds(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _attributes(issued_at: dt.datetime) -> dict[str, str]:
    return {"creationDate": iso_seconds(issued_at), "mfaAuthenticated": "false"}


def _issuer(identity: Identity) -> dict[str, str]:
    issuer = {"type": identity.type, "principalId": identity.principal_id, "arn": identity.arn,
              "accountId": identity.account_id}
    if identity.user_name:
        issuer["userName"] = identity.user_name
    return issuer


def _user_principal(caller: Identity) -> Principal | None:
    if caller.type != "IAMUser" or not caller.user_name:
        return None  # root's sessions: "you cannot change the permissions" of what root minted
    return Principal("user", caller.account_id, caller.user_name, caller.arn)


def _role(account_id: str, role_name: str) -> tuple[str, str] | None:
    """(role id, role ARN) from moto's IAM, or None when the role does not exist there."""
    if account_id not in iam_backends:
        return None
    for backend in list(iam_backends[account_id].values()):
        for role in list(backend.roles.values()):
            if role.name == role_name:
                return str(role.id), str(role.arn)
    return None


def _role_session(call: ApiCall, text: str, key_id: str, token: str, issued_at: dt.datetime,
                  minted_by: str | None) -> MintedSession:
    # CloudTrail userIdentity element, "userIdentity with temporary security credentials": type AssumedRole,
    # principalId "<role id>:<session>", sessionContext.sessionIssuer = the role, attributes.creationDate.
    assumed_arn = _text("Arn", text) or ""
    assumed_id = _text("AssumedRoleId", text) or ""
    role_arn = str(call.params.get("RoleArn", ""))
    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else assumed_arn.split(":")[4]
    role_name = role_arn.rsplit("/", 1)[-1]
    found = _role(account, role_name)
    role_id = found[0] if found else assumed_id.split(":", 1)[0]
    canonical_arn = found[1] if found else role_arn
    session_name = str(call.params.get("RoleSessionName", assumed_arn.rsplit("/", 1)[-1]))
    context: dict[str, Any] = {
        "sessionIssuer": {"type": "Role", "principalId": role_id, "arn": canonical_arn, "accountId": account,
                          "userName": role_name},
        "webIdFederationData": {},
        "attributes": _attributes(issued_at),
    }
    identity = Identity(type="AssumedRole", principal_id=assumed_id, arn=assumed_arn, account_id=account,
                        session_context=context)
    return MintedSession(access_key_id=key_id, action=call.action,
                         principal=Principal("role", account, role_name, canonical_arn), identity=identity,
                         issued_at=issued_at, session_token=token, minted_by=minted_by, session_name=session_name)


def mint(call: ApiCall, caller: KeyLookup, signing_key: str | None, registry: KeyRegistry,
         body: bytes) -> tuple[bytes, MintedSession | None]:
    """Process moto's successful answer to a minting call: the body to send back, and the session minted."""
    if call.service != "sts" or call.action not in MINTING_ACTIONS:
        return body, None
    issued_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    text = body.decode("utf-8")
    if call.action in _ROLE_SESSIONS:
        key_id, token = _text("AccessKeyId", text), _text("SessionToken", text)
        if not key_id or token is None:
            return body, None
        session = _role_session(call, text, key_id, token, issued_at, signing_key)
        registry.note_minted(session)
        return body, session

    identity = caller.identity
    key_id, secret = registry.create_session_key(identity.account_id, call.region)
    token = b64encode(b"FQoGZXIvYXdzE" + secrets.token_bytes(96)).decode()
    if call.action == "GetSessionToken":
        # The session acts as the user who asked for it; only the key id and the session context differ.
        minted_identity = Identity(type=identity.type, principal_id=identity.principal_id, arn=identity.arn,
                                   account_id=identity.account_id, user_name=identity.user_name,
                                   session_context={"attributes": _attributes(issued_at)})
        session_name = None
    else:
        session_name = str(call.params.get("Name", "federated"))
        minted_identity = Identity(
            type="FederatedUser", principal_id=f"{identity.account_id}:{session_name}",
            arn=f"arn:aws:sts::{identity.account_id}:federated-user/{session_name}",
            account_id=identity.account_id,
            session_context={"sessionIssuer": _issuer(identity), "attributes": _attributes(issued_at)})
    session = MintedSession(access_key_id=key_id, action=call.action, principal=_user_principal(identity),
                            identity=minted_identity, issued_at=issued_at, session_token=token,
                            minted_by=signing_key, session_name=session_name)
    registry.note_minted(session)
    text = _replace("AccessKeyId", key_id, text)
    text = _replace("SecretAccessKey", secret, text)
    text = _replace("SessionToken", token, text)
    return text.encode("utf-8"), session


def session_restriction(call: ApiCall, key: KeyLookup) -> AwsErrorResponse | None:
    """The refusal AWS gives a session key for a call its kind of credentials may never make, else None."""
    session = key.session
    if session is None:
        return None
    if call.service == "sts" and call.action in _STS_ALLOWED:
        return access_denied_error(call, f"Cannot call {call.action} with session credentials")
    allowed = _STS_ALLOWED.get(session.action)
    if allowed is None:
        return None  # role sessions may call IAM and STS
    if call.service == "iam":
        return invalid_key_error(call.protocol)
    if call.service == "sts" and call.action not in allowed:
        return access_denied_error(
            call, f"User: {session.identity.arn} is not authorized to perform: sts:{call.action} with "
                  f"credentials from {session.action}")
    return None


def _sts_answer(operation: str, result: str) -> bytes:
    return (f'<{operation}Response xmlns="{_STS_NAMESPACE}"><{operation}Result>{result}</{operation}Result>'
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{operation}Response>"
            ).encode()


def own_answer(call: ApiCall, key: KeyLookup, registry: KeyRegistry) -> bytes | None:
    """The front's own answer to GetCallerIdentity of a user or federated session and to GetAccessKeyInfo;
    None when moto's answer is right."""
    if call.service != "sts":
        return None
    if call.action == "GetAccessKeyInfo":
        owner = registry.owner_account(str(call.params.get("AccessKeyId", "")))
        return None if owner is None else _sts_answer("GetAccessKeyInfo", f"<Account>{owner}</Account>")
    session = key.session
    if call.action == "GetCallerIdentity" and session is not None and session.action not in _ROLE_SESSIONS:
        identity = session.identity
        return _sts_answer("GetCallerIdentity", f"<Arn>{identity.arn}</Arn><UserId>{identity.principal_id}</UserId>"
                                                f"<Account>{identity.account_id}</Account>")
    return None


def _jwt_claims(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        loaded = json.loads(urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def web_identity_caller(call: ApiCall) -> Identity:
    """The caller of AssumeRoleWithWebIdentity, recorded only in the role's account (IAM user guide, "Logging
    sign-in events for temporary credentials": "OIDC/Web user identity"; CloudTrail userIdentity element,
    "WebIdentityUser": principalId "<provider>:<audience>:<subject>", userName, identityProvider). The token's
    claims are read without verifying it, as moto accepts any token."""
    role_arn = str(call.params.get("RoleArn", ""))
    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
    claims = _jwt_claims(str(call.params.get("WebIdentityToken", "")))
    provider = str(claims.get("iss", "unknown")).removeprefix("https://")
    audience = claims.get("aud", "unknown")
    audience = audience[0] if isinstance(audience, list) and audience else audience
    subject = str(claims.get("sub", call.params.get("RoleSessionName", "unknown")))
    return Identity(type="WebIdentityUser", principal_id=f"{provider}:{audience}:{subject}", arn="",
                    account_id=account, user_name=subject, extra={"identityProvider": provider})
