"""Audit throughput: ~20k CloudTrail events over 4 regions, against the slowest single region alone.

The audit looks regions up in parallel, each held to its own LookupEvents rate, so auditing 4 regions
should take about as long as auditing the busiest one. Both runs use the same per-region rate (AWS allows
2 requests/s; the default here is higher to keep the run short, which is the same ratio) against the
sandbox AWS front enforcing that rate, through the real boto3 adapter. Goal: ratio <= 1.2x.

    python -m benchmarks.audit_throughput [--events N] [--rate R]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from rotator.adapters.cloudtrail import cloudtrail_for_session
from rotator.incident.audit.run import run_audit
from rotator.sandbox.aws import start_aws

GOAL = 1.2
KEY_ID = "AKIABENCHMARK0000001"
# us-east-1 is always audited, so it is the busiest region: the single-region run is exactly it.
SHARES = {"us-east-1": 0.32, "eu-west-1": 0.26, "ap-southeast-2": 0.22, "sa-east-1": 0.20}
NAMES = ("DescribeInstances", "ListBuckets", "GetCallerIdentity", "RunInstances", "ListUsers", "PutObject")


def _records(total: int, now: datetime) -> list[dict[str, Any]]:
    records = []
    for region, share in SHARES.items():
        count = int(total * share)
        for index in range(count):
            records.append({
                "eventName": NAMES[index % len(NAMES)], "eventSource": "ec2.amazonaws.com", "awsRegion": region,
                "eventTime": (now - timedelta(seconds=30 + index * 20)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "sourceIPAddress": f"198.51.100.{index % 250}", "userAgent": "aws-cli/2.15",
                "userIdentity": {"type": "IAMUser", "userName": "ci-bench", "accessKeyId": KEY_ID},
            })
    return records


def _timed_audit(url: str, regions: list[str], rate: float, start: datetime, end: datetime) -> tuple[float, int]:
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    trail = cloudtrail_for_session(_EndpointSession(session, url), "us-east-1", rate=rate)
    began = time.perf_counter()
    report = run_audit(trail, KEY_ID, start=start, end=end, regions=regions)
    elapsed = time.perf_counter() - began
    if not report.complete:
        raise RuntimeError(f"the benchmark audit was incomplete: {report.verdict}")
    return elapsed, report.summary.total


class _EndpointSession:
    """A boto3 session whose clients all talk to the sandbox (as AWS_ENDPOINT_URL would)."""

    def __init__(self, session: boto3.Session, url: str) -> None:
        self._session = session
        self._url = url

    def client(self, service: str, **kwargs: Any) -> Any:
        return self._session.client(service, endpoint_url=self._url, **kwargs)  # type: ignore[call-overload]


def measure(total: int, rate: float) -> tuple[float, float, int, int]:
    aws = start_aws()
    try:
        aws.lookup_rate = rate
        now = datetime.now(UTC)
        aws.stage_events(_records(total, now))
        start, end = now - timedelta(days=30), now + timedelta(minutes=1)
        all_regions, found_all = _timed_audit(aws.url, list(SHARES), rate, start, end)
        time.sleep(1.5)  # let the front's per-region buckets refill between the runs
        busiest = max(SHARES, key=lambda region: SHARES[region])
        single, found_single = _timed_audit(aws.url, [busiest], rate, start, end)
    finally:
        aws.stop()
    return all_regions, single, found_all, found_single


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=10.0, help="LookupEvents requests/s per region (AWS: 2)")
    args = parser.parse_args(argv)
    all_regions, single, found_all, found_single = measure(args.events, args.rate)
    ratio = all_regions / single
    line = (f"audit throughput: {found_all} events in {len(SHARES)} regions {all_regions:.1f} s vs busiest region "
            f"alone ({found_single} events) {single:.1f} s at {args.rate:g} req/s per region -> ratio {ratio:.2f}x "
            f"(goal <= {GOAL}x) {'OK' if ratio <= GOAL else 'MISSED'}")
    print(line)
    return line


if __name__ == "__main__":
    main()
