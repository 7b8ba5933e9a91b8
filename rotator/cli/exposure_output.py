"""What `status` says about AWS's exposure reports: each report the service handled, with the incident it opened
(or annotated) and that incident's state. Reads the store only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotator.wiring.root import Root

SHOWN = 20


def exposure_rows(root: Root, limit: int = SHOWN) -> list[dict[str, Any]]:
    """The latest reports, newest first."""
    rows = []
    for record in root.database.exposures.recent(limit):
        incident = next((i for i in root.store.incidents_for_key(record.key_id) if i.incident_id == record.incident_id),
                        None) if record.key_id and record.incident_id else None
        rows.append({
            "last_seen_at": record.last_seen_at.isoformat(), "first_seen_at": record.first_seen_at.isoformat(),
            "source": record.source, "actor": record.actor, "key_id": record.key_id, "account": record.account,
            "user_name": record.user_name, "action": record.action, "outcome": record.outcome.value,
            "incident_id": record.incident_id, "incident_status": incident.status if incident else None,
            "incident_opened_by": incident.actor if incident else None,
            "quarantine": record.quarantine.value if record.quarantine else None, "detail": record.detail,
        })
    return rows


def print_exposures(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if not rows:
        return
    table = Table(title="exposures reported by AWS (newest first)", title_justify="left")
    for column in ("seen", "reported by", "key", "user", "done", "incident"):
        table.add_column(column, overflow="fold")
    for row in rows:
        done = f"{row['action']}: {row['outcome']}" if row["action"] != "-" else str(row["outcome"])
        incident = "-"
        if row["incident_id"]:
            incident = f"{row['incident_id'][:8]} ({row['incident_status'] or 'not found'})"
            if row["incident_opened_by"] and row["incident_opened_by"] != row["actor"]:
                incident += f", opened by {row['incident_opened_by']}"
        table.add_row(str(row["last_seen_at"])[:19], escape(str(row["actor"])), str(row["key_id"] or "-"),
                      str(row["user_name"] or "-"), done, escape(incident))
    Console(width=max(Console().width, 160)).print(table)
