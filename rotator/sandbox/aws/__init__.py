"""The sandbox AWS: moto in-process behind a front that adds CloudTrail, key checks and faults.

Use it with standard boto3: ``endpoint_url=sandbox.url`` (or ``AWS_ENDPOINT_URL``) and any dummy ambient
credentials. Keys that IAM issued are checked as AWS checks them; other key ids are accepted, as moto does.

Besides the shared control routes (see :mod:`rotator.sandbox.server`) it answers:

- ``POST /_sandbox/cloudtrail/events``  JSON list of CloudTrail records to stage; ``GET`` lists every
  record (``?region=``, ``?account=``); ``DELETE`` forgets them all
- ``POST /_sandbox/aws/settings``       ``{"propagation_delay": 5 | "forever", "lookup_rate": 2}``
- ``GET  /_sandbox/aws/keys/<id>``      ``{"status": "Active" | "Inactive" | "deleted" | "unknown"}``

Fault keys are ``"service:Action@region"`` (``"cloudtrail:LookupEvents@eu-west-1"``); a fault's ``match``
is a regular expression searched in that key, so ``"iam:CreateAccessKey"`` hits every region and
``"cloudtrail:LookupEvents@eu-west-1$"`` only one. Request-log keys are ``"service:Action"``.
"""

from __future__ import annotations

from rotator.sandbox.aws.sandbox import AwsSandbox, start_aws

__all__ = ["AwsSandbox", "start_aws"]
