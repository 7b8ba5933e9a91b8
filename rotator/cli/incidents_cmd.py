"""`rotator incidents`: the compromised-key incidents the store holds, open ones first. No outside calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from rotator.cli.common import cli_logging, config_option, handle_errors, json_option, print_json

if TYPE_CHECKING:
    from rotator.domain import Incident

def is_open(incident: Incident) -> bool:
    """Open until its follow-up audit has covered T0 plus CloudTrail's delivery delay (rotator.incident.reaudit
    sets closed_at); an open incident still needs someone, so it is listed first."""
    return incident.is_open


def _principal(incident: Incident) -> str:
    if incident.user_name:
        return f"user {incident.user_name}" + (f" ({incident.account})" if incident.account else "")
    return f"account {incident.account}" if incident.account else "unknown"


def incident_row(incident: Incident) -> dict[str, Any]:
    return {
        "incident_id": incident.incident_id, "key_id": incident.key_id, "principal": _principal(incident),
        "user_name": incident.user_name, "account": incident.account, "credential": incident.credential,
        "status": incident.status, "open": is_open(incident), "t0": incident.t0.isoformat(),
        "actor": incident.actor, "reason": incident.reason, "slack_thread": incident.slack_thread,
    }


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="At most this many incidents, the newest first within open and closed.")
@config_option
@json_option
@handle_errors
def incidents(limit: int, config_path: str | None, as_json: bool) -> None:
    """List the compromised-key incidents (`rotator revoke`) in the database: open ones first, then the
    newest first. Each: id, key, principal, status, T0 (when the key was verified Inactive), actor.
    Reads only the database. The full report of one is in its `rotator revoke --output` files.

    \b
    Examples:
      rotator incidents
      rotator incidents --json | jq '.incidents[] | select(.open)'
    """
    from rotator.config.settings import load_settings
    from rotator.wiring.root import Root

    settings = load_settings(config_path)
    cli_logging()
    found = Root(settings).store.list_incidents(limit)
    ordered = sorted(found, key=lambda i: (not is_open(i), -i.t0.timestamp(), i.incident_id))
    rows = [incident_row(i) for i in ordered]
    if as_json:
        print_json({"incidents": rows, "open": sum(1 for row in rows if row["open"])})
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=max(Console().width, 140))
    if not rows:
        console.print(f"no incident recorded in {escape(str(settings.source))}'s database")
        return
    table = Table(title=f"incidents ({sum(1 for row in rows if row['open'])} open)", title_justify="left")
    for column in ("incident", "key", "principal", "status", "t0", "actor"):
        table.add_column(column, overflow="fold")
    for row in rows:
        style = "yellow" if row["open"] else "dim"
        table.add_row(str(row["incident_id"]), str(row["key_id"]), escape(str(row["principal"])),
                      f"[{style}]{escape(str(row['status']))}[/]", str(row["t0"]), escape(str(row["actor"])))
    console.print(table)
