"""`rotator audit --key ID`: what an access key (and every key it minted) did, from CloudTrail."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime

import click

from rotator.cli.common import config_option, handle_errors, json_option
from rotator.errors import ExitCode, UsageError

EPILOG = """\b
Exit codes (--key): 0 nothing failed (the last minutes, which CloudTrail may
not have delivered yet, are "pending follow-up", not a failure); 1 coverage
incomplete (a region, an account or a stretch older than 90 days could not be
looked at) or the key is unknown; 2 usage or config error.
Exit codes (--incident): 0 covered, every session found cut, Slack thread and
database updated; 3 a session found is NOT cut, coverage is incomplete or the
audit failed, or the Slack post or the database write failed (each listed);
1 no such incident, or another process is following it up right now; 2 usage
or config error.

\b
Examples:
  rotator audit --key AKIAIOSFODNN7EXAMPLE
  rotator audit --key AKIAIOSFODNN7EXAMPLE --since 2026-01-31 --output ./incident
  rotator audit --key AKIAIOSFODNN7EXAMPLE --since 36h --json | jq .findings
  rotator audit --incident 3f6c0c1e-2b1a-4c7e-9d1e-0a5b7c9d2e4f
"""
_RELATIVE = re.compile(r"\A\d+[smhd]\Z")


def parse_since(text: str, now: datetime) -> datetime:
    """An ISO date or date-time (UTC unless it says otherwise), or a duration back from now ("36h", "7d")."""
    from rotator.domain import parse_duration

    value = text.strip()
    if _RELATIVE.match(value):
        return now - parse_duration(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r} is neither a date nor a duration",
                         hint="write 2026-01-31, 2026-01-31T12:00:00Z, 36h or 7d") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment > now:
        raise UsageError(f"--since {text!r} is in the future", hint="give a moment before now")
    return moment


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.option("--key", "key_id", default=None, metavar="ID", help="The access key id to audit.")
@click.option("--incident", "incident_id", default=None, metavar="ID",
              help="Follow an open incident up now, as the service does after CloudTrail's delivery delay: "
                   "re-audit, cut every role session found late, add to its Slack thread and report, close it "
                   "once covered.")
@click.option("--since", default=None, metavar="D",
              help="Start of the window: a date, a date-time or a duration back (36h, 7d). Default: the key's "
                   "creation, at most 90 days back.")
@click.option("--output", "output_dir", metavar="DIR", default=None,
              type=click.Path(file_okay=False, dir_okay=True, writable=True),
              help="Write the report there (Markdown and JSON).")
@config_option
@json_option
@handle_errors
def audit(key_id: str | None, incident_id: str | None, since: str | None, output_dir: str | None,
          config_path: str | None, as_json: bool) -> None:
    """Audit CloudTrail for what an access key did, in every region.

    LookupEvents by AccessKeyId in every region ([aws] audit_regions, default every enabled
    region and always us-east-1), each held to [aws] cloudtrail_requests_per_second; then the
    same for every temporary key it minted (GetSessionToken, GetFederationToken, AssumeRole
    and role chaining, to any depth), in the account each session acts in. Flags identity
    persistence, permission changes, session minting, spend, anti-forensics and
    reconnaissance, and says what it could not cover (LookupEvents shows management events
    only, 90 days back). --key changes nothing in AWS; the report is attached to the key's
    incident in the store, when there is one. --incident also cuts the role sessions it
    finds, as `rotator run` does on its own.
    """
    if (key_id is None) == (incident_id is None):
        raise UsageError("give exactly one of --key ID or --incident ID",
                         hint="rotator audit --key AKIA… (what a key did) or rotator audit --incident ID (follow-up)")
    if incident_id is not None:
        if since is not None or output_dir is not None:
            raise UsageError("--since and --output go with --key", hint="rotator audit --incident ID [--json]")
        sys.exit(_follow_incident_up(incident_id, config_path, as_json))
    from rotator.incident.containment import check_key_id

    assert key_id is not None
    key_id = check_key_id(key_id)
    now = datetime.now(UTC)
    since_at = parse_since(since, now) if since is not None else None

    from rotator.cli.audit_output import print_key_audit
    from rotator.config.settings import load_settings
    from rotator.incident.audit.key_audit import audit_key
    from rotator.wiring.root import Root

    root = Root(load_settings(config_path, partial=True))
    outcome = audit_key(root.incident.key_audit_ports(), key_id, since=since_at)
    covered = print_key_audit(outcome, now=now, output_dir=output_dir, as_json=as_json)
    sys.exit(ExitCode.OK if covered else ExitCode.FAILED)


def _follow_incident_up(incident_id: str, config_path: str | None, as_json: bool) -> int:
    import uuid

    from rotator.cli.audit_output import print_reaudit
    from rotator.config.settings import load_settings
    from rotator.incident.reaudit import reaudit
    from rotator.wiring.root import Root

    root = Root(load_settings(config_path, partial=True))
    outcome = reaudit(root.incident.reaudit_ports(holder=f"audit/{uuid.uuid4().hex[:8]}"), incident_id, by_hand=True)
    print_reaudit(outcome, as_json=as_json)
    return int(ExitCode.FAILED if outcome.busy else outcome.exit_code)
