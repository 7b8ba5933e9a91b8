"""`rotator incidents`: the compromised-key incidents the store holds, open ones first. No outside calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from rotator.cli.common import cli_logging, config_option, handle_errors, json_option, print_json

if TYPE_CHECKING:
    from rotator.domain import Incident

def _principal(incident: Incident) -> str:
    if incident.user_name:
        return f"user {incident.user_name}" + (f" ({incident.account})" if incident.account else "")
    return f"account {incident.account}" if incident.account else "unknown"


def incident_row(incident: Incident) -> dict[str, Any]:
    return {
        "incident_id": incident.incident_id, "key_id": incident.key_id, "principal": _principal(incident),
        "user_name": incident.user_name, "account": incident.account, "credential": incident.credential,
        "status": incident.status, "open": incident.is_open, "t0": incident.t0.isoformat(),
        "actor": incident.actor, "reason": incident.reason, "slack_thread": incident.slack_thread,
    }


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="At most this many incidents: every open one before any closed one, newest first within each.")
@config_option
@json_option
@handle_errors
def incidents(limit: int, config_path: str | None, as_json: bool) -> None:
    """List the compromised-key incidents (`rotator revoke`) in the database: open ones first, then the
    newest first. Each: id, key, principal, status, T0 (sessions issued before it are
    denied; the verified deactivation plus [revoke] consistency_margin, for a temporary key the moment
    its deny was written; a re-run on a key keeps its earlier incident's T0), actor.
    Reads only the database (no call to AWS, GitLab or Slack), but validates the whole config, as `rotate`
    does. The full report of one is in its `rotator revoke --output` files.

    \b
    Exit codes: 0 listed (open incidents included), 1 the database could not be read or its schema is
                not current, 2 usage or config error.

    \b
    Examples:
      rotator incidents
      rotator incidents --json | jq '.incidents[] | select(.open)'
    """
    from rotator.config.settings import load_settings
    from rotator.wiring.root import Root

    settings = load_settings(config_path)
    cli_logging()
    # Open until the follow-up audit has covered T0 plus CloudTrail's delivery delay: an open incident
    # still needs someone, so the store lists open ones first.
    rows = [incident_row(i) for i in Root(settings).store.list_incidents(limit)]
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
