"""What `revoke` tells people: the incident report (Markdown and JSON) and the Slack containment message.
Pure functions of the outcome; never a secret (there is none in an outcome: only key ids)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rotator.domain import Incident
from rotator.incident.audit.report import render_markdown, report_json
from rotator.incident.audit.run import AuditReport
from rotator.incident.containment import Containment, Step, StepStatus, iso_seconds

AUDIT_HEADING = "## CloudTrail audit of"
STATUS_MARK = {
    StepStatus.DONE: "done", StepStatus.ALREADY: "already done", StepStatus.NOTHING: "nothing to do",
    StepStatus.ATTENTION: "NEEDS ATTENTION", StepStatus.PLANNED: "would do (dry run)",
    StepStatus.SKIPPED: "skipped", StepStatus.FAILED: "FAILED",
}


def headline(containment: Containment) -> str:
    key = containment.key_id
    if containment.dry_run:
        return f"dry run for {key}: nothing was changed"
    if not containment.contained:
        return f"{key} is NOT contained"
    if containment.temporary:
        return f"sessions of temporary key {key} are cut"
    return f"{key} is contained (Inactive)"


def identity_lines(containment: Containment, actor: str, reason: str, incident_id: str | None) -> list[str]:
    identity = containment.identity
    lines = [f"key: {containment.key_id}"]
    if identity is not None:
        lines.append(f"principal: {identity.principal}"
                     + (f" (credential {identity.credential})" if identity.credential else ""))
        lines.append(f"account: {identity.account}" + (f" ({identity.account_id})" if identity.account_id else ""))
        lines.append(f"identified from: {identity.source}")
    lines += [f"T0: {iso_seconds(containment.t0)} (sessions issued before it are denied)", f"by: {actor}"]
    if reason:
        lines.append(f"reason: {reason}")
    if incident_id:
        lines.append(f"incident: {incident_id}")
    return lines


def slack_containment_lines(containment: Containment, steps: Sequence[Step], actor: str, reason: str,
                            incident_id: str | None) -> list[str]:
    lines = identity_lines(containment, actor, reason, incident_id)
    lines += [f"{step.name}: {STATUS_MARK[step.status]}: {step.detail}" for step in steps]
    lines.append("the CloudTrail audit follows in this thread")
    return lines


def render_incident_markdown(containment: Containment, steps: Sequence[Step], *, actor: str, reason: str,
                             incident_id: str | None, audit: AuditReport | None) -> str:
    lines = [f"# Incident: {headline(containment)}", ""]
    lines += [f"- {line}" for line in identity_lines(containment, actor, reason, incident_id)]
    lines += ["", "## Steps", "", "| step | outcome | detail |", "|---|---|---|"]
    lines += [f"| {s.name} | {STATUS_MARK[s.status]} | {s.detail.replace('|', '/')} |" for s in steps]
    lines += ["", "## How the key was identified", ""]
    lines += [f"- {attempt}" for attempt in containment.tried] or ["- (nothing was needed)"]
    lines.append("")
    if audit is not None:
        lines += ["", audit_section(audit)]
    return "\n".join(lines)


def incident_json(containment: Containment, steps: Sequence[Step], *, actor: str, reason: str,
                  incident_id: str | None, audit: AuditReport | None, exit_code: int) -> dict[str, Any]:
    identity = containment.identity
    return {
        "key_id": containment.key_id, "temporary": containment.temporary, "dry_run": containment.dry_run,
        "contained": containment.contained, "exit_code": exit_code, "incident_id": incident_id,
        "t0": iso_seconds(containment.t0), "actor": actor, "reason": reason,
        "identity": None if identity is None else {
            "account": identity.account, "account_id": identity.account_id, "user_name": identity.user_name,
            "role_name": identity.role_name, "credential": identity.credential, "source": identity.source},
        "key_created_at": iso_seconds(containment.key_created_at) if containment.key_created_at else None,
        "steps": [step.as_dict() for step in steps],
        "tried": list(containment.tried),
        "audit": None if audit is None else report_json(audit),
    }


def audit_section(audit: AuditReport) -> str:
    """The audit's Markdown as a section of the incident report (its title one level down)."""
    return "\n".join("#" + line if line.startswith("#") else line for line in render_markdown(audit).splitlines())


def with_new_audit(incident: Incident, audit: AuditReport) -> Incident:
    """The incident with its audit section replaced by a newer audit (``rotator audit`` run later)."""
    markdown = incident.report_markdown or ""
    cut = markdown.find(AUDIT_HEADING)
    kept = markdown if cut < 0 else markdown[:cut]
    try:
        document = json.loads(incident.report_json) if incident.report_json else {}
    except ValueError:
        document = {}
    document = document if isinstance(document, dict) else {}
    document["audit"] = report_json(audit)
    return replace(incident, report_markdown=kept.rstrip("\n") + "\n\n" + audit_section(audit),
                   report_json=json.dumps(document, sort_keys=True, default=str))
