"""`rotator audit --key ID`: what an access key (and every key it minted) did, from CloudTrail."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime

import click

from rotator.cli.common import config_option, handle_errors, json_option
from rotator.errors import ExitCode, UsageError

EPILOG = """\b
Exit codes: 0 the audit covered everything; 1 coverage incomplete (a region or a
minted key could not be looked at) or the key is unknown; 2 usage or config error.

\b
Examples:
  rotator audit --key AKIAIOSFODNN7EXAMPLE
  rotator audit --key AKIAIOSFODNN7EXAMPLE --since 2026-01-31 --output ./incident
  rotator audit --key AKIAIOSFODNN7EXAMPLE --since 36h --json | jq .findings
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
@click.option("--key", "key_id", required=True, metavar="ID", help="The access key id to audit.")
@click.option("--since", default=None, metavar="D",
              help="Start of the window: a date, a date-time or a duration back (36h, 7d). Default: the key's "
                   "creation, at most 90 days back.")
@click.option("--output", "output_dir", metavar="DIR", default=None,
              type=click.Path(file_okay=False, dir_okay=True, writable=True),
              help="Write the report there (Markdown and JSON).")
@config_option
@json_option
@handle_errors
def audit(key_id: str, since: str | None, output_dir: str | None, config_path: str | None, as_json: bool) -> None:
    """Audit CloudTrail for what an access key did, in every region.

    LookupEvents by AccessKeyId in every region ([aws] audit_regions, default every enabled
    region and always us-east-1), each held to [aws] cloudtrail_requests_per_second; then the
    same for every temporary key it minted (GetSessionToken, AssumeRole, GetFederationToken).
    Flags identity persistence, permission changes, session minting, spend, anti-forensics
    and reconnaissance, and says what it could not cover. Changes nothing in AWS. The report
    is attached to the key's incident in the store, when there is one.
    """
    from rotator.incident.containment import check_key_id

    key_id = check_key_id(key_id)
    now = datetime.now(UTC)
    since_at = parse_since(since, now) if since is not None else None

    from rotator.cli.audit_output import print_key_audit
    from rotator.config.settings import load_settings
    from rotator.incident.audit.key_audit import audit_key
    from rotator.wiring.root import Root

    root = Root(load_settings(config_path, partial=True))
    outcome = audit_key(root.incident.key_audit_ports(), key_id, since=since_at)
    complete = print_key_audit(outcome, now=now, output_dir=output_dir, as_json=as_json)
    sys.exit(ExitCode.OK if complete else ExitCode.FAILED)
