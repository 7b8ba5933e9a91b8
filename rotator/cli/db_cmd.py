"""`rotator db upgrade`: migrate the database to the schema this version of rotator expects."""

from __future__ import annotations

import click

from rotator.cli.common import config_option, handle_errors, json_option, print_json


@click.group(name="db")
def db() -> None:
    """Database schema commands.

    \b
    Example:
      rotator db upgrade --config /etc/rotator/rotator.toml
    """


@db.command(name="upgrade")
@config_option
@json_option
@handle_errors
def upgrade(config_path: str | None, as_json: bool) -> None:
    """Migrate [service] database_url to the newest schema.

    Run it after installing a new version of rotator and before starting the service: `rotator run` and the
    other commands refuse a database that is not at the newest revision (only a brand-new SQLite file is
    set up on the fly). Running it again is harmless; several replicas running it at once take turns.

    \b
    Examples:
      rotator db upgrade --config /etc/rotator/rotator.toml
      rotator db upgrade --json      {"changed": true, "database": "...", "from": null, "to": "0001"}
    """
    # Imported here so `rotator --help` and the other commands never load SQLAlchemy or Alembic for it.
    from rotator.config.settings import load_settings
    from rotator.logs import redact_url
    from rotator.wiring.database import Database

    settings = load_settings(config_path, partial=True)
    url = settings.service.database_url
    before, after = Database(url).upgrade()
    where = redact_url(url)
    if as_json:
        print_json({"database": where, "from": before, "to": after, "changed": before != after})
    elif before == after:
        click.echo(f"database {where}: already at head ({after})")
    else:
        click.echo(f"database {where}: {before or 'empty'} → {after}")
