"""``rotator sandbox``: run the AWS, GitLab and Slack emulators in the foreground."""

from __future__ import annotations

import json
import signal
import sys
import threading
from types import FrameType

import click

from rotator.cli.common import fail, handle_errors
from rotator.errors import ExitCode

EPILOG = """\b
Examples:
  rotator sandbox                 start, print the URLs and export lines, serve until Ctrl-C
  rotator sandbox --json          print one JSON line for scripts, then serve:
    {"aws_endpoint_url": "http://127.0.0.1:...", "gitlab_url": "...", "gitlab_token": "...",
     "slack_api_url": "http://127.0.0.1:.../api/", "slack_token": "xoxb-...",
     "aws_health_event_url": "http://127.0.0.1:.../_sandbox/health-event",
     "aws_quarantine_url": "http://127.0.0.1:.../_sandbox/aws/quarantine"}
  rotator sandbox --port-base 4566   AWS on 4566, GitLab on 4567, Slack on 4568
  rotator sandbox --cloudtrail-delay 120   LookupEvents shows each call 2 minutes after it

\b
What AWS does when it finds a key exposed, on demand (the queue must exist: aws sqs create-queue):
  curl -X POST "$AWS_HEALTH_EVENT_URL" -d '{"queue_url": "http://127.0.0.1:4566/123456789012/health",
                                           "access_key_ids": ["AKIA..."]}'
    puts an AWS Health AWS_RISK_CREDENTIALS_EXPOSED event into the queue, as an EventBridge rule does
  curl -X POST "$AWS_QUARANTINE_URL" -d '{"user_name": "ci-deploy", "version": "V3"}'
    attaches arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3 (or V2) to the user, as AWS does
"""


def _human_block(urls: dict[str, str]) -> str:
    return "\n".join([
        "rotator sandbox: AWS, GitLab and Slack emulators are running on 127.0.0.1 (Ctrl-C to stop).",
        "",
        f"  AWS (moto + CloudTrail front)  {urls['aws_endpoint_url']}",
        f"  GitLab                         {urls['gitlab_url']}",
        f"  Slack Web API                  {urls['slack_api_url']}",
        f"  AWS Health event injection     {urls['aws_health_event_url']}",
        f"  AWS quarantine policy          {urls['aws_quarantine_url']}",
        "",
        "In another shell (AWS accepts any dummy credentials):",
        f"  export AWS_ENDPOINT_URL={urls['aws_endpoint_url']}",
        "  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1",
        f"  export ROTATOR_GITLAB_TOKEN={urls['gitlab_token']}",
        f"  export ROTATOR_SLACK_TOKEN={urls['slack_token']}",
        f"  export AWS_HEALTH_EVENT_URL={urls['aws_health_event_url']}",
        f"  export AWS_QUARANTINE_URL={urls['aws_quarantine_url']}",
        "",
        "These tokens belong to the emulators only; they open nothing real.",
    ])


@click.command("sandbox", epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON line with the endpoints and tokens once every emulator answers.")
@click.option("--port-base", type=click.IntRange(1, 65533), default=None, metavar="N",
              help="Listen on fixed ports N (AWS), N+1 (GitLab), N+2 (Slack) instead of free ones.")
@click.option("--cloudtrail-delay", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="SECONDS",
              help="Seconds before a call shows in CloudTrail LookupEvents (AWS delivers events minutes late).")
@handle_errors
def sandbox(as_json: bool, port_base: int | None, cloudtrail_delay: float) -> None:
    """Start local AWS, GitLab and Slack emulators on 127.0.0.1 and serve until SIGINT or SIGTERM.

    AWS is moto behind a front that records CloudTrail events, serves LookupEvents, refuses Inactive
    or deleted keys, evaluates the aws:TokenIssueTime deny that cuts sessions, and serves SQS; it can
    inject AWS Health "credentials exposed" events and attach AWS's quarantine policy (see below).
    GitLab emulates the CI/CD variables API; Slack the Web API.
    """
    from rotator.sandbox.runner import start_sandbox

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        running = start_sandbox("127.0.0.1", port_base)
    except OSError as exc:
        fail(f"cannot listen: {exc.strerror or exc} (next step: choose another --port-base, or omit it "
             "to use free ports)", ExitCode.FAILED)
        return
    try:
        running.aws.cloudtrail_delay = cloudtrail_delay
        running.wait_until_healthy()
        urls = running.urls()
        click.echo(json.dumps(urls) if as_json else _human_block(urls))
        sys.stdout.flush()
        while not stop_requested.wait(timeout=0.5):
            pass
    finally:
        running.stop()
    sys.exit(ExitCode.OK)
