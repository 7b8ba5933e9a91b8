"""`rotator status`: every configured credential, from the store, with IAM asked only for keys the store does
not know yet (a credential never rotated)."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from rotator.cli.common import cli_logging, config_option, handle_errors, json_option, print_json
from rotator.errors import ExitCode

if TYPE_CHECKING:
    from rotator.domain import AccessKey, CredentialSpec, CredentialStatus, Incident, Journal
    from rotator.wiring.root import Root

IAM_LOOKUPS_AT_ONCE = 8


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    days, rest = divmod(seconds, 86400)
    return f"{days}d{rest // 3600}h" if days else f"{rest // 3600}h{(rest % 3600) // 60}m"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@json_option
@handle_errors
def status(config_path: str | None, as_json: bool) -> None:
    """Show every configured credential: key id and age, state, next rotation, retry time, last error;
    then the latest exposures AWS reported and the incidents they opened ([events]), and every open incident
    (re-audited by `rotator run` after CloudTrail's delivery delay).

    \b
    States: ok; rotating (<phase>) while a rotation is in flight, waiting out its grace
    period, or was interrupted (the journal's phase; the next `rotate` or tick finishes it);
    held (a human must act; the reason is the last error); failed ("retry at" says when
    the service tries again, when an outside party was unreachable); broken (a GitLab
    target holds half a pair: the new secret and the old key id; its pipelines fail
    until the service completes it, which it tries every [service] retry_broken_after);
    unknown (the database holds no state for it).
    The key and its age come from the database; for a credential never rotated, IAM
    (ListAccessKeys) is asked for its Active key. The next rotation follows the config's
    rotate_every. Nothing is written to AWS, GitLab or Slack.

    \b
    Exit codes: 0 every credential is ok or waiting out its grace period / delete_after;
                1 any credential is held, failed, broken, unknown, or has a rotation whose
                next step is due (interrupted, or not run since); 2 config error.
    JSON: one object {credentials, ok, exposures, open_incidents}: credentials has one
    object per credential; timestamps are ISO 8601 (UTC), age_seconds a number.

    \b
    Examples:
      rotator status
      rotator status --json | jq '.credentials[] | select(.ok | not)'
    """
    from rotator.config.settings import load_settings
    from rotator.wiring.root import Root

    settings = load_settings(config_path)
    cli_logging()
    root = Root(settings)
    store = root.store
    now = root.clock.now()
    specs = settings.credential_specs()
    store.sync_credentials(specs, now)  # also moves next_due_at to the config's rotate_every
    statuses = {spec.name: store.get_status(spec.name) for spec in specs}
    unknown = [spec for spec in specs if getattr(statuses[spec.name], "current_key_id", None) is None]
    from_iam = _keys_from_iam(root, unknown)
    rows = [_row(spec, statuses[spec.name], store.open_journal(spec.name), from_iam.get(spec.name), now)
            for spec in specs]
    from rotator.cli.exposure_output import exposure_rows, print_exposures

    exposures = exposure_rows(root)
    incidents = [_open_incident(incident) for incident in store.open_incidents()]
    if as_json:
        print_json({"credentials": rows, "ok": all(row["ok"] for row in rows), "exposures": exposures,
                    "open_incidents": incidents})
    else:
        _print_table(rows, str(settings.source))
        print_exposures(exposures)
        _print_incidents(incidents)
    sys.exit(ExitCode.OK if all(row["ok"] for row in rows) else ExitCode.FAILED)


def _open_incident(incident: Incident) -> dict[str, Any]:
    """An incident still waiting for its follow-up audit (CloudTrail delivers minutes late)."""
    return {"incident_id": incident.incident_id, "key_id": incident.key_id, "t0": _iso(incident.t0),
            "follow_up_at": _iso(incident.follow_up_at),
            "sessions_not_cut": sum(1 for s in incident.sessions if s.get("sessions") and not s.get("cut"))}


def _print_incidents(incidents: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.markup import escape

    for incident in incidents:
        # The service follows up only incidents with a follow-up time; one without needs a human to run it.
        when = (f"follow-up at {incident['follow_up_at']}" if incident["follow_up_at"] else
                f"no follow-up scheduled: run `rotator audit --incident {incident['incident_id']}`")
        Console(width=max(Console().width, 160)).print(escape(
            f"open incident {incident['incident_id']} ({incident['key_id']}): {when}" + (
                f", sessions of {incident['sessions_not_cut']} principal(s) NOT cut"
                if incident["sessions_not_cut"] else "")))


def _keys_from_iam(root: Root, specs: list[CredentialSpec]) -> dict[str, list[AccessKey] | str]:
    """Each user's keys (or why IAM could not say), for credentials whose current key the store does not know."""
    from rotator.errors import RotatorError

    def one(spec: CredentialSpec) -> tuple[str, list[AccessKey] | str]:
        try:
            return spec.name, root.aws.iam(spec.account).list_access_keys(spec.iam_user)
        except RotatorError as exc:
            return spec.name, f"IAM: {exc.message}"

    if not specs:
        return {}
    with ThreadPoolExecutor(max_workers=min(IAM_LOOKUPS_AT_ONCE, len(specs)), thread_name_prefix="status") as pool:
        return dict(pool.map(one, specs))


def _current_from_iam(keys: list[AccessKey], journal: Journal | None) -> tuple[AccessKey | None, str | None]:
    """The key the targets hold, as far as IAM alone can tell: the one an unfinished rotation is replacing,
    else the user's only Active key. With two Active keys and no rotation, only GitLab knows."""
    from rotator.domain import KeyStatus

    if journal is not None and journal.old_key_id:
        return next((k for k in keys if k.key_id == journal.old_key_id), None), None
    active = [k for k in keys if k.status is KeyStatus.ACTIVE]
    if len(active) == 1:
        return active[0], None
    if not active:
        return None, "IAM: the user has no Active key"
    return None, f"IAM: the user has {len(active)} Active keys ({', '.join(k.key_id for k in active)})"


def _waiting(journal: Journal, spec: CredentialSpec, now: datetime) -> bool:
    """A rotation waiting out its grace period or delete_after is how rotation works, not a problem; one
    whose next step is overdue (interrupted, or nobody ran `rotate` since) is."""
    from rotator.domain import Phase

    if journal.phase is Phase.PUBLISHED and journal.published_at is not None:
        return now < journal.published_at + spec.policy.grace
    if journal.phase is Phase.RETIRED and journal.deactivated_at is not None:
        return now < journal.deactivated_at + spec.policy.delete_after
    return False


def _row(spec: CredentialSpec, known: CredentialStatus | None, journal: Journal | None,
         iam: list[AccessKey] | str | None, now: datetime) -> dict[str, Any]:
    from rotator.domain import next_rotation_due

    key_id = known.current_key_id if known else None
    created = known.key_created_at if known else None
    source = "store" if key_id else None
    note = iam if key_id is None and isinstance(iam, str) else None
    if key_id is None and isinstance(iam, list):
        found, note = _current_from_iam(iam, journal)
        if found is not None:
            key_id, created, source = found.key_id, found.created_at, "iam"
    stored = known.state.value if known else "unknown"
    phase = journal.phase.value if journal else None
    # An open journal means a rotation is under way (or was interrupted): never "ok", whatever was stored.
    state = "rotating" if phase and stored == "ok" else stored
    hold = journal.hold_reason if journal else None
    last_rotated = known.last_rotated_at if known else None
    next_due = next_rotation_due(created, last_rotated, spec.policy)
    age = int((now - created).total_seconds()) if created else None
    ok = state == "ok" or (state == "rotating" and journal is not None and not hold and _waiting(journal, spec, now))
    return {
        "name": spec.name, "iam_user": spec.iam_user, "account": spec.account, "state": state, "ok": ok,
        "in_flight": phase, "key_id": key_id, "key_source": source, "key_created_at": _iso(created),
        "age_seconds": age, "age": _age(age), "last_rotated_at": _iso(last_rotated),
        "next_rotation_at": _iso(next_due), "due": next_due is None or next_due <= now,
        "retry_at": _iso(known.retry_at if known else None),
        "last_error": (known.last_error if known else None) or hold or note,
        "broken_targets": sorted(t.label for t in spec.targets
                                 if journal is not None and t.target_id in journal.broken_targets),
        "targets": [t.label for t in spec.targets], "owners": list(spec.owners),
    }


def _print_table(rows: list[dict[str, Any]], source: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"credentials in {source}", title_justify="left")
    for column in ("credential", "iam user", "account", "state", "key", "age", "next rotation", "retry at",
                   "last error"):
        table.add_column(column, overflow="fold")
    styles = {"ok": "green", "rotating": "cyan", "held": "yellow", "failed": "red", "broken": "bold red"}
    for row in rows:
        state = str(row["state"]) + (f" ({row['in_flight']})" if row["in_flight"] else "")
        key = str(row["key_id"] or "-") + (" (IAM)" if row["key_source"] == "iam" else "")
        next_rotation = "due now" if row["due"] and row["key_id"] else str(row["next_rotation_at"] or "-")
        table.add_row(str(row["name"]), str(row["iam_user"]), str(row["account"]),
                      f"[{styles.get(str(row['state']), 'dim')}]{escape(state)}[/]", key, str(row["age"]),
                      next_rotation, str(row["retry_at"] or ""), escape(str(row["last_error"] or "")))
    Console(width=max(Console().width, 160)).print(table)
    bad = [row["name"] for row in rows if not row["ok"]]
    if bad:
        Console(stderr=True).print(f"[yellow]{len(bad)} of {len(rows)} credential(s) not ok: "
                                   f"{escape(', '.join(map(str, bad)))}[/]")
