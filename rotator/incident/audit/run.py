"""The CloudTrail audit of the compromised-key playbook, written against rotator.incident.ports.CloudTrail.

LookupEvents by AccessKeyId in every region at once (each region is paced by the adapter's token bucket,
so regions run in parallel and the audit takes about as long as its busiest region), then the same for
every session key the audited key minted (GetSessionToken, GetFederationToken, AssumeRole and its
variants), recursively and to any depth: a role session that assumes another role is followed too, and a
key is followed once, so a loop of roles assuming each other ends. A session acts in the account of the
principal it belongs to, so its calls are looked up in that account's CloudTrail: a configured account's, or
the session is a coverage gap naming the account.

Nothing is ever called "clean". The report says what was covered, and what LookupEvents cannot show:
management events only, 90 days back, per region and account, delivered minutes late.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rotator.errors import AwsError
from rotator.incident.audit.analysis import Summary, TrailEvent, event_from_record, summarize
from rotator.incident.ports import CloudTrail
from rotator.incident.principals import ROLE_SESSION_CALLS, USER_SESSION_CALLS, Principal, role_of_session_call
from rotator.incident.sessions import FoundSession

GLOBAL_EVENTS_REGION = "us-east-1"  # IAM and (global endpoint) STS calls are logged here
# LookupEvents returns "events that occurred in a Region within the last 90 days" (CloudTrail API reference).
LOOKBACK = timedelta(days=90)
# CloudTrail delivers most events within about 15 minutes of the call, without a guarantee
# (CloudTrail User Guide, "How CloudTrail works").
DELIVERY_DELAY = timedelta(minutes=15)
MINTED_SKEW = timedelta(minutes=1)
WINDOW_MARGIN = timedelta(minutes=5)  # a minted key's first call may carry an earlier timestamp than its minting
MAX_KEYS = 50  # bound on keys followed, so a minting loop cannot run away
# The longest a temporary key lives (GetSessionToken, GetFederationToken): how far back its audit looks.
TEMPORARY_KEY_LIFETIME = timedelta(hours=36)
MAX_WORKERS = 64
# What no LookupEvents query can show, stated in every report (CloudTrail API reference, LookupEvents: "Looks up
# management events or CloudTrail Insights events"; data events are logged only by trails or event data stores
# configured for them).
NOT_IN_LOOKUP_EVENTS = (
    "LookupEvents shows management events only: data events (S3 object reads and writes, Lambda invocations, "
    "DynamoDB item reads, and the like) are not in it. To see them, query a trail that logs data events (its S3 "
    "bucket, e.g. with Athena) or a CloudTrail Lake event data store.")


@dataclass(frozen=True)
class RegionCoverage:
    key_id: str
    region: str
    pages: int = 0
    events: int = 0
    throttled: int = 0
    unreadable: int = 0  # records that were not CloudTrail JSON
    error: str | None = None
    account_id: str | None = None


@dataclass(frozen=True)
class AuditedKey:
    key_id: str
    since: datetime
    minted_by: str | None = None  # "GetSessionToken by AKIA… at …" for a followed key
    minted_via: str | None = None  # the minting call: GetSessionToken, GetFederationToken, AssumeRole, …
    account_id: str | None = None  # the account whose CloudTrail holds its calls
    principal: Principal | None = None  # who it acts as
    minted_at: datetime | None = None
    parent: str | None = None  # the key that minted it

    @property
    def session(self) -> FoundSession | None:
        """This key as a session to cut (the audited key itself is not one)."""
        if self.parent is None or self.principal is None:
            return None
        return FoundSession(self.key_id, self.principal, self.minted_at, self.minted_by or "")


@dataclass(frozen=True)
class AuditReport:
    key_id: str
    start: datetime
    end: datetime
    regions: tuple[str, ...]
    keys: tuple[AuditedKey, ...]
    coverage: tuple[RegionCoverage, ...]
    events: tuple[TrailEvent, ...]
    summary: Summary
    gaps: tuple[str, ...] = ()  # what could not be covered, besides failed region lookups
    # The gaps above that come from a lookup that failed (listing the enabled regions) and may work next time.
    retriable: tuple[str, ...] = ()
    cutting: bool = False  # each session found was handed over to be cut (a playbook's audit, not a read-only one)
    account_id: str | None = None
    delivery_delay: timedelta = DELIVERY_DELAY
    now: datetime | None = None  # when the audit ran (default: end)
    cover_until: datetime | None = None  # what the audit must reach to be complete (an incident's T0; default end)
    follow_up_at: datetime | None = None  # when the pending part is audited again, if someone will

    @property
    def failed_lookups(self) -> tuple[RegionCoverage, ...]:
        return tuple(c for c in self.coverage if c.error is not None)

    @property
    def failed(self) -> bool:
        """Some region, account or stretch of time could not be looked at: coverage incomplete."""
        return bool(self.gaps or self.failed_lookups)

    @property
    def reliable_until(self) -> datetime:
        """Events before this have had the delivery delay to arrive; later ones may still come."""
        return min(self.end, (self.now or self.end) - self.delivery_delay)

    @property
    def pending(self) -> bool:
        """Part of what must be covered lies inside the delivery delay: not a failure, a follow-up's job."""
        return self.reliable_until < (self.cover_until or self.end)

    @property
    def state(self) -> str:
        return "incomplete" if self.failed else "pending follow-up" if self.pending else "complete"

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    @property
    def sessions(self) -> tuple[FoundSession, ...]:
        return tuple(s for s in (k.session for k in self.keys) if s is not None)

    @property
    def unattributed(self) -> tuple[str, ...]:
        """Session keys found minted whose principal the records do not name: none of them is cut."""
        return tuple(k.key_id for k in self.keys if self.cutting and k.parent is not None and k.principal is None)

    @property
    def unattributed_lines(self) -> tuple[str, ...]:
        return tuple(unattributed_gap(k.key_id, k.minted_by or "?") for k in self.keys
                     if self.cutting and k.parent is not None and k.principal is None)

    @property
    def pending_note(self) -> str:
        when = (f"the follow-up scheduled at {_iso(self.follow_up_at)} (run by `rotator run`) covers them"
                if self.follow_up_at else
                f"a re-run after {_iso((self.cover_until or self.end) + self.delivery_delay)} covers them")
        return (f"pending follow-up: calls made after {_iso(self.reliable_until)} may not be delivered by CloudTrail "
                f"yet (delivery delay about {_minutes(self.delivery_delay)}); {when}")

    @property
    def verdict(self) -> str:
        if self.failed:
            missing = len(self.failed_lookups) + len(self.gaps)
            return (f"coverage incomplete: {missing} part(s) of the audit could not be covered; the findings "
                    "below are only what was seen")
        found = (f"{len(self.summary.findings)} finding(s)" if self.summary.findings else
                 "no suspicious activity found")
        scope = f"{found} in {len(self.regions)} region(s) over the audited window"
        return f"{scope}; {self.pending_note}" if self.pending else f"{scope} (management events)"


def unattributed_gap(key_id: str, origin: str) -> str:
    """The coverage gap of a session whose principal is unknown: it is audited, but no deny covers it."""
    return (f"session {key_id} ({origin}): principal unknown (the record names no role or user it acts as), NOT "
            f"cut: find the role it belongs to and run `rotator revoke --key {key_id} --role NAME`")


def _iso(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def _minutes(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} minutes" if seconds % 60 == 0 else f"{seconds} seconds"


def audit_window(now: datetime, *, key_created_at: datetime | None = None,
                 since: datetime | None = None) -> tuple[datetime, datetime]:
    """From --since, else the key's creation, else 90 days ago. Never clamped here: a start older than
    LookupEvents keeps is run_audit's to report as a gap.

    The start moves back by WINDOW_MARGIN: CloudTrail times are whole seconds and services' clocks differ,
    so a call made in the second the key was created must not fall before the window."""
    start = since or (key_created_at - WINDOW_MARGIN if key_created_at else now - LOOKBACK)
    return start, now


def key_window(now: datetime, *, key_created_at: datetime | None, temporary: bool,
               since: datetime | None = None) -> tuple[datetime, datetime]:
    """The audit window of one key: from --since, else its creation, else (a temporary key, whose creation
    IAM does not list) its longest possible life, else 90 days."""
    created = key_created_at or (now - TEMPORARY_KEY_LIFETIME if temporary else None)
    return audit_window(now, key_created_at=created, since=since)


def resolve_regions(trail: CloudTrail, configured: Sequence[str] | None, gaps: list[str],
                    account_id: str | None = None, retriable: list[str] | None = None) -> tuple[str, ...]:
    """The configured audit regions, else every enabled region; us-east-1 always (IAM and STS events)."""
    if configured:
        regions = list(configured)
    else:
        try:
            regions = trail.enabled_regions()
        except AwsError as exc:
            where = f" of account {account_id}" if account_id else ""
            gap = (f"could not list the enabled regions{where} ({exc.message}); only {GLOBAL_EVENTS_REGION} was "
                   "audited there: set [aws] audit_regions to name them")
            gaps.append(gap)
            if retriable is not None:
                retriable.append(gap)
            regions = []
    return tuple(dict.fromkeys([GLOBAL_EVENTS_REGION, *regions]))


def _one_region(trail: CloudTrail, key: AuditedKey, region: str,
                end: datetime) -> tuple[RegionCoverage, list[TrailEvent]]:
    pages = throttled = unreadable = 0
    events: list[TrailEvent] = []
    error: str | None = None
    try:
        for page in trail.lookup_by_key(region, key.key_id, key.since, end):
            pages += 1
            throttled += page.throttled
            for record in page.records:
                event = event_from_record(record)
                if event is None:
                    unreadable += 1
                else:
                    events.append(event)
    except AwsError as exc:
        error = str(exc)
    return RegionCoverage(key.key_id, region, pages, len(events), throttled, unreadable, error,
                          key.account_id), events


@dataclass
class _Fanout:
    trail: CloudTrail
    configured_regions: Sequence[str] | None
    end: datetime
    account_id: str | None
    trail_for: Callable[[str], CloudTrail | None]
    max_keys: int
    pool: ThreadPoolExecutor
    on_region: Callable[[RegionCoverage], None] | None
    on_session: Callable[[FoundSession], None] | None
    name_account: Callable[[str | None], str | None]
    keys: dict[str, AuditedKey] = field(default_factory=dict)
    events: dict[str, TrailEvent] = field(default_factory=dict)
    coverage: list[RegionCoverage] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    retriable: list[str] = field(default_factory=list)
    regions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # account id ("" = audited) → regions
    pending: set[Future[tuple[RegionCoverage, list[TrailEvent]]]] = field(default_factory=set)

    def _trail_of(self, account_id: str | None) -> tuple[CloudTrail | None, str]:
        if account_id is None or account_id == self.account_id:
            return self.trail, ""
        return self.trail_for(account_id), account_id

    def _regions_of(self, trail: CloudTrail, account: str) -> tuple[str, ...]:
        if account not in self.regions:
            self.regions[account] = resolve_regions(trail, self.configured_regions, self.gaps, account or None,
                                                    self.retriable)
        return self.regions[account]

    def follow(self, key: AuditedKey) -> None:
        self.keys[key.key_id] = key
        trail, account = self._trail_of(key.account_id)
        if trail is None:
            self.gaps.append(self._unreachable(key))
            return
        for region in self._regions_of(trail, account):
            self.pending.add(self.pool.submit(_one_region, trail, key, region, self.end))

    def _unreachable(self, key: AuditedKey) -> str:
        why = ("which no [[aws.accounts]] entry reaches" if self.account_id else
               "and the audited key's own account could not be told (sts:GetCallerIdentity failed), so rotator "
               "cannot tell whether that is the same account")
        return (f"{key.key_id} ({key.minted_by}) acts in account {key.account_id}, {why}: its calls are in that "
                f"account's CloudTrail. Add an [[aws.accounts]] entry with a role in {key.account_id} and run "
                f"`rotator audit --key {key.key_id}`, or in that account run `aws cloudtrail lookup-events "
                f"--lookup-attributes AttributeKey=AccessKeyId,AttributeValue={key.key_id} --region REGION` in every "
                "region")

    def run(self) -> None:
        while self.pending:
            done, _ = wait(self.pending, return_when=FIRST_COMPLETED)
            for future in done:
                self.pending.discard(future)
                coverage, events = future.result()
                self.coverage.append(coverage)
                if self.on_region is not None:
                    self.on_region(coverage)
                for event in events:
                    self.events.setdefault(event.event_id, event)
                    self._maybe_follow(event)

    def _maybe_follow(self, event: TrailEvent) -> None:
        minted = event.minted_key_id
        if minted is None or event.error_code or minted in self.keys:
            return
        parent = self.keys.get(event.key_id or "")
        origin = f"{event.name} by {event.key_id or '?'} at {_iso(event.at)} in {event.region}"
        principal, account_id = self._principal_of(event, parent)
        key = AuditedKey(minted, event.at - MINTED_SKEW, origin, event.name, account_id, principal, event.at,
                         event.key_id)
        session = key.session
        if session is not None and self.on_session is not None:
            self.on_session(session)  # first: cutting it must not wait for its own lookups to be set up
        if principal is None and self.on_session is not None:
            # No deny can be put on a principal nobody can name: the session stays usable, and says so.
            self.gaps.append(unattributed_gap(minted, origin))
        if len(self.keys) >= self.max_keys:
            self.keys[minted] = key
            self.gaps.append(f"{minted} ({origin}) not followed: more than {self.max_keys} keys minted")
        else:
            self.follow(key)

    def _principal_of(self, event: TrailEvent, parent: AuditedKey | None) -> tuple[Principal | None, str | None]:
        """Who a minted session acts as, and the account its calls are logged in."""
        parent_account = parent.account_id if parent is not None else event.account_id
        if event.name in ROLE_SESSION_CALLS:
            role = role_of_session_call(event.role_arn, event.assumed_arn)
            if role is None:
                return None, event.minted_account or parent_account
            return role.in_account(self.name_account(role.account_id)), role.account_id
        if event.name in USER_SESSION_CALLS:
            # The session acts as the IAM user who asked for it (only users may call these).
            return (parent.principal if parent is not None else None), parent_account
        return None, event.minted_account or parent_account


def run_audit(trail: CloudTrail, key_id: str, *, start: datetime, end: datetime,
              regions: Sequence[str] | None = None, account_id: str | None = None,
              known_cidrs: Sequence[str] = (), usual_regions: Iterable[str] = (), max_keys: int = MAX_KEYS,
              on_region: Callable[[RegionCoverage], None] | None = None,
              trail_for: Callable[[str], CloudTrail | None] | None = None, principal: Principal | None = None,
              seeds: Sequence[AuditedKey] = (), on_session: Callable[[FoundSession], None] | None = None,
              delivery_delay: timedelta = DELIVERY_DELAY, now: datetime | None = None,
              cover_until: datetime | None = None, follow_up_at: datetime | None = None,
              name_account: Callable[[str | None], str | None] | None = None) -> AuditReport:
    """Audit ``key_id`` (acting as ``principal`` in ``account_id``, whose CloudTrail is ``trail``) and every key
    it minted, in every region, between start and end. ``trail_for`` reaches the CloudTrail of another
    configured account by account id (None when none does). ``seeds``: session keys found earlier, looked up
    again from their ``since``. ``on_session`` hears each session key as soon as its minting record is read.
    ``name_account``: the configured account name of an account id (None when none reaches it)."""
    gaps: list[str] = []
    earliest = (now or end) - LOOKBACK
    if start < earliest:
        gaps.append(f"the window starts {_iso(start)}, more than 90 days ago: LookupEvents keeps 90 days, so "
                    f"{_iso(start)} → {_iso(earliest)} was not audited. Look there in the trail's S3 bucket (e.g. "
                    "with Athena) or a CloudTrail Lake event data store, if one was logging then")
        start = earliest
    retriable: list[str] = []
    chosen = resolve_regions(trail, regions, gaps, account_id, retriable)
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, 2 * len(chosen) * (1 + len(seeds))),
                            thread_name_prefix="audit") as pool:
        fanout = _Fanout(trail, regions, end, account_id, trail_for or (lambda _: None), max_keys, pool, on_region,
                         on_session, name_account or (lambda _: None), gaps=gaps, retriable=retriable,
                         regions={"": chosen})
        fanout.follow(AuditedKey(key_id, start, account_id=account_id, principal=principal))
        for seed in seeds:
            if seed.key_id not in fanout.keys:
                fanout.follow(seed)
                if seed.session is not None and on_session is not None:
                    on_session(seed.session)
        fanout.run()
    unreadable = sum(c.unreadable for c in fanout.coverage)
    if unreadable:
        fanout.gaps.append(f"{unreadable} record(s) were not readable CloudTrail JSON")
    events = tuple(sorted(fanout.events.values(), key=lambda e: (e.at, e.event_id)))
    coverage = tuple(sorted(fanout.coverage, key=lambda c: (c.key_id != key_id, c.key_id, c.region)))
    all_regions = tuple(dict.fromkeys(r for listed in fanout.regions.values() for r in listed))
    return AuditReport(
        key_id=key_id, start=start, end=end, regions=all_regions, keys=tuple(fanout.keys.values()),
        coverage=coverage, events=events,
        summary=summarize(events, known_cidrs=known_cidrs, usual_regions=usual_regions),
        gaps=tuple(fanout.gaps), retriable=tuple(fanout.retriable), account_id=account_id,
        delivery_delay=delivery_delay, now=now, cutting=on_session is not None,
        cover_until=cover_until, follow_up_at=follow_up_at,
    )
