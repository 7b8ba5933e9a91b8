"""Printing and report files for `revoke` and `audit`. Imported only after containment."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rotator.cli.common import print_json
from rotator.incident.containment import Containment, NotContained, StepStatus, iso_seconds
from rotator.incident.followup import IncidentOutcome
from rotator.incident.report import STATUS_MARK, headline, incident_json, render_incident_markdown, session_lines

STATUS_STYLE = {
    StepStatus.DONE: "green", StepStatus.ALREADY: "green", StepStatus.NOTHING: "dim",
    StepStatus.ATTENTION: "yellow", StepStatus.PLANNED: "cyan", StepStatus.SKIPPED: "dim", StepStatus.FAILED: "red",
}


def announce(containment: Containment) -> None:
    """The one line a responder needs first, on stderr, before the slow follow-ups start."""
    identity = containment.identity
    who = f" ({identity.principal}, account {identity.account})" if identity else ""
    if containment.dry_run:
        click.echo(f"rotator: {headline(containment)}{who}; checking the follow-ups…", err=True)
        return
    click.echo(f"rotator: CONTAINED: {headline(containment)}{who}; T0 {iso_seconds(containment.t0)}. "
               "Now: preempt, record, notify, audit…", err=True)


def print_not_contained(key_id: str, error: NotContained, *, as_json: bool) -> None:
    if as_json:
        print_json({"key_id": key_id, "contained": False, "exit_code": 1, "error": error.message,
                    "hint": error.hint, "tried": error.tried})
        return
    click.echo(f"rotator: NOT CONTAINED: {error.message}", err=True)
    for attempt in error.tried:
        click.echo(f"  tried: {attempt}", err=True)
    if error.hint:
        click.echo(f"  next step: {error.hint}", err=True)


def _document(outcome: IncidentOutcome, actor: str, reason: str) -> dict[str, Any]:
    return incident_json(outcome.view(actor, reason))


def print_outcome(outcome: IncidentOutcome, *, actor: str, reason: str, as_json: bool,
                  written: list[Path]) -> None:
    if as_json:
        document = _document(outcome, actor, reason)
        document["report_files"] = [str(path) for path in written]
        print_json(document)
        return
    console = Console(file=sys.stdout, highlight=False, width=max(Console().width, 120))
    unattributed = outcome.audit.unattributed if outcome.audit is not None else ()
    console.print(f"[bold]{escape(headline(outcome.containment, outcome.cuts, unattributed))}[/]"
                  + (f"  (incident {outcome.incident_id})" if outcome.incident_id else ""))
    table = Table(title_justify="left", show_lines=False)
    for column in ("step", "outcome", "detail"):
        table.add_column(column, overflow="fold")
    for step in outcome.steps:
        table.add_row(escape(step.name), f"[{STATUS_STYLE[step.status]}]{STATUS_MARK[step.status]}[/]",
                      escape(step.detail))
    console.print(table)
    console.print("[bold]sessions:[/]")
    for line in session_lines(outcome.containment, outcome.cuts, outcome.audit):
        # soft_wrap: each line stays one line, as in the report and the Slack thread.
        console.print(escape(f"  {line}"), soft_wrap=True)
    if outcome.audit is not None:
        console.print(f"[bold]audit:[/] {escape(outcome.audit.verdict)}")
        for finding in outcome.audit.summary.findings[:8]:
            console.print(escape(f"  [{finding.severity}] {finding.title} ({', '.join(finding.regions)})"))
    if outcome.follow_up_at is not None:
        console.print(escape(f"follow-up: scheduled at {iso_seconds(outcome.follow_up_at)}, done by `rotator run` "
                             f"if it is running (by hand: rotator audit --incident {outcome.incident_id})"))
    for path in written:
        console.print(escape(f"report: {path}"))
    if outcome.exit_code:
        gaps = len(outcome.open_gaps)
        why = (f"sessions of {gaps} principal(s) are NOT cut (listed above)" if gaps else
               f"{len(unattributed)} session(s) of unknown principal are NOT cut (see the audit's coverage)"
               if unattributed else "a follow-up step failed")
        Console(stderr=True).print(f"[red]contained, but {why}: exit 3[/]")


def write_reports(directory: str, stem: str, markdown: str, document: dict[str, Any]) -> list[Path]:
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    markdown_path, json_path = folder / f"{stem}.md", folder / f"{stem}.json"
    markdown_path.write_text(markdown, encoding="utf-8")
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return [markdown_path, json_path]


def write_incident_reports(directory: str, outcome: IncidentOutcome, *, actor: str, reason: str,
                           now: datetime) -> list[Path]:
    stem = f"revoke-{outcome.containment.key_id}-{now.strftime('%Y%m%dT%H%M%SZ')}"
    markdown = render_incident_markdown(outcome.view(actor, reason))
    return write_reports(directory, stem, markdown, _document(outcome, actor, reason))
