"""Command-line entry point.

Each command lives in its own module and is imported only when it runs, so ``rotator --help`` (and the
containment path of ``revoke``) never pay for boto3, python-gitlab, slack_sdk or SQLAlchemy.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import click

from rotator import __version__
from rotator.cli.common import verbosity_options

# name -> (module, attribute, one-line help shown by `rotator --help` without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("rotator.cli.run_cmd", "run", "Run the service: rotate on schedule, serve /healthz /readyz /metrics."),
    "rotate": ("rotator.cli.rotate_cmd", "rotate", "Rotate credentials now (every step that is due)."),
    "revoke": ("rotator.cli.revoke_cmd", "revoke", "Compromised key: contain first, then notify and audit."),
    "audit": ("rotator.cli.audit_cmd", "audit", "Audit CloudTrail for what an access key did."),
    "status": ("rotator.cli.status_cmd", "status", "Show every configured credential and its state."),
    "discover": ("rotator.cli.discover_cmd", "discover", "Find AWS keys stored in GitLab variables (read-only)."),
    "check": ("rotator.cli.check_cmd", "check", "Validate the config and probe AWS, GitLab and Slack."),
    "db": ("rotator.cli.db_cmd", "db", "Database schema commands (db upgrade)."),
    "sandbox": ("rotator.cli.sandbox_cmd", "sandbox", "Start local AWS, GitLab and Slack emulators."),
    "demo": ("rotator.cli.demo_cmd", "demo", "Walk through rotator against the emulators; no accounts needed."),
    "plan-oidc": ("rotator.cli.oidc_cmd", "plan_oidc", "Plan (or apply) the move of a credential to GitLab OIDC."),
    "retire-credential": ("rotator.cli.oidc_cmd", "retire_credential",
                          "Remove a credential's static key for good after the OIDC move."),
    "incidents": ("rotator.cli.incidents_cmd", "incidents", "List compromised-key incidents, open ones first."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        command = getattr(module, entry[1])
        assert isinstance(command, click.Command)
        return command

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                            list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in COMMANDS:
            close = difflib.get_close_matches(name, list(COMMANDS), n=2, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint} (`rotator --help` lists them)")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, entry[2]) for name, entry in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rotator")
@click.option("--config", "config_path", metavar="PATH", default=None,
              help="Config file for the command (also accepted after it, except by sandbox and demo).")
@verbosity_options
def cli(config_path: str | None) -> None:
    """Keep the AWS access keys of GitLab CI short-lived, and contain a leaked one in seconds.

    \b
    Configuration: --config PATH, else $ROTATOR_CONFIG, else ./rotator.toml
    (see config.example.toml). --config, -v and -q go before or after the command
    (sandbox and demo refuse them after it).
    Logging (stderr): warning by default; -v info, -vv debug, -q errors only, or
    ROTATOR_LOG_LEVEL=debug|info|warning|error; `rotator run` uses [service] log_level.
    Exit codes: 0 ok, 1 failed, 2 usage or config error, 3 revoke or audit --incident:
    the key is contained but a session found is not cut or a follow-up step failed,
    130/143 stopped by SIGINT/SIGTERM (for rotate: after each credential in flight
    finished its current step), except run (0).

    \b
    Examples:
      rotator check                      probe AWS, GitLab and Slack
      rotator --config prod.toml status -v
      rotator rotate --all --dry-run     show what rotation would do
      rotator revoke --key AKIA... --reason "leaked in a public repo"
      rotator demo                       everything, against local emulators
    """


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="rotator")
