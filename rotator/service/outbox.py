"""Notifications never decide an outcome, and are not lost while Slack is down.

``OutboxNotifier`` wraps the Slack notifier every use case posts through. A message Slack does not answer
for (SlackUnavailable: connection refused, DNS, timeout, 5xx after the retry budget) is kept in the store's
outbox and counted, and the caller still hears SlackUnavailable, saying the message is kept: the caller
records its notify step as failed (`revoke` exits 3, `rotate` says the owners could not be told) and goes
on. A refusal (bad token, unknown channel) is not kept: sending it again cannot help.

Owners read their messages in the order things happened: once one message waits, later ones queue behind
it until the waiting ones are delivered. After Slack failed once, a process does not try it again for
each message (every try costs the whole retry budget); it queues them, and ``send_queued`` (the service,
on each tick; any process that posts while messages wait) delivers them oldest first, stopping at the
first one Slack still does not answer for. One process at a time delivers, under a lease.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog

from rotator.errors import RotatorError, SlackError, SlackUnavailable, StoreError
from rotator.leases import holding
from rotator.ports import Clock, Notifier
from rotator.service.ports import NotificationOutbox, QueuedNotification

log = structlog.get_logger("rotator.notifications")

OUTBOX_LEASE = "notifications:outbox"
OUTBOX_LEASE_TTL = timedelta(minutes=5)


@dataclass(frozen=True)
class Delivery:
    """What one ``send_queued`` did."""

    delivered: int = 0
    waiting: int = 0  # still queued afterwards
    error: str | None = None  # why it stopped early (Slack still down), None when the outbox is empty
    busy: bool = False  # another process was delivering


class OutboxNotifier:
    """ports.Notifier: posts through ``inner``; keeps what Slack does not answer for. See the module doc."""

    def __init__(self, inner: Notifier, outbox: Callable[[], NotificationOutbox], clock: Clock, *,
                 holder: str, on_failed: Callable[[SlackError], None] | None = None,
                 on_delivered: Callable[[], None] | None = None) -> None:
        self._inner = inner
        self._outbox = outbox
        self._clock = clock
        self._holder = holder
        self._on_failed = on_failed or (lambda error: None)
        self._on_delivered = on_delivered or (lambda: None)
        self._lock = threading.Lock()
        self._down: SlackUnavailable | None = None  # Slack did not answer this process; cleared by a delivery

    def post(self, channel: str, title: str, lines: Sequence[str], *, severity: str = "info",
             thread: str | None = None) -> str | None:
        message = QueuedNotification(channel, title, tuple(lines), severity, self._clock.now(), thread)
        with self._lock:
            down = self._down
        if down is None and self._waiting():
            self.send_queued()
            with self._lock:
                down = self._down
            if down is None and self._waiting():
                down = SlackUnavailable("earlier messages are still waiting to be delivered")
        if down is not None:
            raise self._keep(message, down)
        try:
            answer = self._inner.post(channel, title, lines, severity=severity, thread=thread)
        except SlackUnavailable as exc:
            with self._lock:
                self._down = exc
            raise self._keep(message, exc) from None
        except SlackError as exc:
            self._on_failed(exc)
            raise
        return answer

    def send_queued(self, *, limit: int = 100) -> Delivery:
        """Deliver waiting messages, oldest first, until the outbox is empty or Slack fails again."""
        try:
            outbox = self._outbox()
            with holding(outbox, OUTBOX_LEASE, self._holder, OUTBOX_LEASE_TTL) as lease:
                if lease is None:
                    return Delivery(waiting=outbox.queued_count(), busy=True)
                delivered, error = self._deliver(outbox, limit)
                return Delivery(delivered, outbox.queued_count(), error)
        except StoreError as exc:
            log.warning("the outbox of notifications cannot be read", error=str(exc))
            return Delivery(error=str(exc))

    def _deliver(self, outbox: NotificationOutbox, limit: int) -> tuple[int, str | None]:
        delivered = 0
        for message in outbox.queued_notifications(limit):
            assert message.id is not None
            try:
                self._inner.post(message.channel, message.title, message.lines, severity=message.severity,
                                 thread=message.thread)
            except SlackUnavailable as exc:
                outbox.notification_failed(message.id, str(exc))
                with self._lock:
                    self._down = exc
                self._on_failed(exc)
                return delivered, str(exc)
            except SlackError as exc:
                # Slack refused this one (the channel is gone, the bot was removed): delivering it can never
                # succeed, and it must not hold back the others.
                log.error("a kept notification was refused by Slack and is dropped", channel=message.channel,
                          title=message.title, queued_at=message.queued_at.isoformat(), error=str(exc))
                outbox.notification_delivered(message.id)
                self._on_failed(exc)
                continue
            outbox.notification_delivered(message.id)
            delivered += 1
            log.info("kept notification delivered", channel=message.channel, title=message.title,
                     queued_at=message.queued_at.isoformat(), attempts=message.attempts + 1)
        with self._lock:
            self._down = None
        if delivered:
            self._on_delivered()
        return delivered, None

    def _waiting(self) -> bool:
        try:
            return self._outbox().queued_count() > 0
        except RotatorError:
            return False  # no outbox to read: post directly, and keep nothing if that fails

    def _keep(self, message: QueuedNotification, cause: SlackUnavailable) -> SlackUnavailable:
        self._on_failed(cause)
        try:
            self._outbox().queue_notification(message)
        except RotatorError as exc:
            log.error("Slack did not answer and the message could not be kept", channel=message.channel,
                      title=message.title, error=str(cause), store_error=str(exc))
            return SlackUnavailable(f"{cause.message}; the message to {message.channel} could NOT be kept: {exc}",
                                    hint=cause.hint)
        log.warning("Slack did not answer: message kept for later", channel=message.channel, title=message.title,
                    error=str(cause))
        return SlackUnavailable(f"{cause.message}; the message to {message.channel} is kept in the database and "
                                "sent once Slack answers, by `rotator run` (every tick) or the next command that "
                                "posts", hint="nothing to do while `rotator run` is running; otherwise run any "
                                "command that posts once Slack is back")
