"""Command-line entry point.

Each command lives in its own module and is imported only when it runs, so ``rotator --help`` (and the
containment path of ``revoke``) never pay for boto3, python-gitlab, slack_sdk or SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from rotator import __version__

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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, entry[2]) for name, entry in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rotator")
def cli() -> None:
    """Keep the AWS access keys of GitLab CI short-lived, and contain a leaked one in seconds.

    \b
    Configuration: --config PATH, else $ROTATOR_CONFIG, else ./rotator.toml
    (see config.example.toml). Exit codes: 0 ok, 1 failed, 2 usage or config
    error, 3 revoke contained the key but a follow-up step failed.

    \b
    Examples:
      rotator check                      probe AWS, GitLab and Slack
      rotator rotate --all --dry-run     show what rotation would do
      rotator revoke --key AKIA... --reason "leaked in a public repo"
      rotator demo                       everything, against local emulators
    """


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="rotator")
