"""The sandbox AWS: moto in-process behind a front that adds CloudTrail, key checks and faults.

Use it with standard boto3: ``endpoint_url=sandbox.url`` (or ``AWS_ENDPOINT_URL``) and any dummy ambient
credentials. Keys that IAM issued are checked as AWS checks them; other key ids are accepted, as moto does,
and act as the account root. Temporary keys minted through the front are governed by their principal's
policies (see :mod:`rotator.sandbox.aws.authorize`).

Besides the shared control routes (see :mod:`rotator.sandbox.server`) it answers:

- ``POST /_sandbox/cloudtrail/events``  JSON list of CloudTrail records to stage, or ``{"records": [...],
  "deliver_at": <epoch or ISO 8601>}`` to deliver them late; ``GET`` lists every record (``?region=``,
  ``?account=``); ``DELETE`` forgets them all
- ``POST /_sandbox/cloudtrail/deliver`` deliver every record still inside the CloudTrail delivery delay
- ``POST /_sandbox/aws/settings``       ``{"propagation_delay": 5 | "forever", "lookup_rate": 2,
  "cloudtrail_delay": 0}``
- ``GET  /_sandbox/aws/keys/<id>``      ``{"status": "Active" | "Inactive" | "deleted" | "unknown"}``
- ``GET  /_sandbox/aws/sessions``       sessions minted through the front (``?minted_by=<key id>``), no tokens
- ``POST /_sandbox/health-event``       ``{"queue_url": ..., "access_key_ids": [...], "account_id"?, "time"?}``:
  an AWS Health ``AWS_RISK_CREDENTIALS_EXPOSED`` event into an SQS queue, as an EventBridge rule delivers it
- ``POST /_sandbox/aws/quarantine``     ``{"user_name": ..., "account_id"?, "version": "V3" (default) | "V2"}``: attach
  AWS's AWSCompromisedKeyQuarantine policy to a user, as AWS does

Fault keys are ``"service:Action@region"`` (``"cloudtrail:LookupEvents@eu-west-1"``); a fault's ``match``
is a regular expression searched in that key, so ``"iam:CreateAccessKey"`` hits every region and
``"cloudtrail:LookupEvents@eu-west-1$"`` only one. Request-log keys are ``"service:Action"``.
"""

from __future__ import annotations

from rotator.sandbox.aws.health import DeliveredEvent
from rotator.sandbox.aws.identities import MintedSession, Principal
from rotator.sandbox.aws.sandbox import AwsSandbox, start_aws

__all__ = ["AwsSandbox", "DeliveredEvent", "MintedSession", "Principal", "start_aws"]
