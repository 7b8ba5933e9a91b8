"""Where a temporary (ASIA) key came from: the principal its session acts as, and the credential that minted it.

STS GetAccessKeyInfo names only the account; "to learn who requested the temporary credentials for an ASIA
access key, view the AWS STS events in your CloudTrail logs" (STS API reference, GetAccessKeyInfo). Two
LookupEvents searches, per region, all at once:

1. the minting record: events named AssumeRole, AssumeRoleWithSAML, AssumeRoleWithWebIdentity,
   GetSessionToken or GetFederationToken whose ``responseElements.credentials.accessKeyId`` is the key. It
   names the principal (``requestParameters.roleArn``, or the calling user) and the upstream credential
   (the record's ``userIdentity.accessKeyId``). LookupEvents cannot search response elements, so every such
   event of the key's possible lifetime is read.
2. the session's own calls (LookupEvents by AccessKeyId): their ``userIdentity`` names the role
   (``sessionContext.sessionIssuer``) or the user, but not the upstream credential.

The minting record wins when both answer; either alone names the principal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime

from rotator.errors import AwsError
from rotator.incident.audit.analysis import MINTING_EVENTS, TrailEvent, event_from_record
from rotator.incident.ports import CloudTrail, TrailPage
from rotator.incident.principals import ROLE_SESSION_CALLS, Principal, principal_of_arn, role_of_session_call


@dataclass(frozen=True)
class SessionOrigin:
    key_id: str
    principal: Principal | None = None  # who the session acts as
    minted_via: str | None = None  # the STS call that minted it
    minted_at: datetime | None = None
    upstream_key: str | None = None  # the credential that called STS
    upstream_arn: str | None = None  # and whose it is
    evidence: str = ""  # which record said so
    notes: tuple[str, ...] = ()  # every search that failed
    # The caller's account, when the record is the role account's copy of a cross-account AssumeRole: that copy
    # names the calling account but not the key (CloudTrail User Guide, "userIdentity element": AWSAccount).
    caller_account: str | None = None

    @property
    def upstream_command(self) -> str | None:
        """What contains whoever holds the upstream credential (they can mint the session again after T0)."""
        return f"rotator revoke --key {self.upstream_key}" if self.upstream_key else None


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _minting_principal(event: TrailEvent) -> Principal | None:
    if event.name in ROLE_SESSION_CALLS:
        return role_of_session_call(event.role_arn, event.assumed_arn)
    return principal_of_arn(event.identity_arn)  # GetSessionToken / GetFederationToken: the calling user


def _acting_principal(event: TrailEvent) -> Principal | None:
    if event.issuer_arn:
        return principal_of_arn(event.issuer_arn)
    found = principal_of_arn(event.identity_arn)
    return found if found is not None and found.kind == "user" else None


class _Search:
    def __init__(self, trail: CloudTrail, key_id: str, start: datetime, end: datetime) -> None:
        self.trail, self.key_id, self.start, self.end = trail, key_id, start, end
        self.minting: SessionOrigin | None = None
        self.acting: SessionOrigin | None = None
        self.notes: list[str] = []
        self.lock = threading.Lock()
        self.done = threading.Event()

    def _events(self, pages: Iterator[TrailPage]) -> Iterator[TrailEvent]:
        for page in pages:
            for record in page.records:
                event = event_from_record(record)
                if event is not None:
                    yield event
            if self.done.is_set():
                return

    def minting_record(self, region: str) -> None:
        for name in sorted(MINTING_EVENTS):
            try:
                for event in self._events(self.trail.lookup_by_event(region, name, self.start, self.end)):
                    if event.minted_key_id != self.key_id or event.error_code:
                        continue
                    origin = SessionOrigin(
                        self.key_id, _minting_principal(event), event.name, event.at, event.key_id,
                        event.identity_arn, f"{event.name} record {event.event_id} in {region} at {_iso(event.at)}",
                        caller_account=event.identity_account if event.identity_account != event.account_id
                        else None)
                    with self.lock:
                        self.minting = self.minting or origin
                    self.done.set()
                    return
            except AwsError as exc:
                with self.lock:
                    self.notes.append(f"cloudtrail:LookupEvents EventName={name} in {region}: {exc.message}")
            if self.done.is_set():
                return

    def own_calls(self, region: str) -> None:
        try:
            for event in self._events(self.trail.lookup_by_key(region, self.key_id, self.start, self.end)):
                principal = _acting_principal(event)
                if principal is None:
                    continue
                with self.lock:
                    self.acting = self.acting or SessionOrigin(
                        self.key_id, principal, evidence=f"its own {event.name} call in {region} at "
                                                         f"{_iso(event.at)}")
                return
        except AwsError as exc:
            with self.lock:
                self.notes.append(f"cloudtrail:LookupEvents AccessKeyId={self.key_id} in {region}: {exc.message}")


def find_origin(trail: CloudTrail, key_id: str, regions: Sequence[str], start: datetime, end: datetime, *,
                caller_trail: Callable[[str], CloudTrail | None] | None = None) -> SessionOrigin:
    """Search the CloudTrail of the account that owns ``key_id`` (see the module docstring). When the minting
    record found there is the role account's copy of a cross-account AssumeRole, the caller's copy (which names
    the upstream key) is searched for in the caller's account too, if ``caller_trail`` reaches it."""
    origin = _search(trail, key_id, regions, start, end, own_calls=True)
    other = caller_trail(origin.caller_account) if caller_trail and origin.caller_account else None
    if origin.upstream_key is None and other is not None:
        upstream = _search(other, key_id, regions, start, end, own_calls=False)
        if upstream.upstream_key is not None:
            return replace(origin, upstream_key=upstream.upstream_key, upstream_arn=upstream.upstream_arn,
                           evidence=f"{origin.evidence}; the caller's copy: {upstream.evidence}",
                           notes=origin.notes + upstream.notes)
        return replace(origin, notes=origin.notes + upstream.notes)
    return origin


def _search(trail: CloudTrail, key_id: str, regions: Sequence[str], start: datetime, end: datetime, *,
            own_calls: bool) -> SessionOrigin:
    search = _Search(trail, key_id, start, end)
    with ThreadPoolExecutor(max_workers=max(2, 2 * len(regions)), thread_name_prefix="origin") as pool:
        futures = [pool.submit(search.minting_record, region) for region in regions]
        if own_calls:
            futures += [pool.submit(search.own_calls, region) for region in regions]
        for future in futures:
            future.result()
    notes = tuple(search.notes)
    if search.minting is not None and search.minting.principal is not None:
        return replace(search.minting, notes=notes)
    if search.acting is not None:
        return replace(search.acting, notes=notes)
    return SessionOrigin(key_id, notes=notes)
