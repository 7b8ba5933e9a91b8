"""The compromised-key playbook, second half: everything after containment.

Preempt any rotation of the credential, record the incident, tell the security channel and the owners
(one Slack thread per incident), replace the key in GitLab (``--replace``), audit CloudTrail. Each step
fails on its own and says so; none of them can undo containment. Exit code 0 when every step is done,
3 when the key is contained but a step failed.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

from rotator.domain import CredentialSpec, Event, Incident, KeyOwner, Phase
from rotator.errors import ExitCode, RotatorError
from rotator.incident.audit.report import slack_lines
from rotator.incident.audit.run import AuditReport
from rotator.incident.containment import Containment, KeyIdentity, Step, StepStatus, iso_seconds
from rotator.incident.ports import IncidentStore
from rotator.incident.report import headline, incident_json, render_incident_markdown, slack_containment_lines
from rotator.leases import Lease, acquire, lease_name
from rotator.ports import Clock, Notifier

# Calls whose sessions act as the calling IAM user (AssumeRole's act as the role).
USER_SESSION_CALLS = frozenset({"GetSessionToken", "GetFederationToken"})


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
    audit: Callable[[Containment], AuditReport]


@dataclass
class IncidentOutcome:
    containment: Containment
    steps: list[Step]
    incident_id: str | None = None
    audit: AuditReport | None = None
    slack_thread: str | None = None

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.CONTAINED_FOLLOW_UP_FAILED if any(step.failed for step in self.steps) else ExitCode.OK


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


class IncidentFollowUp:
    def __init__(self, containment: Containment, ports: FollowUpPorts, options: FollowUpOptions) -> None:
        assert containment.contained or containment.dry_run
        self.containment = containment
        self.ports = ports
        self.options = options
        self.steps: list[Step] = list(containment.steps)
        tracked = containment.identity.credential if containment.identity else None
        self.state = _State(credential=tracked or self._configured_credential())
        self.audit_report: AuditReport | None = None

    def run(self) -> IncidentOutcome:
        try:
            self._open_store()
            self._preempt()
            self._record("contained")
            self._notify()
            if self.options.replace:
                self._replace()
            self._audit()
            self._confirm_preempted()
            outcome = self._outcome()
            self._record("contained" if outcome.exit_code == ExitCode.OK else "contained, follow-ups failed")
            return self._outcome()
        finally:
            self._release()

    def _outcome(self) -> IncidentOutcome:
        incident_id = None if self.containment.dry_run else self.state.incident_id
        return IncidentOutcome(self.containment, list(self.steps), incident_id,
                               self.audit_report, self.state.thread)

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
            if not self.containment.dry_run:
                self.containment.t0 = last.t0  # the incident's T0 is the first containment's
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
        else:
            self._add("preempt", StepStatus.NOTHING, "no rotation of this key was in flight"
                      + (f"; holding credential {credentials[0]}'s lease until done" if credentials else ""))

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

    def _release(self) -> None:
        if self.state.store is None:
            return
        for lease in self.state.leases:
            with contextlib.suppress(RotatorError):  # a lease not released expires by itself within lease_ttl
                lease.release()

    # --- record ---------------------------------------------------------------------------------------
    def _record(self, status: str) -> None:
        store = self.state.store
        if store is None:
            return
        if self.containment.dry_run:
            if not any(s.name == "record" for s in self.steps):
                self._add("record", StepStatus.PLANNED, "record the incident in the store")
            return
        identity = self.containment.identity
        markdown = render_incident_markdown(self.containment, self.steps, actor=self.ports.actor,
                                            reason=self.options.reason,
                                            incident_id=self.state.incident_id, audit=self.audit_report)
        document = incident_json(self.containment, self.steps, actor=self.ports.actor, reason=self.options.reason,
                                 incident_id=self.state.incident_id, audit=self.audit_report,
                                 exit_code=self._outcome().exit_code)
        earlier = self.state.earlier
        reason = self.options.reason or (earlier.reason if earlier else "")
        incident = Incident(
            incident_id=self.state.incident_id, key_id=self.containment.key_id,
            account=identity.account if identity else None, user_name=identity.user_name if identity else None,
            actor=earlier.actor if earlier else self.ports.actor, reason=reason, t0=self.containment.t0,
            steps={"steps": [s.as_dict() for s in self.steps], "tried": list(self.containment.tried),
                   "runs": [*((earlier.steps.get("runs") or []) if earlier else []),
                            {"actor": self.ports.actor, "at": iso_seconds(self.ports.clock.now()), "status": status}]},
            status=status, credential=self.state.credential, report_markdown=markdown,
            report_json=json.dumps(document, sort_keys=True, default=str), slack_thread=self.state.thread,
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
        self.state.thread_channel = channel
        rerun = self.state.earlier is not None and self.state.thread is not None
        title = f"rotator: {'revoke re-run: ' if rerun else ''}{headline(self.containment)}"
        lines = slack_containment_lines(self.containment, self.steps, self.ports.actor, self.options.reason,
                                        self.state.incident_id)
        posted, failed = [], []
        # A re-run adds to the incident's thread; the owners heard about the incident the first time.
        for destination in dict.fromkeys([channel] if rerun else [channel, *owners]):
            try:
                ts = notifier.post(destination, title, lines, severity="critical",
                                   thread=self.state.thread if destination == channel else None)
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
        if self.containment.dry_run or self.state.thread is None or self.state.thread_channel is None:
            return
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

    def _audit(self) -> None:
        if not self.options.audit:
            self._add("audit", StepStatus.SKIPPED, "--no-audit: run `rotator audit --key "
                      f"{self.containment.key_id}` when ready")
            return
        if self.containment.dry_run:
            self._add("audit", StepStatus.SKIPPED, f"dry run: `rotator audit --key {self.containment.key_id}` runs it "
                      "alone (read-only)")
            return
        try:
            report = self.ports.audit(self.containment)
        except RotatorError as exc:
            self._add("audit", StepStatus.FAILED, f"coverage incomplete: {exc}")
            return
        self.audit_report = report
        self._add("audit", StepStatus.DONE if report.complete else StepStatus.FAILED, report.verdict)
        self._remember_minted(report)
        self._reply("notify audit", f"rotator: CloudTrail audit of {self.containment.key_id}", slack_lines(report),
                    "warning" if report.summary.findings or not report.complete else "info")


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
