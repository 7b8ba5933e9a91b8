"""What `revoke` and its follow-ups tell people: the incident report (Markdown and JSON) and the Slack messages.

Pure functions of the outcome; never a secret (there is none in an outcome: only key ids). The sessions
section is one line per principal (rotator.incident.sessions.SessionCut.line), and the Slack thread, the
terminal and the report print exactly those lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from rotator.domain import Incident
from rotator.incident.audit.report import render_markdown, report_json
from rotator.incident.audit.run import AuditReport
from rotator.incident.containment import Containment, Step, StepStatus, iso_seconds
from rotator.incident.sessions import SessionCut

AUDIT_HEADING = "## CloudTrail audit of"
SESSIONS_HEADING = "## Sessions"
FOLLOW_UPS_HEADING = "## Follow-ups"
STATUS_MARK = {
    StepStatus.DONE: "done", StepStatus.ALREADY: "already done", StepStatus.NOTHING: "nothing to do",
    StepStatus.ATTENTION: "NEEDS ATTENTION", StepStatus.PLANNED: "would do (dry run)",
    StepStatus.SKIPPED: "skipped", StepStatus.FAILED: "FAILED",
}


@dataclass(frozen=True)
class IncidentView:
    """Everything a report of one revoke run shows."""

    containment: Containment
    steps: Sequence[Step]
    cuts: Sequence[SessionCut]
    actor: str
    reason: str
    incident_id: str | None
    audit: AuditReport | None
    exit_code: int
    follow_up_at: datetime | None = None

    @property
    def open_gaps(self) -> list[SessionCut]:
        return [cut for cut in self.cuts if cut.open_gap]

    @property
    def unattributed(self) -> tuple[str, ...]:
        return self.audit.unattributed if self.audit is not None else ()

    @property
    def contained(self) -> bool:
        """The key is Inactive (or its session cut) and every session found is cut."""
        return self.containment.contained and not self.open_gaps and not self.unattributed


def headline(containment: Containment, cuts: Sequence[SessionCut] = (), unattributed: Sequence[str] = (), *,
             verified: bool = False) -> str:
    """One line on the state of the key. ``unattributed``: sessions found whose principal is unknown (never
    cut). ``verified``: name how an AKIA key's state was checked (ListAccessKeys read it back Inactive)."""
    key = containment.key_id
    if containment.dry_run:
        return f"dry run for {key}: nothing was changed"
    if not containment.contained:
        return f"{key} is NOT contained"
    gaps = [cut for cut in cuts if cut.open_gap]
    if gaps or unattributed:
        what = "its session is cut" if containment.temporary else "it is Inactive"
        missing = ([f"sessions of {len(gaps)} principal(s)"] if gaps else []) + (
            [f"{len(unattributed)} session(s) of unknown principal"] if unattributed else [])
        return f"{key}: {what}, but {' and '.join(missing)} are NOT cut"
    if containment.temporary:
        return f"the session of temporary key {key} is cut"
    return f"{key} is contained (Inactive, verified)" if verified else f"{key} is contained (Inactive)"


def identity_lines(containment: Containment, actor: str, reason: str, incident_id: str | None) -> list[str]:
    identity = containment.identity
    lines = [f"key: {containment.key_id}"]
    if identity is not None:
        lines.append(f"principal: {identity.principal}"
                     + (f" (credential {identity.credential})" if identity.credential else ""))
        lines.append(f"account: {identity.account}" + (f" ({identity.account_id})" if identity.account_id else ""))
        lines.append(f"identified from: {identity.source}")
    if containment.contained_at is not None and not containment.temporary:
        lines.append(f"verified Inactive at: {iso_seconds(containment.contained_at)}")
    lines += [f"T0: {iso_seconds(containment.t0)} (each deny below cuts sessions issued before it)", f"by: {actor}"]
    if reason:
        lines.append(f"reason: {reason}")
    if incident_id:
        lines.append(f"incident: {incident_id}")
    return lines


def upstream_lines(containment: Containment) -> list[str]:
    """For a temporary key: the credential that minted it, because cutting a session does not stop a holder who
    can mint a new one after T0."""
    if not containment.temporary or containment.identity is None:
        return []
    who = containment.identity.principal
    origin = containment.origin
    if origin is not None and origin.upstream_key:
        by = f" ({origin.upstream_arn})" if origin.upstream_arn else ""
        at = f" at {iso_seconds(origin.minted_at)}" if origin.minted_at else ""
        return [f"minted by {origin.minted_via} with {origin.upstream_key}{by}{at}: whoever holds that credential "
                f"can get a new session of {who} after T0; contain it: rotator revoke --key {origin.upstream_key}"]
    if containment.identity.minted_by:
        upstream = containment.identity.minted_by
        return [f"minted by {upstream} (the store saw it mint this session): whoever holds that credential can get a "
                f"new session of {who} after T0; contain it: rotator revoke --key {upstream}"]
    return [f"the credential that minted {containment.key_id} is not known (no minting record in CloudTrail yet): "
            f"whoever holds it can get a new session of {who} after T0; find it with "
            f"`rotator audit --key {containment.key_id}` once CloudTrail has delivered, then revoke it"]


def session_lines(containment: Containment, cuts: Sequence[SessionCut], audit: AuditReport | None = None) -> list[str]:
    """One line per principal, then each session whose principal is unknown (NOT cut), then the upstream key."""
    unattributed = list(audit.unattributed_lines) if audit is not None else []
    return [cut.line() for cut in cuts] + unattributed + upstream_lines(containment)


def slack_containment_lines(containment: Containment, steps: Sequence[Step], actor: str, reason: str,
                            incident_id: str | None, *, audit: bool = False, replace: bool = False) -> list[str]:
    """``audit``/``replace``: that step runs after this message, and posts its outcome to the channel."""
    lines = identity_lines(containment, actor, reason, incident_id)
    lines += [f"{step.name}: {STATUS_MARK[step.status]}: {step.detail}" for step in steps]
    follows = (["the sessions the key's sessions reached", "the CloudTrail audit (or why it failed)"] if audit
               else []) + (["the replacement of the key in GitLab"] if replace else [])
    if follows:
        # A message Slack did not take at once is kept and sent later, with no thread to reply in: then the
        # replies are sent to the channel on their own, after it.
        lines.append(f"to follow in this thread (in the channel, if Slack did not take this message at once): "
                     f"{'; '.join(follows)}")
    elif not containment.dry_run:
        run = f"rotator audit --incident {incident_id}" if incident_id else f"rotator audit --key {containment.key_id}"
        lines.append(f"nothing follows in this thread from this run (--no-audit): `{run}` searches CloudTrail for "
                     "the sessions the key minted")
    return lines


def sessions_title(key_id: str, cuts: Sequence[SessionCut]) -> str:
    cut = sum(1 for c in cuts if c.cut)
    not_cut = sum(1 for c in cuts if c.open_gap or (not c.cut and c.step().failed))
    return f"rotator: sessions of {key_id}: {cut} principal(s) denied" + (f", {not_cut} NOT cut" if not_cut else "")


def render_incident_markdown(view: IncidentView) -> str:
    containment = view.containment
    lines = [f"# Incident: {headline(containment, view.cuts, view.unattributed)}", ""]
    lines += [f"- {line}" for line in identity_lines(containment, view.actor, view.reason, view.incident_id)]
    lines += ["", "## Steps", "", "| step | outcome | detail |", "|---|---|---|"]
    lines += [f"| {s.name} | {STATUS_MARK[s.status]} | {s.detail.replace('|', '/')} |" for s in view.steps]
    lines += ["", SESSIONS_HEADING, ""]
    lines += [f"- {line}" for line in session_lines(containment, view.cuts, view.audit)] or ["- (none)"]
    if view.follow_up_at is not None:
        lines += ["", FOLLOW_UPS_HEADING, "",
                  f"- scheduled: {iso_seconds(view.follow_up_at)} (the incident stays open until an audit has covered "
                  "T0 plus CloudTrail's delivery delay)"]
    lines += ["", "## How the key was identified", ""]
    lines += [f"- {attempt}" for attempt in containment.tried] or ["- (nothing was needed)"]
    lines.append("")
    if view.audit is not None:
        lines += ["", audit_section(view.audit)]
    return "\n".join(lines)


def incident_json(view: IncidentView) -> dict[str, Any]:
    containment = view.containment
    identity = containment.identity
    origin = containment.origin
    return {
        "key_id": containment.key_id, "temporary": containment.temporary, "dry_run": containment.dry_run,
        "contained": view.contained, "key_inactive": containment.contained and not containment.temporary,
        "exit_code": view.exit_code, "incident_id": view.incident_id,
        "t0": iso_seconds(containment.t0),
        "contained_at": iso_seconds(containment.contained_at) if containment.contained_at else None,
        "actor": view.actor, "reason": view.reason,
        "identity": None if identity is None else {
            "account": identity.account, "account_id": identity.account_id, "user_name": identity.user_name,
            "role_name": identity.role_name, "credential": identity.credential, "source": identity.source},
        "origin": None if origin is None else {
            "principal": origin.principal.as_dict() if origin.principal else None, "minted_via": origin.minted_via,
            "minted_at": iso_seconds(origin.minted_at) if origin.minted_at else None,
            "upstream_key": origin.upstream_key, "upstream_arn": origin.upstream_arn,
            "contain_upstream": origin.upstream_command, "evidence": origin.evidence},
        "key_created_at": iso_seconds(containment.key_created_at) if containment.key_created_at else None,
        "steps": [step.as_dict() for step in view.steps],
        "sessions": [cut.as_dict() for cut in view.cuts],
        "session_lines": session_lines(containment, view.cuts, view.audit),
        "not_cut": [cut.line() for cut in view.open_gaps] + list(view.audit.unattributed_lines if view.audit else ()),
        "follow_up_at": iso_seconds(view.follow_up_at) if view.follow_up_at else None,
        "tried": list(containment.tried),
        "audit": None if view.audit is None else report_json(view.audit),
    }


def audit_section(audit: AuditReport) -> str:
    """The audit's Markdown as a section of the incident report (its title one level down)."""
    return "\n".join("#" + line if line.startswith("#") else line for line in render_markdown(audit).splitlines())


def replace_section(markdown: str, heading: str, body: Sequence[str], *, before: str = AUDIT_HEADING) -> str:
    """``markdown`` with the top-level section ``heading`` holding ``body`` (added before ``before`` when absent)."""
    section = "\n".join([heading, "", *body, ""])
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(markdown):
        return pattern.sub(lambda _: section + "\n", markdown, count=1)
    cut = markdown.find(before)
    if cut < 0:
        return markdown.rstrip("\n") + "\n\n" + section
    return markdown[:cut] + section + "\n" + markdown[cut:]


def with_new_audit(incident: Incident, audit: AuditReport) -> Incident:
    """The incident with its audit section replaced by a newer audit (``rotator audit`` run later)."""
    markdown = incident.report_markdown or ""
    cut = markdown.find(AUDIT_HEADING)
    kept = markdown if cut < 0 else markdown[:cut]
    document = report_document(incident)
    document["audit"] = report_json(audit)
    return replace(incident, report_markdown=kept.rstrip("\n") + "\n\n" + audit_section(audit),
                   report_json=json.dumps(document, sort_keys=True, default=str))


def report_document(incident: Incident) -> dict[str, Any]:
    try:
        document = json.loads(incident.report_json) if incident.report_json else {}
    except ValueError:
        document = {}
    return document if isinstance(document, dict) else {}
