"""Emergency rotation: "GitLab may be compromised, rotate everything now".

Each credential still runs the full protocol of rotator.rotation.engine under its own lease (rotator.rotation.batch), so
every invariant holds per credential, and one failure never stops the others. What changes at fleet
scale is around it:

- selection: every credential whose key the pipelines under a project or group path can read;
- pace: concurrency is bounded per outside party by token buckets (rotator.ratelimit) that the adapters
  hold, so that 429 and Throttling slow everybody down instead of failing credentials;
- Slack: owners get the messages they would have got, but batched, one message per channel when the run
  ends (not one per step of each of hundreds of credentials), and the security channel gets one summary.
  A broken target (half a pair in GitLab) is the exception: it is said at once, not at the end.
- ``--emergency``: every old key is made Inactive as soon as its credential's targets hold the new pair;
  the summary then says, per credential, what was done, and names every exposed key still Active, with why
  and the exact command that finishes the job. IAM itself is asked which keys are still Active.

Written against ports only.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from rotator.domain import CredentialSpec, Event, KeyStatus, ScopeKind, TargetSpec
from rotator.errors import RotatorError, SlackError, StoreError
from rotator.ports import Clock, Notifier, Store
from rotator.ratelimit import BucketStats, Pacer
from rotator.rotation.batch import rotate_many
from rotator.rotation.results import Outcome, RotationPorts, RotationResult

SEVERITY_ORDER = ("info", "ok", "warning", "critical")
MAX_SUMMARY_LINES = 40


# --- selection -------------------------------------------------------------------------------------------


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent + "/")


def exposed_to(target: TargetSpec, *, projects: Iterable[str] = (), groups: Iterable[str] = ()) -> bool:
    """Can the pipelines of one of these projects, or of any project under one of these groups, read the
    variables of ``target``? Project variables reach their project; group variables reach every project
    below the group (so a group above the filter counts too); instance variables reach every project."""
    if target.kind is ScopeKind.INSTANCE:
        return True
    path = target.path or ""
    if target.kind is ScopeKind.PROJECT:
        return path in set(projects) or any(_under(path, group) for group in groups)
    return (any(_under(project, path) for project in projects)
            or any(_under(path, group) or _under(group, path) for group in groups))


def select_credentials(specs: Sequence[CredentialSpec], *, projects: Sequence[str] = (),
                       groups: Sequence[str] = ()) -> list[CredentialSpec]:
    """Every credential when no filter is given, else those with a target the filters' pipelines can read."""
    if not projects and not groups:
        return list(specs)
    return [spec for spec in specs
            if any(exposed_to(target, projects=projects, groups=groups) for target in spec.targets)]


# --- Slack -------------------------------------------------------------------------------------------------


class PacedNotifier:
    """ports.Notifier held to a pacer (Slack allows about one message per second per channel)."""

    def __init__(self, inner: Notifier, pacer: Pacer) -> None:
        self._inner = inner
        self._pacer = pacer

    def post(self, channel: str, title: str, lines: Sequence[str], *, severity: str = "info",
             thread: str | None = None) -> str | None:
        self._pacer.acquire()
        return self._inner.post(channel, title, lines, severity=severity, thread=thread)


@dataclass(frozen=True)
class _Held:
    credential: str
    title: str
    lines: tuple[str, ...]
    severity: str


class OwnerDigest:
    """Collects what rotations would have posted to owners, then posts one message per channel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_channel: dict[str, list[_Held]] = {}

    def for_credential(self, credential: str) -> Notifier:
        digest = self

        class _Collector:
            def post(self, channel: str, title: str, lines: Sequence[str], *, severity: str = "info",
                     thread: str | None = None) -> str | None:
                with digest._lock:
                    digest._by_channel.setdefault(channel, []).append(
                        _Held(credential, title, tuple(lines), severity))
                return None

        return _Collector()

    def channels(self) -> dict[str, list[_Held]]:
        with self._lock:
            return {channel: list(held) for channel, held in self._by_channel.items()}

    def flush(self, notifier: Notifier, heading: str) -> list[tuple[str, str | None]]:
        """Post the batched messages; returns (channel, error or None) for each channel."""
        outcomes: list[tuple[str, str | None]] = []
        for channel, held in sorted(self.channels().items()):
            credentials = list(dict.fromkeys(h.credential for h in held))
            severity = max((h.severity for h in held), key=_severity_rank)
            lines: list[str] = []
            # What needs the owner first; routine news ("rotated") as one line each, details only for the rest.
            for item in sorted(held, key=lambda h: (-_severity_rank(h.severity), h.credential)):
                lines.append(item.title.removeprefix("rotator: "))
                if _severity_rank(item.severity) >= _severity_rank("warning"):
                    lines += [f"    {line}" for line in item.lines]
            title = f"{heading}: {len(credentials)} of your credential(s)"
            try:
                notifier.post(channel, title, _capped(lines), severity=severity)
            except SlackError as exc:
                outcomes.append((channel, str(exc)))
            else:
                outcomes.append((channel, None))
        return outcomes


def _severity_rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else 0


def _capped(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_SUMMARY_LINES:
        return lines
    return [*lines[:MAX_SUMMARY_LINES], f"… and {len(lines) - MAX_SUMMARY_LINES} more line(s): see `rotator status`"]


# --- the run -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exposure:
    """After an emergency run: a credential whose exposed key(s) IAM still lists as Active, or that IAM could not
    be asked about (verify_error)."""

    credential: str
    iam_user: str
    active_key_ids: tuple[str, ...]
    reason: str  # why the run could not close it (the result's message)
    verify_error: str | None = None  # IAM could not be asked: nothing is claimed either way

    @property
    def verified(self) -> bool:
        """IAM answered: the key ids are Active, as listed. Otherwise nothing is known either way."""
        return self.verify_error is None

    def finish_commands(self) -> list[str]:
        """The exact commands that close the door: rotator's own, once the reason is fixed, or by hand now
        (the pipelines that still hold the key then fail)."""
        commands = [f"rotator rotate {self.credential} --emergency"]
        if not self.verified:
            commands.append(f"aws iam list-access-keys --user-name {self.iam_user}")
        commands += [f"aws iam update-access-key --user-name {self.iam_user} --access-key-id {key_id} "
                     "--status Inactive" for key_id in self.active_key_ids]
        return commands


@dataclass
class FleetReport:
    results: list[RotationResult]
    started_at: datetime
    finished_at: datetime
    owner_posts: list[tuple[str, str | None]] = field(default_factory=list)  # (channel, error)
    security_post: str | None = None  # None: posted or nobody to tell; else the error
    buckets: list[BucketStats] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)  # the process was told to stop before these began
    emergency: bool = False
    # Emergency only: every credential in scope (not-started ones too) whose keys IAM lists with one still
    # Active, or whose keys IAM could not be asked about (verify_error).
    exposures: list[Exposure] = field(default_factory=list)

    @property
    def still_exposed(self) -> list[Exposure]:
        """IAM lists a key still Active."""
        return [e for e in self.exposures if e.verified]

    @property
    def not_verified(self) -> list[Exposure]:
        """IAM could not be asked: neither exposed nor closed is claimed."""
        return [e for e in self.exposures if not e.verified]

    @property
    def counts(self) -> Counter[str]:
        return Counter(r.outcome.value for r in self.results)

    @property
    def ok(self) -> bool:
        if self.emergency:
            return not self.exposures  # IAM asked for every credential in scope; it lists no exposed key Active
        return all(r.outcome.ok for r in self.results)

    @property
    def elapsed(self) -> timedelta:
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class FleetOptions:
    holder: str
    lease_ttl: timedelta
    concurrency: int = 16
    force: bool = False
    emergency: bool = False
    security_channel: str | None = None
    scope: str = "every configured credential"  # what was selected, for the summary
    actor: str = "rotator"


def rotate_fleet(specs: Sequence[CredentialSpec], ports_for: Callable[[CredentialSpec], RotationPorts],
                 options: FleetOptions, *, notifier: Notifier | None, clock: Clock, store: Store | None = None,
                 buckets: Callable[[], list[BucketStats]] | None = None,
                 on_result: Callable[[RotationResult], None] | None = None,
                 on_step: Callable[[str, str, str], None] | None = None,
                 should_start: Callable[[str], bool] | None = None,
                 interrupt: Callable[[], None] | None = None) -> FleetReport:
    """Rotate every credential in ``specs`` at once; owners' messages batched, one security summary.

    ``notifier`` is the (paced) Slack notifier; None means nobody is told. ``should_start`` / ``interrupt``:
    rotate_many's hooks for a process that is told to stop; the batched messages still go out for what ran."""
    started = clock.now()
    digest = OwnerDigest()

    def fleet_ports(spec: CredentialSpec) -> RotationPorts:
        ports = ports_for(spec)
        return replace(ports, notifier=digest.for_credential(spec.name) if notifier is not None else None,
                       urgent=notifier, security_channel=options.security_channel)

    results = rotate_many(specs, fleet_ports, holder=options.holder, lease_ttl=options.lease_ttl,
                          concurrency=options.concurrency, force=options.force, on_result=on_result,
                          on_step=on_step, should_start=should_start or (lambda name: True), interrupt=interrupt,
                          emergency=options.emergency)
    ran = {result.credential for result in results}
    exposures = still_exposed(specs, results, ports_for) if options.emergency else []
    report = FleetReport(results, started, clock.now(), buckets=buckets() if buckets else [],
                         not_started=[spec.name for spec in specs if spec.name not in ran],
                         emergency=options.emergency, exposures=exposures)
    if notifier is None:
        return report
    report.owner_posts = digest.flush(notifier, "rotator: emergency rotation")
    _record(store, clock, options.actor, report.owner_posts)
    if options.security_channel:
        try:
            notifier.post(options.security_channel, summary_title(report), summary_lines(report, options),
                          severity="ok" if report.ok else "critical")
        except SlackError as exc:
            report.security_post = str(exc)
    return report


NOT_STARTED = "not started: the run was told to stop before this credential began"


def still_exposed(specs: Sequence[CredentialSpec], results: Sequence[RotationResult],
                  ports_for: Callable[[CredentialSpec], RotationPorts]) -> list[Exposure]:
    """Ask IAM (ListAccessKeys) about every credential in scope, whatever its run said and whether it ran at all
    (an interrupted run leaves some not started): each Active key but the one this run created (which GitLab
    received after the emergency began) is still exposed. A credential IAM could not be asked about is listed
    with its error: nothing is claimed either way."""
    by_name = {result.credential: result for result in results}
    exposures = []
    for spec in specs:
        result = by_name.get(spec.name)
        reason = result.message if result is not None else NOT_STARTED
        new_key_id = result.new_key_id if result is not None else None
        try:
            keys = ports_for(spec).iam.list_access_keys(spec.iam_user)
        except RotatorError as exc:
            exposures.append(Exposure(spec.name, spec.iam_user, (), reason, verify_error=str(exc)))
            continue
        active = tuple(k.key_id for k in keys if k.status is KeyStatus.ACTIVE and k.key_id != new_key_id)
        if active:
            exposures.append(Exposure(spec.name, spec.iam_user, active, reason))
    return exposures


def _record(store: Store | None, clock: Clock, actor: str, posts: list[tuple[str, str | None]]) -> None:
    """The batched owner messages in history: one event per channel (the per-credential 'notify ok' events
    say the message was queued for the digest)."""
    if store is None:
        return
    for channel, error in posts:
        try:
            store.append_event(Event(at=clock.now(), actor=actor, action="notify_digest",
                                     outcome="failed" if error else "ok",
                                     detail={"channel": channel, **({"error": error} if error else {})}))
        except StoreError:
            return  # history is best effort here: the rotations themselves are already journaled


def summary_title(report: FleetReport) -> str:
    if report.emergency:
        parts = []
        if report.still_exposed:
            parts.append(f"{len(report.still_exposed)} credential(s) STILL EXPOSED (a key still Active)")
        if report.not_verified:
            parts.append(f"{len(report.not_verified)} credential(s) NOT VERIFIED (IAM could not be asked)")
        state = "; ".join(parts) or "every exposed key is Inactive"
        started = f" ({len(report.not_started)} not started)" if report.not_started else ""
        return f"rotator: emergency rotation of {len(report.results)} credential(s){started}: {state}"
    counts = report.counts
    parts = [f"{counts[o.value]} {o.value}" for o in Outcome if counts[o.value]]
    return f"rotator: emergency rotation of {len(report.results)} credential(s): {', '.join(parts) or 'none'}"


def emergency_lines(report: FleetReport) -> list[str]:
    """Per credential: what was done; every key still Active first, with why and the commands that finish."""
    lines: list[str] = []
    for exposure in report.exposures:
        if exposure.verify_error is not None:
            lines.append(f"{exposure.credential}: NOT VERIFIED: IAM could not be asked ({exposure.verify_error}); "
                         f"the run said: {exposure.reason}")
            continue
        lines.append(f"{exposure.credential}: STILL ACTIVE {', '.join(exposure.active_key_ids)}: {exposure.reason}")
        commands = exposure.finish_commands()
        lines.append(f"    finish: fix the above, then `{commands[0]}`; or close it now (pipelines still holding "
                     "it fail): " + "; ".join(f"`{c}`" for c in commands[1:]))
    exposed = {e.credential for e in report.exposures}
    lines += [f"{r.credential}: {r.message}" for r in report.results if r.credential not in exposed]
    lines += [f"{name}: {NOT_STARTED}; IAM lists no exposed key Active" for name in report.not_started
              if name not in exposed]
    if report.not_started:
        lines.append(f"interrupted; not started: {', '.join(report.not_started)}")
    return lines


def summary_lines(report: FleetReport, options: FleetOptions) -> list[str]:
    seconds = max(report.elapsed.total_seconds(), 1e-9)
    mode = ("emergency: no grace, no LastUsedDate gate; each old key made Inactive as soon as every target of its "
            "credential held the new pair, kept as evidence until delete_after" if options.emergency
            else "forced" if options.force else "only what was due")
    lines = [f"scope: {options.scope}; concurrency {options.concurrency}; {mode}",
             f"took {report.elapsed.total_seconds():.1f}s ({len(report.results) / seconds:.2f} credential(s)/s)"]
    for stats in report.buckets:
        if stats.throttled:
            lines.append(f"{stats.name}: pushed back {stats.throttled} time(s); slowed down and carried on")
    if report.emergency:
        return _capped(lines + emergency_lines(report))
    attention = [r for r in report.results if not r.outcome.ok]
    lines += [f"{r.credential}: {r.outcome.value}: {r.message}" for r in attention]
    if report.not_started:
        lines.append(f"interrupted; not started: {', '.join(report.not_started)}")
    if not attention and not report.not_started:
        lines.append("every credential is ok")
    return _capped(lines)
