"""`rotator rotate`: perform every rotation step that is due, now."""

from __future__ import annotations

import sys

import click

from rotator.cli.common import cli_logging, config_option, handle_errors, json_option
from rotator.errors import UsageError


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--all", "all_", is_flag=True, help="Every configured credential.")
@click.option("--dry-run", is_flag=True, help="Print the plan for each credential; change nothing anywhere.")
@click.option("--force", is_flag=True, help="Start a new rotation even if the current key is not yet due.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Credentials rotated at once (each still follows the full protocol).")
@config_option
@json_option
@handle_errors
def rotate(names: tuple[str, ...], all_: bool, dry_run: bool, force: bool, concurrency: int,
           config_path: str | None, as_json: bool) -> None:
    """Rotate credentials: create → verify → publish → grace → retire → delete.

    Each run first resumes anything an interrupted run left in the journal, then performs every step
    that is due now. With grace and delete_after at "0s" one call ends with only the new key. Each
    credential fails on its own; failures are reported together at the end.

    \b
    Exit codes: 0 every credential is ok (or waiting out its grace period),
                1 any credential failed, is held, or is busy; 2 usage/config error.

    \b
    Examples:
      rotator rotate payments-deploy
      rotator rotate --all --dry-run
      rotator rotate --all --force --concurrency 16     # rotate everything now
    """
    from rotator.bootstrap import Wiring
    from rotator.config import load_settings

    if bool(names) == all_:
        raise UsageError("name one or more credentials, or pass --all (not both)",
                         hint="`rotator status` lists the configured credentials")
    settings = load_settings(config_path)
    cli_logging()
    specs = settings.credential_specs() if all_ else tuple(settings.credential(n) for n in dict.fromkeys(names))
    wiring = Wiring(settings)
    wiring.resolve_secrets(state_key=not dry_run)
    if dry_run:
        from rotator.cli.rotate_output import print_plans
        from rotator.planning import plan_rotation

        plans = [plan_rotation(spec, iam=wiring.iam(spec.account), variables=wiring.variables,
                               store=wiring.store, clock=wiring.clock, force=force) for spec in specs]
        print_plans(plans, as_json=as_json)
        sys.exit(1 if any(p.action == "error" for p in plans) else 0)

    from rotator.batch import new_holder, rotate_many
    from rotator.cli.rotate_output import LiveProgress, print_results

    wiring.store.sync_credentials(settings.credential_specs(), wiring.clock.now())
    progress = LiveProgress(enabled=not as_json)
    results = rotate_many(
        specs, wiring.rotation_ports, holder=new_holder(wiring.actor), lease_ttl=settings.service.lease_ttl,
        concurrency=concurrency, force=force, on_step=progress.step, on_result=progress.result,
    )
    print_results(results, as_json=as_json)
    sys.exit(0 if all(r.outcome.ok for r in results) else 1)
