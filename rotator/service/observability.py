"""Prometheus metrics and the /healthz, /readyz, /metrics endpoints of the service.

The metrics live in a registry of their own (not prometheus_client's global one), so several services
in one process (tests, the demo) never collide. Per-credential numbers (key age, states, incidents)
are read from the database at scrape time: every replica reports the same fleet, and a tick pays
nothing for them.
"""

from __future__ import annotations

import ctypes
import functools
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rotator.domain import CredentialState
from rotator.errors import StoreError
from rotator.incident.events import Outcome as ExposureOutcome
from rotator.incident.events import RejectReason
from rotator.incident.exposure import ExposureResult
from rotator.rotation.results import Outcome
from rotator.service.ports import FleetSnapshot

log = structlog.get_logger("rotator.service.observability")

# Steps range from a GitLab PUT (tens of ms) to STS verification (IAM propagation, up to a minute).
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


class FleetCollector(Collector):
    """rotator_key_age_seconds, rotator_credentials, rotator_targets_broken and rotator_incidents_total, read on
    each scrape."""

    def __init__(self, snapshot: Callable[[], FleetSnapshot], now: Callable[[], datetime]) -> None:
        self._snapshot = snapshot
        self._now = now

    def describe(self) -> Iterable[Metric]:
        # Lets the registry learn the names without a database query at registration.
        return self._families()

    def collect(self) -> Iterable[Metric]:
        try:
            fleet = self._snapshot()
        except StoreError as exc:
            # /metrics still answers with what the process knows; /readyz reports the database.
            log.warning("metrics: the database is unavailable, fleet metrics omitted", error=str(exc))
            return []
        return self._families(fleet)

    def _families(self, fleet: FleetSnapshot | None = None) -> list[Metric]:
        ages = GaugeMetricFamily("rotator_key_age_seconds", "Age of the access key each credential's GitLab "
                                 "targets hold, from IAM's CreateDate.", labels=["credential"])
        states = GaugeMetricFamily("rotator_credentials", "Configured credentials by state "
                                   "(ok, rotating, held, failed, broken).", labels=["state"])
        broken = GaugeMetricFamily("rotator_targets_broken", "GitLab targets holding half a key pair (the new "
                                   "secret, the old key id): AWS rejects their pipelines until it is completed.")
        incidents = CounterMetricFamily("rotator_incidents", "Compromised-key incidents recorded "
                                        "(rotator revoke), across every replica.")
        if fleet is not None:
            now = self._now()
            for name, created in sorted(fleet.key_created_at.items()):
                if created is not None:
                    ages.add_metric([name], max(0.0, (now - created).total_seconds()))
            for state in CredentialState:
                states.add_metric([state.value], fleet.states.get(state, 0))
            incidents.add_metric([], fleet.incidents)
            broken.add_metric([], fleet.broken_targets)
        return [ages, states, broken, incidents]


class LastTick(Collector):
    """rotator_last_tick_timestamp_seconds, exported only once a tick has finished.

    A plain Gauge would read 0 from the first scrape: "no tick since 1970", which makes any staleness
    alert fire on every cold start. Absent until the first tick, the alert can tell a slow start (absent,
    within its ``for:``) from a stopped service.
    """

    NAME = "rotator_last_tick_timestamp_seconds"

    def __init__(self) -> None:
        self._finished_at: float | None = None

    def set(self, unix_time: float) -> None:
        self._finished_at = unix_time

    def describe(self) -> Iterable[Metric]:
        return [self._family()]  # the name, registered without a sample

    def collect(self) -> Iterable[Metric]:
        finished_at = self._finished_at
        if finished_at is None:
            return []
        family = self._family()
        family.add_metric([], finished_at)
        return [family]

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.NAME, "Unix time the last tick finished (absent before the first).")


class Metrics:
    """Every metric the service exports, in its own registry."""

    def __init__(self, snapshot: Callable[[], FleetSnapshot], now: Callable[[], datetime]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.rotations = Counter("rotator_rotations", "Runs of the rotation protocol by outcome "
                                 "(rotated, waiting, not_due, held, failed, busy).", ["outcome"],
                                 registry=self.registry)
        self.step_duration = Histogram("rotator_step_duration_seconds", "Time each rotation step took, "
                                       "from the end of the previous step.", ["step"], buckets=STEP_BUCKETS,
                                       registry=self.registry)
        self.last_tick = LastTick()
        self.registry.register(self.last_tick)
        self.notifications_failed = Counter(
            "rotator_notifications_failed", "Slack messages that failed: 'unreachable' (Slack did not answer; the "
            "message is kept and sent again when it does) or 'refused' (Slack said no; not kept).", ["reason"],
            registry=self.registry)
        self.notifications_queued = Gauge("rotator_notifications_queued", "Slack messages kept, waiting for "
                                          "Slack to answer (as of the last delivery attempt).", registry=self.registry)
        for outcome in Outcome:
            self.rotations.labels(outcome.value)  # every outcome shows, at 0, from the first scrape
        for reason in ("unreachable", "refused"):
            self.notifications_failed.labels(reason)
        self.registry.register(FleetCollector(snapshot, now))
        self._exposure_metrics()

    def _exposure_metrics(self) -> None:
        """AWS's exposure reports: the event consumer's messages and the tick's quarantined users."""
        self.exposures_received = Counter(
            "rotator_exposure_events_received", "Exposure reports from AWS: queue messages (each once, however "
            "often SQS delivers it) and quarantined users found, by source (sqs, quarantine).", ["source"],
            registry=self.registry)
        self.exposures_acted_on = Counter(
            "rotator_exposure_events_acted_on", "Reported keys acted on, by on_exposed (contain, "
            "contain_and_replace, notify).", ["action"], registry=self.registry)
        self.exposures_duplicated = Counter(
            "rotator_exposure_events_duplicated", "Reported keys already handled: the same report again, or a key "
            "already contained (its incident annotated).", registry=self.registry)
        self.exposures_rejected = Counter(
            "rotator_exposure_events_rejected", "Queue messages rotator will not act on, by reason: left for the "
            "queue's dead-letter queue, or deleted when it has none (the log line is their record).", ["reason"],
            registry=self.registry)
        self.exposures_failed = Counter(
            "rotator_exposure_events_failed", "Reported keys not handled yet (not contained, incident not "
            "recorded, Slack down for notify): tried again.", registry=self.registry)
        for source in ("sqs", "quarantine"):
            self.exposures_received.labels(source)
        for action in ("contain", "contain_and_replace", "notify"):
            self.exposures_acted_on.labels(action)
        for reason in RejectReason:
            self.exposures_rejected.labels(reason.value)

    def count_exposure(self, result: ExposureResult) -> None:
        if result.outcome in (ExposureOutcome.ACTED, ExposureOutcome.NOTIFIED):
            self.exposures_acted_on.labels(result.action).inc()
        elif result.outcome in (ExposureOutcome.DUPLICATE, ExposureOutcome.ANNOTATED):
            self.exposures_duplicated.inc()
        elif result.outcome is ExposureOutcome.FAILED:
            self.exposures_failed.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None elsewhere (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def return_freed_memory() -> None:
    """A scrape builds every credential's samples at once (10,000 credentials: megabytes) in the HTTP handler's
    thread; glibc keeps the pages such a burst freed in that thread's arena, so the process's RSS grows by the
    size of each scrape's peak. malloc_trim(0) hands the freed pages back to the kernel (glibc malloc_trim(3))."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


# --- HTTP ------------------------------------------------------------------------------------------------


def parse_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:9466' or '[::]:9466' → (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, ipv6: bool) -> None:
        self.address_family = socket.AF_INET6 if ipv6 else socket.AF_INET
        super().__init__(address, handler)


class HealthServer:
    """Serves /healthz, /readyz and /metrics on ``listen`` from a daemon thread.

    ``readiness`` returns the reasons the service is not ready (empty when ready).
    """

    def __init__(self, listen: str, *, metrics: Metrics, readiness: Callable[[], Sequence[str]]) -> None:
        host, port = parse_listen(listen)
        self._metrics = metrics
        self._readiness = readiness
        self._server = _Server((host, port), self._handler_class(), ipv6=":" in host)
        self._thread = threading.Thread(target=self._server.serve_forever, name="rotator-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://[{text}]:{port}" if ":" in text else f"http://{text}:{port}"

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "rotator"
            sys_version = ""

            def do_GET(self) -> None:  # the name http.server dispatches to
                path = self.path.split("?", 1)[0]
                status, content_type, body = server.answer(path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)
                if path == "/metrics":
                    del body
                    return_freed_memory()

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds would drown the log

        return Handler

    def answer(self, path: str) -> tuple[int, str, bytes]:
        text = "text/plain; charset=utf-8"
        if path == "/healthz":
            return 200, text, b"ok\n"
        if path == "/readyz":
            problems = list(self._readiness())
            if problems:
                return 503, text, ("not ready:\n" + "".join(f"- {p}\n" for p in problems)).encode()
            return 200, text, b"ready\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, self._metrics.exposition()
        return 404, text, b"not found: try /healthz, /readyz or /metrics\n"
