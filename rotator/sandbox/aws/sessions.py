"""STS calls that mint session keys: give each a real ASIA key and remember who minted it.

moto answers GetSessionToken and GetFederationToken with one fixed example key for everybody, which would
make "follow the keys minted by the compromised key" impossible to test. The front swaps in a fresh key
pair that moto itself holds (so calls signed with it verify) and records the minting identity.
AssumeRole already mints a distinct key in moto; only its identity is recorded.
"""

from __future__ import annotations

import re
import secrets
import uuid
from base64 import b64encode

from rotator.sandbox.aws.events import iso_now
from rotator.sandbox.aws.keys import Identity, KeyRegistry
from rotator.sandbox.aws.protocol import ApiCall

MINTING_ACTIONS = {"GetSessionToken", "GetFederationToken", "AssumeRole"}


def _text(tag: str, body: str) -> str | None:
    match = re.search(rf"<{tag}>([^<]*)</{tag}>", body)
    return match.group(1) if match else None


def _replace(tag: str, value: str, body: str) -> str:
    return re.sub(rf"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", body, count=1)


def _session_attributes() -> dict[str, object]:
    return {"attributes": {"creationDate": iso_now(), "mfaAuthenticated": "false"}}


def _issuer(identity: Identity) -> dict[str, str]:
    issuer = {"type": identity.type, "principalId": identity.principal_id, "arn": identity.arn,
              "accountId": identity.account_id}
    if identity.user_name:
        issuer["userName"] = identity.user_name
    return issuer


def record_minted_session(call: ApiCall, caller: Identity, registry: KeyRegistry, body: bytes) -> bytes:
    """Process a successful minting response from moto; returns the body to send back to the client."""
    if call.service != "sts" or call.action not in MINTING_ACTIONS:
        return body
    text = body.decode("utf-8")
    if call.action == "AssumeRole":
        key_id = _text("AccessKeyId", text)
        arn = _text("Arn", text) or ""
        role_session = _text("AssumedRoleId", text) or ""
        role_name = arn.split("/")[-2] if arn.count("/") >= 2 else ""
        role_id = role_session.split(":", 1)[0]
        account = arn.split(":")[4] if arn.count(":") >= 5 else caller.account_id
        if key_id:
            context = {**_session_attributes(), "sessionIssuer": {
                "type": "Role", "principalId": role_id, "arn": f"arn:aws:iam::{account}:role/{role_name}",
                "accountId": account, "userName": role_name}}
            registry.note_minted(key_id, Identity(type="AssumedRole", principal_id=role_session, arn=arn,
                                                  account_id=account, session_context=context),
                                 _text("SessionToken", text))
        return body

    key_id, secret = registry.create_session_key(caller.account_id, call.region)
    token = b64encode(b"FQoGZXIvYXdzE" + secrets.token_bytes(96)).decode()
    if call.action == "GetSessionToken":
        # The session acts as the user who asked for it; only the key id (and the context) differ.
        minted = Identity(type=caller.type, principal_id=caller.principal_id, arn=caller.arn,
                          account_id=caller.account_id, user_name=caller.user_name,
                          session_context=_session_attributes())
    else:
        name = str(call.params.get("Name", "federated"))
        minted = Identity(type="FederatedUser", principal_id=f"{caller.account_id}:{name}",
                          arn=f"arn:aws:sts::{caller.account_id}:federated-user/{name}",
                          account_id=caller.account_id,
                          session_context={**_session_attributes(), "sessionIssuer": _issuer(caller)})
    registry.note_minted(key_id, minted, token)
    text = _replace("AccessKeyId", key_id, text)
    text = _replace("SecretAccessKey", secret, text)
    text = _replace("SessionToken", token, text)
    return text.encode("utf-8")


def caller_identity_of_session(call: ApiCall, minted: Identity | None) -> bytes | None:
    """GetCallerIdentity for a key minted by GetSessionToken / GetFederationToken, which moto cannot answer
    (it knows the key but not who minted it); None when moto's own answer is right."""
    if minted is None or call.service != "sts" or call.action != "GetCallerIdentity":
        return None
    if minted.type not in ("IAMUser", "FederatedUser"):
        return None
    return (
        '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<GetCallerIdentityResult><Arn>{minted.arn}</Arn><UserId>{minted.principal_id}</UserId>"
        f"<Account>{minted.account_id}</Account></GetCallerIdentityResult>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        "</GetCallerIdentityResponse>"
    ).encode()
