"""Event containment latency: an AWS Health exposure event's arrival in the queue → UpdateAccessKey Inactive
arriving at the AWS front.

`rotator run` (a child process, its event consumer long-polling the queue) against a bare boto3 consumer (a
child process long-polling its own queue and doing only that: receive, parse, iam:GetAccessKeyLastUsed for the
user, iam:UpdateAccessKey, delete). Both are warm (one untimed event each first) and use the same long-poll
wait; each trial seeds a new user and key, and the two sides alternate so machine noise hits both alike. The
clock starts just before the event is put into the queue and stops at the front's log entry of the
UpdateAccessKey. rotator does more before deactivating, by design: it reads what was done before for the key
(the exposure ledger, the key's incidents, the store's owner: a report already handled, or a key a human
contained, is not acted on again) and finds the key's account with sts:GetAccessKeyInfo; the per-key lease
comes only after the deactivation.

    python -m benchmarks.event_containment [--trials N]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet

from benchmarks._common import ROTATOR
from rotator.adapters.db.store import upgrade_to_head
from rotator.sandbox.runner import Sandbox, start_sandbox
from rotator.sandbox.seed import CredentialSeed, TargetSeed, aws_client, client_env, config_toml, seed_credentials

BARE_CONSUMER = """\
import json, sys
import boto3
queue_url = sys.argv[1]
session = boto3.session.Session()
sqs, iam = session.client("sqs"), session.client("iam")
print("ready", flush=True)
while True:
    for message in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=20).get("Messages", []):
        event = json.loads(message["Body"])
        for entity in event["detail"]["affectedEntities"]:
            key_id = entity["entityValue"]
            user = iam.get_access_key_last_used(AccessKeyId=key_id)["UserName"]
            iam.update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
"""


def put_event(sandbox: Sandbox, queue_url: str, key_id: str) -> None:
    """The sandbox puts an AWS_RISK_CREDENTIALS_EXPOSED event into the queue as an EventBridge rule does."""
    sandbox.aws.inject_health_event(queue_url, key_id)


def update_arrivals(sandbox: Sandbox) -> list[float]:
    return [entry.at for entry in sandbox.aws.log.entries() if entry.key == "iam:UpdateAccessKey"]


def one_trial(sandbox: Sandbox, queue_url: str, key_id: str, timeout: float = 60.0) -> float:
    seen = len(update_arrivals(sandbox))
    began = time.time()
    put_event(sandbox, queue_url, key_id)
    deadline = time.monotonic() + timeout
    while True:
        arrivals = update_arrivals(sandbox)
        if len(arrivals) > seen and sandbox.aws.key_status(key_id) == "Inactive":
            return arrivals[seen] - began
        if time.monotonic() > deadline:
            raise RuntimeError(f"{key_id} was not deactivated within {timeout:.0f}s")
        time.sleep(0.002)


def wait_empty(sandbox: Sandbox, queue_url: str, timeout: float = 120.0) -> None:
    """The previous event fully handled (rotator's replacement and audit included) before the next trial."""
    sqs = aws_client(sandbox.urls(), "sqs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        if attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0":
            return
        time.sleep(0.1)
    raise RuntimeError("the queue did not empty")


def main(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.event_containment")
    parser.add_argument("--trials", type=int, default=9)
    args = parser.parse_args(argv)
    sandbox = start_sandbox()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        sandbox.wait_until_healthy()
        sandbox.gitlab.state.rate_limit_per_period = 1_000_000  # type: ignore[attr-defined]
        sqs = aws_client(sandbox.urls(), "sqs")
        rotator_queue = sqs.create_queue(QueueName="rotator-exposures")["QueueUrl"]
        bare_queue = sqs.create_queue(QueueName="bare-exposures")["QueueUrl"]
        seeds = seed_credentials(sandbox.urls(), [
            CredentialSeed(f"bench-{i}", f"ci-bench-{i}", (TargetSeed("project", f"bench/api-{i}"),), ("#team",))
            for i in range(args.trials + 1)])
        bare_keys = [seed_credentials(sandbox.urls(), [CredentialSeed(
            f"bare-{i}", f"ci-bare-{i}", (TargetSeed("project", f"bare/api-{i}"),), ("#team",))])[0].key_id
            for i in range(args.trials + 1)]
        env = client_env(sandbox.urls(), state_key=Fernet.generate_key().decode())
        with tempfile.TemporaryDirectory(prefix="rotator-bench-") as tmp:
            database_url = f"sqlite:///{Path(tmp) / 'rotator.db'}"
            upgrade_to_head(database_url)
            config = Path(tmp) / "rotator.toml"
            config.write_text(config_toml(sandbox.urls(), seeds, database_url=database_url,
                                          extra_service={"listen": "127.0.0.1:0", "tick": "30s"})
                              + f'\n[events]\nqueue_url = "{rotator_queue}"\nwait_seconds = 20\n')
            log_path = Path(tmp) / "run.log"
            with log_path.open("wb") as log:
                processes.append(subprocess.Popen([ROTATOR, "run", "--config", str(config)], env=env, stdout=log,
                                                  stderr=subprocess.STDOUT))
            processes.append(subprocess.Popen([sys.executable, "-c", BARE_CONSUMER, bare_queue], env=env,
                                              stdout=subprocess.PIPE))
            assert processes[1].stdout is not None and processes[1].stdout.readline().strip() == b"ready"
            deadline = time.monotonic() + 120
            while '"reading the exposure queue"' not in log_path.read_text():
                if processes[0].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("rotator run did not start:\n" + log_path.read_text()[-3000:])
                time.sleep(0.1)
            # Warm both (first clients, first account lookup), untimed.
            one_trial(sandbox, rotator_queue, seeds[0].key_id)
            wait_empty(sandbox, rotator_queue)
            one_trial(sandbox, bare_queue, bare_keys[0])
            rotator_times, bare_times = [], []
            for trial in range(1, args.trials + 1):
                rotator_times.append(one_trial(sandbox, rotator_queue, seeds[trial].key_id))
                wait_empty(sandbox, rotator_queue)
                bare_times.append(one_trial(sandbox, bare_queue, bare_keys[trial]))
                wait_empty(sandbox, bare_queue)
            processes[0].send_signal(signal.SIGTERM)
            processes[0].wait(timeout=60)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        sandbox.stop()
    ours, bare = statistics.median(rotator_times), statistics.median(bare_times)
    print(f"rotator run:          median {ours * 1000:.1f} ms  ({', '.join(f'{t * 1000:.0f}' for t in rotator_times)})")
    print(f"bare boto3 consumer:  median {bare * 1000:.1f} ms  ({', '.join(f'{t * 1000:.0f}' for t in bare_times)})")
    return (f"event_containment: event in the queue -> key Inactive: rotator run {ours * 1000:.0f} ms, bare boto3 "
            f"consumer {bare * 1000:.0f} ms, ratio {ours / bare:.2f} (median of {args.trials} alternating trials)")


if __name__ == "__main__":
    print(main(sys.argv[1:]))
    sys.exit(0)
