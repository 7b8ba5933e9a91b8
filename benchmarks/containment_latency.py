"""Containment latency: process start → UpdateAccessKey arriving at the AWS front, against the true floor.

`rotator revoke --key ID` of an untracked key, with one account configured, against the least any tool must do:
a bare boto3 script that asks iam:GetAccessKeyLastUsed for the user and calls iam:UpdateAccessKey, on one IAM
client. Both run as fresh processes against the sandbox AWS front; each trial seeds a new user and key, and the
two sides alternate so machine noise hits both alike. Goal: ratio <= 1.15x, median of at least 9 trials.

    python -m benchmarks.containment_latency [--trials N]
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

GOAL = 1.15
# The floor: with one account, IAM alone names the key's user; nothing else is needed before the deactivation.
BARE_SCRIPT = """\
import sys
import boto3
key_id = sys.argv[1]
iam = boto3.session.Session().client("iam")
user = iam.get_access_key_last_used(AccessKeyId=key_id)["UserName"]
iam.update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")
"""


def _new_key(iam: Any) -> str:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    iam.create_user(UserName=name)
    return str(iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"])


def _update_arrival(aws: AwsSandbox) -> float:
    """When the front logged the UpdateAccessKey (it logs each call as it answers it)."""
    arrivals = [entry.at for entry in aws.log.entries() if entry.key == "iam:UpdateAccessKey"]
    if len(arrivals) != 1:
        raise RuntimeError(f"expected one UpdateAccessKey, the front saw {len(arrivals)}")
    return arrivals[0]


def _one(aws: AwsSandbox, command: list[str], env: dict[str, str]) -> float:
    aws.log.clear()
    started = time.time()
    finished = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=120)
    if finished.returncode != 0:
        raise RuntimeError(f"{command[:3]} exited {finished.returncode}: {finished.stderr[-2000:]}")
    return _update_arrival(aws) - started


def measure(trials: int, *, verbose: bool = False) -> tuple[float, float]:
    compile_rotator()
    aws = start_aws()
    try:
        env = aws_environment(aws)
        iam = boto3.client("iam", endpoint_url=aws.url, region_name="us-east-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing")
        with tempfile.TemporaryDirectory() as tmp:
            bare = Path(tmp, "bare.py")
            bare.write_text(BARE_SCRIPT)
            config = Path(tmp, "rotator.toml")
            # Only [aws], as a responder may have it; the store does not exist (an untracked key).
            config.write_text(f'[service]\ndatabase_url = "sqlite:///{tmp}/none.db"\n[aws]\nregion = "us-east-1"\n')
            rotator_times, bare_times = [], []
            for trial in range(trials + 1):
                sides = [("rotator", [ROTATOR, "revoke", "--config", str(config), "--no-audit", "--key"]),
                         ("bare", [sys.executable, str(bare)])]
                if trial % 2:
                    sides.reverse()
                for name, command in sides:
                    elapsed = _one(aws, [*command, _new_key(iam)], env)
                    if trial:  # the first round warms the OS file cache for both sides
                        (rotator_times if name == "rotator" else bare_times).append(elapsed)
                    if verbose:
                        print(f"  trial {trial} {name}: {elapsed * 1000:.0f} ms", file=sys.stderr)
    finally:
        aws.stop()
    return statistics.median(rotator_times), statistics.median(bare_times)


def main(argv: list[str] | None = None) -> str:
    args = parse_trials(argv, description=__doc__.splitlines()[0], default=9)
    rotator_s, bare_s = measure(args.trials, verbose=args.verbose)
    ratio = rotator_s / bare_s
    line = (f"containment latency: rotator revoke {rotator_s * 1000:.0f} ms vs bare boto3 {bare_s * 1000:.0f} ms "
            f"(median of {args.trials}) -> ratio {ratio:.2f}x (goal <= {GOAL}x) {'OK' if ratio <= GOAL else 'MISSED'}")
    print(line)
    return line


if __name__ == "__main__":
    main()
