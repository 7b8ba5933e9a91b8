"""Reading CloudTrail records into TrailEvents, and classifying them: what the audit keeps of each record.

Record shapes follow the AWS CloudTrail User Guide ("CloudTrail record contents", "CloudTrail userIdentity
element": an IAMUser identity carries userName; an AssumedRole identity carries arn and principalId but no
userName) and the LookupEvents API reference (the Event's ReadOnly is the string "true"/"false", while the
record's own readOnly is a JSON boolean).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotator.incident.audit.analysis import Category, TrailEvent, classify, event_from_record

KEY = "AKIAAAAAAAAAAAAAAAAA"
MINTED = "ASIABBBBBBBBBBBBBBBB"
ACCOUNT = "111122223333"


def cloudtrail_record(name: str = "ListUsers", **changes: Any) -> dict[str, Any]:
    """A management-event record of an IAM user's call; `changes` replace fields, None removes one."""
    data: dict[str, Any] = {
        "eventVersion": "1.08", "eventTime": "2026-01-01T10:00:00Z", "eventName": name,
        "eventSource": "iam.amazonaws.com", "awsRegion": "eu-west-1", "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2.15", "eventID": "0f5e-event", "readOnly": True,
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "userName": "ci-payments",
                         "arn": f"arn:aws:iam::{ACCOUNT}:user/ci-payments", "accountId": ACCOUNT,
                         "accessKeyId": KEY},
    }
    for field, value in changes.items():
        if value is None:
            data.pop(field, None)
        else:
            data[field] = value
    return data


def parsed(record: dict[str, Any]) -> TrailEvent:
    event = event_from_record(record)
    assert event is not None
    return event


def test_a_record_keeps_the_ids_and_facts_of_the_call() -> None:
    event = parsed(cloudtrail_record("AttachUserPolicy", errorCode="AccessDenied", readOnly=False))
    assert event == TrailEvent(
        event_id="0f5e-event", name="AttachUserPolicy", source="iam.amazonaws.com", region="eu-west-1",
        at=datetime(2026, 1, 1, 10, 0, tzinfo=UTC), key_id=KEY, principal="ci-payments",
        source_ip="198.51.100.7", user_agent="aws-cli/2.15", error_code="AccessDenied", read_only=False,
        identity_type="IAMUser", identity_arn=f"arn:aws:iam::{ACCOUNT}:user/ci-payments", account_id=ACCOUNT,
        identity_account=ACCOUNT,
    )
    assert event.denied


def test_an_assumed_role_session_is_named_by_its_session_arn() -> None:
    session_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/session-1"
    identity = {"type": "AssumedRole", "principalId": "AROAEXAMPLE:session-1", "arn": session_arn,
                "accountId": ACCOUNT, "accessKeyId": MINTED}
    event = parsed(cloudtrail_record(userIdentity=identity))
    assert (event.principal, event.key_id) == (session_arn, MINTED)


def test_an_identity_with_only_a_principal_id_is_named_by_it() -> None:
    identity = {"type": "AWSAccount", "principalId": "AIDAOTHERACCOUNT", "accountId": "999988887777"}
    event = parsed(cloudtrail_record(userIdentity=identity))
    assert (event.principal, event.key_id) == ("AIDAOTHERACCOUNT", None)


def test_a_record_without_identity_or_optional_fields_parses_with_blanks() -> None:
    event = parsed(cloudtrail_record(userIdentity=None, eventSource=None, awsRegion=None, sourceIPAddress=None,
                                     userAgent=None, readOnly=None))
    assert (event.key_id, event.principal, event.source, event.region) == (None, None, "", "")
    assert (event.source_ip, event.user_agent, event.error_code, event.read_only) == (None, None, None, False)


def test_fields_of_the_wrong_type_are_not_trusted() -> None:
    identity = {"type": "IAMUser", "accessKeyId": 12345}
    event = parsed(cloudtrail_record(userIdentity=identity))
    assert (event.key_id, event.principal) == (None, None)
    assert parsed(cloudtrail_record(userIdentity="IAMUser")).key_id is None


@pytest.mark.parametrize(("read_only", "expected"), [
    (True, True), ("true", True), ("True", True), (False, False), ("false", False), (None, False),
])
def test_read_only_accepts_the_record_boolean_and_the_lookup_string(read_only: object, expected: bool) -> None:
    assert parsed(cloudtrail_record(readOnly=read_only)).read_only is expected


@pytest.mark.parametrize(("written", "instant"), [
    ("2026-01-01T10:00:00Z", datetime(2026, 1, 1, 10, 0, tzinfo=UTC)),
    ("2026-01-01T12:00:00+02:00", datetime(2026, 1, 1, 10, 0, tzinfo=UTC)),
    ("2026-01-01T10:00:00", datetime(2026, 1, 1, 10, 0, tzinfo=UTC)),
])
def test_event_time_is_an_aware_instant_and_a_time_without_offset_is_utc(written: str, instant: datetime) -> None:
    at = parsed(cloudtrail_record(eventTime=written)).at
    assert at == instant
    assert at.utcoffset() is not None  # never naive: it is compared with aware times everywhere


@pytest.mark.parametrize("changes", [
    {"eventID": None}, {"eventName": None}, {"eventTime": None}, {"eventTime": 1767261600},
    {"eventTime": "yesterday"}, {"eventName": 7}, {"eventID": 7},
])
def test_a_record_without_a_usable_name_id_or_time_is_skipped(changes: dict[str, Any]) -> None:
    assert event_from_record(cloudtrail_record(**changes)) is None


def test_a_minting_call_names_the_minted_key_and_the_account_of_the_assumed_role() -> None:
    response = {"credentials": {"accessKeyId": MINTED, "sessionToken": "HIDDEN_DUE_TO_SECURITY_REASONS"},
                "assumedRoleUser": {"arn": "arn:aws:sts::999988887777:assumed-role/admin/s"}}
    event = parsed(cloudtrail_record("AssumeRole", responseElements=response))
    assert (event.minted_key_id, event.minted_account) == (MINTED, "999988887777")
    assert "HIDDEN" not in repr(event) and "sessionToken" not in repr(event)


@pytest.mark.parametrize("response", [
    {"credentials": {"sessionToken": "HIDDEN_DUE_TO_SECURITY_REASONS"}},
    {"credentials": {"accessKeyId": 12345}},
    {"credentials": "HIDDEN_DUE_TO_SECURITY_REASONS"},
    {"assumedRoleUser": {"arn": "not-an-arn"}},
    {"assumedRoleUser": {"arn": "arn:aws:sts:::assumed-role/admin/s"}},
])
def test_a_minting_response_without_a_usable_key_id_or_arn_follows_nothing(response: dict[str, Any]) -> None:
    event = parsed(cloudtrail_record("GetSessionToken", responseElements=response))
    assert (event.minted_key_id, event.minted_account) == (None, None)


def test_only_session_minting_calls_are_followed() -> None:
    response = {"credentials": {"accessKeyId": MINTED}}
    assert parsed(cloudtrail_record("CreateAccessKey", responseElements=response)).minted_key_id is None


# --- classification -----------------------------------------------------------------------------------------------


def event_named(name: str, *, error: str | None = None) -> TrailEvent:
    return TrailEvent(event_id=name, name=name, source="", region="us-east-1",
                      at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=1), key_id=KEY, principal=None,
                      source_ip=None, user_agent=None, error_code=error, read_only=False)


@pytest.mark.parametrize("name", ["PutResourcePolicy", "AttachPolicy"])
def test_a_put_or_attach_policy_call_missing_from_the_table_is_a_permission_change(name: str) -> None:
    assert classify(event_named(name)) is Category.PERMISSION


@pytest.mark.parametrize("name", ["GetBucketPolicy", "GetKeyPolicy", "GetRolePolicy"])
def test_reading_a_policy_is_reconnaissance_not_a_permission_change(name: str) -> None:
    assert classify(event_named(name)) is Category.RECON



def test_who_a_session_acts_as_and_in_which_account_the_record_lives() -> None:
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/deploy/payments"
    identity = {"type": "AssumedRole", "principalId": "AROAEXAMPLE:s", "accountId": ACCOUNT, "accessKeyId": MINTED,
                "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/payments/s",
                "sessionContext": {"sessionIssuer": {"type": "Role", "arn": role_arn, "accountId": ACCOUNT}}}
    event = parsed(cloudtrail_record(userIdentity=identity, recipientAccountId="999988887777"))
    assert (event.identity_type, event.issuer_arn) == ("AssumedRole", role_arn)
    assert (event.account_id, event.identity_account) == ("999988887777", ACCOUNT)


def test_an_assume_role_record_names_the_role_with_its_path() -> None:
    role_arn = "arn:aws:iam::999988887777:role/ci/release"
    record = cloudtrail_record("AssumeRole", requestParameters={"roleArn": role_arn, "roleSessionName": "s"},
                               responseElements={"credentials": {"accessKeyId": MINTED},
                                                 "assumedRoleUser": {"arn": "arn:aws:sts::999988887777:"
                                                                            "assumed-role/release/s"}})
    event = parsed(record)
    assert (event.role_arn, event.minted_key_id, event.minted_account) == (role_arn, MINTED, "999988887777")
    assert parsed(cloudtrail_record("ListRoles", requestParameters={"roleArn": role_arn})).role_arn is None
