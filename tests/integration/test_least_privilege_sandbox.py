"""The least-privilege reads of `rotator check` through boto3 against the AWS emulator: a user's and a role's
permissions boundary as IAM returns it, the caller, and a typed error (never a parser traceback) where the
emulator has no policy simulator."""

from __future__ import annotations

import json

import boto3
import pytest

from rotator.adapters.aws import RETRY_CONFIG
from rotator.adapters.aws_least_privilege import BotoPrivilegeReads
from rotator.errors import AwsError, AwsNotFound
from rotator.inventory.least_privilege import Need, boundary_gaps
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import aws_client
from tests.sandbox_support import seed_one, unique

PATTERN = "arn:aws:iam::*:policy/ci-boundary/*"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                             "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]})
BOUNDARY_DOCUMENT = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "Artifacts", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::artifacts/*"}]})


def reads(sandbox: Sandbox) -> BotoPrivilegeReads:
    urls = sandbox.urls()
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    return BotoPrivilegeReads(session.client("iam", endpoint_url=urls["aws_endpoint_url"], config=RETRY_CONFIG),
                              session.client("sts", endpoint_url=urls["aws_endpoint_url"], config=RETRY_CONFIG))


def test_boundaries_are_read_as_iam_returns_them(sandbox: Sandbox) -> None:
    seed = seed_one(sandbox)
    iam = aws_client(sandbox.urls(), "iam")
    boundary = iam.create_policy(PolicyName=unique("ci-permissions-boundary"), Path="/ci-boundary/",
                                 PolicyDocument=BOUNDARY_DOCUMENT)["Policy"]["Arn"]
    capped = unique("deploy")
    iam.create_role(RoleName=capped, Path="/deploy/", AssumeRolePolicyDocument=TRUST, PermissionsBoundary=boundary)
    bare = unique("deploy")
    iam.create_role(RoleName=bare, Path="/deploy/", AssumeRolePolicyDocument=TRUST)
    adapter = reads(sandbox)

    ci_user = adapter.describe("user", seed.iam_user)
    assert ci_user.arn == f"arn:aws:iam::123456789012:user/ci/{seed.iam_user}" and ci_user.boundary_arn is None
    capped_role = adapter.describe("role", capped)
    assert capped_role.arn == f"arn:aws:iam::123456789012:role/deploy/{capped}"
    assert capped_role.boundary_arn == boundary
    assert adapter.describe("role", bare).boundary_arn is None
    gaps = boundary_gaps([ci_user, capped_role, adapter.describe("role", bare)], PATTERN, "123456789012")
    assert [g.entity.name for g in gaps] == [seed.iam_user, bare]
    with pytest.raises(AwsNotFound):
        adapter.describe("user", unique("nobody"))


def test_the_caller_is_read_from_sts_and_a_missing_simulator_is_a_typed_error(sandbox: Sandbox) -> None:
    adapter = reads(sandbox)
    assert adapter.caller_arn().endswith(":123456789012:user/moto")
    # moto 5 implements no SimulatePrincipalPolicy (it answers 500 with an HTML page): `rotator check` then
    # says "not simulated" instead of failing on a traceback.
    with pytest.raises(AwsError) as raised:
        adapter.simulate("arn:aws:iam::123456789012:role/rotator", [Need("iam:GetUser", "*", "test")])
    assert raised.value.operation == "iam:SimulatePrincipalPolicy"
