"""`rotator rotate`: perform every rotation step that is due, now."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from rotator.cli.common import cli_logging, config_option, handle_errors, json_option
from rotator.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from rotator.rotation.fleet import FleetReport


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--all", "all_", is_flag=True, help="Every configured credential.")
@click.option("--project", "projects", multiple=True, metavar="PATH",
              help="Only credentials whose key the pipelines of this project can read (repeatable).")
@click.option("--group", "groups", multiple=True, metavar="PATH",
              help="Only credentials whose key pipelines under this group can read (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print the plan for each credential; change nothing anywhere.")
@click.option("--force", is_flag=True, help="Start a new rotation even if the current key is not yet due.")
@click.option("--emergency", is_flag=True,
              help="GitLab may be compromised: implies --force; no grace and no LastUsedDate gate; each old key "
                   "is made Inactive as soon as every target of its credential holds the new pair (kept as "
                   "evidence, deleted after delete_after by a later run). Exit 0 only if IAM lists every "
                   "exposed key Inactive.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Credentials rotated at once (each still follows the full protocol).")
@config_option
@json_option
@handle_errors
def rotate(names: tuple[str, ...], all_: bool, projects: tuple[str, ...], groups: tuple[str, ...], dry_run: bool,
           force: bool, emergency: bool, concurrency: int, config_path: str | None, as_json: bool) -> None:
    """Rotate credentials: create → verify → publish → grace → retire → delete.

    Each run first resumes anything an interrupted run left in the journal (for every configured
    credential; those not named are only recovered, never newly rotated), then performs every step
    that is due now. With grace and delete_after at "0s" one call ends with only the new key. Each
    credential fails on its own; failures are reported together at the end.

    \b
    Emergency rotation ("GitLab may be compromised"): --all --emergency, optionally
    narrowed with --project PATH / --group PATH to the credentials whose variables those
    pipelines can read (project variables, variables of any group above, instance
    variables), or NAME... --emergency for the credentials named. Every key is replaced
    now (--emergency implies --force), and each old key is made Inactive as soon as every
    target of its credential holds the new pair: no grace, no LastUsedDate gate. Old keys
    stay Inactive as evidence; a later run deletes them after delete_after. Requests to
    GitLab, IAM (per account) and Slack are held to [gitlab] requests_per_second, [aws]
    iam_requests_per_second and [slack] messages_per_second; 429 and Throttling slow them
    down rather than fail. Owners get one batched Slack message per channel, and the
    security channel one summary naming every key still Active, why, and the command that
    finishes the job. More than 10 credentials show a progress bar instead of step lines.

    \b
    Signals: SIGINT (Ctrl-C) or SIGTERM lets every credential in flight finish its current
    step (its lease is released, the journal keeps its place), starts no other, prints
    the results with "interrupted; not started: …", sends the owners' and security
    messages, and exits 130 or 143. The next `rotator rotate` finishes every one.

    \b
    Exit codes: 0 every credential is ok (or waiting out its grace period); with
                  --emergency: IAM lists every exposed key Inactive,
                1 any credential failed, is held, broken or busy (with --emergency:
                  a key is still Active); 2 usage/config error;
                130/143 interrupted by SIGINT/SIGTERM.

    \b
    Examples:
      rotator rotate payments-deploy
      rotator rotate --all --dry-run
      rotator rotate --all --emergency --concurrency 16       # GitLab may be compromised
      rotator rotate --all --emergency --group payments --dry-run
      rotator rotate payments-deploy --emergency              # finish one after a fix
      rotator rotate --all --force --group payments          # replace keys now, normal grace
    """
    from rotator.config.settings import load_settings
    from rotator.wiring.root import Root

    selecting = all_ or bool(projects) or bool(groups)
    if emergency and not (names or all_):
        raise UsageError("--emergency needs the credentials to rotate: pass --all (optionally with --project/"
                         "--group) or name them", hint="e.g. `rotator rotate --all --emergency`")
    if bool(names) == selecting:
        raise UsageError("name one or more credentials, or pass --all (optionally with --project/--group), "
                         "not both", hint="`rotator status` lists the configured credentials")
    settings = load_settings(config_path)
    cli_logging()
    if selecting:
        from rotator.rotation.fleet import select_credentials

        specs = tuple(select_credentials(settings.credential_specs(), projects=projects, groups=groups))
        if not specs:
            raise UsageError(f"no configured credential has a target that {_scope_text(projects, groups)} can read",
                             hint="check the paths (`rotator status` lists every credential's targets)")
    else:
        specs = tuple(settings.credential(n) for n in dict.fromkeys(names))
    root = Root(settings)
    root.resolve_secrets(state_key=not dry_run)
    if dry_run:
        from rotator.cli.rotate_output import print_plans

        plans = root.rotation.plan(specs, force=force, emergency=emergency)
        print_plans(plans, as_json=as_json)
        sys.exit(ExitCode.FAILED if any(p.action == "error" for p in plans) else ExitCode.OK)

    from rotator.cli import interrupt
    from rotator.cli.rotate_output import LiveProgress, print_fleet_summary, print_results, progress_for
    from rotator.leases import new_holder

    root.rotation.sync_credentials()
    holder = new_holder(root.actor)
    report: FleetReport | None = None
    recovery = LiveProgress(enabled=not as_json)
    with interrupt.finishing():
        recovered = root.rotation.recover_others(specs, holder=holder, on_step=recovery.step,
                                                 on_result=recovery.result, should_start=interrupt.should_start,
                                                 interrupt=interrupt.stop_guard)
        with progress_for(len(specs), enabled=not as_json) as progress:
            if emergency or (selecting and len(specs) > 1):
                scope = (_scope_text(projects, groups) if selecting
                         else "credentials " + ", ".join(s.name for s in specs))
                report = root.rotation.fleet(specs, holder=holder, concurrency=concurrency, force=force,
                                             emergency=emergency, scope=scope, on_step=progress.step,
                                             on_result=progress.result, should_start=interrupt.should_start,
                                             interrupt=interrupt.stop_guard)
                results = report.results
            else:
                results = root.rotation.rotate(specs, holder=holder, concurrency=concurrency, force=force,
                                               on_step=progress.step, on_result=progress.result,
                                               should_start=interrupt.should_start, interrupt=interrupt.stop_guard)
        results = [*recovered, *results]
        for result in results:
            root.rotation.schedule_retry(result)
        signum = interrupt.received()
        ran = {r.credential for r in results}
        stopped = None if signum is None else (interrupt.signal_name(signum),
                                               [s.name for s in specs if s.name not in ran])
        print_results(results, as_json=as_json, fleet=report, interrupted=stopped)
        if report is not None and not as_json:
            print_fleet_summary(report)
    if signum is not None:
        sys.exit(interrupt.exit_code_for(signum))
    if emergency:
        assert report is not None
        sys.exit(ExitCode.OK if report.ok else ExitCode.FAILED)
    sys.exit(ExitCode.OK if all(r.outcome.ok for r in results) else ExitCode.FAILED)


def _scope_text(projects: tuple[str, ...], groups: tuple[str, ...]) -> str:
    parts = [f"project {p}" for p in projects] + [f"group {g}" for g in groups]
    return "pipelines of " + ", ".join(parts) if parts else "every configured credential"
