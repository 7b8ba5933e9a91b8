"""The event consumer: a thread of `rotator run` that long-polls the exposure queue and acts on each message.

It never touches the tick: it has its own thread, and a small pool runs the playbooks (a slow CloudTrail audit
of one key never delays the containment of the next). For each message (rotator.incident.exposure):

- **handled** (every key's incident read back from the store, or its owners told): DeleteMessage;
- **not yet** (not contained, the store down, another replica on the key): ChangeMessageVisibility, so SQS
  delivers it again after a backoff; the playbook is idempotent, and the incident stays one;
- **rejected** (not JSON, another event, no key id, an account not configured): logged with its reason and
  made visible at once, so SQS moves it to the queue's dead-letter queue as soon as its ApproximateReceiveCount
  exceeds the RedrivePolicy's maxReceiveCount (SQS Developer Guide, "Using dead-letter queues in Amazon SQS").
  A queue without a dead-letter queue cannot keep it: the message is deleted, and this log line is its record.

Long polling (SQS Developer Guide, "Setting-up long polling"): ReceiveMessage waits up to ``wait_seconds``
(at most 20) and returns as soon as a message arrives, so an event is picked up within moments of its arrival.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import structlog

from rotator.errors import RotatorError
from rotator.incident.events import Outcome, Rejection
from rotator.incident.exposure import ExposurePorts, ExposureResult, MessageVerdict, handle_message
from rotator.service.ports import EventQueue, QueueInfo, QueueMessage

log = structlog.get_logger("rotator.service.events")

WORKERS = 4  # playbooks at once; SQS hands out at most 10 messages per receive
RETRY_FIRST = 15  # seconds before a message not yet handled comes back, doubling per receive
RETRY_MOST = 900
BUSY_RETRY = 5  # another replica holds the key: it is probably about to finish
RECEIVE_BACKOFF = (1, 2, 5, 10, 30)  # after a failed ReceiveMessage (the queue or the network is down)
_SEEN_LIMIT = 10_000  # message ids remembered so that each message is counted once


class ConsumerMetrics:
    """What the consumer reports to /metrics; the service plugs its counters in."""

    def __init__(self, *, received: Callable[[], None] = lambda: None,
                 rejected: Callable[[Rejection], None] = lambda rejection: None,
                 result: Callable[[ExposureResult], None] = lambda result: None) -> None:
        self.received = received
        self.rejected = rejected
        self.result = result


class EventConsumer:
    def __init__(self, queue: EventQueue, ports: Callable[[], ExposurePorts], *, wait_seconds: int,
                 visibility_timeout: int, metrics: ConsumerMetrics | None = None, workers: int = WORKERS) -> None:
        """``ports``: asked for each message, so a config reload takes effect at the next one."""
        self._queue = queue
        self._ports = ports
        self._wait = wait_seconds
        self._visibility = visibility_timeout
        self._metrics = metrics or ConsumerMetrics()
        self._workers = workers
        self._slots = threading.BoundedSemaphore(workers)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rotator-exposure")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rotator-events", daemon=True)
        self._info: QueueInfo | None = None
        self._problem: str | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_lock = threading.Lock()

    @property
    def problem(self) -> str | None:
        """Why the queue cannot be read right now (for /readyz); None when the last receive worked."""
        return self._problem

    def start(self) -> EventConsumer:
        self._thread.start()
        return self

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float) -> bool:
        """Stop polling and wait (at most ``timeout``) for the poll in progress and the running playbooks.
        False when something was still running: its message comes back after its visibility timeout."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        self._thread.join(max(0.0, deadline - time.monotonic()))
        finished = not self._thread.is_alive()
        for _ in range(self._workers):  # every slot back: no playbook is running
            if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                finished = False
                break
        self._pool.shutdown(wait=False, cancel_futures=True)
        return finished

    # --- the loop --------------------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue  # every worker busy: poll again once one is free
            taken = 1
            while taken < min(self._workers, 10) and self._slots.acquire(blocking=False):
                taken += 1
            try:
                if self._info is None:
                    self._info = self._describe()
                messages = self._queue.receive(max_messages=taken, wait_seconds=self._wait,
                                               visibility_timeout=self._visibility)
            except RotatorError as exc:
                for _ in range(taken):
                    self._slots.release()
                self._problem = f"{self._queue.url}: {exc}"
                wait = RECEIVE_BACKOFF[min(failures, len(RECEIVE_BACKOFF) - 1)]
                failures += 1
                log.error("cannot read the exposure queue", queue=self._queue.url, error=str(exc),
                          retry_in_seconds=wait)
                self._stop.wait(wait)
                continue
            failures, self._problem = 0, None
            for _ in range(taken - len(messages)):
                self._slots.release()
            for message in messages:
                if self._stop.is_set():
                    self._give_back(message)
                    self._slots.release()
                    continue
                self._pool.submit(self._process_and_release, message).add_done_callback(_report_crash)

    def _describe(self) -> QueueInfo:
        info = self._queue.describe()
        if info.dead_letter_arn is None:
            log.error("the exposure queue has no dead-letter queue: a rejected message is deleted after its log line",
                      queue=self._queue.url, hint="set a RedrivePolicy on the queue (see deploy/README.md)")
        log.info("reading the exposure queue", queue=self._queue.url, queue_arn=info.arn,
                 dead_letter_queue=info.dead_letter_arn, max_receive_count=info.max_receive_count,
                 wait_seconds=self._wait)
        return info

    def _process_and_release(self, message: QueueMessage) -> None:
        try:
            self._process(message)
        except RotatorError as exc:  # a queue call failed: the message simply comes back later
            log.error("exposure message not settled", message_id=message.message_id, error=str(exc))
        finally:
            self._slots.release()

    def _process(self, message: QueueMessage) -> None:
        first = self._first_sight(message.message_id)
        if first:
            self._metrics.received()
        started = time.monotonic()
        verdict = handle_message(message.body, self._ports())
        if verdict.rejection is not None:
            if first:
                self._metrics.rejected(verdict.rejection)
            self._dead_letter(message, verdict.rejection)
            return
        for result in verdict.results:
            self._metrics.result(result)
        if verdict.settled:
            self._queue.delete(message)
            log.info("exposure message handled and deleted", message_id=message.message_id,
                     event_arn=verdict.event.event_arn if verdict.event else None,
                     outcomes=[f"{r.key_id}: {r.outcome.value}" for r in verdict.results],
                     seconds=round(time.monotonic() - started, 3),
                     since_arrival_seconds=_since(message))
            return
        retry = self._retry_in(message, verdict)
        self._queue.make_visible_in(message, retry)
        log.error("exposure message not handled yet: SQS delivers it again", message_id=message.message_id,
                  receive=message.receive_count, retry_in_seconds=retry,
                  problem=verdict.problem or "; ".join(f"{r.key_id}: {r.outcome.value}: {r.detail}"
                                                       for r in verdict.results if not r.settled))

    def _dead_letter(self, message: QueueMessage, rejection: Rejection) -> None:
        info = self._info
        if info is None or info.dead_letter_arn is None:
            self._queue.delete(message)
            log.error("exposure message rejected and deleted (the queue has no dead-letter queue)",
                      message_id=message.message_id, reason=rejection.reason, code=rejection.code.value)
            return
        self._queue.make_visible_in(message, 0)
        log.warning("exposure message rejected: left for the dead-letter queue", message_id=message.message_id,
                    reason=rejection.reason, code=rejection.code.value, receive=message.receive_count,
                    max_receive_count=info.max_receive_count, dead_letter_queue=info.dead_letter_arn)

    def _give_back(self, message: QueueMessage) -> None:
        """Received while stopping: visible again at once, for another replica or the next start."""
        try:
            self._queue.make_visible_in(message, 0)
        except RotatorError as exc:
            log.warning("could not give a message back while stopping; it comes back after its visibility timeout",
                        message_id=message.message_id, error=str(exc))

    def _retry_in(self, message: QueueMessage, verdict: MessageVerdict) -> int:
        if verdict.results and all(r.settled or r.outcome is Outcome.BUSY for r in verdict.results):
            return BUSY_RETRY
        return min(RETRY_MOST, self._visibility, RETRY_FIRST << min(10, max(0, message.receive_count - 1)))

    def _first_sight(self, message_id: str) -> bool:
        with self._seen_lock:
            if message_id in self._seen:
                return False
            self._seen[message_id] = None
            if len(self._seen) > _SEEN_LIMIT:
                self._seen.popitem(last=False)
            return True


def _report_crash(future: Future[None]) -> None:
    """A defect in handling a message must not vanish inside the pool: log it (the message comes back after its
    visibility timeout)."""
    if not future.cancelled() and (error := future.exception()) is not None:
        log.error("exposure message handling crashed", error=repr(error), exc_info=error)


def _since(message: QueueMessage) -> float | None:
    if message.sent_at is None:
        return None
    return round(time.time() - message.sent_at.timestamp(), 3)
