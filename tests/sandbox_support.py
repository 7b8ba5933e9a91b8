"""Helpers for tests that rotate through the real adapters against the sandbox emulators.

Pairs are read back from the GitLab emulator's state (hidden values included: GitLab never returns
them over HTTP) and checked by authenticating through the AWS front, which rejects Inactive, deleted and
wrongly-signed keys.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rotator.sandbox.runner import Sandbox, start_sandbox
from rotator.sandbox.seed import CredentialSeed, TargetSeed, aws_client, pair_works, seed_credentials
from rotator.sandbox.server import Fault

# The installed console script, as an operator runs it (not `python -m rotator`).
ROTATOR = str(Path(sys.executable).with_name("rotator"))


def run_rotator(*args: str, env: Mapping[str, str], cwd: Path | None = None,
                timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``rotator ARGS`` as a fresh process, its output captured; the caller asserts on the exit code."""
    return subprocess.run([ROTATOR, *args], env=dict(env), cwd=cwd, text=True, capture_output=True,
                          timeout=timeout, check=False)


@contextmanager
def running_sandbox() -> Iterator[Sandbox]:
    """Every emulator, with GitLab's per-user rate limit lifted: the tests are not about it, and a fleet of
    rotations would hit it within seconds."""
    sandbox = start_sandbox()
    try:
        sandbox.wait_until_healthy()
        state: Any = sandbox.gitlab
        state.state.rate_limit_per_period = 1_000_000
        yield sandbox
    finally:
        sandbox.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def seed_one(sandbox: Sandbox, *, name: str | None = None, targets: Sequence[TargetSeed] | None = None,
             owners: tuple[str, ...] = ("#team-payments",)) -> CredentialSeed:
    name = name or unique("cred")
    targets = targets or (TargetSeed("project", f"{name}/api"),
                          TargetSeed("group", f"{name}-group", environment_scope="production"))
    return seed_credentials(sandbox.urls(), [CredentialSeed(name, f"ci-{name}", tuple(targets), owners)])[0]


def target_pair(sandbox: Sandbox, target: TargetSeed) -> tuple[str | None, str | None]:
    state: Any = sandbox.gitlab
    key = state.state.get_variable(target.kind, target.path, "AWS_ACCESS_KEY_ID", target.environment_scope)
    secret = state.state.get_variable(target.kind, target.path, "AWS_SECRET_ACCESS_KEY", target.environment_scope)
    return (key.value if key else None, secret.value if secret else None)


def every_target_works(sandbox: Sandbox, seed: CredentialSeed) -> list[str]:
    """The targets whose pair AWS does NOT accept (empty list: invariant 1 holds)."""
    broken = []
    for target in seed.targets:
        key_id, secret = target_pair(sandbox, target)
        if not key_id or not secret or not pair_works(sandbox.urls(), key_id, secret):
            broken.append(f"{target.kind} {target.path}: {key_id}")
    return broken


def user_keys(sandbox: Sandbox, user: str) -> dict[str, str]:
    iam = aws_client(sandbox.urls(), "iam")
    return {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}


def max_keys_ever(sandbox: Sandbox, user: str) -> int:
    """Replay the CloudTrail record of successful CreateAccessKey / DeleteAccessKey calls for one user."""
    count = peak = 0
    events = sorted(sandbox.aws.events(region="us-east-1"), key=lambda e: e.get("eventTime", ""))
    for event in events:
        params = event.get("requestParameters") or {}
        if params.get("userName") != user or event.get("errorCode"):
            continue
        if event["eventName"] == "CreateAccessKey":
            count += 1
        elif event["eventName"] == "DeleteAccessKey":
            count -= 1
        peak = max(peak, count)
    return peak


def writes_in(sandbox: Sandbox) -> dict[str, list[str]]:
    """Every request that could change something, per emulator, from their request logs."""
    aws_reads = ("Get", "List", "Describe", "Lookup")
    aws = [e.key for e in sandbox.aws.log.entries() if not e.key.split(":", 1)[-1].startswith(aws_reads)]
    gitlab: Any = sandbox.gitlab
    gl = [e.key for e in gitlab.log.entries() if not e.key.startswith("GET ")]
    slack = [e.key for e in sandbox.slack.log.entries() if e.key not in ("auth.test", "api.test")]
    return {"aws": aws, "gitlab": gl, "slack": slack}


def clear_logs(sandbox: Sandbox) -> None:
    gitlab: Any = sandbox.gitlab
    for log in (sandbox.aws.log, gitlab.log, sandbox.slack.log):
        log.clear()


def variable_put(target: TargetSeed, variable: str = "AWS_ACCESS_KEY_ID") -> str:
    """A regular expression for the request-log key of a PUT of one of this target's variables."""
    assert target.path is not None
    scope = "projects" if target.kind == "project" else "groups"
    return f"^PUT /api/v4/{scope}/{re.escape(quote(target.path, safe=''))}/variables/{variable}$"


def refuse_key_id_after_its_preflight(sandbox: Sandbox, target: TargetSeed) -> threading.Thread:
    """Make GitLab refuse (403) the target's key-id variable once the preflight PUT of it has passed: a role
    change between the preflight and the pair. The secret PUT is slowed down at the emulator so the refusal is
    in place before the key-id PUT arrives (GitLab answers 403 {"message":"403 Forbidden"} for a role that may
    not write the variable: reference/gitlab-variables-api.md section 4)."""
    gitlab: Any = sandbox.gitlab
    key_put = variable_put(target)
    gitlab.faults.add(Fault(match=variable_put(target, "AWS_SECRET_ACCESS_KEY"), latency=0.5))

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(re.search(key_put, e.key) and e.status == 200 for e in gitlab.log.entries()):
                gitlab.faults.add(Fault(match=key_put, status=403, message="403 Forbidden"))
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread
