"""Idle service: the memory of `rotator run` with 10,000 credentials, and the time of a tick with nothing due.

Every credential is known to the database and not due for weeks, as in a steady fleet. The sandbox holds
their IAM users and GitLab variables (seeded in-process: 10,000 users through the API would take minutes),
so the drift checks the service runs in the background are real calls.

1. Tick time, in-process: a Service over the same database and config, ticks with nothing due (drift
   checks off, as "nothing due" means), median of many. Goal: <= 100 ms.
2. RSS of a real `rotator run` child process, sampled from /proc while it idles (ticking, serving, drift
   checking, and with [events]: long-polling the exposure queue and looking for AWS quarantine policies on each
   tick), and once more after a /metrics scrape. Goal: <= 150 MB.

    python -m benchmarks.service_idle [--credentials N] [--seconds S] [--ticks T] [--no-events]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.fernet import Fernet
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.iam.models import iam_backends
from sqlalchemy import update

from benchmarks._common import ROTATOR
from rotator.adapters.db.models import CredentialRow
from rotator.adapters.db.store import SqlStore, upgrade_to_head
from rotator.config.settings import load_settings
from rotator.logs import configure_logging
from rotator.sandbox.runner import Sandbox, start_sandbox
from rotator.sandbox.seed import aws_client, client_env
from rotator.service.runner import Service

RSS_GOAL_MB = 150.0
TICK_GOAL_MS = 100.0


def seed(sandbox: Sandbox, count: int) -> None:
    iam = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
    state = sandbox.gitlab.state  # type: ignore[attr-defined]
    for index in range(count):
        iam.create_user("us-east-1", f"idle-user-{index}", path="/ci/")
        key = iam.create_access_key(f"idle-user-{index}")
        project = f"fleet/idle-{index}"
        state.add_project(project)
        state.set_variable("project", project, "AWS_SECRET_ACCESS_KEY", key.secret_access_key, masked=True,
                           hidden=True, protected=True)
        state.set_variable("project", project, "AWS_ACCESS_KEY_ID", key.access_key_id, masked=True, protected=True)


def config_text(sandbox: Sandbox, count: int, database_url: str, queue_url: str | None = None) -> str:
    lines = ["[service]", f'database_url = "{database_url}"', 'listen = "127.0.0.1:0"', 'tick = "5s"',
             "", "[gitlab]", f'url = "{sandbox.urls()["gitlab_url"]}"', "",
             "[policy]", 'rotate_every = "30d"']
    if queue_url is not None:  # the event consumer and the quarantine check, as a deployment with [events] runs
        lines += ["", "[events]", f'queue_url = "{queue_url}"', "wait_seconds = 20"]
    for index in range(count):
        lines += ["", "[[credentials]]", f'name = "idle-{index}"', f'iam_user = "idle-user-{index}"',
                  "[[credentials.targets]]", f'project = "fleet/idle-{index}"']
    return "\n".join(lines) + "\n"


def settle_fleet(database_url: str, config: Path, env: dict[str, str]) -> None:
    """Every credential known, ok, with a key a day old and the next rotation 29 days away."""
    settings = load_settings(str(config), environ=env)
    store = SqlStore.from_url(database_url)
    now = datetime.now(UTC)
    store.sync_credentials(settings.credential_specs(), now)
    with store.engine.begin() as connection:
        connection.execute(update(CredentialRow).values(
            state="ok", key_created_at=now - timedelta(days=1), last_rotated_at=now - timedelta(days=1),
            next_due_at=now + timedelta(days=29), updated_at=now))
    store.close()


def tick_times(config: Path, env: dict[str, str], ticks: int) -> list[float]:
    settings = load_settings(str(config), environ=env)
    service = Service(settings, drift_every=timedelta(days=3650))
    service.prepare()
    try:
        service.tick_once()  # warm-up: first queries, lazily built objects
        seconds = []
        for _ in range(ticks):
            began = time.perf_counter()  # the whole tick as the scheduler runs it, setup included
            summary = service.tick_once()
            seconds.append(time.perf_counter() - began)
            if summary.due or summary.results:
                raise RuntimeError(f"expected nothing due, got {len(summary.due)} due credential(s)")
        return seconds
    finally:
        service.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def idle_process(config: Path, env: dict[str, str], log_path: Path, seconds: float) -> dict[str, float]:
    with log_path.open("wb") as log:
        process = subprocess.Popen([ROTATOR, "run", "--config", str(config)], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        url = ""
        deadline = time.monotonic() + 180
        while not url:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("rotator run did not start:\n" + log_path.read_text()[-3000:])
            for line in log_path.read_text().splitlines():
                if '"service started"' in line:
                    url = json.loads(line)["listen"]
            time.sleep(0.2)
        samples = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append(rss_mb(process.pid))
            time.sleep(0.5)
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
            families = response.read().decode().count("# TYPE rotator_")
        after_scrape = rss_mb(process.pid)
        ticks = [json.loads(line) for line in log_path.read_text().splitlines() if '"event": "tick"' in line]
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    tick_ms = [float(t["duration_ms"]) for t in ticks if not t.get("due")]
    return {"rss_max": max(samples), "rss_last": samples[-1], "rss_after_scrape": after_scrape,
            "ticks": len(ticks), "idle_tick_median_ms": statistics.median(tick_ms) if tick_ms else float("nan"),
            "drift_checks": sum(sum(v for k, v in t.items() if k.startswith("drift_")) for t in ticks),
            "families": families, "exit_code": code}


def main(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service_idle")
    parser.add_argument("--credentials", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to watch the idle process")
    parser.add_argument("--ticks", type=int, default=30, help="in-process ticks to time")
    parser.add_argument("--no-events", action="store_true", help="without [events] (no consumer, no quarantine check)")
    args = parser.parse_args(argv)
    configure_logging("warning", stream=sys.stderr)  # the in-process service's tick lines would drown the numbers

    sandbox = start_sandbox()
    try:
        sandbox.wait_until_healthy()
        began = time.monotonic()
        seed(sandbox, args.credentials)
        print(f"seeded {args.credentials} IAM users and GitLab projects in {time.monotonic() - began:.1f}s",
              flush=True)
        env = client_env(sandbox.urls(), state_key=Fernet.generate_key().decode())
        # The in-process service's AWS clients (the quarantine check) read the process environment, as boto3 does.
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_") or k == "NO_PROXY"})
        with tempfile.TemporaryDirectory(prefix="rotator-bench-") as tmp:
            database_url = f"sqlite:///{Path(tmp) / 'rotator.db'}"
            config = Path(tmp) / "rotator.toml"
            queue_url = None if args.no_events else str(aws_client(sandbox.urls(), "sqs").create_queue(
                QueueName="rotator-exposures")["QueueUrl"])
            config.write_text(config_text(sandbox, args.credentials, database_url, queue_url))
            upgrade_to_head(database_url)
            began = time.monotonic()
            settle_fleet(database_url, config, env)
            print(f"database settled in {time.monotonic() - began:.1f}s", flush=True)

            seconds = tick_times(config, env, args.ticks)
            median_ms = statistics.median(seconds) * 1000
            worst_ms = max(seconds) * 1000
            print(f"tick with nothing due ({args.credentials} credentials, {args.ticks} ticks): "
                  f"median {median_ms:.1f} ms, max {worst_ms:.1f} ms", flush=True)

            idle = idle_process(config, env | {"PYTHONUNBUFFERED": "1"}, Path(tmp) / "run.log", args.seconds)
    finally:
        sandbox.stop()
    print(f"rotator run idle for {args.seconds:.0f}s: RSS max {idle['rss_max']:.1f} MB, last "
          f"{idle['rss_last']:.1f} MB, after a /metrics scrape {idle['rss_after_scrape']:.1f} MB; "
          f"{idle['ticks']} ticks (median {idle['idle_tick_median_ms']:.1f} ms), "
          f"{idle['drift_checks']:.0f} background drift checks, exit code {idle['exit_code']:.0f}")
    rss = max(idle["rss_max"], idle["rss_after_scrape"])
    events = "without [events]" if args.no_events else "with the event consumer and the quarantine check"
    return (f"service_idle ({events}): RSS {rss:.0f} MB (goal <= {RSS_GOAL_MB:.0f} MB, ratio {rss / RSS_GOAL_MB:.2f}); "
            f"tick with nothing due {median_ms:.1f} ms (goal <= {TICK_GOAL_MS:.0f} ms, "
            f"ratio {median_ms / TICK_GOAL_MS:.2f}) with {args.credentials} credentials")


if __name__ == "__main__":
    print(main(sys.argv[1:]))
    sys.exit(0)
