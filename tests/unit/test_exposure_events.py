"""AWS Health exposure events as EventBridge delivers them to SQS: what is accepted, what is rejected and why,
and the idempotency rule. Pure functions: no world needed."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from rotator.incident.events import (
    QUARANTINE_EXPECTED_FOR,
    Decision,
    ExposureRecord,
    HealthExposure,
    Outcome,
    QuarantineState,
    Rejection,
    RejectReason,
    decide,
    health_actor,
    parse_health_message,
    quarantine_is_news,
)
from tests.unit.exposure_fakes import EVENT_ARN, health_event
from tests.unit.fakes import T0
from tests.unit.incident_fakes import ACCOUNT

KEY = "AKIAIOSFODNN7EXAMPLE"
ACCOUNTS = {ACCOUNT: "default", "111122223333": "prod"}


def rejected(body: str) -> Rejection:
    parsed = parse_health_message(body, ACCOUNTS)
    assert isinstance(parsed, Rejection), parsed
    return parsed


def test_the_aws_sample_event_names_its_key_account_and_arn() -> None:
    parsed = parse_health_message(health_event(KEY), ACCOUNTS)
    assert parsed == HealthExposure(EVENT_ARN, "7bf73129-1428-4cd3", ACCOUNT, "default", (KEY,))
    assert parsed.actor == f"aws-health:{EVENT_ARN}"
    assert EVENT_ARN in parsed.reason and "AWS_RISK_CREDENTIALS_EXPOSED" in parsed.reason


def test_an_organizational_view_acts_on_the_affected_account_not_the_receiving_one() -> None:
    body = json.loads(health_event(KEY))
    body["detail"]["affectedAccount"] = "111122223333"
    parsed = parse_health_message(json.dumps(body), ACCOUNTS)
    assert isinstance(parsed, HealthExposure) and (parsed.account_id, parsed.account) == ("111122223333", "prod")


def test_several_keys_each_once_and_other_entities_ignored() -> None:
    body = json.loads(health_event(KEY, "ASIAIOSFODNN7EXAMPLE", KEY))
    body["detail"]["affectedEntities"].append({"entityValue": "arn:aws:iam::123456789012:user/ci"})
    parsed = parse_health_message(json.dumps(body), ACCOUNTS)
    assert isinstance(parsed, HealthExposure)
    assert parsed.key_ids == (KEY, "ASIAIOSFODNN7EXAMPLE")
    assert parsed.ignored == ("'arn:aws:iam::123456789012:user/ci'",)


@pytest.mark.parametrize("body, code, says", [
    ("not json at all", RejectReason.NOT_JSON, "not JSON"),
    ("[1, 2]", RejectReason.NOT_JSON, "JSON list"),
    (health_event(KEY, source="aws.ec2"), RejectReason.FOREIGN, "'aws.ec2'"),
    (health_event(KEY, **{"detail-type": "EC2 Instance State-change Notification"}), RejectReason.FOREIGN,
     "not an AWS Health event"),
    (json.dumps({"version": "0", "source": "aws.health", "detail-type": "AWS Health Event"}),
     RejectReason.MALFORMED, "without a detail"),
    (health_event(KEY, arn="arn:aws:health:global::event/IAM"), RejectReason.MALFORMED, "not an AWS Health event ARN"),
    (health_event(KEY, account="12345"), RejectReason.MALFORMED, "12-digit"),
    (health_event(), RejectReason.NO_KEY, "names no access key id"),
    (health_event("my-secret-value"), RejectReason.NO_KEY, "names no access key id"),
    (health_event(KEY, account="999999999999"), RejectReason.ACCOUNT, "account 999999999999"),
])
def test_what_is_rejected_says_why(body: str, code: RejectReason, says: str) -> None:
    rejection = rejected(body)
    assert rejection.code is code
    assert says in rejection.reason


def test_another_health_event_type_is_rejected_by_name() -> None:
    body = json.loads(health_event(KEY))
    body["detail"]["eventTypeCode"] = "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"
    rejection = rejected(json.dumps(body))
    assert rejection.code is RejectReason.EVENT_TYPE
    assert "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED" in rejection.reason


def test_a_long_value_in_a_rejected_message_is_cut_in_the_reason() -> None:
    rejection = rejected(health_event(KEY, source="x" * 5000))
    assert len(rejection.reason) < 400


def test_an_arn_too_long_for_the_record_still_makes_a_distinct_bounded_actor() -> None:
    long_a = EVENT_ARN + "A" * 300
    long_b = EVENT_ARN + "A" * 299 + "B"
    assert len(health_actor(long_a)) <= 200 and health_actor(long_a) != health_actor(long_b)


def _record(signal_id: str, outcome: Outcome, *, quarantine: QuarantineState | None = None) -> ExposureRecord:
    return ExposureRecord(signal_id, "aws-health", "aws-health:x", "default", "ci-payments", KEY, "contain",
                          outcome, "", T0, T0, quarantine=quarantine)


def test_decide_the_same_report_twice_is_a_duplicate() -> None:
    earlier = [_record("a", Outcome.ACTED)]
    assert decide("a", earlier, has_incident=True, key_inactive=True, notify_only=False) is Decision.DUPLICATE


def test_decide_a_failed_report_is_acted_on_again() -> None:
    earlier = [_record("a", Outcome.FAILED)]
    assert decide("a", earlier, has_incident=False, key_inactive=None, notify_only=False) is Decision.ACT


def test_decide_another_report_of_a_contained_key_only_annotates() -> None:
    earlier = [_record("a", Outcome.ACTED)]
    assert decide("b", earlier, has_incident=True, key_inactive=True, notify_only=False) is Decision.ANNOTATE
    assert decide("b", [], has_incident=True, key_inactive=True, notify_only=False) is Decision.ANNOTATE


def test_decide_an_incident_whose_key_is_active_again_runs_the_playbook() -> None:
    assert decide("b", [], has_incident=True, key_inactive=False, notify_only=False) is Decision.ACT


def test_decide_notify_tells_the_owners_once_per_key() -> None:
    earlier = [_record("a", Outcome.NOTIFIED)]
    assert decide("b", earlier, has_incident=False, key_inactive=None, notify_only=True) is Decision.DUPLICATE
    assert decide("b", earlier, has_incident=False, key_inactive=None, notify_only=False) is Decision.ACT


def test_a_quarantine_is_news_unless_explained() -> None:
    seen = _record("q", Outcome.ACTED, quarantine=QuarantineState.ATTACHED)
    expected = _record("q", Outcome.ACTED, quarantine=QuarantineState.EXPECTED)
    assert quarantine_is_news(None, T0)
    assert not quarantine_is_news(seen, T0 + timedelta(days=30))
    assert not quarantine_is_news(expected, T0 + QUARANTINE_EXPECTED_FOR)
    assert quarantine_is_news(expected, T0 + QUARANTINE_EXPECTED_FOR + timedelta(seconds=1))
    assert quarantine_is_news(_record("q", Outcome.ACTED, quarantine=QuarantineState.DETACHED), T0)
    assert quarantine_is_news(_record("q", Outcome.FAILED, quarantine=QuarantineState.ATTACHED), T0)
