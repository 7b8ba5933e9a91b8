"""`rotator run`: the long-running service.

An APScheduler 3.x BackgroundScheduler fires one tick job every ``[service] tick`` (max_instances=1,
coalesced). The job store holds nothing of value: 3.x job stores cannot be shared between processes,
so the schedule lives in the database (credentials.next_due_at, the journal) and every replica asks
it what is due; per-credential leases make sure only one replica acts on a credential.

A second job delivers the Slack messages kept while Slack did not answer (rotator.service.outbox), so a
Slack outage never delays a rotation and owners still learn, in order, what happened.

Signals are only recorded by their handlers; the main thread acts on them:
SIGTERM/SIGINT stop (the running rotation stops before its next outside step, its lease is released),
SIGHUP reloads the config (a bad one is rejected and the running one kept; leases are untouched).

/readyz says what is wrong: the database, a party that could not be reached (named, with its error, until
it answers again), a tick stuck past its deadline (``tick_deadline``), or no tick for too long.

With [events], a thread long-polls the exposure queue (rotator.service.event_consumer) and each tick first
looks for AWS quarantine policies on tracked users (rotator.incident.quarantine).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog

from rotator.errors import ConfigError, RotatorError, SlackError, SlackUnavailable, StoreError
from rotator.leases import new_holder
from rotator.rotation.results import RotationResult
from rotator.service.event_consumer import ConsumerMetrics, EventConsumer
from rotator.service.observability import HealthServer, Metrics, return_freed_memory
from rotator.service.ports import FleetSnapshot
from rotator.service.scheduling import DriftSchedule, RetryPauses
from rotator.service.tick import DriftResult, TickContext, TickSummary, run_tick
from rotator.wiring.root import Root

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

    from rotator.config.settings import Settings
    from rotator.domain import CredentialSpec
    from rotator.incident.events import Rejection
    from rotator.incident.exposure import ExposurePorts, ExposureResult

log = structlog.get_logger("rotator.service")

OnEvent = Callable[[str, Mapping[str, Any]], None]

TICK_JOB_ID = "rotator-tick"
OUTBOX_JOB_ID = "rotator-notifications"
INCIDENT_JOB_ID = "rotator-incident-follow-up"
PARTY_NAMES = {"aws": "AWS", "gitlab": "GitLab", "slack": "Slack", "database": "the database"}
# Credentials rotated at once within one tick; each still follows the full protocol under its lease.
TICK_CONCURRENCY = 4


class ListenError(RotatorError):
    """The health and metrics endpoint cannot listen on [service] listen."""


def tick_deadline(settings: Settings) -> float:
    """Seconds a running tick may go without any credential making progress before /readyz calls it stuck.

    The longest a single step can legitimately take: a GitLab or Slack call gives up within twice its
    timeout (its retry budget and one last attempt), STS verification within verify_timeout; a step may
    make a few such calls in a row. Never less than three ticks or a minute."""
    gitlab = settings.gitlab.timeout.total_seconds() if settings.gitlab else 0.0
    slack = settings.slack.timeout.total_seconds() if settings.slack else 0.0
    verify = max((c.policy.verify_timeout.total_seconds() for c in settings.credential_specs()),
                 default=settings.policy.verify_timeout.total_seconds())
    return max(3 * settings.service.tick.total_seconds(), 60.0, 4 * gitlab, 4 * slack, 2 * verify)


def tick_problem(now: float, started: float | None, progress: float | None, *, deadline: float,
                 recent: float) -> str | None:
    """What is wrong with the ticks, on the monotonic clock: a running tick (``started``) with no progress
    (a step done, a run that went well) for more than ``deadline`` is stuck; with no tick running, the last
    progress must be ``recent``. Credentials failing one after another because a party is down are no
    progress: such a tick stays stuck."""
    if started is not None:
        if now - started > deadline and (progress is None or now - progress > deadline):
            return (f"the running tick is stuck: started {now - started:.0f}s ago, no progress for more than its "
                    f"deadline of {deadline:.0f}s")
        return None
    if progress is None or now - progress > recent:
        return f"no tick finished in the last {recent:.0f}s"
    return None


class PartyHealth:
    """The outside parties that did not answer lately, with the last error; cleared when they answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down: dict[str, str] = {}

    def unreachable(self, party: str, error: str) -> None:
        with self._lock:
            self._down[party] = error

    def answered(self, *parties: str) -> None:
        with self._lock:
            for party in parties:
                self._down.pop(party, None)

    def problems(self) -> list[str]:
        with self._lock:
            return [f"{PARTY_NAMES.get(party, party)} unreachable: {error}"
                    for party, error in sorted(self._down.items())]


class Service:
    """One replica. ``start`` → (``tick_once`` | ``serve``) → ``stop``; ``run_service`` does it all."""

    def __init__(self, settings: Settings, *, on_event: OnEvent | None = None,
                 drift_every: timedelta | None = None, drift_budget: int | None = None) -> None:
        """``drift_every`` and ``drift_budget`` override [service] drift_check_every / drift_checks_per_tick."""
        self.settings = settings
        self.health = PartyHealth()
        self.root = Root(settings, create_new_database=False, on_notification_failed=self._notification_failed,
                         on_notifications_delivered=lambda: self.health.answered("slack"))
        self.holder = new_holder(self.root.actor)
        self._on_event = on_event
        self._drift_every = drift_every
        self._drift_budget = drift_budget
        self._drift: DriftSchedule | None = None
        # Built once per config (10,000 specs take most of a second to build), not on every tick.
        self._specs: tuple[CredentialSpec, ...] = ()
        self._tick_lock = threading.Lock()  # held while a tick runs; stop waits on it
        self._incident_lock = threading.Lock()  # held while open incidents are followed up; stop waits on it
        self._tick_started: float | None = None  # monotonic start of the running tick
        self._last_progress: float | None = None  # monotonic end of the last tick, or of a credential in it
        self._last_tick_error: str | None = None
        self._stop_requested = False
        self._reload_requested = False
        self._scheduler: BackgroundScheduler | None = None
        self._http: HealthServer | None = None
        self._consumer: EventConsumer | None = None
        self._exposure_ports: ExposurePorts | None = None
        # Looked up on each scrape: a reload may replace the root.
        self.metrics = Metrics(self._fleet_snapshot, lambda: datetime.now(UTC))

    # --- lifecycle -----------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Everything before the first tick: secrets present (else ConfigError), the database at head
        (else SchemaNotCurrent: the service never migrates), credentials synced from the config."""
        self.root.resolve_secrets()
        self._specs = self.settings.credential_specs()
        self.root.store.sync_credentials(self._specs, self.root.clock.now())
        self._drift = self._new_drift_schedule(self.settings)

    def start(self) -> None:
        """prepare(), then the HTTP endpoints and the tick scheduler (first tick right away)."""
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        self.prepare()
        try:
            self._http = HealthServer(self.settings.service.listen, metrics=self.metrics,
                                      readiness=self.readiness).start()
        except OSError as exc:
            raise ListenError(f"cannot listen on {self.settings.service.listen}: {exc.strerror or exc}",
                              hint="free the port or change [service] listen") from exc
        scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"max_instances": 1, "coalesce": True,
                                                                    "misfire_grace_time": None})
        scheduler.add_job(self._tick_job, IntervalTrigger(seconds=self._tick_seconds(), timezone=UTC),
                          id=TICK_JOB_ID, next_run_time=datetime.now(UTC))
        scheduler.add_job(self.send_notifications, IntervalTrigger(seconds=self._tick_seconds(), timezone=UTC),
                          id=OUTBOX_JOB_ID, next_run_time=datetime.now(UTC))
        scheduler.add_job(self.follow_up_incidents, IntervalTrigger(seconds=self._tick_seconds(), timezone=UTC),
                          id=INCIDENT_JOB_ID, next_run_time=datetime.now(UTC))
        scheduler.start()
        self._scheduler = scheduler
        self._start_consumer()
        # Reading and validating the config of a large fleet leaves megabytes of freed parse trees behind.
        return_freed_memory()
        log.info("service started", holder=self.holder, listen=self._http.url,
                 credentials=len(self.settings.credentials), tick=self._tick_seconds())
        self._emit("started", url=self._http.url, holder=self.holder, credentials=len(self.settings.credentials))

    def serve(self, *, duration: float | None = None) -> None:
        """Block, acting on requested stops and reloads, until stopped or ``duration`` seconds passed."""
        deadline = None if duration is None else time.monotonic() + duration
        while not self._stop_requested:
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(0.1)

    def stop(self) -> bool:
        """Stop ticking, let the running step finish (at most stop_timeout), release leases, close.

        Returns False when a step was still running at the deadline: its lease then expires after
        lease_ttl and the journal lets the next start resume it.
        """
        self._stop_requested = True
        self._emit("stopping")
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        if self._consumer is not None:
            self._consumer.request_stop()
        timeout = self.settings.service.stop_timeout.total_seconds()
        deadline = time.monotonic() + timeout
        finished = self._tick_lock.acquire(timeout=timeout)
        if finished:
            self._tick_lock.release()
            finished = self._incident_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))  # a follow-up
            if finished:
                self._incident_lock.release()
        if self._consumer is not None and not self._consumer.stop(max(0.0, deadline - time.monotonic())):
            finished = False  # a playbook still running: its message comes back after its visibility timeout
        if not finished:
            log.error("a step was still running at stop_timeout; exiting anyway",
                      stop_timeout=timeout, hint="its lease expires after lease_ttl; the journal resumes it")
        if self._http is not None:
            self._http.stop()
        if finished:
            self.root.database.close()
        log.info("service stopped", clean=finished)
        self._emit("stopped", clean=finished)
        return finished

    @property
    def url(self) -> str | None:
        """Base URL of /healthz, /readyz and /metrics once started (the real port when listen ends in :0)."""
        return None if self._http is None else self._http.url

    def request_stop(self) -> None:
        # A plain flag, safe to set from a signal handler; running rotations read it before every
        # outside step and stop there.
        self._stop_requested = True

    def request_reload(self) -> None:
        self._reload_requested = True

    # --- ticks ---------------------------------------------------------------------------------------
    def tick_once(self) -> TickSummary:
        """Run one tick now, in this thread (``run --once``, tests, benchmarks)."""
        with self._tick_lock:
            return self._tick()

    def follow_up_incidents(self) -> None:
        """Re-audit the open incidents that are due (rotator.service.incident_followup); one run at a time."""
        from rotator.service.incident_followup import follow_up_due_incidents

        if not self._incident_lock.acquire(blocking=False):
            return
        try:
            for outcome in follow_up_due_incidents(self.root, self.holder,
                                                   stop_requested=lambda: self._stop_requested):
                self._emit("incident", incident_id=outcome.incident.incident_id, closed=outcome.closed,
                           added=len(outcome.added), busy=outcome.busy)
        finally:
            self._incident_lock.release()

    def send_notifications(self) -> None:
        """Deliver the Slack messages kept while Slack did not answer, oldest first (its own job: a Slack
        outage never holds a tick up)."""
        sender = self.root.outbox_sender
        if sender is None:
            return
        delivery = sender.send_queued()
        self.metrics.notifications_queued.set(delivery.waiting)
        if delivery.delivered:
            self._emit("notifications_delivered", delivered=delivery.delivered, waiting=delivery.waiting)

    def _notification_failed(self, error: SlackError) -> None:
        self.metrics.notifications_failed.labels("unreachable" if isinstance(error, SlackUnavailable)
                                                 else "refused").inc()
        if isinstance(error, SlackUnavailable):
            self.health.unreachable("slack", error.message)

    def _tick_job(self) -> None:
        if not self._tick_lock.acquire(blocking=False):
            return  # a tick_once() is running: this one would find nothing left to do
        try:
            self._tick()
        except StoreError as exc:
            self._last_tick_error = str(exc)
            log.error("tick failed: the database is unavailable", error=str(exc))
            self._emit("tick_failed", error=str(exc))
        finally:
            self._tick_lock.release()

    def _tick(self) -> TickSummary:
        self._tick_started = time.monotonic()
        try:
            summary = run_tick(self._tick_context())
        finally:
            self._tick_started = None
        self._last_progress = time.monotonic()
        self._last_tick_error = None
        self.metrics.last_tick.set(time.time())
        return_freed_memory()  # what a tick freed (its queries' rows, drift checks' answers) goes back to the kernel
        for exposure in summary.exposures:
            self._record_exposure(exposure, source="quarantine")
        self._emit("tick", due=len(summary.due), ok=summary.ok, seconds=summary.seconds, counts=summary.counts())
        return summary

    def _tick_context(self) -> TickContext:
        root, settings = self.root, self.settings  # a reload during the tick affects the next one
        return TickContext(
            specs=self._specs, queries=root.database.service_queries, ports_for=root.rotation.ports,
            clock=root.clock, holder=self.holder, lease_ttl=settings.service.lease_ttl,
            concurrency=TICK_CONCURRENCY, drift=self._drift,
            pauses=RetryPauses(held=settings.service.retry_held_after, failed=settings.service.retry_failed_after,
                               broken=settings.service.retry_broken_after), stop_requested=lambda: self._stop_requested,
            on_result=self._record_result, on_step=self._record_step, on_drift=self._record_drift,
            exposures=self._check_quarantines if settings.events and settings.events.enabled
            and settings.events.quarantine_check else None,
        )

    def _record_result(self, result: RotationResult) -> None:
        if result.unreachable is not None:
            self.health.unreachable(result.unreachable, result.message)
            self.root.rotation.schedule_retry(result)
        elif result.outcome.ok:
            self._last_progress = time.monotonic()
            self.health.answered("aws", "gitlab")  # a run that went well talked to both
        self.metrics.rotations.labels(result.outcome.value).inc()
        self._emit("result", credential=result.credential, outcome=result.outcome.value, message=result.message)

    def _record_step(self, credential: str, step: str, seconds: float) -> None:
        self._last_progress = time.monotonic()
        self.metrics.step_duration.labels(step).observe(seconds)
        self._emit("step", credential=credential, step=step, seconds=seconds)

    def _record_drift(self, result: DriftResult) -> None:
        self._last_progress = time.monotonic()
        self._emit("drift", credential=result.credential, outcome=result.outcome, message=result.message)

    # --- AWS's exposure reports ----------------------------------------------------------------------
    def exposure_ports(self) -> ExposurePorts:
        """Built once per config (a reload builds them again)."""
        if self._exposure_ports is None:
            self._exposure_ports = self.root.incident.exposure_ports(holder=self.holder, specs=self._specs)
        return self._exposure_ports

    def _check_quarantines(self) -> list[ExposureResult]:
        from rotator.incident.quarantine import check_quarantines

        return check_quarantines(self.exposure_ports())

    def _start_consumer(self) -> None:
        events = self.settings.events
        if events is None or not events.enabled or events.queue_url is None:
            return
        metrics = ConsumerMetrics(received=lambda: self.metrics.exposures_received.labels("sqs").inc(),
                                  rejected=self._record_rejection,
                                  result=lambda result: self._record_exposure(result, source=None))
        self._consumer = EventConsumer(self.root.aws.queue(events.queue_url), self.exposure_ports,
                                       wait_seconds=events.wait_seconds,
                                       visibility_timeout=int(events.visibility_timeout.total_seconds()),
                                       metrics=metrics).start()

    def _record_rejection(self, rejection: Rejection) -> None:
        self.metrics.exposures_rejected.labels(rejection.code.value).inc()
        self._emit("exposure_rejected", code=rejection.code.value, reason=rejection.reason)

    def _record_exposure(self, result: ExposureResult, *, source: str | None) -> None:
        if source is not None and (result.key_id is not None or result.settled):
            self.metrics.exposures_received.labels(source).inc()
        self.metrics.count_exposure(result)
        self._emit("exposure", source=result.source, key_id=result.key_id, outcome=result.outcome.value,
                   action=result.action, incident_id=result.incident_id, detail=result.detail)

    # --- readiness -----------------------------------------------------------------------------------
    def readiness(self) -> Sequence[str]:
        """Why the replica is not ready: the database does not answer, an outside party did not answer
        (named, until it does), the running tick is stuck past its deadline, or no tick finished recently.
        Empty when ready."""
        problems: list[str] = []
        try:
            self.root.database.service_queries.ping()
        except StoreError as exc:
            problems.append(f"database unreachable: {exc}")
        problems += self.health.problems()
        if self._consumer is not None and self._consumer.problem is not None:
            problems.append(f"exposure queue unreadable: {self._consumer.problem}")
        if self._last_tick_error is not None:
            problems.append(f"the last tick failed: {self._last_tick_error}")
        else:
            problem = tick_problem(time.monotonic(), self._tick_started, self._last_progress,
                                   deadline=tick_deadline(self.settings),
                                   recent=max(3 * self._tick_seconds(), 60.0))
            problems += [problem] if problem else []
        return problems

    def _fleet_snapshot(self) -> FleetSnapshot:
        return self.root.database.service_queries.fleet_snapshot()

    # --- reload --------------------------------------------------------------------------------------
    def reload(self) -> bool:
        """Re-read the config file. A config that does not load, lacks a secret, or changes what needs a
        restart (database_url, listen) is rejected and the running one kept. Leases are untouched."""
        from rotator.config.settings import load_settings

        source = self.settings.source
        try:
            new = load_settings(source)
            for field in ("database_url", "listen"):
                if getattr(new.service, field) != getattr(self.settings.service, field):
                    raise ConfigError(source, f"service.{field}", "changed; this needs a restart",
                                      hint="restart the service to apply it")
            if _queue_of(new) != _queue_of(self.settings):
                raise ConfigError(source, "events", "the exposure queue changed (queue_url, enabled, wait_seconds "
                                  "or visibility_timeout); this needs a restart",
                                  hint="restart the service to apply it")
            root = self.root.sharing_database(new)
            root.resolve_secrets()
            specs = new.credential_specs()
            root.store.sync_credentials(specs, root.clock.now())
        except RotatorError as exc:
            log.error("config reload rejected; still running on the previous config", config=source,
                      error=str(exc))
            self._emit("reload_rejected", error=str(exc))
            return False
        old_tick, old_level = self._tick_seconds(), self.settings.service.log_level
        self.settings, self.root, self._specs = new, root, specs
        self._exposure_ports = None  # built again from the new config (on_exposed, owners, credentials)
        if new.service.log_level != old_level:
            from rotator.logs import configure_logging

            configure_logging(new.service.log_level)
        self._drift = self._new_drift_schedule(new)
        if self._scheduler is not None and self._tick_seconds() != old_tick:
            from apscheduler.triggers.interval import IntervalTrigger

            self._scheduler.reschedule_job(TICK_JOB_ID, trigger=IntervalTrigger(seconds=self._tick_seconds(),
                                                                                timezone=UTC))
        log.info("config reloaded", config=source, credentials=len(new.credentials))
        self._emit("reloaded", credentials=len(new.credentials))
        return True

    # --- helpers -------------------------------------------------------------------------------------
    def _tick_seconds(self) -> float:
        return self.settings.service.tick.total_seconds()

    def _new_drift_schedule(self, settings: Settings) -> DriftSchedule:
        every = self._drift_every if self._drift_every is not None else settings.service.drift_check_every
        budget = self._drift_budget if self._drift_budget is not None else settings.service.drift_checks_per_tick
        return DriftSchedule((c.name for c in settings.credentials), every=every, budget=budget,
                             start=datetime.now(UTC))

    def _emit(self, kind: str, **data: Any) -> None:
        if self._on_event is not None:
            self._on_event(kind, data)


def _queue_of(settings: Settings) -> tuple[object, ...]:
    events = settings.events
    if events is None or not events.enabled:
        return ()
    return events.queue_url, events.wait_seconds, events.visibility_timeout


def run_service(settings: Settings, *, once: bool = False, duration: float | None = None,
                on_event: OnEvent | None = None) -> int:
    """Run the service in the foreground; the exit code of `rotator run`.

    ``once``: one tick, then 0 if everything is ok, 1 if anything failed or is held (no HTTP endpoint).
    ``duration``: stop by itself after that many seconds (the demo). ``on_event(kind, data)`` hears
    started, tick, result, step, drift, reloaded, reload_rejected, tick_failed, stopping and stopped.
    Signal handlers are installed when called from the main thread. Raises RotatorError (exit 1, or 2 for
    config errors) when the service cannot start, e.g. SchemaNotCurrent: run `rotator db upgrade`.
    """
    service = Service(settings, on_event=on_event)
    restore = _install_signals(service)
    try:
        if once:
            service.prepare()
            summary = service.tick_once()
            service.follow_up_incidents()
            service.send_notifications()
            service.root.database.close()
            return 0 if summary.ok else 1
        service.start()
        try:
            service.serve(duration=duration)
        finally:
            clean = service.stop()
        return 0 if clean else 1
    finally:
        restore()


def _install_signals(service: Service) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_stop(signum: int, frame: FrameType | None) -> None:
        service.request_stop()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        service.request_reload()

    previous = {sig: signal.signal(sig, handler) for sig, handler in
                ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop), (signal.SIGHUP, on_hup))}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
