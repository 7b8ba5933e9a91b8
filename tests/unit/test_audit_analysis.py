"""The audit's pure analysis (parsing, classification, summary, report) and its fan-out over a fake CloudTrail."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rotator.errors import AwsAccessDenied, AwsThrottled
from rotator.incident.audit.analysis import Category, TrailEvent, classify, event_from_record, ip_outside, summarize
from rotator.incident.audit.report import render_markdown, report_json, slack_lines
from rotator.incident.audit.run import LOOKBACK, WINDOW_MARGIN, audit_window, run_audit
from tests.unit.incident_fakes import ACCOUNT, FakeCloudTrail, record

KEY = "AKIAAAAAAAAAAAAAAAAA"
MINTED = "ASIABBBBBBBBBBBBBBBB"
MINTED_AGAIN = "ASIACCCCCCCCCCCCCCCC"
NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]


def event(name: str, **fields: object) -> TrailEvent:
    parsed = event_from_record(record(name, key_id=str(fields.pop("key_id", KEY)), **fields))  # type: ignore[arg-type]
    assert parsed is not None
    return parsed


# --- parsing and classification -----------------------------------------------------------------------------


def test_record_is_reduced_to_ids_and_facts() -> None:
    parsed = event_from_record(record("GetSessionToken", key_id=KEY, minted=MINTED, at="2026-01-01T10:00:00Z"))
    assert parsed is not None
    assert (parsed.name, parsed.key_id, parsed.principal, parsed.minted_key_id) == ("GetSessionToken", KEY,
                                                                                   "ci-payments", MINTED)
    assert parsed.at == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert "HIDDEN" not in repr(parsed)  # nothing of the credentials but the key id is kept


def test_unusable_records_are_none() -> None:
    assert event_from_record({"eventName": "X"}) is None
    assert event_from_record({"eventName": "X", "eventID": "1", "eventTime": "yesterday"}) is None


@pytest.mark.parametrize(("name", "error", "expected"), [
    ("CreateUser", None, Category.PERSISTENCE), ("CreateLoginProfile", None, Category.PERSISTENCE),
    ("UpdateLoginProfile", None, Category.PERSISTENCE), ("CreateAccessKey", None, Category.PERSISTENCE),
    ("AttachUserPolicy", None, Category.PERMISSION), ("PutRolePolicy", None, Category.PERMISSION),
    ("PutBucketPolicy", None, Category.ANTI_FORENSICS), ("CreatePolicyVersion", None, Category.PERMISSION),
    ("UpdateAssumeRolePolicy", None, Category.PERMISSION), ("AddUserToGroup", None, Category.PERMISSION),
    ("AttachSomethingPolicy", None, Category.PERMISSION), ("GetSessionToken", None, Category.SESSION),
    ("AssumeRole", None, Category.SESSION), ("GetFederationToken", None, Category.SESSION),
    ("RunInstances", None, Category.SPEND), ("StopLogging", None, Category.ANTI_FORENSICS),
    ("DeleteTrail", None, Category.ANTI_FORENSICS), ("DeleteDetector", None, Category.ANTI_FORENSICS),
    ("ScheduleKeyDeletion", None, Category.ANTI_FORENSICS), ("ListBuckets", None, Category.RECON),
    ("DescribeInstances", None, Category.RECON), ("TerminateInstances", "AccessDenied", Category.RECON),
    ("TerminateInstances", None, None),
])
def test_classification(name: str, error: str | None, expected: Category | None) -> None:
    assert classify(event(name, error=error)) is expected


def test_ip_outside_known_ranges() -> None:
    import ipaddress

    nets = [ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8::/32")]
    assert not ip_outside("203.0.113.9", nets)
    assert ip_outside("198.51.100.1", nets)
    assert not ip_outside("2001:db8::1", nets)
    assert not ip_outside("ec2.amazonaws.com", nets)  # AWS services are not addresses


# --- summary and findings ---------------------------------------------------------------------------------


def test_summary_counts_and_flags() -> None:
    events = [event("ListUsers", at="2026-01-01T10:00:00Z"), event("ListUsers", at="2026-01-01T10:01:00Z"),
              event("CreateUser", region="eu-west-1", ip="198.51.100.7", at="2026-01-01T10:02:00Z"),
              event("RunInstances", region="ap-southeast-2", at="2026-01-01T10:03:00Z"),
              event("AttachUserPolicy", error="AccessDenied", at="2026-01-01T10:04:00Z")]
    summary = summarize(events, known_cidrs=["203.0.113.0/24"], usual_regions=["us-east-1"])
    assert summary.total == 5
    assert summary.by_event[0] == ("ListUsers", 2)
    assert dict(summary.by_region) == {"us-east-1": 3, "eu-west-1": 1, "ap-southeast-2": 1}
    assert summary.unknown_ips == ("198.51.100.7",)
    assert dict(summary.by_error) == {"AccessDenied": 1}
    assert (summary.first_seen, summary.last_seen) == (events[0].at, events[-1].at)
    titles = {(f.category, f.severity): f.title for f in summary.findings}
    assert (Category.PERSISTENCE, "critical") in titles
    assert (Category.SPEND, "critical") in titles  # spend in a region the accounts do not use
    assert (Category.PERMISSION, "medium") in titles  # attempted and refused
    assert summary.findings[0].severity == "critical"


def test_no_known_cidrs_flags_no_address() -> None:
    assert summarize([event("ListUsers", ip="198.51.100.7")]).unknown_ips == ()


def test_a_burst_of_denied_calls_is_probing() -> None:
    start = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    denied = [event("ListRoles", error="AccessDenied", event_id=f"d{i}",
                    at=(start + timedelta(seconds=10 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")) for i in range(12)]
    summary = summarize(denied)
    assert any("burst of 12 denied calls" in f.title for f in summary.findings)
    sparse = [event("ListRoles", error="AccessDenied", event_id=f"s{i}",
                    at=(start + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ")) for i in range(12)]
    assert not any("burst" in f.title for f in summarize(sparse).findings)


def test_audit_window() -> None:
    created = NOW - timedelta(days=3)
    assert audit_window(NOW, key_created_at=created) == (created - WINDOW_MARGIN, NOW)
    assert audit_window(NOW) == (NOW - LOOKBACK, NOW)
    # Never clamped silently: an older start is run_audit's to report as a gap.
    assert audit_window(NOW, key_created_at=NOW - timedelta(days=400))[0] == NOW - timedelta(days=400) - WINDOW_MARGIN
    assert audit_window(NOW, since=NOW - timedelta(hours=2), key_created_at=created)[0] == NOW - timedelta(hours=2)


def test_a_key_older_than_90_days_is_a_gap_never_clamped_silently() -> None:
    created = NOW - timedelta(days=400)
    report = run_audit(FakeCloudTrail(REGIONS), KEY, start=created, end=NOW, regions=REGIONS,
                       now=NOW + timedelta(hours=1))
    assert report.start == NOW + timedelta(hours=1) - LOOKBACK
    assert report.state == "incomplete" and not report.complete
    assert any("more than 90 days ago" in gap and "CloudTrail Lake" in gap for gap in report.gaps)
    markdown = render_markdown(report)
    assert "**complete**" not in markdown and "coverage: complete" not in markdown
    assert "more than 90 days ago" in markdown


def test_coverage_states_what_lookup_events_cannot_show_and_what_is_pending() -> None:
    pending = run_audit(FakeCloudTrail(REGIONS), KEY, start=NOW - timedelta(days=1), end=NOW, regions=REGIONS,
                        cover_until=NOW + timedelta(minutes=3), follow_up_at=NOW + timedelta(minutes=23))
    assert pending.state == "pending follow-up" and not pending.failed and not pending.complete
    assert "pending follow-up" in pending.verdict and "2026-01-02T12:23:00Z" in pending.verdict
    markdown = render_markdown(pending)
    assert "**pending follow-up**" in markdown and "coverage: complete" not in markdown
    assert "management events only" in markdown and "data events" in markdown and "CloudTrail Lake" in markdown
    assert "per region and per account" in markdown
    later = run_audit(FakeCloudTrail(REGIONS), KEY, start=NOW - timedelta(days=1), end=NOW, regions=REGIONS,
                      cover_until=NOW - timedelta(minutes=20))
    assert later.state == "complete" and later.complete  # everything that mattered had time to be delivered
    assert "management events only" in render_markdown(later)
    assert report_json(later)["coverage"]["state"] == "complete"


# --- fan-out over a fake CloudTrail ---------------------------------------------------------------------------


def attacked_trail() -> FakeCloudTrail:
    trail = FakeCloudTrail(REGIONS)
    trail.add(record("GetCallerIdentity", key_id=KEY))
    trail.add(record("GetSessionToken", key_id=KEY, minted=MINTED, at="2026-01-01T11:00:00Z"))
    trail.add(record("RunInstances", key_id=MINTED, region="ap-southeast-2", at="2026-01-01T11:05:00Z"))
    trail.add(record("AssumeRole", key_id=MINTED, region="eu-west-1", minted=MINTED_AGAIN,
                     minted_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/admin/s", at="2026-01-01T11:06:00Z"))
    trail.add(record("StopLogging", key_id=MINTED_AGAIN, region="eu-west-1", at="2026-01-01T11:07:00Z"))
    return trail


def test_minted_keys_are_followed_recursively_in_every_region() -> None:
    trail = attacked_trail()
    report = run_audit(trail, KEY, start=NOW - timedelta(days=2), end=NOW, regions=REGIONS, account_id=ACCOUNT,
                       usual_regions=["us-east-1"])
    assert [k.key_id for k in report.keys] == [KEY, MINTED, MINTED_AGAIN]
    assert {(k, r) for k, r, _ in trail.lookups} == {(k, r) for k in (KEY, MINTED, MINTED_AGAIN) for r in REGIONS}
    minted_start = next(start for k, _, start in trail.lookups if k == MINTED)
    assert minted_start < datetime(2026, 1, 1, 11, 0, tzinfo=UTC)  # from its minting, not from the key's creation
    assert {e.name for e in report.events} >= {"RunInstances", "StopLogging", "AssumeRole"}
    assert dict(report.summary.by_region).keys() == set(REGIONS)
    assert not report.failed and "coverage incomplete" not in report.verdict
    assert report.state == "pending follow-up"  # it ends now: the last minutes may not be delivered yet
    roles = {k.key_id: k.principal for k in report.keys}
    assert roles[MINTED_AGAIN] is not None and roles[MINTED_AGAIN].name == "admin"


def test_a_failed_region_makes_coverage_incomplete_and_keeps_what_was_seen() -> None:
    trail = attacked_trail()
    trail.failing["eu-west-1"] = AwsThrottled("cloudtrail:LookupEvents@eu-west-1: still throttled after 9 attempts",
                                              code="ThrottlingException")
    trail.throttles_per_page = 2
    report = run_audit(trail, KEY, start=NOW - timedelta(days=2), end=NOW, regions=REGIONS, account_id=ACCOUNT)
    assert not report.complete
    assert {(c.key_id, c.region) for c in report.failed_lookups} >= {(KEY, "eu-west-1")}
    assert "coverage incomplete" in report.verdict
    markdown = render_markdown(report)
    assert "coverage incomplete" in markdown and "clean" not in markdown.lower()
    assert "still throttled" in markdown
    document = report_json(report)
    assert document["coverage"]["complete"] is False
    assert document["coverage"]["throttled"] == sum(c.throttled for c in report.coverage) > 0
    assert any("NOT covered" in line for line in slack_lines(report))


def test_a_key_minted_into_another_account_is_a_stated_gap() -> None:
    trail = FakeCloudTrail(REGIONS)
    trail.add(record("AssumeRole", key_id=KEY, minted=MINTED, minted_arn="arn:aws:sts::999988887777:assumed-role/x/y"))
    report = run_audit(trail, KEY, start=NOW - timedelta(days=2), end=NOW, regions=REGIONS, account_id=ACCOUNT)
    assert not report.complete and report.failed
    assert any("999988887777" in gap and "[[aws.accounts]]" in gap for gap in report.gaps)
    assert all(k != MINTED for k, _, _ in trail.lookups)
    minted = next(k for k in report.keys if k.key_id == MINTED)
    assert minted.principal is not None and (minted.principal.name, minted.principal.account_id) == (
        "x", "999988887777")


def test_default_regions_come_from_the_account_and_always_include_us_east_1() -> None:
    trail = FakeCloudTrail(["eu-west-1", "ap-southeast-2"])
    report = run_audit(trail, KEY, start=NOW - timedelta(days=1), end=NOW)
    assert report.regions == ("us-east-1", "eu-west-1", "ap-southeast-2")
    trail.list_error = AwsAccessDenied("ec2:DescribeRegions: AccessDenied", code="AccessDenied")
    limited = run_audit(trail, KEY, start=NOW - timedelta(days=1), end=NOW)
    assert limited.regions == ("us-east-1",) and not limited.complete


def test_report_json_is_serialisable_and_complete_report_is_never_called_clean() -> None:
    report = run_audit(FakeCloudTrail(REGIONS), KEY, start=NOW - timedelta(days=1), end=NOW, regions=REGIONS,
                       now=NOW + timedelta(minutes=16))
    assert report.complete and "no suspicious activity found" in report.verdict
    assert "clean" not in render_markdown(report).lower()
    text = json.dumps(report_json(report))
    assert "rotator audit --key AKIAAAAAAAAAAAAAAAAA --since" in text


# --- pacing -----------------------------------------------------------------------------------------------------


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def test_the_per_region_cloudtrail_pace_spaces_requests_at_the_rate() -> None:
    """CloudTrail allows 2 LookupEvents a second per region: the adapter's bucket (burst 1) spaces them."""
    from rotator.ratelimit import AdaptiveTokenBucket

    clock = ManualClock()
    bucket = AdaptiveTokenBucket(2.0, burst=1, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        bucket.acquire()
    assert clock.waits == [0.5, 0.5, 0.5, 0.5]  # the first is free, then one every 1/rate seconds
    clock.now += 10
    assert bucket.acquire() == 0  # an idle bucket holds one token, not a burst


def test_backoff_doubles_up_to_the_cap() -> None:
    from rotator.adapters.cloudtrail import Backoff

    backoff = Backoff(base=1.0, cap=4.0)
    for attempt, step in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)):
        assert step / 2 <= backoff.delay(attempt) <= step
