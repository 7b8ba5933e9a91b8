"""`rotator discover`: find the AWS keys stored in GitLab CI/CD variables. Read-only."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

import click

from rotator.cli.common import cli_logging, config_option, handle_errors, json_option, print_json

PHASES = {"walk": "listing groups and projects", "variables": "reading CI/CD variables",
          "resolve": "resolving key ids in AWS"}


class DiscoveryProgress:
    """A rich progress bar on stderr, one line per phase; silent when disabled (--json)."""

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> DiscoveryProgress:
        if self._enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), console=Console(stderr=True), transient=False)
            self._progress.start()
        return self

    def update(self, phase: str, done: int, total: int | None) -> None:
        if self._progress is None:
            return
        task = self._tasks.get(phase)
        if task is None:
            task = self._tasks[phase] = self._progress.add_task(PHASES.get(phase, phase), total=total)
        self._progress.update(task, completed=done, total=total)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--emit-config", is_flag=True,
              help="Print ready-to-paste [[credentials]] TOML for the untracked keys instead of the report.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Scopes read and keys resolved at once (GitLab and IAM rate limits still apply).")
@config_option
@json_option
@handle_errors
def discover(emit_config: bool, concurrency: int, config_path: str | None, as_json: bool) -> None:
    """Find AWS access keys stored in GitLab CI/CD variables, and compare them with the config.

    Walks the groups and projects whose variables the GitLab token can read (within [gitlab]
    requests_per_second, with a progress bar on stderr): with working admin access every group
    and project and the instance variables; otherwise the groups where the token's user is
    Owner and the projects where it is Maintainer. An administrator's token without the
    admin_mode scope, on a GitLab that enables admin mode, is reported as a limited walk with
    the fix. For each variable holding an access key id
    (AKIA/ASIA…) it reports the IAM user and account (sts:GetAccessKeyInfo, then
    iam:GetAccessKeyLastUsed through the configured accounts; a key of any other account is
    reported as unknown), whether a configured credential tracks that variable, its secret
    partner by name convention (FOO_ACCESS_KEY_ID ↔ FOO_SECRET_ACCESS_KEY) and its flags.
    Also: variables not masked / protected / hidden, keys shadowed across group and project
    levels or environment scopes, hidden variables whose value cannot be read (listed as
    unknown), IAM keys of tracked users that no variable holds, keys older than rotate_every.

    Nothing is written anywhere: only GET requests to GitLab and read-only AWS calls.
    Works with a config that has no [[credentials]] yet.

    \b
    Exit codes: 0 every scope within reach was read; 1 some scope or key could not be
    read, or the walk was limited (the report says which and why); 2 usage/config error.

    \b
    Examples:
      rotator discover
      rotator discover --emit-config >> rotator.toml    # then review owners and policy
      rotator discover --json | jq '.keys[] | select(.tracked | not)'
    """
    from rotator.config.settings import load_settings
    from rotator.inventory.discover import discover as run_discovery
    from rotator.inventory.report import as_json as report_json
    from rotator.inventory.report import emit_config as config_text
    from rotator.wiring.root import Root

    settings = load_settings(config_path, partial=True)  # a first run may have no [[credentials]] yet
    settings.require_gitlab()
    cli_logging()
    root = Root(settings)
    root.resolve_secrets(slack=False, state_key=False)
    specs = settings.credential_specs()
    with DiscoveryProgress(enabled=not as_json) as progress:
        report = run_discovery(specs, settings.policy.to_policy(), root.inventory.discovery_ports(),
                               concurrency=concurrency, progress=progress.update)
    emitted = config_text(report, [spec.name for spec in specs]) if emit_config else None
    if as_json:
        print_json({**report_json(report), **({"emit_config": emitted} if emitted is not None else {})})
    elif emitted is not None:
        click.echo(emitted, nl=False)
    else:
        _print_report(report)
    sys.exit(0 if not report.unreadable and not report.problems else 1)


def _print_report(report: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from rotator.inventory.report import summary_line, text_sections

    console = Console(file=sys.stdout, width=max(Console().width, 160), highlight=False)
    for title, columns, rows in text_sections(report):
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
    console.print(escape(summary_line(report)))
