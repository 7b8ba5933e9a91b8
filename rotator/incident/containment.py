"""The compromised-key playbook, first half: identify the key's owner and contain it.

Written against ports only, and importing nothing slow: this module sits on the path from process start
to UpdateAccessKey. Order of outside calls for a long-lived (AKIA) key:

1. the store, if it tracks the key (one cheap read), else sts:GetAccessKeyInfo → the configured account
   → iam:GetAccessKeyLastUsed → the user name;
2. iam:UpdateAccessKey Inactive, the first write, then iam:ListAccessKeys to verify (already Inactive
   counts as success);
3. an inline policy denying every session issued before T0 (deactivating a key does not end the sessions
   minted from it), and a look at the console login profile.

A temporary (ASIA) key cannot be deactivated; its sessions are cut with the same deny, on the role given
with ``--role`` or on the user the store resolves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from rotator.domain import KeyOwner, KeyStatus, is_access_key_id, is_temporary_key_id
from rotator.errors import (
    AwsError,
    AwsNoCredentials,
    AwsNotFound,
    AwsUnavailable,
    RotatorError,
    StoreError,
    UsageError,
)
from rotator.incident.ports import IncidentIam
from rotator.incident.steps import (
    Step,
    StepStatus,
    deny_sessions,
    iso_seconds,
    login_profile,
    next_whole_second,
    session_deny_document,
    session_deny_policy_name,
    t0_of_document,
)
from rotator.inventory.locate import KeyLocation, KeyLocator, Unlocated
from rotator.ports import Clock

VERIFY_ATTEMPTS = 5  # ListAccessKeys reads, about a second apart: IAM is eventually consistent


class NotContained(RotatorError):
    """The key could not be identified or deactivated: exit 1, with everything that was tried."""

    def __init__(self, message: str, tried: list[str], *, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.tried = list(tried)


@dataclass(frozen=True)
class KeyIdentity:
    key_id: str
    account: str  # the configured account name; "default" is the ambient credentials' account
    account_id: str | None
    user_name: str | None
    source: str  # "store", "aws" or "--role"
    credential: str | None = None
    role_name: str | None = None
    minted_by: str | None = None  # a session key of a user: the access key that minted it, when the store knows

    @property
    def principal(self) -> str:
        return f"role {self.role_name}" if self.role_name else f"user {self.user_name}"


@dataclass(frozen=True)
class ContainmentPorts:
    iam_for: Callable[[str], IncidentIam]  # configured account name → IAM of that account
    locator: KeyLocator  # key id → account → user, for a key the store does not track
    tracked_owner: Callable[[str], KeyOwner | None]  # the store's cheap read; may raise StoreError
    clock: Clock


@dataclass
class Containment:
    key_id: str
    temporary: bool
    dry_run: bool
    t0: datetime
    identity: KeyIdentity | None = None
    contained: bool = False
    key_created_at: datetime | None = None
    steps: list[Step] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)


def check_key_id(key_id: str) -> str:
    """The key id, stripped; UsageError (exit 2) when it is not AKIA/ASIA + 16 of [A-Z0-9]."""
    candidate = key_id.strip()
    if not is_access_key_id(candidate):
        # Never echo the value: a responder in a hurry may have pasted the secret instead of the id.
        shown = (f"{candidate[:4]}… ({len(candidate)} characters)" if candidate.startswith(("AKIA", "ASIA"))
                 else f"the value given ({len(candidate)} characters)")
        raise UsageError(f"{shown} is not an access key id: expected AKIA or ASIA followed by 16 characters "
                         "of A-Z and 0-9", hint="copy the id (never the secret) from the leak report")
    return candidate


# --- the use case ------------------------------------------------------------------------------------


def contain(key_id: str, ports: ContainmentPorts, *, dry_run: bool = False, role: str | None = None,
            disable_console: bool = False) -> Containment:
    """Identify and contain ``key_id``. Raises NotContained when the key is not (or cannot be shown to be)
    contained; every later step reports its own outcome in ``steps``."""
    key_id = check_key_id(key_id)
    result = Containment(key_id, is_temporary_key_id(key_id), dry_run, t0=ports.clock.now())
    if result.temporary:
        _contain_temporary(result, ports, role)
        return result
    identity = _identify_from_store(result, ports)
    if identity is not None:
        try:
            _deactivate(result, ports.iam_for(identity.account), identity, ports.clock)
        except AwsNotFound as exc:
            result.tried.append(f"the store's owner is out of date ({exc.message}); asking AWS")
            identity = None
    if identity is None:
        identity = _identify_from_aws(result, ports)
        try:
            _deactivate(result, ports.iam_for(identity.account), identity, ports.clock)
        except AwsNotFound as exc:
            result.tried.append(exc.message)
            raise NotContained(f"{key_id} is not among the access keys of user {identity.user_name}", result.tried,
                               hint="check the key id; deactivate it by hand in the IAM console") from None
    result.t0 = next_whole_second(ports.clock.now())
    iam = ports.iam_for(identity.account)
    assert identity.user_name is not None
    result.steps.append(deny_sessions(iam, "user", identity.user_name, key_id, result.t0, dry_run))
    result.steps.append(login_profile(iam, identity.user_name, disable_console, dry_run))
    return result


def identify(key_id: str, ports: ContainmentPorts) -> tuple[KeyIdentity, list[str]]:
    """Who owns a key, without changing anything (for `rotator audit`). For a temporary key only the
    account is known. Raises NotContained (exit 1) when no configured account knows the key."""
    probe = Containment(check_key_id(key_id), is_temporary_key_id(key_id), dry_run=True, t0=ports.clock.now())
    if not probe.temporary:
        identity = _identify_from_store(probe, ports) or _identify_from_aws(probe, ports)
        return identity, probe.tried
    location = _located(probe, ports, "look the key up by hand in its account's CloudTrail", find_user=False)
    assert location.account is not None and location.account_id is not None
    return KeyIdentity(probe.key_id, location.account, location.account_id, None, "aws"), probe.tried


def _identify_from_store(result: Containment, ports: ContainmentPorts) -> KeyIdentity | None:
    try:
        owner = ports.tracked_owner(result.key_id)
    except StoreError as exc:
        result.tried.append(f"store: {exc.message}")
        return None
    if owner is None:
        result.tried.append("store: key not tracked")
        return None
    account_ids = ports.locator.account_ids
    if owner.account not in account_ids:
        result.tried.append(f"store: key of user {owner.user_name} in account {owner.account!r}, which is not "
                            "configured any more; asking AWS")
        return None
    result.tried.append(f"store: key of user {owner.user_name} in account {owner.account!r}"
                        + (f" (credential {owner.credential})" if owner.credential else "")
                        + (f", a session minted by {owner.minted_by}" if owner.minted_by else ""))
    return KeyIdentity(result.key_id, owner.account, account_ids[owner.account], owner.user_name, "store",
                       credential=owner.credential, minted_by=owner.minted_by)


def _located(result: Containment, ports: ContainmentPorts, by_hand: str, *, find_user: bool) -> KeyLocation:
    """The locator's answer, or NotContained saying where it stopped. ``by_hand`` completes the hint: what a
    human does when rotator cannot."""
    key_id = result.key_id
    location = ports.locator.locate(key_id, find_user=find_user)
    result.tried.extend(location.notes)
    if location.failure is Unlocated.ACCOUNT_UNKNOWN:
        cause = location.cause
        if isinstance(cause, AwsNoCredentials | AwsUnavailable):
            # Nothing reached AWS: no permission is to blame, so say what is wrong instead.
            what = ("no AWS credentials found" if isinstance(cause, AwsNoCredentials)
                    else "the AWS endpoint is unreachable")
            raise NotContained(f"cannot tell which AWS account owns {key_id}: {what}", result.tried,
                               hint=f"{cause.hint}; or {by_hand}")
        raise NotContained(f"cannot tell which AWS account owns {key_id}", result.tried,
                           hint=f"grant sts:GetAccessKeyInfo to rotator's credentials, or {by_hand}")
    if location.failure is Unlocated.NOT_CONFIGURED:
        raise NotContained(f"{key_id} belongs to AWS account {location.account_id}, which no configured account "
                           "reaches", result.tried,
                           hint=f"add an [[aws.accounts]] entry with a role in account {location.account_id}, "
                                f"or {by_hand}")
    if location.failure is Unlocated.NO_USER:
        raise NotContained(f"no configured account knows the access key {key_id}", result.tried,
                           hint=f"check the key id; if it is real, {by_hand}")
    return location


def _identify_from_aws(result: Containment, ports: ContainmentPorts) -> KeyIdentity:
    location = _located(result, ports, "deactivate the key by hand in its account's IAM console", find_user=True)
    assert location.account is not None
    return KeyIdentity(result.key_id, location.account, location.account_id, location.user_name, "aws")


def _deactivate(result: Containment, iam: IncidentIam, identity: KeyIdentity, clock: Clock) -> None:
    """UpdateAccessKey Inactive, then ListAccessKeys until it shows Inactive. Raises AwsNotFound when the
    user does not have the key (the caller then identifies the owner again)."""
    assert identity.user_name is not None
    user, key_id = identity.user_name, result.key_id
    result.identity = identity
    if result.dry_run:
        key = _find_key(iam, user, key_id)
        result.key_created_at = key.created_at
        if key.status is KeyStatus.INACTIVE:
            result.steps.append(Step("deactivate", StepStatus.ALREADY, f"{key_id} of user {user} is already Inactive"))
        else:
            result.steps.append(Step("deactivate", StepStatus.PLANNED, f"UpdateAccessKey {key_id} of user {user} "
                                     "to Inactive, then verify with ListAccessKeys"))
        return
    refused: AwsError | None = None
    try:
        iam.set_access_key_status(user, key_id, active=False)
    except AwsNotFound:
        raise
    except AwsError as exc:
        refused = exc  # still verify: a key that is already Inactive counts as contained
        result.tried.append(f"iam:UpdateAccessKey: {exc.message}")
    for attempt in range(VERIFY_ATTEMPTS):
        try:
            key = _find_key(iam, user, key_id)
        except AwsNotFound:
            raise
        except AwsError as exc:
            result.tried.append(f"iam:ListAccessKeys: {exc.message}")
            raise NotContained(f"cannot verify that {key_id} is Inactive" + (
                "" if refused else " (UpdateAccessKey was accepted)"), result.tried,
                hint="check the key's status in the IAM console now") from None
        result.key_created_at = key.created_at
        if key.status is KeyStatus.INACTIVE:
            result.contained = True
            if refused is not None:
                result.steps.append(Step("deactivate", StepStatus.ALREADY, f"{key_id} of user {user} is Inactive "
                                         f"(UpdateAccessKey itself failed: {refused.message})"))
            else:
                result.steps.append(Step("deactivate", StepStatus.DONE, f"{key_id} of user {user} is Inactive "
                                         "(UpdateAccessKey, verified with ListAccessKeys)"))
            return
        if refused is not None:
            break
        if attempt + 1 < VERIFY_ATTEMPTS:
            clock.sleep(1.0)
    raise NotContained(f"{key_id} of user {user} is still Active", result.tried,
                       hint=(refused.hint if refused is not None and refused.hint else
                             "deactivate it by hand in the IAM console, then run revoke again for the follow-ups"))


def _find_key(iam: IncidentIam, user: str, key_id: str) -> AccessKeyView:
    for key in iam.list_access_keys(user):
        if key.key_id == key_id:
            return AccessKeyView(key.status, key.created_at)
    raise AwsNotFound(f"user {user} has no access key {key_id}", code="NoSuchEntity", operation="iam:ListAccessKeys")


@dataclass(frozen=True)
class AccessKeyView:
    status: KeyStatus
    created_at: datetime


def _contain_temporary(result: Containment, ports: ContainmentPorts, role: str | None) -> None:
    key_id = result.key_id
    result.steps.append(Step("deactivate", StepStatus.SKIPPED, f"{key_id} is a temporary (ASIA) key: AWS cannot "
                             "deactivate it; it expires by itself. Its session is cut by the deny below"))
    if role is None:
        identity = _identify_from_store(result, ports)
        if identity is None:
            raise NotContained(f"{key_id} is a temporary key and no principal to cut its sessions is known",
                               result.tried, hint="pass --role NAME (the role the session belongs to); for a "
                                                  "session of an IAM user, revoke that user's access key")
    else:
        location = _located(result, ports, "revoke the role's sessions in the IAM console", find_user=False)
        assert location.account is not None
        identity = KeyIdentity(key_id, location.account, location.account_id, None, "--role", role_name=role)
    result.identity = identity
    result.t0 = next_whole_second(ports.clock.now())
    iam = ports.iam_for(identity.account)
    kind, name = ("role", identity.role_name) if identity.role_name else ("user", identity.user_name)
    assert name is not None
    step = deny_sessions(iam, kind, name, key_id, result.t0, result.dry_run)
    result.steps.append(step)
    if step.failed:
        raise NotContained(f"could not cut the sessions of temporary key {key_id}: {step.detail}", result.tried,
                           hint=f"put a deny-all policy on {kind} {name} by hand (see the AWS docs on revoking "
                                "role session permissions)")
    result.contained = step.status in (StepStatus.DONE, StepStatus.ALREADY)
    if identity.minted_by:
        # Cutting this session does not stop whoever holds the key that minted it from minting another.
        result.steps.append(Step("upstream key", StepStatus.ATTENTION, f"{key_id} was minted by access key "
                                 f"{identity.minted_by} of user {identity.user_name}; if that key may be exposed "
                                 f"too, contain it: rotator revoke --key {identity.minted_by}"))


__all__ = ["Containment", "ContainmentPorts", "KeyIdentity", "NotContained", "Step", "StepStatus",
           "contain", "identify", "iso_seconds", "session_deny_document", "session_deny_policy_name",
           "t0_of_document"]
