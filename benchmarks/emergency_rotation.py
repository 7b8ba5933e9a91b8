"""Emergency rotation: 1,000 credentials x 2 variables, 50 ms of latency on every call at the emulators.

`rotator rotate --all --emergency --concurrency C` runs as the operator would run it (a CLI process), against the
sandbox emulators (in this process) with a 50 ms delay injected on every AWS, GitLab and Slack call, once on
PostgreSQL and once on SQLite (each with credentials of its own). Reported, per database:

- throughput / ceiling. The ceiling is what the configuration allows at best: the lowest of
  C / (calls per credential x 50 ms) (every worker always waiting on a call), GitLab requests/s / GitLab
  calls per credential, and IAM requests/s / IAM calls per credential. Calls per credential are counted in
  the emulators' request logs, not assumed. Goal >= 0.8.
- throughput / a sequential loop (the same command with --concurrency 1 on a sample). Goal >= 10x.
- every credential ends with a working pair: each target's pair, read from the GitLab emulator's state
  (hidden values included), authenticates through the AWS front, which refuses Inactive and deleted keys;
  and every old (exposed) key is Inactive, as IAM lists it, despite the policy's one-hour grace.

Defaults: concurrency 16, [gitlab] 120 requests/s, [aws] 80 IAM requests/s, both databases (--database
postgresql or sqlite for one; PostgreSQL is a fresh database on ROTATOR_TEST_PG_URL).

    python -m benchmarks.emergency_rotation [--credentials N] [--sequential N] [--concurrency C]
                                            [--gitlab-rps R] [--iam-rps R] [--latency S] [--database D]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks._common import ROTATOR, seed_projects
from rotator.sandbox.runner import Sandbox, start_sandbox
from rotator.sandbox.seed import aws_client, client_env, pair_works
from rotator.sandbox.server import Fault

GOAL_CEILING = 0.8
GOAL_SEQUENTIAL = 10.0
PG_URL_ENV = "ROTATOR_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def seed(sandbox: Sandbox, prefix: str, count: int) -> list[tuple[str, str, str]]:
    """Projects spread over 20 team groups, their secrets hidden, as a large GitLab instance holds them."""
    return seed_projects(sandbox, prefix, count, project_path=lambda index: f"{prefix}/team-{index % 20}/svc-{index}",
                         hidden_secret=True)


def config_text(sandbox: Sandbox, credentials: Sequence[tuple[str, str, str]], database_url: str, *,
                gitlab_rps: float, iam_rps: float) -> str:
    urls = sandbox.urls()
    lines = ["[service]", f'database_url = "{database_url}"', 'lease_ttl = "10m"',
             "[aws]", 'region = "us-east-1"', f"iam_requests_per_second = {iam_rps}",
             "[gitlab]", f'url = "{urls["gitlab_url"]}"', f"requests_per_second = {gitlab_rps}",
             "[slack]", f'api_url = "{urls["slack_api_url"]}"', 'security_channel = "#security-incidents"',
             "messages_per_second = 20.0",
             # The usual grace: --emergency ignores it. Old keys stay Inactive as evidence (never deleted here).
             "[policy]", 'grace = "1h"', 'delete_after = "7d"', 'verify_timeout = "60s"']
    for index, (name, user, project) in enumerate(credentials):
        # Ten owner channels: each gets one batched message however many of its credentials rotate.
        lines += ["[[credentials]]", f'name = "{name}"', f'iam_user = "{user}"', f'owners = ["#team-{index % 10}"]',
                  "[[credentials.targets]]", f'project = "{project}"']
    return "\n".join(lines) + "\n"


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh PostgreSQL database when the server answers (what several replicas would use), else SQLite."""
    if kind != "sqlite":
        import psycopg
        from sqlalchemy import make_url

        try:
            admin_url = make_url(os.environ.get(PG_URL_ENV, DEFAULT_PG_URL))
            name = f"rotator_bench_{uuid.uuid4().hex[:10]}"
            conninfo = admin_url.set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            try:
                yield admin_url.set(database=name).render_as_string(hide_password=False)
            finally:
                with psycopg.connect(conninfo, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (OSError, psycopg.Error) as exc:
            print(f"PostgreSQL unavailable ({type(exc).__name__}); using SQLite", flush=True)
    with tempfile.TemporaryDirectory(prefix="rotator-bench-") as tmp:
        yield f"sqlite:///{tmp}/rotator.db"


def run_rotation(sandbox: Sandbox, config: Path, concurrency: int) -> dict[str, Any]:
    for emulator in (sandbox.aws, sandbox.gitlab, sandbox.slack):
        emulator.log.clear()  # type: ignore[attr-defined]
    env = client_env(sandbox.urls())
    env["ROTATOR_LOG_LEVEL"] = "error"
    upgraded = subprocess.run([ROTATOR, "db", "upgrade", "--config", str(config)], env=env, capture_output=True,
                              text=True, check=False)
    if upgraded.returncode != 0:
        raise RuntimeError(f"db upgrade failed: {upgraded.stderr[-2000:]}")
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    emulators_before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    done = subprocess.run([ROTATOR, "rotate", "--all", "--emergency", "--json", "--concurrency", str(concurrency),
                           "--config", str(config)], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    emulators_after = resource.getrusage(resource.RUSAGE_SELF)
    emulators_cpu = (emulators_after.ru_utime - emulators_before.ru_utime) + (
        emulators_after.ru_stime - emulators_before.ru_stime)
    try:
        payload = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"rotate failed (exit {done.returncode}): {done.stderr[-3000:]}") from None
    gitlab: Any = sandbox.gitlab
    calls = Counter()
    for entry in sandbox.aws.log.entries():
        calls["iam" if entry.key.startswith("iam:") else "sts" if entry.key.startswith("sts:") else "aws"] += 1
    calls["gitlab"] = len(gitlab.log.entries())
    calls["slack"] = len(sandbox.slack.log.entries())
    return {"payload": payload, "wall": wall, "calls": calls, "exit": done.returncode, "cpu": cpu,
            "emulators_cpu": emulators_cpu}


def working_pairs(sandbox: Sandbox, credentials: Sequence[tuple[str, str, str]]) -> tuple[int, int]:
    """(credentials whose pair works through the AWS front, credentials whose only Active key is that one)."""
    state: Any = sandbox.gitlab
    urls = sandbox.urls()
    iam = aws_client(urls, "iam")

    def works(credential: tuple[str, str, str]) -> tuple[bool, bool]:
        key = state.state.get_variable("project", credential[2], "AWS_ACCESS_KEY_ID")
        secret = state.state.get_variable("project", credential[2], "AWS_SECRET_ACCESS_KEY")
        working = bool(key and secret and pair_works(urls, key.value, secret.value))
        listed = iam.list_access_keys(UserName=credential[1])["AccessKeyMetadata"]
        active = [k["AccessKeyId"] for k in listed if k["Status"] == "Active"]
        return working, bool(key) and active == [key.value] and len(listed) == 2

    with ThreadPoolExecutor(max_workers=16) as pool:
        checks = list(pool.map(works, credentials))
    return sum(w for w, _ in checks), sum(c for _, c in checks)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.emergency_rotation")
    parser.add_argument("--credentials", type=int, default=1000)
    parser.add_argument("--sequential", type=int, default=25, help="credentials in the sequential sample")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--gitlab-rps", type=float, default=120.0)
    parser.add_argument("--iam-rps", type=float, default=80.0)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--database", choices=("both", "postgresql", "sqlite"), default="both")
    args = parser.parse_args(argv)
    kinds = ("postgresql", "sqlite") if args.database == "both" else (args.database,)

    sandbox = start_sandbox()
    sandbox.wait_until_healthy()
    gitlab: Any = sandbox.gitlab
    gitlab.state.rate_limit_per_period = 10_000_000  # the client-side buckets are what is measured
    lines = []
    try:
        for kind in kinds:
            lines.append(one_database(sandbox, args, kind))
    finally:
        sandbox.stop()
    return "\n".join(lines)


def one_database(sandbox: Sandbox, args: argparse.Namespace, kind: str) -> str:
    with tempfile.TemporaryDirectory(prefix="rotator-bench-") as tmp, database(kind) as fleet_db, \
            database(kind) as sequential_db:
        prefix = f"bench-{uuid.uuid4().hex[:6]}"
        print(f"[{kind}] seeding {args.credentials} + {args.sequential} credentials ...", flush=True)
        fleet = seed(sandbox, prefix, args.credentials)
        sample = seed(sandbox, f"{prefix}-seq", args.sequential)
        fleet_config = Path(tmp, "fleet.toml")
        fleet_config.write_text(config_text(sandbox, fleet, fleet_db, gitlab_rps=args.gitlab_rps,
                                            iam_rps=args.iam_rps))
        sequential_config = Path(tmp, "sequential.toml")
        sequential_config.write_text(config_text(sandbox, sample, sequential_db, gitlab_rps=args.gitlab_rps,
                                                 iam_rps=args.iam_rps))
        for emulator in (sandbox.aws, sandbox.gitlab, sandbox.slack):
            emulator.faults.add(Fault(match=".*", latency=args.latency))  # type: ignore[attr-defined]
        try:
            print(f"[{kind}] sequential loop over {args.sequential} credentials ...", flush=True)
            sequential = run_rotation(sandbox, sequential_config, 1)
            print(f"[{kind}] emergency rotation of {args.credentials} credentials, concurrency {args.concurrency} ...",
                  flush=True)
            parallel = run_rotation(sandbox, fleet_config, args.concurrency)
        finally:
            for emulator in (sandbox.aws, sandbox.gitlab, sandbox.slack):
                emulator.faults.clear()  # type: ignore[attr-defined]
        working, closed = working_pairs(sandbox, fleet)
    return report(args, kind, fleet_count=len(fleet), sequential=sequential, parallel=parallel, working=working,
                  closed=closed)


def report(args: argparse.Namespace, kind: str, *, fleet_count: int, sequential: dict[str, Any],
           parallel: dict[str, Any], working: int, closed: int) -> str:
    outcomes = Counter(r["outcome"] for r in parallel["payload"]["results"])
    seconds = float(parallel["payload"]["fleet"]["seconds"])
    throughput = fleet_count / seconds
    sequential_rate = args.sequential / float(sequential["payload"]["fleet"]["seconds"])
    per = {party: count / fleet_count for party, count in parallel["calls"].items()}
    calls_per_credential = per.get("iam", 0) + per.get("sts", 0) + per.get("gitlab", 0) + per.get("aws", 0)
    ceilings = {
        "concurrency": args.concurrency / (calls_per_credential * args.latency),
        "gitlab": args.gitlab_rps / per["gitlab"],
        "iam": args.iam_rps / per["iam"],
    }
    bound, ceiling = min(ceilings.items(), key=lambda item: item[1])
    throttled = {b["party"]: b["throttled"] for b in parallel["payload"]["fleet"]["rate_limits"]}
    exposed = len(parallel["payload"]["fleet"]["still_exposed"])
    print(f"[{kind}] outcomes: {dict(outcomes)}; exit {parallel['exit']}; still exposed: {exposed}")
    print(f"[{kind}] calls per credential: " + ", ".join(f"{p} {n:.2f}" for p, n in sorted(per.items())))
    print(f"[{kind}] ceilings (credentials/s): " + ", ".join(f"{p} {c:.2f}" for p, c in ceilings.items())
          + f" -> {bound} bound at {ceiling:.2f}/s")
    print(f"[{kind}] emergency: {fleet_count} in {seconds:.1f}s ({throughput:.2f}/s; CLI wall "
          f"{parallel['wall']:.1f}s); sequential: {sequential_rate:.3f}/s; throttled: {throttled}")
    print(f"[{kind}] CPU: rotator {parallel['cpu'] / fleet_count * 1000:.0f} ms/credential in the emergency run, "
          f"{sequential['cpu'] / args.sequential * 1000:.0f} in the sequential one (start-up included); "
          f"emulators {parallel['emulators_cpu']:.1f}s")
    print(f"[{kind}] working pairs through the AWS front: {working}/{fleet_count}; old key Inactive and the new "
          f"one the only Active key: {closed}/{fleet_count}")
    ratio_ceiling = throughput / ceiling
    ratio_sequential = throughput / sequential_rate
    verdict = ("ok" if ratio_ceiling >= GOAL_CEILING and ratio_sequential >= GOAL_SEQUENTIAL
               and working == closed == fleet_count and parallel["exit"] == 0 and not exposed else "BELOW GOAL")
    return (f"emergency_rotation [{kind}]: {throughput:.2f} credentials/s = {ratio_ceiling:.2f} of the {bound} ceiling "
            f"(goal >= {GOAL_CEILING}), {ratio_sequential:.1f}x a sequential loop (goal >= {GOAL_SEQUENTIAL:g}x), "
            f"{working}/{fleet_count} working pairs, {closed}/{fleet_count} old keys Inactive: {verdict}")


if __name__ == "__main__":
    print(main(sys.argv[1:]))
