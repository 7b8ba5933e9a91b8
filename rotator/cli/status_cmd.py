"""`rotator status`: what the store knows about every configured credential. No outside calls."""

from __future__ import annotations

from datetime import datetime

import click

from rotator.cli.common import cli_logging, config_option, handle_errors, json_option, print_json


def _age(since: datetime | None, now: datetime) -> str:
    if since is None:
        return "-"
    seconds = int((now - since).total_seconds())
    days, rest = divmod(seconds, 86400)
    return f"{days}d{rest // 3600}h" if days else f"{rest // 3600}h{(rest % 3600) // 60}m"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@json_option
@handle_errors
def status(config_path: str | None, as_json: bool) -> None:
    """Show every configured credential: key id, age, state, next rotation, last error;
    and every open incident (re-audited by `rotator run` after CloudTrail's delivery delay).

    States: ok, rotating (a rotation is in flight or waiting out its grace period),
    held (a human must act; the reason is the last error), failed.
    Reads only the config and the database: it makes no AWS, GitLab or Slack call.

    \b
    Examples:
      rotator status
      rotator status --json | jq '.credentials[] | select(.state != "ok")'
    """
    from rotator.config.settings import load_settings
    from rotator.wiring.root import Root

    settings = load_settings(config_path)
    cli_logging()
    root = Root(settings)
    store = root.store
    now = root.clock.now()
    store.sync_credentials(settings.credential_specs(), now)
    rows = []
    for spec in settings.credential_specs():
        known = store.get_status(spec.name)
        journal = store.open_journal(spec.name)
        rows.append({
            "name": spec.name, "iam_user": spec.iam_user, "account": spec.account,
            "state": known.state.value if known else "unknown",
            "key_id": known.current_key_id if known else None,
            "key_created_at": known.key_created_at.isoformat() if known and known.key_created_at else None,
            "age": _age(known.key_created_at if known else None, now),
            "last_rotated_at": known.last_rotated_at.isoformat() if known and known.last_rotated_at else None,
            "next_rotation_at": known.next_due_at.isoformat() if known and known.next_due_at else None,
            "last_error": known.last_error if known else None,
            "in_flight": journal.phase.value if journal else None,
            "targets": [t.label for t in spec.targets],
            "owners": list(spec.owners),
        })
    incidents = [{
        "incident_id": i.incident_id, "key_id": i.key_id, "t0": i.t0.isoformat(),
        "follow_up_at": i.follow_up_at.isoformat() if i.follow_up_at else None,
        "sessions_not_cut": sum(1 for s in i.sessions if s.get("sessions") and not s.get("cut")),
    } for i in store.open_incidents()]
    if as_json:
        print_json({"credentials": rows, "open_incidents": incidents})
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"credentials in {settings.source}", title_justify="left")
    for column in ("credential", "iam user", "account", "state", "key", "age", "next rotation", "last error"):
        table.add_column(column, overflow="fold")
    styles = {"ok": "green", "rotating": "cyan", "held": "yellow", "failed": "red"}
    for row in rows:
        state = str(row["state"]) + (f" ({row['in_flight']})" if row["in_flight"] else "")
        table.add_row(str(row["name"]), str(row["iam_user"]), str(row["account"]),
                      f"[{styles.get(str(row['state']), 'dim')}]{state}[/]", str(row["key_id"] or "-"),
                      str(row["age"]), str(row["next_rotation_at"] or "due now" if row["key_id"] else "-"),
                      escape(str(row["last_error"] or "")))
    console = Console(width=max(Console().width, 140))
    console.print(table)
    for incident in incidents:  # open until the follow-up audit after CloudTrail's delivery delay
        console.print(escape(f"open incident {incident['incident_id']} ({incident['key_id']}): follow-up at "
                             f"{incident['follow_up_at'] or 'now'}"
                             + (f", sessions of {incident['sessions_not_cut']} principal(s) NOT cut"
                                if incident["sessions_not_cut"] else "")))
