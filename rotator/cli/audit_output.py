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


def print_key_audit(outcome: KeyAudit, *, now: datetime, output_dir: str | None, as_json: bool) -> bool:
    """True when the audit covered everything and its report was kept where asked."""
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
    return outcome.complete
