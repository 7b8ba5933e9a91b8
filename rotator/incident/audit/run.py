"""The CloudTrail audit of the compromised-key playbook, written against rotator.incident.ports.CloudTrail.

LookupEvents by AccessKeyId in every region at once (each region is paced by the adapter's token bucket,
so regions run in parallel and the audit takes about as long as its busiest region), then the same for
every temporary key the audited key minted (GetSessionToken, AssumeRole, GetFederationToken), recursively.
Nothing is ever called "clean": the report states what was covered and says "coverage incomplete" when
any region, page or key could not be looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rotator.errors import AwsError
from rotator.incident.audit.analysis import Summary, TrailEvent, event_from_record, summarize
from rotator.incident.ports import CloudTrail

GLOBAL_EVENTS_REGION = "us-east-1"  # IAM and (global endpoint) STS calls are logged here
LOOKBACK = timedelta(days=90)  # what LookupEvents keeps
DELIVERY_DELAY = timedelta(minutes=15)  # CloudTrail delivers most events within about 15 minutes
MINTED_SKEW = timedelta(minutes=1)
WINDOW_MARGIN = timedelta(minutes=5)  # a minted key's first call may carry an earlier timestamp than its minting
MAX_KEYS = 50  # bound on keys followed, so a minting loop cannot run away
# The longest a temporary key lives (GetSessionToken, GetFederationToken): how far back its audit looks.
TEMPORARY_KEY_LIFETIME = timedelta(hours=36)
MAX_WORKERS = 64


@dataclass(frozen=True)
class RegionCoverage:
    key_id: str
    region: str
    pages: int = 0
    events: int = 0
    throttled: int = 0
    unreadable: int = 0  # records that were not CloudTrail JSON
    error: str | None = None


@dataclass(frozen=True)
class AuditedKey:
    key_id: str
    since: datetime
    minted_by: str | None = None  # "GetSessionToken by AKIA… at …" for a followed key
    minted_via: str | None = None  # the minting call: GetSessionToken, GetFederationToken or AssumeRole


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
    account_id: str | None = None

    @property
    def failed_lookups(self) -> tuple[RegionCoverage, ...]:
        return tuple(c for c in self.coverage if c.error is not None)

    @property
    def complete(self) -> bool:
        return not self.gaps and not self.failed_lookups

    @property
    def verdict(self) -> str:
        if not self.complete:
            missing = len(self.failed_lookups) + len(self.gaps)
            return (f"coverage incomplete: {missing} part(s) of the audit could not be covered; the findings "
                    "below are only what was seen")
        if self.summary.findings:
            return f"{len(self.summary.findings)} finding(s) in {len(self.regions)} region(s)"
        return (f"no suspicious activity found in {len(self.regions)} region(s) over the audited window "
                "(events from the last 15 minutes may not be delivered yet)")


def audit_window(now: datetime, *, key_created_at: datetime | None = None,
                 since: datetime | None = None) -> tuple[datetime, datetime]:
    """From --since, else the key's creation, else 90 days ago; never earlier than LookupEvents keeps.

    The start moves back by WINDOW_MARGIN: CloudTrail times are whole seconds and services' clocks differ,
    so a call made in the second the key was created must not fall before the window."""
    earliest = now - LOOKBACK
    start = since or (key_created_at - WINDOW_MARGIN if key_created_at else earliest)
    return max(start, earliest), now


def key_window(now: datetime, *, key_created_at: datetime | None, temporary: bool,
               since: datetime | None = None) -> tuple[datetime, datetime]:
    """The audit window of one key: from --since, else its creation, else (a temporary key, whose creation
    IAM does not list) its longest possible life, else 90 days."""
    created = key_created_at or (now - TEMPORARY_KEY_LIFETIME if temporary else None)
    return audit_window(now, key_created_at=created, since=since)


def resolve_regions(trail: CloudTrail, configured: Sequence[str] | None, gaps: list[str]) -> tuple[str, ...]:
    """The configured audit regions, else every enabled region; us-east-1 always (IAM and STS events)."""
    if configured:
        regions = list(configured)
    else:
        try:
            regions = trail.enabled_regions()
        except AwsError as exc:
            gaps.append(f"could not list the enabled regions ({exc.message}); only {GLOBAL_EVENTS_REGION} "
                        "was audited: set [aws] audit_regions to name them")
            regions = []
    return tuple(dict.fromkeys([GLOBAL_EVENTS_REGION, *regions]))


def _one_region(trail: CloudTrail, key_id: str, region: str, start: datetime,
                end: datetime) -> tuple[RegionCoverage, list[TrailEvent]]:
    pages = throttled = unreadable = 0
    events: list[TrailEvent] = []
    error: str | None = None
    try:
        for page in trail.lookup_by_key(region, key_id, start, end):
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
    return RegionCoverage(key_id, region, pages, len(events), throttled, unreadable, error), events


@dataclass
class _Fanout:
    trail: CloudTrail
    regions: tuple[str, ...]
    end: datetime
    account_id: str | None
    max_keys: int
    pool: ThreadPoolExecutor
    on_region: Callable[[RegionCoverage], None] | None
    keys: dict[str, AuditedKey] = field(default_factory=dict)
    events: dict[str, TrailEvent] = field(default_factory=dict)
    coverage: list[RegionCoverage] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    pending: set[Future[tuple[RegionCoverage, list[TrailEvent]]]] = field(default_factory=set)

    def follow(self, key: AuditedKey) -> None:
        self.keys[key.key_id] = key
        for region in self.regions:
            self.pending.add(self.pool.submit(_one_region, self.trail, key.key_id, region, key.since, self.end))

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
        origin = f"{event.name} by {event.key_id or '?'} at {event.at.isoformat()} in {event.region}"
        if event.minted_account and self.account_id and event.minted_account != self.account_id:
            self.keys[minted] = AuditedKey(minted, event.at, origin, event.name)
            self.gaps.append(f"{minted} ({origin}) acts in account {event.minted_account}: its calls are logged "
                             "in that account's CloudTrail; audit it there")
            return
        if len(self.keys) >= self.max_keys:
            self.gaps.append(f"{minted} ({origin}) not followed: more than {self.max_keys} keys minted")
            return
        self.follow(AuditedKey(minted, event.at - MINTED_SKEW, origin, event.name))


def run_audit(trail: CloudTrail, key_id: str, *, start: datetime, end: datetime,
              regions: Sequence[str] | None = None, account_id: str | None = None,
              known_cidrs: Sequence[str] = (), usual_regions: Iterable[str] = (), max_keys: int = MAX_KEYS,
              on_region: Callable[[RegionCoverage], None] | None = None) -> AuditReport:
    """Audit ``key_id`` and every key it minted, in every region, between start and end."""
    gaps: list[str] = []
    chosen = resolve_regions(trail, regions, gaps)
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, 2 * len(chosen)), thread_name_prefix="audit") as pool:
        fanout = _Fanout(trail, chosen, end, account_id, max_keys, pool, on_region, gaps=gaps)
        fanout.follow(AuditedKey(key_id, start))
        fanout.run()
    unreadable = sum(c.unreadable for c in fanout.coverage)
    if unreadable:
        fanout.gaps.append(f"{unreadable} record(s) were not readable CloudTrail JSON")
    events = tuple(sorted(fanout.events.values(), key=lambda e: (e.at, e.event_id)))
    coverage = tuple(sorted(fanout.coverage, key=lambda c: (c.key_id != key_id, c.key_id, c.region)))
    return AuditReport(
        key_id=key_id, start=start, end=end, regions=chosen, keys=tuple(fanout.keys.values()), coverage=coverage,
        events=events, summary=summarize(events, known_cidrs=known_cidrs, usual_regions=usual_regions),
        gaps=tuple(fanout.gaps), account_id=account_id,
    )
