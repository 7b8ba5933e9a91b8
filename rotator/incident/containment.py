"""The compromised-key playbook, first half: identify the key's owner and contain it.

Written against ports only, and importing nothing slow: this module sits on the path from process start
to UpdateAccessKey. Order of outside calls for a long-lived (AKIA) key:

1. the store, if it tracks the key (one cheap read), else sts:GetAccessKeyInfo → the configured account
   → iam:GetAccessKeyLastUsed → the user name;
2. iam:UpdateAccessKey Inactive, the first write, then iam:ListAccessKeys to verify (already Inactive
   counts as success);
3. an inline policy denying every session issued before T0 (deactivating a key does not end the sessions
   minted from it) on the key's user, read back, and a look at the console login profile. T0 sits
   ``consistency_margin`` after the verified deactivation: IAM is eventually consistent, so the key may still
   mint a session in the moments after UpdateAccessKey. A re-run on a key already Inactive keeps the T0 of
   the key's earlier incident. The roles the key's sessions assumed are cut later, as the audit finds them
   (rotator.incident.followup).

With one account configured (the ambient credentials alone) step 1 asks iam:GetAccessKeyLastUsed first and
sts:GetAccessKeyInfo only when that does not name the user (rotator.inventory.locate).

A temporary (ASIA) key cannot be deactivated; its session is cut with the same deny on the principal it acts
as: the user the store remembers, else the role or user CloudTrail names (the record that minted it, or the
session's own calls; rotator.incident.audit.origin). ``--role`` must agree with what was found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

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
from rotator.incident.steps import (
    SESSION_DENY_POLICY,
    Step,
    StepStatus,
    iso_seconds,
    login_profile,
    next_whole_second,
    session_deny_document,
    t0_of_document,
)
from rotator.inventory.locate import KeyLocation, KeyLocator, Unlocated
from rotator.rotation.deactivation import READ_BACK_ATTEMPTS, read_back_inactive

if TYPE_CHECKING:
    # Not imported before the key is Inactive: the CloudTrail search serves temporary keys only, and cutting
    # sessions comes after the deactivation (every millisecond before UpdateAccessKey counts).
    from rotator.incident.audit.origin import SessionOrigin
    from rotator.incident.ports import IncidentIam
    from rotator.incident.principals import Principal
    from rotator.incident.sessions import RevokeRules, SessionCut
    from rotator.ports import Clock

DEFAULT_CONSISTENCY_MARGIN = timedelta(minutes=3)

VERIFY_ATTEMPTS = READ_BACK_ATTEMPTS  # ListAccessKeys reads, about a second apart: IAM is eventually consistent


class NotContained(RotatorError):
    """The key could not be identified or deactivated: exit 1, with everything that was tried."""

    def __init__(self, message: str, tried: list[str], *, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.tried = list(tried)


class RoleMismatch(UsageError):
    """``--role`` names another principal than the one CloudTrail (or the store) says the session acts as."""


@dataclass(frozen=True)
class KeyIdentity:
    key_id: str
    account: str  # the configured account name; "default" is the ambient credentials' account
    account_id: str | None
    user_name: str | None
    source: str  # "store", "aws", "cloudtrail" or "--role"
    credential: str | None = None
    role_name: str | None = None
    path: str = "/"  # the IAM path of the user or role, when known
    minted_by: str | None = None  # a session key of a user: the access key that minted it, when the store knows

    @property
    def principal(self) -> str:
        return f"role {self.role_name}" if self.role_name else f"user {self.user_name}"

    def as_principal(self) -> Principal:
        from rotator.incident.principals import Principal

        kind, name = ("role", self.role_name) if self.role_name else ("user", self.user_name)
        assert name is not None
        return Principal(kind, name, self.account_id, self.path, self.account)


@dataclass(frozen=True)
class ContainmentPorts:
    iam_for: Callable[[str], IncidentIam]  # configured account name → IAM of that account
    locator: KeyLocator  # key id → account → user, for a key the store does not track
    tracked_owner: Callable[[str], KeyOwner | None]  # the store's cheap read; may raise StoreError
    clock: Clock
    deny_sessions: bool = True  # [revoke] deny_sessions, for the key's own principal
    rules: RevokeRules | None = None  # all of [revoke] (else only deny_sessions counts)
    consistency_margin: timedelta = DEFAULT_CONSISTENCY_MARGIN
    # T0 of the key's earliest incident in the store (cheap read; may raise StoreError), for re-runs.
    earlier_t0: Callable[[str], datetime | None] = lambda key_id: None
    # CloudTrail search for a temporary key's principal: (key id, configured account, account id) → origin.
    session_origin: Callable[[str, str, str | None], SessionOrigin] | None = None


@dataclass
class Containment:
    key_id: str
    temporary: bool
    dry_run: bool
    t0: datetime  # every session issued before it is denied
    identity: KeyIdentity | None = None
    contained: bool = False
    key_created_at: datetime | None = None
    steps: list[Step] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)
    contained_at: datetime | None = None  # when the key was verified Inactive (or the temporary key's session cut)
    cuts: list[SessionCut] = field(default_factory=list)  # the key's own principal, cut here
    origin: SessionOrigin | None = None  # a temporary key: where CloudTrail says it came from
    earlier_t0: datetime | None = None  # T0 of the key's earlier incident, if the store has one


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
    _set_t0(result, ports)
    _cut(result, ports, identity.as_principal(), sessions=())
    assert identity.user_name is not None
    result.steps.append(login_profile(ports.iam_for(identity.account), identity.user_name, disable_console, dry_run))
    return result


def _set_t0(result: Containment, ports: ContainmentPorts) -> None:
    """T0 = the verified deactivation, rounded up to a whole second, plus the consistency margin. A re-run keeps
    the T0 of the key's earlier incident, unless the key was used after it (someone re-activated it): nothing
    it minted before that incident's deactivation can be younger, and a re-run must not cut the sessions the
    key's roles granted to others since."""
    now = ports.clock.now()
    result.t0 = next_whole_second(now) + ports.consistency_margin
    if result.dry_run:
        return
    result.contained_at = now
    earlier = result.earlier_t0 = _earlier_t0(result, ports)
    if earlier is None or result.identity is None:
        return
    try:
        used = ports.iam_for(result.identity.account).get_access_key_last_used(result.key_id).last_used_at
    except AwsError as exc:
        result.tried.append(f"iam:GetAccessKeyLastUsed: {exc.message}; T0 taken anew")
        return
    if used is None or used <= earlier - ports.consistency_margin:
        result.t0 = earlier
        result.tried.append(f"T0 {iso_seconds(earlier)}: the key's earlier incident's, kept (the key was not used "
                            "since)")
    else:
        result.tried.append(f"the key was used at {iso_seconds(used)}, after its earlier incident: T0 taken anew")


def _earlier_t0(result: Containment, ports: ContainmentPorts) -> datetime | None:
    try:
        return ports.earlier_t0(result.key_id)
    except StoreError as exc:
        result.tried.append(f"store: earlier incidents not read ({exc.message})")
        return None


def _cut(result: Containment, ports: ContainmentPorts, principal: Principal, sessions: tuple[str, ...],
         found_by: str = "") -> SessionCut:
    # The per-key policy name of earlier versions exists only for a key revoked before: read it only then.
    legacy = result.key_id if result.earlier_t0 is not None else None
    from rotator.incident.sessions import CutPorts, RevokeRules, cut_sessions

    rules = ports.rules or RevokeRules(deny_sessions=ports.deny_sessions)
    cut = cut_sessions(CutPorts(ports.iam_for, rules, ports.clock.sleep, result.dry_run), principal, result.t0,
                       sessions=sessions, found_by=found_by, legacy_key_id=legacy)
    result.cuts.append(cut)
    result.steps.append(cut.step())
    return cut


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
    location = ports.locator.locate(key_id, find_user=find_user, user_first=find_user)
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
    try:
        # Once UpdateAccessKey was refused, waiting cannot help: one read says whether it is Inactive anyway.
        listed = read_back_inactive(iam, user, key_id, clock, attempts=1 if refused is not None else VERIFY_ATTEMPTS)
    except AwsNotFound:
        raise
    except AwsError as exc:
        result.tried.append(f"iam:ListAccessKeys: {exc.message}")
        raise NotContained(f"cannot verify that {key_id} is Inactive" + (
            "" if refused else " (UpdateAccessKey was accepted)"), result.tried,
            hint="check the key's status in the IAM console now") from None
    if listed is None:
        raise AwsNotFound(f"user {user} has no access key {key_id}", code="NoSuchEntity",
                          operation="iam:ListAccessKeys")
    result.key_created_at = listed.created_at
    if listed.status is KeyStatus.INACTIVE:
        result.contained = True
        if refused is not None:
            result.steps.append(Step("deactivate", StepStatus.ALREADY, f"{key_id} of user {user} is Inactive "
                                     f"(UpdateAccessKey itself failed: {refused.message})"))
        else:
            result.steps.append(Step("deactivate", StepStatus.DONE, f"{key_id} of user {user} is Inactive "
                                     "(UpdateAccessKey, verified with ListAccessKeys)"))
        return
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
    identity = _identify_temporary(result, ports, role)
    result.identity = identity
    earlier = result.earlier_t0 = None if result.dry_run else _earlier_t0(result, ports)
    result.t0 = earlier or next_whole_second(ports.clock.now())
    cut = _cut(result, ports, identity.as_principal(), sessions=(key_id,),
               found_by=result.origin.evidence if result.origin else identity.source)
    from rotator.incident.sessions import CutStatus

    if cut.status not in (CutStatus.DENIED, CutStatus.ALREADY, CutStatus.PLANNED):
        raise NotContained(f"could not cut the session of temporary key {key_id}: {cut.reason}", result.tried,
                           hint=f"run: {cut.command}" if cut.command else "see the reason above")
    # A dry run wrote no deny: nothing is contained, whatever the plan says.
    result.contained = cut.cut and not result.dry_run
    result.contained_at = None if result.dry_run else ports.clock.now()
    if identity.minted_by:
        # Cutting this session does not stop whoever holds the key that minted it from minting another.
        result.steps.append(Step("upstream key", StepStatus.ATTENTION, f"{key_id} was minted by access key "
                                 f"{identity.minted_by} of user {identity.user_name}; if that key may be exposed "
                                 f"too, contain it: rotator revoke --key {identity.minted_by}"))


def _identify_temporary(result: Containment, ports: ContainmentPorts, role: str | None) -> KeyIdentity:
    """The principal a temporary key's session acts as: the store's word (a session rotator saw the key mint),
    else CloudTrail's; ``--role`` is checked against it, and trusted (and said so) only when neither knows."""
    from rotator.incident.principals import Principal

    key_id = result.key_id
    stored = _identify_from_store(result, ports)
    if stored is not None and role is None:
        return stored
    location = _located(result, ports, "cut the session by hand (see the AWS docs on revoking role sessions)",
                        find_user=False)
    assert location.account is not None
    found: Principal | None = stored.as_principal() if stored is not None else None
    source = "store"
    if found is None and ports.session_origin is not None:
        origin = ports.session_origin(key_id, location.account, location.account_id)
        result.origin = origin
        result.tried.extend(origin.notes)
        if origin.principal is not None:
            found, source = origin.principal, "cloudtrail"
            result.tried.append(f"CloudTrail: {key_id} acts as {origin.principal.describe()} ({origin.evidence})")
        else:
            result.tried.append(f"CloudTrail: no record names the principal of {key_id} yet (CloudTrail delivers "
                                "events minutes late)")
    if role is not None:
        if found is not None and (found.kind, found.name) != ("role", role):
            raise RoleMismatch(f"{key_id} acts as {found.describe()} (from the {source}), not as role {role} "
                               "given with --role", hint=f"re-run without --role, or with --role {found.name}"
                               if found.kind == "role" else "re-run without --role: it is a user's session")
        if found is None:
            result.tried.append(f"--role {role}: taken as given (nothing in CloudTrail confirms it yet)")
            found, source = Principal("role", role, location.account_id), "--role"
        else:
            source = f"{source}, matches --role"
    if found is None:
        raise NotContained(f"{key_id} is a temporary key and no principal to cut its session is known",
                           result.tried, hint="pass --role NAME (the role the session belongs to), or wait a few "
                                              "minutes for CloudTrail to deliver its records; for a session of an "
                                              "IAM user, revoke that user's access key")
    account = location.account
    if found.account_id and found.account_id != location.account_id:
        reaching = ports.locator.accounts_reaching(found.account_id, result.tried)
        account = reaching[0] if reaching else account
    return KeyIdentity(key_id, account, found.account_id or location.account_id,
                       found.name if found.kind == "user" else None, source,
                       credential=stored.credential if stored is not None else None,
                       role_name=found.name if found.kind == "role" else None, path=found.path)


__all__ = ["SESSION_DENY_POLICY", "Containment", "ContainmentPorts", "KeyIdentity", "NotContained", "RoleMismatch",
           "Step", "StepStatus", "contain", "identify", "iso_seconds", "session_deny_document", "t0_of_document"]
