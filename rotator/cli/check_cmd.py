"""`rotator check`: validate the config, then one harmless call to each outside party."""

from __future__ import annotations

import os
import sys

import click

from rotator.cli.common import cli_logging, config_option, handle_errors, json_option, print_json
from rotator.errors import ExitCode


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@json_option
@handle_errors
def check(config_path: str | None, as_json: bool) -> None:
    """Validate the config, then probe each outside party with one harmless call.

    \b
    Probes: the database (reachable, schema at head); the state key (set and a valid
    Fernet key, or KMS reachable: a throwaway value is sealed and opened); STS
    GetCallerIdentity for every AWS account; in each account, every tracked IAM user
    carries the CI permissions boundary ([aws] boundary_arn_pattern) and IAM's policy
    simulator allows rotator's own principal every action rotator needs ("not
    simulated" where it may not ask); GitLab GET /user, what GitLab does for the token
    (version, scopes, admin mode) and each target's variable list; with [events] enabled
    and a queue_url, the exposure queue (SQS GetQueueAttributes: readable, and its
    dead-letter queue, or that it has none, so rejected messages are deleted);
    Slack auth.test. Nothing is written anywhere. Prints ✔ or ✘ per probe, with the
    reason, as soon as it is known, and each ✘ of least privilege with the exact
    command that fixes it. A party that does not answer fails within twice its
    [gitlab]/[slack] timeout (retries are logged with -v); GitLab's variable lists are
    then not tried. Colour only on a terminal, never with NO_COLOR set.

    \b
    Exit codes: 0 every probe passed; 1 a probe failed; 2 config error (before any call).

    \b
    Example:
      ROTATOR_GITLAB_TOKEN=glpat-... rotator check --config /etc/rotator/rotator.toml
    """
    from rotator.config.settings import load_settings
    from rotator.wiring.root import Root

    settings = load_settings(config_path)
    cli_logging()
    root = Root(settings)
    root.resolve_secrets(state_key=False)  # every missing secret is exit 2 before the first call
    import time

    import structlog

    log = structlog.get_logger("rotator.check")
    color = False if os.environ.get("NO_COLOR") else None  # https://no-color.org: set and not empty
    results = []
    started = time.monotonic()
    for result in root.checks.probes():
        results.append(result)
        log.info("probe", probe=result.name, ok=result.ok, seconds=round(time.monotonic() - started, 3))
        started = time.monotonic()
        if not as_json:
            mark = click.style("✔", fg="green") if result.ok else click.style("✘", fg="red")
            click.echo(f"{mark} {result.name}: {result.detail}", color=color)
    if as_json:
        print_json({"ok": all(r.ok for r in results),
                    "probes": [{"name": r.name, "ok": r.ok, "detail": r.detail} for r in results]})
    sys.exit(ExitCode.OK if all(r.ok for r in results) else ExitCode.FAILED)
