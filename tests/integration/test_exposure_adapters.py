"""The exposure adapters against the real parties: the exposure ledger on SQLite and PostgreSQL (through the
migrated schema), and the SQS queue through boto3 against the sandbox AWS front (moto's SQS)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from rotator.adapters.db.exposures import SqlExposureLedger
from rotator.adapters.db.store import make_engine, upgrade_to_head
from rotator.adapters.sqs import SqsQueue, queue_region
from rotator.incident.events import ExposureRecord, Outcome, QuarantineState
from rotator.sandbox.aws import AwsSandbox
from rotator.sandbox.seed import aws_client

T0 = datetime(2026, 12, 4, 6, 30, tzinfo=UTC)
ARN = "arn:aws:health:global::event/IAM/AWS_RISK_CREDENTIALS_EXPOSED/AWS_RISK_CREDENTIALS_EXPOSED_" + "X" * 1500


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[SqlExposureLedger]:
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    upgrade_to_head(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM exposure_reports"))
    yield SqlExposureLedger(engine)
    engine.dispose()


def record(signal_id: str, *, key_id: str | None = "AKIAIOSFODNN7EXAMPLE", at: datetime = T0,
           source: str = "aws-health", quarantine: QuarantineState | None = None) -> ExposureRecord:
    return ExposureRecord(signal_id, source, "aws-health:x", "default", "ci-payments", key_id, "contain_and_replace",
                          Outcome.ACTED, "contained", at, at, "incident-1", quarantine)


def test_the_ledger_keeps_reports_by_id_key_and_time(ledger: SqlExposureLedger) -> None:
    long_id = f"aws-health:{ARN}#AKIAIOSFODNN7EXAMPLE"  # event ARNs run to 1600 characters
    ledger.save(record(long_id))
    ledger.save(record("aws-health:other#AKIAIOSFODNN7EXAMPLE", at=T0 + timedelta(minutes=1)))
    ledger.save(record("aws-quarantine:default/ci-payments", key_id=None, source="aws-quarantine",
                       at=T0 + timedelta(minutes=2), quarantine=QuarantineState.EXPECTED))
    assert ledger.get(long_id) == record(long_id)
    assert ledger.get("nothing") is None
    assert [r.signal_id for r in ledger.for_key("AKIAIOSFODNN7EXAMPLE")] == [
        long_id, "aws-health:other#AKIAIOSFODNN7EXAMPLE"]
    [quarantined] = ledger.quarantines()
    assert quarantined.quarantine is QuarantineState.EXPECTED and quarantined.last_seen_at.tzinfo is not None
    assert [r.signal_id for r in ledger.recent(2)] == ["aws-quarantine:default/ci-payments",
                                                       "aws-health:other#AKIAIOSFODNN7EXAMPLE"]


def test_saving_again_updates_everything_but_when_it_was_first_seen(ledger: SqlExposureLedger) -> None:
    ledger.save(record("s"))
    later = T0 + timedelta(hours=1)
    ledger.save(replace(record("s"), outcome=Outcome.ANNOTATED, first_seen_at=later, last_seen_at=later,
                        quarantine=QuarantineState.ATTACHED))
    saved = ledger.get("s")
    assert saved is not None and (saved.outcome, saved.first_seen_at, saved.last_seen_at) == (
        Outcome.ANNOTATED, T0, later)


# --- SQS through the sandbox's AWS front ----------------------------------------------------------------------


def queues(aws: AwsSandbox, max_receive_count: int = 2) -> tuple[Any, str, str]:
    sqs = aws_client({"aws_endpoint_url": aws.url}, "sqs")
    name = f"exposures-{time.monotonic_ns()}"
    dead = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(max_receive_count)})})["QueueUrl"]
    return sqs, url, dead


def test_the_queue_describes_its_dead_letter_queue(aws: AwsSandbox) -> None:
    sqs, url, dead = queues(aws, max_receive_count=7)
    info = SqsQueue(sqs, url).describe()
    assert info.arn.endswith(url.rsplit("/", 1)[-1]) and info.max_receive_count == 7
    assert info.dead_letter_arn is not None and info.dead_letter_arn.endswith(dead.rsplit("/", 1)[-1])
    _, plain, _ = queues(aws)
    sqs.set_queue_attributes(QueueUrl=plain, Attributes={"RedrivePolicy": ""})
    assert SqsQueue(sqs, plain).describe().dead_letter_arn is None


def test_receive_delete_and_give_back_until_sqs_dead_letters_it(aws: AwsSandbox) -> None:
    sqs, url, dead = queues(aws, max_receive_count=2)
    queue = SqsQueue(sqs, url)
    assert queue.receive(max_messages=10, wait_seconds=1, visibility_timeout=30) == []
    sqs.send_message(QueueUrl=url, MessageBody="first")
    [message] = queue.receive(max_messages=10, wait_seconds=1, visibility_timeout=30)
    assert (message.body, message.receive_count) == ("first", 1) and message.sent_at is not None
    assert queue.receive(max_messages=10, wait_seconds=1, visibility_timeout=30) == []  # invisible meanwhile
    queue.make_visible_in(message, 0)
    [again] = queue.receive(max_messages=10, wait_seconds=1, visibility_timeout=30)
    assert (again.message_id, again.receive_count) == (message.message_id, 2)
    queue.make_visible_in(again, 0)
    # Received maxReceiveCount times: SQS moves it to the dead-letter queue instead of delivering it again.
    assert queue.receive(max_messages=10, wait_seconds=1, visibility_timeout=30) == []
    moved = sqs.receive_message(QueueUrl=dead, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in moved] == ["first"]
    sqs.send_message(QueueUrl=url, MessageBody="second")
    [second] = queue.receive(max_messages=10, wait_seconds=1, visibility_timeout=0)
    queue.delete(second)
    assert queue.receive(max_messages=10, wait_seconds=1, visibility_timeout=30) == []


def test_a_long_poll_returns_as_soon_as_a_message_arrives(aws: AwsSandbox) -> None:
    import threading

    sqs, url, _ = queues(aws)
    queue = SqsQueue(sqs, url)
    threading.Timer(0.5, lambda: sqs.send_message(QueueUrl=url, MessageBody="now")).start()
    [message] = queue.receive(max_messages=1, wait_seconds=20, visibility_timeout=30)
    assert message.body == "now"  # the call did not wait out its 20 seconds (the test would time out at 300)


def test_the_region_of_a_queue_comes_from_its_url() -> None:
    assert queue_region("https://sqs.eu-west-1.amazonaws.com/111122223333/q", "us-east-1") == "eu-west-1"
    assert queue_region("https://us-west-2.queue.amazonaws.com/111122223333/q", "us-east-1") == "us-west-2"
    assert queue_region("http://127.0.0.1:4566/111122223333/q", "us-east-1") == "us-east-1"
