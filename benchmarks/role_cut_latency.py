"""Role-session cut latency: from T0 (UpdateAccessKey arriving at the AWS front) to the last role session cut
(the last PutRolePolicy arriving), as a ratio to the containment of the key alone (process start →
UpdateAccessKey), for `rotator revoke --key ID` of a key that assumed 3 roles in 2 accounts.

The leaked key assumed two roles in its own account and one in a second configured account; every request
to the AWS front waits 50 ms more (injected latency, as a far region would). Each trial seeds a fresh user,
key and roles. CloudTrail LookupEvents keeps its real pace (2 requests a second per region and account).

    python -m benchmarks.role_cut_latency [--trials N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

from benchmarks._common import ROTATOR, aws_environment, compile_rotator, parse_trials
from rotator.sandbox.aws import AwsSandbox, start_aws
from rotator.sandbox.server import Fault

LATENCY = 0.05
HOME = "123456789012"  # moto's default account: the ambient credentials'
SECOND = "222222222222"
TRUST = ('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", '
         f'"Principal": {{"AWS": "arn:aws:iam::{HOME}:root"}}}}]}}')


def _client(aws: AwsSandbox, service: str, **credentials: str) -> Any:
    credentials = credentials or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return boto3.client(service, endpoint_url=aws.url, region_name="us-east-1", **credentials)  # type: ignore


def _in_account(aws: AwsSandbox, account_id: str, service: str) -> Any:
    creds = _client(aws, "sts").assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/rotator",
                                            RoleSessionName="seed")["Credentials"]
    return _client(aws, service, aws_access_key_id=creds["AccessKeyId"],
                   aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])


def _attack(aws: AwsSandbox) -> str:
    """A user and key in the home account; the key assumes two roles there and one in the second account."""
    suffix = uuid.uuid4().hex[:8]
    iam = _client(aws, "iam")
    iam.create_user(UserName=f"ci-{suffix}")
    key = iam.create_access_key(UserName=f"ci-{suffix}")["AccessKey"]
    roles = []
    for name in (f"deploy-{suffix}", f"release-{suffix}"):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)
        roles.append(f"arn:aws:iam::{HOME}:role/{name}")
    second = _in_account(aws, SECOND, "iam")
    second.create_role(RoleName=f"prod-{suffix}", AssumeRolePolicyDocument=TRUST)
    roles.append(f"arn:aws:iam::{SECOND}:role/prod-{suffix}")
    sts = _client(aws, "sts", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    for role in roles:
        sts.assume_role(RoleArn=role, RoleSessionName="attacker")
    return str(key["AccessKeyId"])


def _one(aws: AwsSandbox, command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(containment: start → UpdateAccessKey, role cut: UpdateAccessKey → the last PutRolePolicy)."""
    aws.log.clear()
    started = time.time()
    finished = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    if finished.returncode not in (0, 3):
        raise RuntimeError(f"revoke exited {finished.returncode}: {finished.stderr[-2000:]}")
    entries = aws.log.entries()
    update = [e.at for e in entries if e.key == "iam:UpdateAccessKey"]
    cuts = [e.at for e in entries if e.key == "iam:PutRolePolicy"]
    if len(update) != 1 or len(cuts) != 3:
        raise RuntimeError(f"expected 1 UpdateAccessKey and 3 PutRolePolicy, saw {len(update)} and {len(cuts)}: "
                           f"{finished.stdout[-2000:]}")
    return update[0] - started, max(cuts) - update[0]


def measure(trials: int, *, verbose: bool = False) -> tuple[float, float]:
    compile_rotator()
    aws = start_aws()
    try:
        _in_account(aws, SECOND, "iam").create_role(RoleName="rotator", AssumeRolePolicyDocument=TRUST)
        env = aws_environment(aws)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp, "rotator.toml")
            config.write_text(f'[service]\ndatabase_url = "sqlite:///{tmp}/rotator.db"\n'
                              '[aws]\nregion = "us-east-1"\naudit_regions = ["us-east-1"]\n'
                              f'[[aws.accounts]]\nname = "second"\nrole_arn = "arn:aws:iam::{SECOND}:role/rotator"\n')
            containment, cut = [], []
            for trial in range(trials + 1):
                key_id = _attack(aws)
                aws.faults.add(Fault(match=".*", latency=LATENCY))
                try:
                    contained, last_cut = _one(aws, [ROTATOR, "revoke", "--config", str(config), "--json",
                                                     "--key", key_id], env)
                finally:
                    aws.faults.clear()
                if trial:  # the first round warms the OS file cache and creates the database
                    containment.append(contained)
                    cut.append(last_cut)
                if verbose:
                    print(f"  trial {trial}: containment {contained * 1000:.0f} ms, T0 → last role cut "
                          f"{last_cut * 1000:.0f} ms", file=sys.stderr)
    finally:
        aws.stop()
    return statistics.median(containment), statistics.median(cut)


def main(argv: list[str] | None = None) -> str:
    args = parse_trials(argv, description=__doc__.splitlines()[0], default=5)
    containment_s, cut_s = measure(args.trials, verbose=args.verbose)
    line = (f"role cut latency: T0 → last of 3 role sessions (2 accounts, {LATENCY * 1000:.0f} ms injected) "
            f"{cut_s * 1000:.0f} ms vs containment of the key alone {containment_s * 1000:.0f} ms "
            f"(median of {args.trials}) -> ratio {cut_s / containment_s:.2f}x")
    print(line)
    return line


if __name__ == "__main__":
    main()
