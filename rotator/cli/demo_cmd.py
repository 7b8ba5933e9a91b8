"""`rotator demo`: the guided tour against local emulators."""

from __future__ import annotations

import sys

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--service-seconds", type=click.IntRange(0, 600), default=45, show_default=True,
              help="How long to run the service part, steps 7 and 8 (0 skips both).")
@click.option("--keep", is_flag=True, help="Keep the demo's config, database and reports afterwards.")
def demo(service_seconds: int, keep: bool) -> None:
    """Walk through rotator against local emulators of AWS, GitLab and Slack; no account needed.

    \b
    It starts the emulators, seeds IAM users whose keys live in GitLab variables, then runs the real
    commands: check, status, rotate (dry run, then live), discover, a leaked-key incident with
    revoke --replace and its CloudTrail audit, the service rotating a credential on schedule
    with /metrics (step 7), and an AWS Health "credentials exposed" event that the running
    service handles on its own: key contained, pipeline given a new key (step 8).

    \b
    Examples:
      rotator demo
      rotator demo --service-seconds 0     # skip the service part (steps 7 and 8)
      rotator demo --keep                  # keep its config, database and reports
    """
    from rich.console import Console

    from rotator.sandbox.demo import Demo

    tour = Demo(Console(highlight=False), service_seconds=service_seconds, keep=keep)
    code = 1
    try:
        code = tour.run()
    finally:
        tour.cleanup()  # keeps the folder with --keep, as the tour's last line says
    sys.exit(code)
