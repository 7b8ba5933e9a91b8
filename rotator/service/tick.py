"""One tick of the service: act on AWS's quarantine policies (a leaked key is contained before anything else
touches it), recover interrupted rotations, run due rotations, then due retire and delete steps, then a
rationed batch of drift checks. Every credential runs under its own lease
(rotator.rotation.batch.rotate_one) and fails on its own; the summary reports them together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import structlog

from rotator.domain import CredentialSpec, CredentialState
from rotator.errors import LeaseLost, RotatorError
from rotator.incident.events import QUARANTINE
from rotator.incident.events import Outcome as ExposureOutcome
from rotator.incident.exposure import ExposureResult
from rotator.leases import holding, lease_name
from rotator.ports import Clock
from rotator.rotation.batch import rotate_many
from rotator.rotation.reporting import Reporter
from rotator.rotation.results import Outcome, RotationPorts, RotationResult
from rotator.rotation.targets import assess_targets
from rotator.service.ports import ServiceQueries
from rotator.service.scheduling import DriftSchedule, DueWork, RetryPauses, select_due

log = structlog.get_logger("rotator.service.tick")

# Outcomes that do not make a tick (or `run --once`) fail: BUSY means another replica, or an incident,
# owns the credential right now, which is how replicas are meant to share the work.
_TICK_OK = frozenset({Outcome.ROTATED, Outcome.WAITING, Outcome.NOT_DUE, Outcome.BUSY})


class Interrupted(LeaseLost):
    """The service is stopping: the rotation stops before its next outside step, at a journaled point,
    and the next start (or another replica) resumes it."""


@dataclass(frozen=True)
class DriftResult:
    credential: str
    outcome: str  # clean | drift | skipped | failed
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("clean", "skipped")


@dataclass(frozen=True)
class TickSummary:
    started_at: datetime
    seconds: float
    due: tuple[DueWork, ...] = ()
    results: tuple[RotationResult, ...] = ()
    drift: tuple[DriftResult, ...] = ()
    interrupted: bool = False
    exposures: tuple[ExposureResult, ...] = ()  # quarantined users acted on

    @property
    def ok(self) -> bool:
        """Nothing failed and nothing is held."""
        return (all(r.outcome in _TICK_OK for r in self.results) and all(d.ok for d in self.drift)
                and all(e.settled or e.outcome is ExposureOutcome.BUSY for e in self.exposures))

    def counts(self) -> dict[str, int]:
        tally: dict[str, int] = {}
        for result in self.results:
            tally[result.outcome.value] = tally.get(result.outcome.value, 0) + 1
        for check in self.drift:
            tally[f"drift_{check.outcome}"] = tally.get(f"drift_{check.outcome}", 0) + 1
        for exposure in self.exposures:
            tally[f"exposure_{exposure.outcome.value}"] = tally.get(f"exposure_{exposure.outcome.value}", 0) + 1
        return tally


@dataclass
class TickContext:
    """Everything a tick needs; the service builds one per tick from its current settings and wiring."""

    specs: Sequence[CredentialSpec]
    queries: ServiceQueries
    ports_for: Callable[[CredentialSpec], RotationPorts]
    clock: Clock
    holder: str
    lease_ttl: timedelta
    concurrency: int = 4
    pauses: RetryPauses = field(default_factory=RetryPauses)
    drift: DriftSchedule | None = None
    stop_requested: Callable[[], bool] = lambda: False  # checked before every outside step
    on_result: Callable[[RotationResult], None] | None = None
    on_step: Callable[[str, str, float], None] | None = None  # credential, step, seconds since the previous step
    on_drift: Callable[[DriftResult], None] | None = None
    # The quarantine check (rotator.incident.quarantine), when [events] asks for it.
    exposures: Callable[[], Sequence[ExposureResult]] | None = None


def _check_exposures(ctx: TickContext) -> tuple[ExposureResult, ...]:
    """The quarantine check never costs the tick its rotations: a failure there (the store's ledger, a party)
    is one failed result, and the next tick looks again."""
    assert ctx.exposures is not None
    try:
        return tuple(ctx.exposures())
    except RotatorError as exc:
        log.error("the quarantine check failed; rotations go on", error=str(exc))
        return (ExposureResult(None, ExposureOutcome.FAILED, "-", f"quarantine check: {exc}", source=QUARANTINE),)


def run_tick(ctx: TickContext) -> TickSummary:
    started = ctx.clock.now()
    began = time.monotonic()
    exposures = _check_exposures(ctx) if ctx.exposures is not None and not ctx.stop_requested() else ()
    by_name: Mapping[str, CredentialSpec] = {spec.name: spec for spec in ctx.specs}
    due = select_due(ctx.queries.due_candidates(started), {n: s.policy for n, s in by_name.items()}, started,
                     ctx.pauses)
    results = _run_due(ctx, [by_name[work.credential] for work in due])
    worked = {work.credential for work in due}
    drift: list[DriftResult] = []
    if ctx.drift is not None and not ctx.stop_requested():
        for name in ctx.drift.take_due(ctx.clock.now()):
            if ctx.stop_requested():
                break
            if name in worked or name not in by_name:
                continue  # a credential rotated this tick was just compared with IAM anyway
            drift.append(_drift_check(ctx, by_name[name]))
    summary = TickSummary(started_at=started, seconds=time.monotonic() - began, due=tuple(due),
                          results=tuple(results), drift=tuple(drift), interrupted=ctx.stop_requested(),
                          exposures=exposures)
    log.info("tick", due=len(due), duration_ms=round(summary.seconds * 1000, 1), ok=summary.ok,
             interrupted=summary.interrupted, **summary.counts())
    return summary


def _run_due(ctx: TickContext, specs: Sequence[CredentialSpec]) -> list[RotationResult]:
    """Rotate each spec (in the given order of start) under its lease; stop starting new ones on stop."""
    last_step: dict[str, float] = {}
    lock = threading.Lock()

    def interrupt() -> None:
        if ctx.stop_requested():
            raise Interrupted("the service is stopping: the rotation stops here and resumes from the journal",
                              hint="nothing to do: the next start, or another replica, continues it")

    def should_start(credential: str) -> bool:
        if ctx.stop_requested():
            return False  # never started: the next tick (or another replica) picks it up
        with lock:
            last_step[credential] = time.monotonic()
        return True

    def on_step(credential: str, step: str, detail: str) -> None:
        now = time.monotonic()
        with lock:
            seconds = now - last_step.get(credential, now)
            last_step[credential] = now
        if ctx.on_step is not None:
            ctx.on_step(credential, step, seconds)

    def on_result(result: RotationResult) -> None:
        if result.outcome not in _TICK_OK:
            log.warning("rotation not ok", credential=result.credential, outcome=result.outcome.value,
                        message=result.message)
        if ctx.on_result is not None:
            ctx.on_result(result)

    return rotate_many(specs, ctx.ports_for, holder=ctx.holder, lease_ttl=ctx.lease_ttl,
                       concurrency=ctx.concurrency, on_step=on_step, on_result=on_result, interrupt=interrupt,
                       should_start=should_start)


def _drift_check(ctx: TickContext, spec: CredentialSpec) -> DriftResult:
    """Compare what the GitLab targets hold with the user's keys in IAM, under the credential's lease.

    Drift (a target holding a key IAM does not have, or targets disagreeing) holds the credential and
    tells its owners once; a clean check refreshes the key the status (and the key-age metric) shows.
    """
    try:
        ports = ctx.ports_for(spec)
    except RotatorError as exc:
        return _drift_done(ctx, DriftResult(spec.name, "failed", str(exc)))
    store = ports.store
    try:
        with holding(store, lease_name(spec.name), ctx.holder, ctx.lease_ttl) as lease:
            if lease is None:
                return _drift_done(ctx, DriftResult(spec.name, "skipped", "another process holds the credential"))
            store = lease.fenced_store()  # a check that outlived its lease writes nothing
            ports = replace(ports, store=store)
            status = store.get_status(spec.name)
            if status is None or status.state is not CredentialState.OK or store.open_journal(spec.name) is not None:
                return _drift_done(ctx, DriftResult(spec.name, "skipped", "not at rest"))
            keys = {key.key_id: key for key in ports.iam.list_access_keys(spec.iam_user)}
            assessment = assess_targets(ports.variables, spec.targets, set(keys))
            now = ctx.clock.now()
            problems = assessment.problems()
            if problems:
                reason = "; ".join(problems)
                reporter = Reporter(ports, spec, None)
                reporter.event("drift_check", "held", reason=reason)
                reporter.notify("drift", f"rotator: {spec.name} drift, credential held", [reason], "warning")
                store.set_status(spec.name, CredentialState.HELD, now, last_error=reason)
                return _drift_done(ctx, DriftResult(spec.name, "drift", reason))
            held = sorted(assessment.held)
            current = keys.get(held[0]) if held else None
            store.set_status(spec.name, CredentialState.OK, now,
                             current_key_id=current.key_id if current else None,
                             key_created_at=current.created_at if current else None)
            return _drift_done(ctx, DriftResult(spec.name, "clean"))
    except RotatorError as exc:
        log.warning("drift check failed", credential=spec.name, error=str(exc))
        return _drift_done(ctx, DriftResult(spec.name, "failed", str(exc)))


def _drift_done(ctx: TickContext, result: DriftResult) -> DriftResult:
    if ctx.on_drift is not None:
        ctx.on_drift(result)
    return result
