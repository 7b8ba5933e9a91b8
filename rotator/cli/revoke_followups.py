"""`revoke` after containment: read the whole config, build a Wiring, run the follow-ups, print, write."""

from __future__ import annotations

import getpass
import socket
import sys

from rotator.cli.revoke_output import announce, print_outcome, write_incident_reports
from rotator.errors import ConfigError
from rotator.incident.containment import Containment, Step, StepStatus
from rotator.incident.followup import EXIT_FOLLOW_UP_FAILED, FollowUpOptions, IncidentOutcome, follow_up
from rotator.wiring.incident import ContainmentWiring, follow_up_ports


def _fallback_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def run_follow_ups(containment: Containment, early: ContainmentWiring, *, config_path: str | None, reason: str,
                   replace: bool, audit: bool, output_dir: str | None, as_json: bool, holder: str) -> int:
    """Returns the exit code: 0 every step done, 3 some follow-up failed (the key stays contained)."""
    if not as_json:
        announce(containment)
    from rotator.config.settings import load_settings
    from rotator.wiring.root import Wiring

    options = FollowUpOptions(reason=reason, replace=replace, audit=audit, dry_run=containment.dry_run)
    try:
        settings = load_settings(config_path, partial=True)
    except ConfigError as exc:
        # The key is contained with [aws] alone; the rest of the file must be fixed for the follow-ups.
        outcome = IncidentOutcome(containment, [*containment.steps, Step(
            "config", StepStatus.FAILED, f"{exc}: preempt, record, notify, replace and audit were not run; fix "
                                         "the file and run revoke again (containment is already done)")])
        actor = _fallback_actor()
    else:
        from rotator.logs import configure_logging

        # stdout carries the result (--json); the step table says what happened, so only warnings are logged.
        configure_logging("error" if settings.service.log_level == "error" else "warning", stream=sys.stderr)
        wiring = Wiring(settings)
        wiring.use_aws_sessions(early.aws)
        outcome = follow_up(containment, follow_up_ports(wiring, holder=holder, dry_run=containment.dry_run),
                            options)
        actor = wiring.actor
    exit_code = outcome.exit_code
    written = []
    if output_dir is not None:
        try:
            written = write_incident_reports(output_dir, outcome, actor=actor, reason=reason,
                                             now=early.clock.now())
        except OSError as exc:
            outcome.steps.append(Step("report files", StepStatus.FAILED, f"cannot write to {output_dir}: {exc}"))
            exit_code = EXIT_FOLLOW_UP_FAILED
    print_outcome(outcome, actor=actor, reason=reason, as_json=as_json, written=written)
    return exit_code
