"""The event consumer's thread over the fake queue: handled messages deleted, rejected ones left for the
dead-letter queue (or deleted when there is none), unhandled ones made visible again later, an unreadable
queue reported."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rotator.domain import KeyStatus
from rotator.incident.events import Outcome, Rejection
from rotator.incident.exposure import ExposureResult
from rotator.service.event_consumer import RETRY_FIRST, ConsumerMetrics, EventConsumer
from tests.unit.exposure_fakes import health_event
from tests.unit.worlds import World, incident_world

MALFORMED = [
    "not json", "{}", "[]", '{"source": "aws.health"}',
    health_event("AKIAIOSFODNN7EXAMPLE", source="aws.ec2"),
    health_event("AKIAIOSFODNN7EXAMPLE", **{"detail-type": "AWS API Call via CloudTrail"}),
    health_event(), health_event("not-a-key-id"), health_event("AKIAIOSFODNN7EXAMPLE", account="999999999999"),
    health_event("AKIAIOSFODNN7EXAMPLE", arn="arn:aws:health:::nothing"),
]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@contextmanager
def consuming(world: World, metrics: ConsumerMetrics | None = None) -> Iterator[EventConsumer]:
    world.events_config = '[events]\non_exposed = "contain_and_replace"\n'
    root = world.root()
    consumer = EventConsumer(world.queue, lambda: root.incident.exposure_ports(holder="service/test"),
                             wait_seconds=1, visibility_timeout=600, metrics=metrics).start()
    try:
        yield consumer
    finally:
        assert consumer.stop(10)


def test_ten_bad_messages_are_dead_lettered_with_their_reason_and_nothing_is_contained() -> None:
    world = incident_world()
    rejections: list[Rejection] = []
    received: list[int] = []
    metrics = ConsumerMetrics(received=lambda: received.append(1), rejected=rejections.append)
    sent = [world.queue.send(body) for body in MALFORMED]
    with consuming(world, metrics):
        wait_until(lambda: len(world.queue.dead_letters) == len(MALFORMED), "every bad message in the DLQ")
    assert sorted(m.message_id for m in world.queue.dead_letters) == sorted(sent)
    assert world.queue.deleted == [] and world.iam.writes == [] and world.notifier.posted == []
    assert len(received) == len(rejections) == len(MALFORMED)  # each counted once, however often received
    assert len({r.reason for r in rejections}) >= 8
    # Each receive gave the message straight back (visible at once), so SQS could redrive it.
    assert {seconds for _, seconds in world.queue.visibility_changes} == {0}


def test_a_good_message_among_bad_ones_is_acted_on_and_deleted() -> None:
    world = incident_world()
    leaked = world.key_id
    results: list[ExposureResult] = []
    for body in MALFORMED[:3]:
        world.queue.send(body)
    good = world.queue.send(health_event(leaked))
    with consuming(world, ConsumerMetrics(result=results.append)):
        wait_until(lambda: good in world.queue.deleted, "the good message to be deleted")
        wait_until(lambda: len(world.queue.dead_letters) == 3, "the bad ones in the DLQ")
    assert world.iam.key(leaked).status is KeyStatus.INACTIVE and world.every_target_works()
    assert [r.outcome for r in results] == [Outcome.ACTED] and len(world.store.incident_rows) == 1


def test_without_a_dead_letter_queue_a_rejected_message_is_deleted_after_its_log_line() -> None:
    world = incident_world()
    world.queue.max_receive_count = None
    bad = world.queue.send("not json")
    with consuming(world):
        wait_until(lambda: bad in world.queue.deleted, "the rejected message to be deleted")
    assert world.queue.dead_letters == []


def test_a_key_not_contained_comes_back_later_and_is_never_deleted() -> None:
    world = incident_world()
    message = world.queue.send(health_event("AKIA9999999999999999"))
    with consuming(world):
        wait_until(lambda: bool(world.queue.visibility_changes), "the message to be given back")
    assert world.queue.visibility_changes[0] == (message, RETRY_FIRST)
    assert world.queue.deleted == [] and world.queue.waiting() == [message]


def test_an_unreadable_queue_is_reported_until_it_answers_again() -> None:
    world = incident_world()
    world.queue.down = True
    with consuming(world) as consumer:
        wait_until(lambda: consumer.problem is not None, "the problem to be reported")
        assert "ServiceUnavailable" in (consumer.problem or "")
        world.queue.down = False
        wait_until(lambda: consumer.problem is None, "the problem to clear", timeout=30)
