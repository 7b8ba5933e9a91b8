"""The audit's findings: what a responder is told about a compromised key's calls, how severe, in which order."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from rotator.incident.audit.analysis import Category, Finding, TrailEvent, findings, summarize

KEY = "AKIAAAAAAAAAAAAAAAAA"
T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
PROBE_TITLE = "burst of {} denied calls within 5 minutes (probing permissions)"


def call(name: str, at: timedelta = timedelta(0), *, error: str | None = None, region: str = "us-east-1",
         ip: str | None = "203.0.113.9", event_id: str | None = None) -> TrailEvent:
    return TrailEvent(event_id=event_id or f"{name}@{region}@{at}", name=name, source="", region=region,
                      at=T0 + at, key_id=KEY, principal="ci-payments", source_ip=ip, user_agent=None,
                      error_code=error, read_only=False)


def denied(at: timedelta) -> TrailEvent:
    return call("ListRoles", at, error="AccessDenied")


def found(events: Sequence[TrailEvent], *, usual_regions: set[str] | None = None,
          unknown_ips: set[str] | None = None) -> list[Finding]:
    return findings(events, usual_regions=usual_regions or set(), unknown_ips=unknown_ips or set())


def titled(result: Sequence[Finding], start: str) -> Finding:
    matching = [f for f in result if f.title.startswith(start)]
    assert len(matching) == 1, [f.title for f in result]
    return matching[0]


def bursts(result: Sequence[Finding]) -> list[Finding]:
    return [f for f in result if f.title.startswith("burst of")]


# --- one category, succeeded or refused -------------------------------------------------------------------------


def test_succeeded_and_refused_calls_of_a_category_are_separate_findings() -> None:
    events = [call("CreateUser", timedelta(minutes=1)), call("CreateUser", timedelta(minutes=3)),
              call("CreateAccessKey", timedelta(minutes=2), error="AccessDenied")]
    result = found(events)
    succeeded = titled(result, "2 identity persistence call(s) succeeded")
    assert (succeeded.category, succeeded.severity, succeeded.count) == (Category.PERSISTENCE, "critical", 2)
    assert (succeeded.first_seen, succeeded.last_seen) == (T0 + timedelta(minutes=1), T0 + timedelta(minutes=3))
    assert succeeded.examples == ("CreateUser",)
    refused = titled(result, "1 identity persistence call(s) attempted and refused")
    assert (refused.category, refused.severity, refused.count) == (Category.PERSISTENCE, "medium", 1)


def test_a_finding_names_at_most_five_calls_most_frequent_first_then_alphabetically() -> None:
    names = ["UpdateLoginProfile"] * 3 + ["CreateRole"] * 2 + ["CreateUser", "CreateAccessKey", "ImportKeyPair",
                                                               "CreateLoginProfile"]
    events = [call(name, timedelta(seconds=i)) for i, name in enumerate(names)]
    finding = titled(found(events), "9 identity persistence call(s) succeeded")
    assert finding.examples == ("UpdateLoginProfile", "CreateRole", "CreateAccessKey", "CreateLoginProfile",
                                "CreateUser")
    assert finding.regions == ("us-east-1",)


# --- spend --------------------------------------------------------------------------------------------------------


def test_spend_outside_the_usual_regions_is_critical_and_spend_inside_them_is_high() -> None:
    events = [call("RunInstances", timedelta(minutes=1)), call("CreateFunction", timedelta(minutes=2)),
              call("RunInstances", timedelta(minutes=3), region="ap-southeast-2")]
    result = found(events, usual_regions={"us-east-1", "eu-west-1"})
    unusual = titled(result, "1 spend call(s) in region(s) rotator's accounts do not use")
    assert unusual.title == "1 spend call(s) in region(s) rotator's accounts do not use"
    assert (unusual.severity, unusual.regions, unusual.count) == ("critical", ("ap-southeast-2",), 1)
    usual = titled(result, "2 spend call(s)")
    assert usual.title == "2 spend call(s)"
    assert (usual.category, usual.severity, usual.regions) == (Category.SPEND, "high", ("us-east-1",))


def test_without_usual_regions_no_spend_is_called_unusual() -> None:
    events = [call("RunInstances", region="us-east-1"), call("RunInstances", region="ap-southeast-2")]
    result = found(events)
    assert [(f.title, f.severity) for f in result] == [("2 spend call(s)", "high")]


# --- reconnaissance ---------------------------------------------------------------------------------------------


def test_exactly_ten_denied_calls_within_five_minutes_are_a_burst_and_nine_are_not() -> None:
    ten = [denied(timedelta(seconds=30 * i)) for i in range(10)]
    burst = bursts(found(ten))
    assert [(f.title, f.category, f.severity, f.count) for f in burst] == [
        (PROBE_TITLE.format(10), Category.RECON, "high", 10)]
    assert bursts(found(ten[:9])) == []


def test_calls_exactly_five_minutes_apart_are_within_the_burst_window() -> None:
    spread = [denied(timedelta(seconds=i * 300 / 9)) for i in range(10)]
    assert spread[-1].at - spread[0].at == timedelta(minutes=5)
    assert [f.count for f in bursts(found(spread))] == [10]
    too_wide = [*spread[:-1], denied(timedelta(minutes=5, seconds=1))]
    assert bursts(found(too_wide)) == []


def test_the_densest_window_is_found_between_sparse_calls() -> None:
    early = [denied(timedelta(hours=-2)), denied(timedelta(hours=-1))]
    probing = [denied(timedelta(seconds=10 * i)) for i in range(10)]
    late = [denied(timedelta(hours=1))]
    (burst,) = bursts(found(early + probing + late))
    assert (burst.title, burst.count) == (PROBE_TITLE.format(10), 10)
    assert (burst.first_seen, burst.last_seen) == (T0, T0 + timedelta(seconds=90))


def test_of_two_equally_dense_bursts_the_earlier_is_reported() -> None:
    first = [denied(timedelta(seconds=10 * i)) for i in range(10)]
    second = [denied(timedelta(hours=2, seconds=10 * i)) for i in range(10)]
    (burst,) = bursts(found(second + first))
    assert (burst.count, burst.first_seen) == (10, T0)


def test_the_larger_of_two_bursts_is_reported() -> None:
    small = [denied(timedelta(seconds=10 * i)) for i in range(10)]
    large = [denied(timedelta(hours=2, seconds=10 * i)) for i in range(12)]
    (burst,) = bursts(found(small + large))
    assert (burst.title, burst.first_seen) == (PROBE_TITLE.format(12), T0 + timedelta(hours=2))


def test_successful_reads_are_one_low_finding_that_leaves_out_denied_calls() -> None:
    events = [call("ListUsers"), call("DescribeInstances", timedelta(minutes=1)), call("GetAccountSummary"),
              denied(timedelta(minutes=2))]
    reads = titled(found(events), "3 read-only")
    assert reads.title == "3 read-only List/Describe/Get call(s)"
    assert (reads.category, reads.severity, reads.count) == (Category.RECON, "low", 3)


def test_calls_from_addresses_outside_known_cidrs_are_one_high_finding() -> None:
    events = [call("ListUsers", ip="198.51.100.7"), call("GetUser", timedelta(minutes=1), ip="198.51.100.7"),
              call("ListRoles", timedelta(minutes=2), ip="192.0.2.1"), call("ListUsers", ip="203.0.113.9"),
              call("ListBuckets", ip="ec2.amazonaws.com")]
    summary = summarize(events, known_cidrs=["203.0.113.0/24"])
    assert summary.unknown_ips == ("192.0.2.1", "198.51.100.7")
    outside = titled(summary.findings, "3 call(s) from 2 address(es)")
    assert outside.title == "3 call(s) from 2 address(es) outside [aws] known_cidrs"
    assert (outside.category, outside.severity, outside.count) == (Category.RECON, "high", 3)
    assert outside.last_seen == T0 + timedelta(minutes=2)


# --- order and summary --------------------------------------------------------------------------------------------


def test_findings_come_most_severe_first_then_earliest_first() -> None:
    events = [call("ListUsers", timedelta(minutes=0)),                             # low
              call("CreateAccessKey", timedelta(minutes=1), error="AccessDenied"),  # medium (refused)
              call("RunInstances", timedelta(minutes=2)),                          # high (spend)
              call("CreateUser", timedelta(minutes=3)),                            # critical (persistence)
              call("StopLogging", timedelta(minutes=4))]                           # critical (anti-forensics)
    assert [(f.severity, f.examples) for f in found(events)] == [
        ("critical", ("CreateUser",)), ("critical", ("StopLogging",)), ("high", ("RunInstances",)),
        ("medium", ("CreateAccessKey",)), ("low", ("ListUsers",))]


def test_summary_counts_missing_values_as_none_and_orders_ties_by_name() -> None:
    events = [call("ListUsers", ip=None), call("GetUser", ip=None), call("CreateUser", ip="203.0.113.9")]
    summary = summarize(events)
    assert summary.by_source_ip == (("(none)", 2), ("203.0.113.9", 1))
    assert summary.by_event == (("CreateUser", 1), ("GetUser", 1), ("ListUsers", 1))
    assert summary.by_user_agent == (("(none)", 3),)
