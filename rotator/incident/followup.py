"""The compromised-key playbook, second half: everything after containment.

Preempt any rotation of the credential (and retire the key it had just replaced, which nothing else would
retire now), record the incident, start the CloudTrail audit, tell the security channel and the owners (one
Slack thread per incident), replace the key in GitLab (``--replace``), then wait for the audit. The audit cuts
each role a session reached as soon as it reads the record (rotator.incident.sessions.SessionCutter), in
parallel with the rest. Each step fails on its own and says so; none of them can undo containment. Exit code
0 when every step is done and every session found is cut, 3 when the key is contained but not all of that.

The incident stays open: CloudTrail delivers minutes late, so the service re-audits it on the schedule of
``[revoke] follow_up`` (rotator.incident.reaudit).
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from rotator.domain import CredentialSpec, Event, Incident, Journal, KeyOwner, KeyStatus, Phase
from rotator.errors import AwsError, ExitCode, RotatorError, SlackUnavailable
from rotator.incident.audit.report import slack_lines
from rotator.incident.audit.run import DELIVERY_DELAY, AuditReport
from rotator.incident.containment import Containment, KeyIdentity, Step, StepStatus, iso_seconds
from rotator.incident.ports import IncidentIam, IncidentStore
from rotator.incident.principals import USER_SESSION_CALLS
from rotator.incident.report import (
    IncidentView,
    headline,
    incident_json,
    render_incident_markdown,
    session_lines,
    sessions_title,
    slack_containment_lines,
)
from rotator.incident.sessions import CutPorts, FoundSession, SessionCut, SessionCutter
from rotator.leases import Lease, acquire, lease_name
from rotator.ports import Clock, Notifier
from rotator.rotation.deactivation import READ_BACK_ATTEMPTS, read_back_inactive

SessionSink = Callable[[FoundSession], None]


@dataclass(frozen=True)
class FollowUpSchedule:
    """When an open incident is re-audited ([revoke] follow_up, counted from T0), and how late CloudTrail may be."""

    offsets: tuple[timedelta, ...] = (timedelta(minutes=20), timedelta(minutes=60))
    delivery_delay: timedelta = DELIVERY_DELAY

    def first(self, t0: datetime) -> datetime:
        return t0 + self.offsets[0]

    def next_after(self, t0: datetime, moment: datetime) -> datetime | None:
        """The first scheduled follow-up after ``moment``; None when the last one is past."""
        return next((t0 + offset for offset in self.offsets if t0 + offset > moment), None)


@dataclass(frozen=True)
class FollowUpOptions:
    reason: str = ""
    replace: bool = False
    audit: bool = True
    dry_run: bool = False


@dataclass(frozen=True)
class FollowUpPorts:
    clock: Clock
    actor: str
    holder: str  # the lease holder name of this incident run
    lease_ttl: timedelta
    store: Callable[[], IncidentStore]  # built on first use; raises a RotatorError when it cannot be
    notifier: Callable[[], Notifier | None]  # None when [slack] is not configured
    security_channel: str | None
    configured: Sequence[CredentialSpec]
    replace: Callable[[KeyIdentity, CredentialSpec | None], Step]
    # Runs the audit of the contained key (resolving the accounts' ids first); hands each session key it finds
    # to the sink as soon as its minting record is read.
    audit: Callable[[Containment, datetime | None, SessionSink | None], AuditReport]
    cut_ports: CutPorts  # IAM of every configured account, [revoke] rules
    iam_for: Callable[[str], IncidentIam]
    schedule: FollowUpSchedule = field(default_factory=FollowUpSchedule)


@dataclass
class IncidentOutcome:
    containment: Containment
    steps: list[Step]
    incident_id: str | None = None
    audit: AuditReport | None = None
    slack_thread: str | None = None
    cuts: list[SessionCut] = field(default_factory=list)
    follow_up_at: datetime | None = None

    @property
    def open_gaps(self) -> list[SessionCut]:
        return [cut for cut in self.cuts if cut.open_gap]

    @property
    def exit_code(self) -> ExitCode:
        failed = any(step.failed for step in self.steps) or self.open_gaps
        return ExitCode.CONTAINED_FOLLOW_UP_FAILED if failed else ExitCode.OK

    def view(self, actor: str, reason: str) -> IncidentView:
        return IncidentView(self.containment, self.steps, self.cuts, actor, reason, self.incident_id, self.audit,
                            self.exit_code, self.follow_up_at)


@dataclass
class _State:
    store: IncidentStore | None = None
    incident_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    earlier: Incident | None = None
    thread: str | None = None
    thread_channel: str | None = None
    credential: str | None = None
    leases: list[Lease] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)  # rotation ids
    cuts: list[SessionCut] = field(default_factory=list)
    follow_up_at: datetime | None = None
    closed_at: datetime | None = None
    audit_error: RotatorError | None = None
    kept: bool = False  # Slack did not take the containment message at once: it waits in the outbox


class IncidentFollowUp:
    def __init__(self, containment: Containment, ports: FollowUpPorts, options: FollowUpOptions) -> None:
        assert containment.contained or containment.dry_run
        self.containment = containment
        self.ports = ports
        self.options = options
        self.steps: list[Step] = list(containment.steps)
        tracked = containment.identity.credential if containment.identity else None
        self.state = _State(credential=tracked or self._configured_credential(), cuts=list(containment.cuts))
        self.audit_report: AuditReport | None = None
        self.cutter = SessionCutter(ports.cut_ports, containment.t0,
                                    known={cut.principal.key: cut for cut in containment.cuts})

    def run(self) -> IncidentOutcome:
        try:
            audit = self._start_audit()  # first: the roles it finds are cut while the rest goes on
            self._open_store()
            self._preempt()
            self._schedule()
            self._record("contained")
            self._notify()
            if self.options.replace:
                self._replace()
            self._finish_audit(audit)
            self._confirm_preempted()
            outcome = self._outcome()
            self._record("contained" if outcome.exit_code == ExitCode.OK else "contained, follow-ups failed")
            return self._outcome()
        finally:
            self._release()

    def _outcome(self) -> IncidentOutcome:
        incident_id = None if self.containment.dry_run else self.state.incident_id
        return IncidentOutcome(self.containment, list(self.steps), incident_id, self.audit_report, self.state.thread,
                               list(self.state.cuts), self.state.follow_up_at)

    def _add(self, name: str, status: StepStatus, detail: str) -> Step:
        step = Step(name, status, detail)
        self.steps.append(step)
        return step

    # --- store, earlier incidents, preemption ----------------------------------------------------------
    def _open_store(self) -> None:
        try:
            store = self.ports.store()
            earlier = store.incidents_for_key(self.containment.key_id)
            owner = store.key_owner(self.containment.key_id)
        except RotatorError as exc:
            if self.containment.dry_run:
                self._add("store", StepStatus.SKIPPED, f"not read: {exc}")
            else:
                self._add("store", StepStatus.FAILED, f"{exc}: the incident is not recorded and no rotation "
                                                      "was preempted")
            return
        self.state.store = store
        if owner is not None and owner.credential:
            self.state.credential = owner.credential  # the store's word beats matching the config by user
        if earlier:
            last = earlier[-1]
            self.state.earlier = last
            self.state.incident_id = last.incident_id
            self.state.thread = last.slack_thread
            self.state.thread_channel = last.slack_channel
            self._add("earlier incident", StepStatus.ALREADY, f"incident {last.incident_id} was opened at "
                      f"{iso_seconds(last.t0)} by {last.actor} ({last.status}); this run checked every step again")

    def _configured_credential(self) -> str | None:
        """A key the store never saw may still belong to a configured credential: same IAM user, same account."""
        identity = self.containment.identity
        if identity is None or identity.user_name is None:
            return None
        return next((spec.name for spec in self.ports.configured
                     if (spec.iam_user, spec.account) == (identity.user_name, identity.account)), None)

    def _preempt(self) -> None:
        store = self.state.store
        if store is None:
            return
        try:
            journals = [j for j in store.journals_with_key(self.containment.key_id) if not j.phase.finished]
            credentials = list(dict.fromkeys([*(j.credential for j in journals),
                                              *([self.state.credential] if self.state.credential else [])]))
            if self.containment.dry_run:
                what = ", ".join(f"rotation {j.rotation_id[:8]} of {j.credential} ({j.phase.value})" for j in journals)
                self._add("preempt", StepStatus.PLANNED if journals else StepStatus.NOTHING,
                          f"would mark superseded: {what}" if journals else "no rotation of this key is in flight")
                return
            for credential in credentials:
                # Take the lease from whoever holds it: the holder's next renewal fails and it stops at a
                # journaled point; no replica can start a rotation of this credential until we are done.
                lease = acquire(store, lease_name(credential), self.ports.holder, self.ports.lease_ttl,
                                expire_first=True)
                if lease is not None:
                    self.state.leases.append(lease)
            for journal in journals:
                self._supersede(store, journal.rotation_id, journal.credential)
        except RotatorError as exc:
            self._add("preempt", StepStatus.FAILED, str(exc))
            return
        if journals:
            described = ", ".join(f"rotation {j.rotation_id[:8]} of {j.credential} (was {j.phase.value})"
                                  for j in journals)
            self._add("preempt", StepStatus.DONE, f"marked superseded, never to be rolled forward: {described}")
            for journal in journals:
                self._retire_replaced(journal)
        else:
            held = [c for c in credentials if any(lease.name == lease_name(c) for lease in self.state.leases)]
            missed = [c for c in credentials if c not in held]
            self._add("preempt", StepStatus.NOTHING, "no rotation of this key was in flight"
                      + (f"; holding the lease of credential {', '.join(held)} until done" if held else "")
                      + (f"; could not take the lease of credential {', '.join(missed)}: a rotation may start "
                         "there meanwhile" if missed else ""))

    def _retire_replaced(self, journal: Journal) -> None:
        """The compromised key is the one this rotation published, and the key it replaced is still in its grace
        period. The superseded rotation will never retire that key, so it would stay Active with no journal to
        retire it: retire it now. Every target holds the newer key (the journal says so: it was published), so
        no pipeline started since the publish uses it; those started before fail either way."""
        previous = journal.old_key_id
        if journal.new_key_id != self.containment.key_id or not previous or journal.published_at is None:
            return
        try:
            iam = self.ports.iam_for(journal.account)
            key = next((k for k in iam.list_access_keys(journal.user_name) if k.key_id == previous), None)
            if key is None:
                self._add("retire replaced key", StepStatus.NOTHING, f"{previous} (replaced by {journal.new_key_id}) "
                          "no longer exists")
                return
            if key.status is KeyStatus.INACTIVE:
                self._add("retire replaced key", StepStatus.ALREADY, f"{previous} (replaced by "
                          f"{journal.new_key_id} on every target) is Inactive already")
                return
            iam.set_access_key_status(journal.user_name, previous, active=False)
            after = read_back_inactive(iam, journal.user_name, previous, self.ports.clock)
        except AwsError as exc:
            self._add("retire replaced key", StepStatus.FAILED, f"{previous} of user {journal.user_name} is still "
                      f"Active with no rotation to retire it: {exc}")
            return
        if after is not None and after.status is not KeyStatus.INACTIVE:
            self._add("retire replaced key", StepStatus.FAILED, f"{previous} of user {journal.user_name} still "
                      f"shows Active after UpdateAccessKey ({READ_BACK_ATTEMPTS} reads of ListAccessKeys): "
                      "deactivate it by hand")
            return
        if after is None:
            self._add("retire replaced key", StepStatus.NOTHING, f"{previous} (replaced by {journal.new_key_id}) "
                      "was deleted meanwhile: IAM lists no such key")
            return
        store = self.state.store
        if store is not None:
            try:
                store.append_event(Event(at=self.ports.clock.now(), actor=self.ports.actor, action="retire",
                                         outcome="ok", credential=journal.credential, key_ids=(previous,),
                                         detail={"rotation_id": journal.rotation_id,
                                                 "incident_id": self.state.incident_id,
                                                 "reason": "replaced key of a superseded rotation"}))
            except RotatorError as exc:  # the key is Inactive all the same; only the event log lacks the line
                self._add("record", StepStatus.FAILED, f"the retirement of {previous} is not in the event log: {exc}")
        self._add("retire replaced key", StepStatus.DONE, f"{previous} (replaced by {journal.new_key_id} on every "
                  f"target at {iso_seconds(journal.published_at)}, still in its grace period) is Inactive, verified "
                  "with ListAccessKeys: the superseded rotation would never have retired it")

    def _supersede(self, store: IncidentStore, rotation_id: str, credential: str) -> None:
        journal = next((j for j in store.journals(credential) if j.rotation_id == rotation_id), None)
        if journal is None or journal.phase.finished:
            return
        now = self.ports.clock.now()
        store.save_journal(replace(journal, phase=Phase.SUPERSEDED, updated_at=now, sealed_secret=None,
                                   error=f"superseded by incident {self.state.incident_id}: {self.containment.key_id} "
                                         "is compromised"))
        store.append_event(Event(at=now, actor=self.ports.actor, action="supersede", outcome="ok",
                                 credential=credential,
                                 key_ids=(self.containment.key_id,), detail={"rotation_id": rotation_id,
                                                                   "incident_id": self.state.incident_id}))
        if rotation_id not in self.state.superseded:
            self.state.superseded.append(rotation_id)

    def _confirm_preempted(self) -> None:
        """A rotation preempted mid-step may have saved its journal once more after we marked it: mark again."""
        store = self.state.store
        if store is None or self.containment.dry_run:
            return
        try:
            for journal in store.journals_with_key(self.containment.key_id):
                if journal.rotation_id in self.state.superseded and not journal.phase.finished:
                    self._supersede(store, journal.rotation_id, journal.credential)
        except RotatorError as exc:
            self._add("preempt", StepStatus.FAILED, f"re-checking superseded rotations: {exc}")

    def _keep_leases(self) -> None:
        for lease in list(self.state.leases):
            try:
                kept = lease.renew()
            except RotatorError as exc:
                kept, why = False, f"the database did not answer ({exc})"
            else:
                why = "another process took it"
            if not kept:
                self.state.leases.remove(lease)
                self._add("preempt", StepStatus.ATTENTION, f"lost {lease.name} during the audit ({why}): a "
                          "rotation of that credential may start before this incident is done")

    def _release(self) -> None:
        if self.state.store is None:
            return
        for lease in self.state.leases:
            with contextlib.suppress(RotatorError):  # a lease not released expires by itself within lease_ttl
                lease.release()

    # --- schedule and record ----------------------------------------------------------------------------
    def _schedule(self) -> None:
        """A new incident is re-audited at T0 + the first follow-up; a re-run keeps its incident's schedule."""
        if self.containment.dry_run:
            return
        earlier = self.state.earlier
        if earlier is not None:
            self.state.follow_up_at, self.state.closed_at = earlier.follow_up_at, earlier.closed_at
            if earlier.closed_at is None and earlier.follow_up_at is None:
                self.state.follow_up_at = self.ports.schedule.next_after(earlier.t0, self.ports.clock.now())
            return
        self.state.follow_up_at = self.ports.schedule.first(self.containment.t0)

    def _record(self, status: str) -> None:
        store = self.state.store
        if store is None:
            return
        if self.containment.dry_run:
            if not any(s.name == "record" for s in self.steps):
                self._add("record", StepStatus.PLANNED, "record the incident in the store")
            return
        identity = self.containment.identity
        view = self._outcome().view(self.ports.actor, self.options.reason)
        markdown = render_incident_markdown(view)
        document = incident_json(view)
        earlier = self.state.earlier
        reason = self.options.reason or (earlier.reason if earlier else "")
        report = self.audit_report
        covered = report.reliable_until if report is not None and not report.failed else None
        audit_window = ({"start": iso_seconds(report.start), "end": iso_seconds(report.end)} if report is not None
                        else (earlier.steps.get("audit_window") if earlier else None))
        incident = Incident(
            incident_id=self.state.incident_id, key_id=self.containment.key_id,
            account=identity.account if identity else None, user_name=identity.user_name if identity else None,
            actor=earlier.actor if earlier else self.ports.actor, reason=reason, t0=self.containment.t0,
            steps={"steps": [s.as_dict() for s in self.steps], "tried": list(self.containment.tried),
                   "runs": [*((earlier.steps.get("runs") or []) if earlier else []),
                            {"actor": self.ports.actor, "at": iso_seconds(self.ports.clock.now()), "status": status}],
                   "follow_ups": list((earlier.steps.get("follow_ups") or []) if earlier else []),
                   "audit_window": audit_window},
            status=status, credential=self.state.credential, report_markdown=markdown,
            report_json=json.dumps(document, sort_keys=True, default=str), slack_thread=self.state.thread,
            account_id=(report.account_id if report is not None and report.account_id else
                        identity.account_id if identity else None) or (earlier.account_id if earlier else None),
            role_name=identity.role_name if identity else None,
            contained_at=(earlier.contained_at if earlier else None) or self.containment.contained_at,
            follow_up_at=self.state.follow_up_at, closed_at=self.state.closed_at,
            covered_until=max((m for m in (covered, earlier.covered_until if earlier else None) if m is not None),
                              default=None),
            slack_channel=self.state.thread_channel, sessions=tuple(cut.as_dict() for cut in self.state.cuts),
        )
        try:
            store.save_incident(incident)
        except RotatorError as exc:
            self._add("record", StepStatus.FAILED, str(exc))
            return
        if not any(s.name == "record" for s in self.steps):
            self._add("record", StepStatus.DONE, f"incident {self.state.incident_id} saved")

    # --- Slack ------------------------------------------------------------------------------------------
    def _owners(self) -> tuple[str, ...]:
        spec = next((s for s in self.ports.configured if s.name == self.state.credential), None)
        return spec.owners if spec else ()

    def _notify(self) -> None:
        owners = self._owners()
        channel = self.ports.security_channel or (owners[0] if owners else None)
        if channel is None:
            self._add("notify", StepStatus.SKIPPED, "no [slack] security_channel and no owners to tell")
            return
        if self.containment.dry_run:
            self._add("notify", StepStatus.PLANNED, f"post the containment message to {channel}"
                      + (f" and to {', '.join(o for o in owners if o != channel)}" if len(owners) > 1 else ""))
            return
        try:
            notifier = self.ports.notifier()
        except RotatorError as exc:
            self._add("notify", StepStatus.FAILED, str(exc))
            return
        if notifier is None:
            self._add("notify", StepStatus.SKIPPED, "no [slack] section in the config")
            return
        rerun = self.state.earlier is not None and self.state.thread is not None
        self.state.thread_channel = channel if not rerun else (self.state.thread_channel or channel)
        channel = self.state.thread_channel
        title = f"rotator: {'revoke re-run: ' if rerun else ''}{headline(self.containment)}"
        lines = slack_containment_lines(self.containment, self.steps, self.ports.actor, self.options.reason,
                                        self.state.incident_id, audit=self.options.audit,
                                        replace=self.options.replace)
        posted, failed = [], []
        # A re-run adds to the incident's thread; the owners heard about the incident the first time.
        for destination in dict.fromkeys([channel] if rerun else [channel, *owners]):
            try:
                ts = notifier.post(destination, title, lines, severity="critical",
                                   thread=self.state.thread if destination == channel else None)
            except SlackUnavailable as exc:
                failed.append(f"{destination}: {exc}")
                # Kept for later (the outbox): the replies follow it to the channel, with no thread to join.
                self.state.kept = self.state.kept or destination == channel
                continue
            except RotatorError as exc:
                failed.append(f"{destination}: {exc}")
                continue
            posted.append(destination)
            if destination == channel and self.state.thread is None:
                self.state.thread = ts
        if failed:
            self._add("notify", StepStatus.FAILED, "; ".join(failed) + (f" (posted to {', '.join(posted)})"
                                                                         if posted else ""))
        else:
            self._add("notify", StepStatus.DONE, f"containment message posted to {', '.join(posted)}"
                      + (" (in the incident's existing thread)" if rerun else ""))

    def _reply(self, name: str, title: str, lines: list[str], severity: str) -> None:
        if self.containment.dry_run or self.state.thread_channel is None:
            return
        if self.state.thread is None and not self.state.kept:
            return  # the containment message was never posted: there is nothing to follow
        try:
            notifier = self.ports.notifier()
            if notifier is not None:
                notifier.post(self.state.thread_channel, title, lines, severity=severity, thread=self.state.thread)
        except RotatorError as exc:
            self._add(name, StepStatus.FAILED, str(exc))

    # --- replace and audit -----------------------------------------------------------------------------
    def _replace(self) -> None:
        identity = self.containment.identity
        if identity is None:
            return
        spec = next((s for s in self.ports.configured if s.name == self.state.credential), None)
        try:
            step = self.ports.replace(identity, spec)
        except RotatorError as exc:
            step = Step("replace", StepStatus.FAILED, str(exc))
        self.steps.append(step)
        self._reply("notify replace", f"rotator: replacement of {self.containment.key_id}: {step.status.value}",
                    [step.detail], "ok" if step.status is StepStatus.DONE else "warning")

    def _start_audit(self) -> threading.Thread | None:
        """The audit on its own thread, started before anything else, so that the roles it finds are cut while
        the store, Slack and GitLab are busy."""
        if not self.options.audit or self.containment.dry_run:
            return None
        # Said in the report's pending note: the next scheduled follow-up (a re-run of an older incident may be
        # past them all: the note then asks for a re-run instead).
        follow_up_at = self.ports.schedule.next_after(self.containment.t0, self.ports.clock.now())

        def audit() -> None:
            try:
                self.audit_report = self.ports.audit(self.containment, follow_up_at, self.cutter.found)
            except RotatorError as exc:
                self.state.audit_error = exc

        thread = threading.Thread(target=audit, name="incident-audit", daemon=True)
        thread.start()
        return thread

    def _finish_audit(self, thread: threading.Thread | None) -> None:
        if not self.options.audit:
            self._add("audit", StepStatus.SKIPPED, "--no-audit: the sessions the key minted were not looked for; "
                      f"run `rotator audit --key {self.containment.key_id}` when ready (the service re-audits the "
                      "open incident on its own)")
            return
        if thread is None:
            self._add("audit", StepStatus.SKIPPED, f"dry run: `rotator audit --key {self.containment.key_id}` runs it "
                      "alone (read-only)")
            return
        while thread.is_alive():
            # An audit may outlast lease_ttl: keep the preempted credentials' leases meanwhile, so that no
            # rotation of them starts while the incident is still being handled.
            thread.join(self.ports.lease_ttl.total_seconds() / 3)
            self._keep_leases()
        # Cuts the audit started are finished even when the audit itself failed halfway.
        self._take_cuts(self.cutter.finish())
        if self.state.audit_error is not None:
            self._add("audit", StepStatus.FAILED, f"coverage incomplete: {self.state.audit_error}")
            self._reply_sessions()
            self._reply("notify audit", f"rotator: CloudTrail audit of {self.containment.key_id}: FAILED",
                        [f"the audit failed: {self.state.audit_error}",
                         "the sessions posted above are only those found before it failed; others may be unfound "
                         "and NOT cut",
                         f"the service re-audits the open incident; now: rotator audit --incident "
                         f"{self.state.incident_id}"], "warning")
            return
        report = self.audit_report
        assert report is not None
        self._add("audit", StepStatus.FAILED if report.failed else StepStatus.DONE, report.verdict)
        self._remember_minted(report)
        self._reply_sessions()
        self._reply("notify audit", f"rotator: CloudTrail audit of {self.containment.key_id}", slack_lines(report),
                    "warning" if report.summary.findings or report.failed else "info")

    def _take_cuts(self, cuts: list[SessionCut]) -> None:
        """Every principal's cut, in the order found; a cut containment made and the audit changed (more sessions,
        a later T0) replaces its step."""
        before = {cut.principal.key: cut for cut in self.state.cuts}
        for cut in cuts:
            earlier = before.get(cut.principal.key)
            if earlier is None:
                self.steps.append(cut.step())
            elif earlier != cut:
                self.steps = [cut.step() if step == earlier.step() else step for step in self.steps]
        order = list(before) + [cut.principal.key for cut in cuts if cut.principal.key not in before]
        merged = {**before, **{cut.principal.key: cut for cut in cuts}}
        self.state.cuts = [merged[key] for key in order]

    def _reply_sessions(self) -> None:
        cuts = self.state.cuts
        report = self.audit_report
        unknown = report.unattributed if report is not None else ()
        title = sessions_title(self.containment.key_id, cuts) + (
            f"; {len(unknown)} session(s) of unknown principal NOT cut" if unknown else "")
        self._reply("notify sessions", title, session_lines(self.containment, cuts, report),
                    "warning" if unknown or any(c.open_gap for c in cuts) else "ok")

    def _remember_minted(self, report: AuditReport) -> None:
        """Sessions the key minted for its own user are that user's: remembered, `revoke --key ASIA…` can
        cut them later without --role."""
        identity, store = self.containment.identity, self.state.store
        if identity is None or identity.user_name is None or store is None:
            return
        now = self.ports.clock.now()
        try:
            for key in report.keys:
                if key.minted_via in USER_SESSION_CALLS:
                    # GetSessionToken and GetFederationToken need a user's long-term key: the audited one.
                    store.remember_key(KeyOwner(key.key_id, self.state.credential, identity.account,
                                                identity.user_name, minted_by=self.containment.key_id), now,
                                       status="minted")
        except RotatorError as exc:
            self._add("record", StepStatus.FAILED, f"remembering the keys the audit found minted: {exc}")


def follow_up(containment: Containment, ports: FollowUpPorts, options: FollowUpOptions) -> IncidentOutcome:
    """Every step after containment; see the module docstring."""
    return IncidentFollowUp(containment, ports, options).run()
