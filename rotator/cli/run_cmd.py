"""`rotator run [--once]`: the service in the foreground."""

from __future__ import annotations

import os
import sys

import click

from rotator.cli.common import cli_logging, config_option, handle_errors


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--once", is_flag=True,
              help="Run one tick (with [events]: the quarantine check; then recover, rotate, retire, delete, drift "
                   "checks), then the incident follow-ups that are due and the resend of Slack messages kept "
                   "while Slack was down, and exit. Never reads the SQS exposure queue; serves no HTTP endpoint.")
@config_option
@handle_errors
def run(once: bool, config_path: str | None) -> None:
    """Run the service: every [service] tick, do whatever the schedule in the database says is due.

    Each tick first, with [events] (quarantine_check), asks IAM which tracked users carry AWS's
    quarantine policy and acts on them per on_exposed; then it resumes interrupted rotations, starts
    due rotations (inside [policy] window, spread by [policy] jitter), retires and deletes old keys
    whose waiting time is over, and compares a few credentials' GitLab targets with IAM (drift).
    As often, in their own jobs: open incidents whose follow-up is due ([revoke] follow_up) are
    re-audited (role sessions found late are cut, the Slack thread and report get the news, the
    incident closes once covered), and Slack messages kept while Slack did not answer are sent,
    oldest first. With [events] queue_url, a thread long-polls the SQS queue for AWS Health
    exposure events and runs the `rotator revoke` playbook for each key named (never blocking the
    tick). Several replicas may share one PostgreSQL database: a per-credential lease makes sure
    one of them acts on each credential.

    Serves /healthz, /readyz and /metrics on [service] listen. Logs JSON lines unless stdout is a
    terminal, at [service] log_level (-v, -vv, -q or $ROTATOR_LOG_LEVEL override it). The database
    must be migrated first (`rotator db upgrade`); the service never migrates.

    \b
    Signals: SIGTERM/SIGINT finish the current step, release the leases and exit 0;
             SIGHUP reloads the config (a bad config is logged and the running one kept).
    Exit codes: 0 stopped cleanly (--once: the tick's rotations, drift checks and quarantine
                reports all ok), 1 failed (--once: a credential failed, is held or broken, a
                drift check failed or found drift, or a quarantined key was not handled; or a
                step outlived [service] stop_timeout), 2 usage/config error.

    \b
    Examples:
      rotator run
      rotator run --once --config /etc/rotator/rotator.toml
    """
    from rotator.config.settings import load_settings
    from rotator.service.runner import run_service

    settings = load_settings(config_path)
    cli_logging(settings.service.log_level, stream=sys.stdout)
    code = run_service(settings, once=once)
    if code != 0 and not once:
        # A step outlived stop_timeout: do not wait for its thread at interpreter exit; the lease
        # expires by itself and the journal lets the next start resume.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
