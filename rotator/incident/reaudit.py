"""The follow-up of an open incident, after CloudTrail's delivery delay: re-audit, cut what was found late, tell.

CloudTrail delivers events minutes after the call, so the audit `revoke` runs at T0 cannot have seen a session
minted in the last minutes before it. The service (`rotator run`) calls this at each ``[revoke] follow_up``
time after T0, and `rotator audit --incident ID` calls it by hand: it audits again from a delivery delay
before what the last audit could trust (the key and every session found so far, and whatever they minted),
cuts every principal newly found (rotator.incident.sessions), flags any session minted at or after the
verified deactivation (IAM is eventually consistent), adds to the incident's Slack thread and report, and
closes the incident once an audit has covered T0 plus the delivery delay and no follow-up is left (a lookup
that failed, the listing of enabled regions included, is retried; a named gap, such as an account rotator
cannot reach, and a session not cut are reported every time, and the closing line names each one left).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from rotator.domain import Incident
from rotator.errors import ExitCode, RotatorError
from rotator.incident.audit.report import coverage_lines, report_json
from rotator.incident.audit.run import TEMPORARY_KEY_LIFETIME, AuditedKey, AuditReport
from rotator.incident.followup import FollowUpSchedule, SessionSink
from rotator.incident.ports import IncidentStore
from rotator.incident.report import (
    AUDIT_HEADING,
    FOLLOW_UPS_HEADING,
    SESSIONS_HEADING,
    audit_section,
    replace_section,
    report_document,
)
from rotator.incident.sessions import (
    CutPorts,
    FoundSession,
    SessionCut,
    SessionCutter,
    earlier_cuts,
    minted_after,
)
from rotator.incident.steps import iso_seconds, parse_iso
from rotator.leases import holding
from rotator.ports import Clock, Notifier

MAX_RETRY = timedelta(minutes=15)  # a follow-up that could not cover everything is tried again this soon


@dataclass(frozen=True)
class ReauditPorts:
    clock: Clock
    actor: str
    holder: str
    lease_ttl: timedelta
    store: Callable[[], IncidentStore]
    notifier: Callable[[], Notifier | None]
    # (incident, key sessions found so far, start) → the audit of the incident's key from ``start``.
    audit: Callable[[Incident, Sequence[AuditedKey], datetime, SessionSink], AuditReport]
    cut_ports: CutPorts
    schedule: FollowUpSchedule = field(default_factory=FollowUpSchedule)


@dataclass
class ReauditOutcome:
    incident: Incident
    report: AuditReport | None
    cuts: list[SessionCut]
    added: list[SessionCut]  # principals cut (or found not cuttable) for the first time, or cut again
    late: list[FoundSession]  # sessions minted at or after the verified deactivation
    problems: list[str] = field(default_factory=list)  # what was not done: Slack, the store
    busy: bool = False  # another replica holds the incident

    @property
    def closed(self) -> bool:
        return not self.incident.is_open

    @property
    def exit_code(self) -> ExitCode:
        failed = (self.report is None or self.report.failed or any(c.open_gap for c in self.cuts)
                  or bool(self.problems))
        return ExitCode.CONTAINED_FOLLOW_UP_FAILED if failed else ExitCode.OK

    @property
    def not_cut(self) -> list[str]:
        """Every session found and not (provably) cut: principals whose deny failed, sessions nobody can name."""
        unknown = list(self.report.unattributed_lines) if self.report is not None else []
        return [cut.line() for cut in self.cuts if cut.open_gap] + unknown

    @property
    def remaining_gaps(self) -> list[str]:
        """What the last audit could not cover, each named (the sessions of unknown principal are in not_cut)."""
        if self.report is None:
            return []
        unknown = set(self.report.unattributed_lines)
        return [gap for gap in self.report.gaps if gap not in unknown]

    def lines(self) -> list[str]:
        """What the thread and the report get: the additions, the flags, the coverage, what happens next."""
        if self.busy:
            return list(self.problems)  # nothing ran: there is nothing else to say
        lines = [cut.line() for cut in self.added]
        if self.report is None:
            lines.append("the audit failed, so this follow-up covered nothing: sessions minted since the last audit "
                         "may be unfound" + (" (the principals above were found before it failed)" if lines else ""))
        elif not lines:
            lines.append("no session found since the last audit")
        lines += [self._late_line(s) for s in self.late]
        lines += self.problems
        if self.report is not None:
            lines += [self.report.verdict, *coverage_lines(self.report)]
        if self.closed:
            lines.append(self._closed_line())
        elif self.incident.follow_up_at is not None:
            lines.append(f"incident {self.incident.incident_id} stays open: next follow-up at "
                         f"{iso_seconds(self.incident.follow_up_at)}")
        return lines

    def _late_line(self, session: FoundSession) -> str:
        when = iso_seconds(self.incident.contained_at) if self.incident.contained_at else "?"
        head = (f"session {session.key_id} ({session.found_by}) was minted after the key was verified Inactive at "
                f"{when}: IAM is eventually consistent; ")
        cut = next((c for c in self.cuts if session.key_id in c.sessions), None)
        before = parse_iso(cut.denies_before) if cut is not None and cut.cut else None
        if cut is None or before is None or session.minted_at is None or session.minted_at >= before:
            return head + "it is NOT cut: no deny read back covers a session minted then" + (
                f" ({cut.line()})" if cut is not None else "")
        where = ("it is listed above with the deny that covers it" if cut in self.added else
                 f"the deny on {cut.principal.describe()} (sessions issued before {cut.denies_before}, read back) "
                 "covers it")
        return head + where

    def _closed_line(self) -> str:
        incident_id = self.incident.incident_id
        gaps, not_cut = self.remaining_gaps, self.not_cut
        if not gaps and not not_cut:
            return f"incident {incident_id} closed: an audit has covered T0 plus the delivery delay"
        # Retrying cannot fill these (an account rotator cannot reach, a principal it may not change): the
        # incident closes with each of them named, for a human.
        left = [f"NOT covered: {gap}" for gap in gaps] + [f"NOT cut: {line}" for line in not_cut]
        return (f"incident {incident_id} closed with {len(left)} gap(s) rotator cannot fill by retrying: the "
                "scheduled follow-ups are over and an audit has covered T0 plus the delivery delay everywhere "
                "else; left for a human: " + "; ".join(left))


def due_incidents(store: IncidentStore, now: datetime) -> list[Incident]:
    """Open incidents whose follow-up time has come, oldest first."""
    return [i for i in store.open_incidents() if i.follow_up_at is not None and i.follow_up_at <= now]


def reaudit(ports: ReauditPorts, incident_id: str, *, by_hand: bool = False) -> ReauditOutcome:
    """Re-audit one incident now (see the module docstring). Raises RotatorError when it does not exist."""
    store = ports.store()
    incident = store.incident(incident_id)
    if incident is None:
        raise RotatorError(f"no incident {incident_id} in the store",
                           hint="`rotator status` lists open incidents; `rotator incidents` lists them all")
    with holding(store, f"incident/{incident_id}", ports.holder, ports.lease_ttl) as lease:
        if lease is None:
            return ReauditOutcome(incident, None, [], [], [], ["another process is following this incident up"],
                                  busy=True)
        return _Reaudit(ports, store, incident, by_hand).run()


class _Reaudit:
    def __init__(self, ports: ReauditPorts, store: IncidentStore, incident: Incident, by_hand: bool) -> None:
        self.ports, self.store, self.incident, self.by_hand = ports, store, incident, by_hand
        self.known = earlier_cuts(incident.sessions)
        self.problems: list[str] = []

    def run(self) -> ReauditOutcome:
        incident = self.incident
        now = self.ports.clock.now()
        cutter = SessionCutter(self.ports.cut_ports, incident.t0, known=dict(self.known))
        report: AuditReport | None = None
        try:
            report = self.ports.audit(incident, self._seeds(), self._start(), cutter.found)
        except RotatorError as exc:
            self.problems.append(f"the audit failed: {exc}")
        cuts = cutter.finish()
        added = [cut for cut in cuts if self.known.get(cut.principal.key) != cut]
        sessions = report.sessions if report is not None else ()
        late = minted_after(sessions, incident.contained_at)
        outcome = ReauditOutcome(self._next(incident, report, cuts, now), report, cuts, added, late, self.problems)
        self._tell(outcome)
        self._save(outcome, now)
        return outcome

    def _seeds(self) -> list[AuditedKey]:
        """Every session found so far, looked up again: one of them may have minted another that arrived late."""
        since = self._start()
        return [AuditedKey(key_id, since, cut.found_by or "found earlier", None, cut.principal.account_id,
                           cut.principal, None, self.incident.key_id)
                for cut in self.known.values() for key_id in cut.sessions if key_id != self.incident.key_id]

    def _start(self) -> datetime:
        """A delivery delay before what the last audit could trust; the whole first window when it had failed."""
        incident = self.incident
        delay = self.ports.schedule.delivery_delay
        if incident.covered_until is not None:
            return min(incident.covered_until, incident.t0) - delay
        window = incident.steps.get("audit_window") if isinstance(incident.steps, dict) else None
        start = parse_iso(window.get("start")) if isinstance(window, dict) else None
        return start or incident.t0 - TEMPORARY_KEY_LIFETIME - delay

    def _next(self, incident: Incident, report: AuditReport | None, cuts: list[SessionCut],
              now: datetime) -> Incident:
        """The incident with its sessions, coverage and schedule brought up to date."""
        schedule = self.ports.schedule
        # Lookups that failed (throttled, unavailable) may work next time: the incident stays open for them. A
        # named gap (an account rotator cannot reach, the 90-day horizon) stays one however often it is retried:
        # it is reported, does not keep the incident open, and is named again when the incident closes.
        covered = (report is not None and not report.failed_lookups and not report.retriable
                   and not report.pending)
        if self.by_hand and incident.follow_up_at is not None and incident.follow_up_at > now:
            upcoming: datetime | None = incident.follow_up_at  # a run by hand never skips a scheduled one
        else:
            upcoming = schedule.next_after(incident.t0, now)
        closed_at = incident.closed_at
        if incident.is_open and upcoming is None:
            if covered:
                closed_at = now
            else:
                upcoming = now + min(schedule.delivery_delay, MAX_RETRY)
        reliable = report.reliable_until if report is not None and not report.failed else None
        return replace(
            incident, sessions=tuple(cut.as_dict() for cut in cuts), closed_at=closed_at,
            follow_up_at=None if closed_at is not None else upcoming,
            covered_until=max((m for m in (reliable, incident.covered_until) if m is not None), default=None))

    def _tell(self, outcome: ReauditOutcome) -> None:
        incident = outcome.incident
        channel = incident.slack_channel
        if channel is None:
            return
        try:
            notifier = self.ports.notifier()
            if notifier is None:
                return
            after = int((self.ports.clock.now() - incident.t0).total_seconds() // 60)
            title = (f"rotator: follow-up audit of {incident.key_id} (T0+{after}m): "
                     + (f"{len(outcome.added)} principal(s) newly found" if outcome.added else "nothing new"))
            severity = "warning" if outcome.exit_code else ("ok" if outcome.closed else "info")
            notifier.post(channel, title, outcome.lines(), severity=severity, thread=incident.slack_thread)
        except RotatorError as exc:
            self.problems.append(f"Slack: {exc}")

    def _save(self, outcome: ReauditOutcome, now: datetime) -> None:
        incident = outcome.incident
        cuts = outcome.cuts
        run = {"at": iso_seconds(now), "actor": self.ports.actor, "by_hand": self.by_hand,
               "added": [cut.line() for cut in outcome.added], "lines": outcome.lines(),
               "state": outcome.report.state if outcome.report is not None else "failed",
               "problems": list(self.problems)}
        steps = dict(incident.steps)
        steps["follow_ups"] = [*(steps.get("follow_ups") or []), run]
        markdown = incident.report_markdown or ""
        markdown = replace_section(markdown, SESSIONS_HEADING, [f"- {cut.line()}" for cut in cuts] or ["- (none)"])
        follow_ups = [f"- {item['at']} ({'by hand' if item.get('by_hand') else 'service'}): "
                      + "; ".join(item.get("lines") or []) for item in steps["follow_ups"]]
        markdown = replace_section(markdown, FOLLOW_UPS_HEADING, follow_ups)
        document = report_document(incident)
        document["sessions"] = [cut.as_dict() for cut in cuts]
        document["session_lines"] = [cut.line() for cut in cuts]
        document["not_cut"] = outcome.not_cut
        document["gaps_left"] = outcome.remaining_gaps
        document["follow_ups"] = steps["follow_ups"]
        document["closed_at"] = iso_seconds(incident.closed_at) if incident.closed_at else None
        document["follow_up_at"] = iso_seconds(incident.follow_up_at) if incident.follow_up_at else None
        if outcome.report is not None:
            cut_at = markdown.find(AUDIT_HEADING)
            markdown = (markdown if cut_at < 0 else markdown[:cut_at]).rstrip("\n") + "\n\n" + audit_section(
                outcome.report)
            document["audit"] = report_json(outcome.report)
        status = incident.status
        if incident.closed_at is not None and not status.startswith("closed"):
            status = "closed" + (", sessions NOT cut" if outcome.not_cut else "") + (
                ", coverage incomplete" if outcome.remaining_gaps else "")
        saved = replace(incident, steps=steps, report_markdown=markdown, status=status,
                        report_json=json.dumps(document, sort_keys=True, default=str))
        try:
            self.store.save_incident(saved)
        except RotatorError as exc:
            self.problems.append(f"the store: {exc}")
        outcome.incident = saved
