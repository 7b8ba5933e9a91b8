"""What `rotator audit` prints and writes: the report (Markdown or JSON), its files, what could not be done."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from rotator.cli.common import print_json
from rotator.cli.revoke_output import write_reports
from rotator.incident.audit.key_audit import KeyAudit
from rotator.incident.audit.report import render_markdown, report_json
from rotator.incident.reaudit import ReauditOutcome
from rotator.incident.steps import iso_seconds


def print_key_audit(outcome: KeyAudit, *, now: datetime, output_dir: str | None, as_json: bool) -> bool:
    """True when no part of the audit failed (a pending follow-up is not a failure) and its report was kept
    where asked."""
    report = outcome.report
    written: list[Path] = []
    if output_dir is not None:
        try:
            written = write_reports(output_dir, f"audit-{report.key_id}-{now.strftime('%Y%m%dT%H%M%SZ')}",
                                    render_markdown(report), report_json(report))
        except OSError as exc:
            outcome.problems.append(f"cannot write to {output_dir}: {exc}")
    for note in outcome.notes:
        click.echo(f"rotator: {note}", err=True)
    if as_json:
        identity = outcome.identity
        print_json({**report_json(report), "identity": {"account": identity.account, "user_name": identity.user_name},
                    "identified_by": outcome.identified_by, "incident_id": outcome.incident_id,
                    "report_files": [str(p) for p in written], "problems": outcome.problems})
    else:
        click.echo(render_markdown(report))
        for path in written:
            click.echo(f"report: {path}")
        if outcome.incident_id:
            click.echo(f"attached to incident {outcome.incident_id}")
    for problem in outcome.problems:
        click.echo(f"rotator: {problem}", err=True)
    sys.stdout.flush()
    return outcome.covered


def print_reaudit(outcome: ReauditOutcome, *, as_json: bool) -> None:
    """The follow-up of one incident: the same lines its Slack thread and report got."""
    incident = outcome.incident
    if as_json:
        print_json({
            "incident_id": incident.incident_id, "key_id": incident.key_id, "exit_code": int(outcome.exit_code),
            "closed": outcome.closed, "busy": outcome.busy,
            "follow_up_at": iso_seconds(incident.follow_up_at) if incident.follow_up_at else None,
            "added": [cut.as_dict() for cut in outcome.added], "sessions": [cut.as_dict() for cut in outcome.cuts],
            "not_cut": outcome.not_cut, "gaps_left": outcome.remaining_gaps,
            "late": [{"key_id": s.key_id, "found_by": s.found_by} for s in outcome.late],
            "lines": outcome.lines(), "problems": outcome.problems,
            "audit": report_json(outcome.report) if outcome.report is not None else None})
    else:
        click.echo(f"incident {incident.incident_id} ({incident.key_id}): follow-up audit")
        for line in outcome.lines():
            click.echo(f"  {line}")
    for problem in outcome.problems:
        click.echo(f"rotator: {problem}", err=True)
    sys.stdout.flush()
