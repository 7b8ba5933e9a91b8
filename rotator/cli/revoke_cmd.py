"""`rotator revoke --key ID`: contain a compromised access key first, then everything else.

Until the key is verified Inactive this module imports nothing slow: no pydantic, SQLAlchemy,
python-gitlab or slack_sdk (see rotator.config.early and benchmarks/containment_latency.py).
"""

from __future__ import annotations

import sys
import uuid
from typing import TYPE_CHECKING

import click

from rotator.cli.common import cli_logging, config_option, handle_errors, json_option
from rotator.errors import ExitCode

if TYPE_CHECKING:
    from rotator.incident.containment import Containment
    from rotator.wiring.containment import ContainmentWiring

EPILOG = """\b
Exit codes: 0 contained, every session found cut, every step done; 3 contained
but a session found is NOT cut (each is listed with the command that cuts it)
or a follow-up step failed (notify, replace, audit coverage…); 1 NOT contained;
2 usage or config error, or --role names another principal than CloudTrail;
130/143 SIGINT/SIGTERM during the follow-up (a signal waits until the key is
Inactive; run the same command again to finish).

\b
Examples:
  rotator revoke --key AKIAIOSFODNN7EXAMPLE --reason "pasted in a public gist"
  rotator revoke --key AKIAIOSFODNN7EXAMPLE --replace --output ./incident
  rotator revoke --key ASIAIOSFODNN7EXAMPLE             # role found in CloudTrail
  rotator revoke --key ASIAIOSFODNN7EXAMPLE --role ci-deployer
  rotator revoke --key AKIAIOSFODNN7EXAMPLE --dry-run
"""


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.option("--key", "key_id", required=True, metavar="ID", help="The access key id (never the secret).")
@click.option("--reason", default="", metavar="TEXT", help="Why: recorded in the incident and told on Slack.")
@click.option("--replace", "replace_key", is_flag=True,
              help="Rotate a fresh key into every GitLab variable that held this one (the old key stays Inactive).")
@click.option("--no-audit", is_flag=True, help="Skip the CloudTrail audit (run `rotator audit --key ID` later).")
@click.option("--dry-run", is_flag=True, help="Identify and show every step; change nothing anywhere.")
@click.option("--role", metavar="NAME", default=None,
              help="For a temporary (ASIA) key: the role it belongs to. Checked against CloudTrail (a mismatch "
                   "is exit 2); needed only while CloudTrail has no record of the session yet.")
@click.option("--disable-console", is_flag=True, help="Also delete the user's console password, if any.")
@click.option("--output", "output_dir", metavar="DIR", default=None,
              type=click.Path(file_okay=False, dir_okay=True, writable=True),
              help="Write the incident report there (Markdown and JSON).")
@config_option
@json_option
@handle_errors
def revoke(key_id: str, reason: str, replace_key: bool, no_audit: bool, dry_run: bool, role: str | None,
           disable_console: bool, output_dir: str | None, config_path: str | None, as_json: bool) -> None:
    """Contain a compromised AWS access key, then tell people and find out what it did.

    Order: identify the owner (the store if it tracks the key, else IAM and STS),
    UpdateAccessKey Inactive and verify (the first write), deny the user's sessions
    issued before T0 (a [revoke] consistency_margin after the deactivation) and read the
    deny back, report a console password; then preempt any rotation of the credential,
    record the incident, audit CloudTrail in every region and configured account, and
    put the same deny on every role the key or its sessions assumed as soon as the audit
    finds it (a role rotator may not or cannot change is listed with the exact command);
    post to the security channel and the owners (one thread), replace the key in GitLab
    (--replace). The incident stays open: `rotator run` re-audits it after CloudTrail's
    delivery delay ([revoke] follow_up). Safe to run again on the same key: it says what
    was already done. Works with only [aws] in the config, or with no config file at all.

    A temporary (ASIA) key: its session is cut on the role (or user) CloudTrail names,
    and the output names the credential that minted it, which can mint another.
    """
    from rotator.errors import UsageError
    from rotator.incident.containment import NotContained, check_key_id, contain

    key_id = check_key_id(key_id)
    if role is not None and not key_id.startswith("ASIA"):
        raise UsageError("--role applies to temporary (ASIA) keys only", hint="drop --role for an AKIA key")

    from rotator.cli.interrupt import Interrupted, deferred, exit_code_for, received, signal_name
    from rotator.config.early import load_containment_settings
    from rotator.wiring.containment import ContainmentWiring

    early = ContainmentWiring(load_containment_settings(config_path))
    try:
        with deferred():  # a signal never cuts containment in two: it is honoured once the key is Inactive
            containment = contain(key_id, early.containment_ports(), dry_run=dry_run, role=role,
                                  disable_console=disable_console)
    except NotContained as exc:
        from rotator.cli.revoke_output import print_not_contained

        print_not_contained(key_id, exc, as_json=as_json)
        sys.exit(ExitCode.FAILED)

    # Contained (or, with --dry-run, planned). Nothing below can undo it, and all of it may be slow.
    signum = received()
    if signum is not None:  # it came during containment, which it did not cut
        _say_interrupted(containment, signal_name(signum), "before the follow-up")
        sys.exit(exit_code_for(signum))
    try:
        code = _follow_up(containment, early, config_path=config_path, reason=reason, replace=replace_key,
                          audit=not no_audit, output_dir=output_dir, as_json=as_json,
                          holder=f"incident/{uuid.uuid4().hex[:8]}")
    except Interrupted as exc:
        _say_interrupted(containment, str(exc), "during the follow-up")
        sys.exit(exc.exit_code)
    sys.exit(code)


def _say_interrupted(containment: Containment, signal: str, when: str) -> None:
    from rotator.incident.report import headline

    # The report's own words: a temporary key's session is cut, never "Inactive"; a dry run changed nothing.
    state = headline(containment, containment.cuts, verified=True)
    click.echo(f"rotator: interrupted by {signal} {when}: {state}; run the same "
               "`rotator revoke` again to finish notify, replace and audit", err=True)


def _follow_up(containment: Containment, early: ContainmentWiring, *, config_path: str | None, reason: str,
               replace: bool, audit: bool, output_dir: str | None, as_json: bool, holder: str) -> int:
    """Read the whole config, build the composition root, run every follow-up step, print and write the report.
    Returns the exit code: 0 every step done, 3 some follow-up failed (the key stays contained)."""
    from rotator.cli.revoke_output import announce, print_outcome, write_incident_reports
    from rotator.config.settings import load_settings
    from rotator.errors import ConfigError
    from rotator.incident.followup import FollowUpOptions, IncidentOutcome, follow_up
    from rotator.incident.steps import Step, StepStatus
    from rotator.wiring.system import default_actor

    if not as_json:
        announce(containment)
    if audit and not containment.dry_run:
        early.warm_up()
    options = FollowUpOptions(reason=reason, replace=replace, audit=audit, dry_run=containment.dry_run)
    try:
        settings = load_settings(config_path, partial=True)
    except ConfigError as exc:
        # The key is contained with [aws] alone; the rest of the file must be fixed for the follow-ups.
        outcome = IncidentOutcome(containment, [*containment.steps, Step(
            "config", StepStatus.FAILED, f"{exc}: preempt, record, notify, replace and audit were not run; fix "
                                         "the file and run revoke again (containment is already done)")],
                                  cuts=list(containment.cuts))
        actor = default_actor()
    else:
        # stdout carries the result (--json); the step table says what happened, so only warnings are logged.
        cli_logging("error" if settings.service.log_level == "error" else "warning")
        root = early.root(settings)
        outcome = follow_up(containment, root.incident.follow_up_ports(holder=holder, dry_run=containment.dry_run),
                            options)
        actor = root.actor
    exit_code = outcome.exit_code
    written = []
    if output_dir is not None:
        try:
            written = write_incident_reports(output_dir, outcome, actor=actor, reason=reason,
                                             now=early.clock.now())
        except OSError as exc:
            outcome.steps.append(Step("report files", StepStatus.FAILED, f"cannot write to {output_dir}: {exc}"))
            exit_code = ExitCode.CONTAINED_FOLLOW_UP_FAILED
    print_outcome(outcome, actor=actor, reason=reason, as_json=as_json, written=written)
    return exit_code
