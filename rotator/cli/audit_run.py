"""`rotator audit` once the config is read: identify, audit, attach to the incident, print, write."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from rotator.cli.common import print_json
from rotator.cli.revoke_output import write_reports
from rotator.errors import AwsError, RotatorError
from rotator.incident.audit.report import render_markdown, report_json
from rotator.incident.audit.run import AuditReport, audit_window
from rotator.incident.containment import NotContained, identify
from rotator.incident.report import with_new_audit
from rotator.wiring.incident import TEMPORARY_KEY_LIFETIME, audit_for, containment_ports_of
from rotator.wiring.root import Wiring


def run_audit_command(wiring: Wiring, key_id: str, *, since: datetime | None, now: datetime,
                      output_dir: str | None, as_json: bool) -> bool:
    """True when the audit covered everything and its report was kept where asked."""
    try:
        identity, tried = identify(key_id, containment_ports_of(wiring))
    except NotContained as exc:
        # Only the owning account's CloudTrail has the key's calls: without it there is nothing to look at.
        raise RotatorError(f"cannot audit {key_id}: {exc.message} ({'; '.join(exc.tried)})", hint=exc.hint) from None
    created = None
    if since is None and identity.user_name is not None:
        try:
            created = next((k.created_at for k in wiring.incident_iam(identity.account).list_access_keys(
                identity.user_name) if k.key_id == key_id), None)
        except AwsError as exc:
            click.echo(f"rotator: cannot read when {key_id} was created ({exc.message}): auditing 90 days", err=True)
    elif since is None:
        created = now - TEMPORARY_KEY_LIFETIME
    start, end = audit_window(now, key_created_at=created, since=since)
    report = audit_for(wiring, key_id, identity, start=start, end=end)
    problems: list[str] = []
    stored = _attach_to_incident(wiring, key_id, report, problems)
    written: list[Path] = []
    if output_dir is not None:
        try:
            written = write_reports(output_dir, f"audit-{key_id}-{now.strftime('%Y%m%dT%H%M%SZ')}",
                                    render_markdown(report), report_json(report))
        except OSError as exc:
            problems.append(f"cannot write to {output_dir}: {exc}")
    if as_json:
        print_json({**report_json(report), "identity": {"account": identity.account, "user_name": identity.user_name},
                    "identified_by": tried, "incident_id": stored, "report_files": [str(p) for p in written],
                    "problems": problems})
    else:
        click.echo(render_markdown(report))
        for path in written:
            click.echo(f"report: {path}")
        if stored:
            click.echo(f"attached to incident {stored}")
    for problem in problems:
        click.echo(f"rotator: {problem}", err=True)
    sys.stdout.flush()
    return report.complete and not problems


def _attach_to_incident(wiring: Wiring, key_id: str, report: AuditReport, problems: list[str]) -> str | None:
    try:
        incidents = wiring.store.incidents_for_key(key_id)
        if not incidents:
            return None
        latest = with_new_audit(incidents[-1], report)
        wiring.store.save_incident(latest)
    except RotatorError as exc:
        problems.append(f"the report was not saved to the store: {exc}")
        return None
    return latest.incident_id
