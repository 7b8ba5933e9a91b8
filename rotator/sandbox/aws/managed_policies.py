"""AWS managed policies (``arn:aws:iam::aws:policy/...``) exist in every AWS account; moto loads none of them
unless ``MOTO_IAM_LOAD_MANAGED_POLICIES`` is set for the whole process, and then all of them in every account.

The sandbox loads one on first use instead, in the account that uses it, from the copy of AWS's managed
policy documents that moto ships (``moto/iam/aws_managed_policies.py``, imported from AWS). The compromised-key
quarantine policies come from there too (AWS managed policy reference, "AWSCompromisedKeyQuarantineV2" and
"AWSCompromisedKeyQuarantineV3": deny statements on the actions a leaked key is abused for).
"""

from __future__ import annotations

import functools
import json
import threading
from typing import Any

from moto.iam.aws_managed_policies import aws_managed_policies_data
from moto.iam.models import AWSManagedPolicy, iam_backends
from moto.utilities.utils import get_partition

AWS_MANAGED_PREFIX = "arn:aws:iam::aws:policy/"

_lock = threading.Lock()


@functools.cache
def _documents() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(aws_managed_policies_data)
    return loaded


def known(policy_arn: str) -> bool:
    """Is this the ARN of an AWS managed policy that the sandbox can provide?"""
    return policy_arn.startswith(AWS_MANAGED_PREFIX) and policy_arn.rsplit("/", 1)[-1] in _documents()


def ensure(account_id: str, policy_arn: str, region: str = "us-east-1") -> bool:
    """Make the AWS managed policy exist in moto's IAM of ``account_id``; False if AWS has no such policy."""
    if not known(policy_arn):
        return False
    name = policy_arn.rsplit("/", 1)[-1]
    backend = iam_backends[account_id][get_partition(region)]
    with _lock:
        if not any(p.arn == policy_arn for p in list(backend.managed_policies.values())):
            policy = AWSManagedPolicy.from_data(name, account_id, region, _documents()[name])
            backend.managed_policies[policy.arn] = policy
    return True
