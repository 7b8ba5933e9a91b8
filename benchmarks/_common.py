"""Helpers several benchmarks share. The leading underscore keeps ``python -m benchmarks`` from running it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the sandbox pulls in moto: cli_cold_start, which needs none of it, stays light
    from rotator.sandbox.aws import AwsSandbox
    from rotator.sandbox.runner import Sandbox

# The installed console script, as an operator runs it.
ROTATOR = str(Path(sys.executable).with_name("rotator"))


def compile_rotator() -> None:
    """Byte-compile rotator as an install does (pip writes .pyc files for every module it installs). With
    PYTHONDONTWRITEBYTECODE set, a working tree's edited modules would otherwise be compiled from source again in
    every trial, which measures the checkout, not rotator."""
    import compileall

    import rotator

    compileall.compile_dir(str(Path(rotator.__file__).parent), quiet=1)


def parse_trials(argv: Sequence[str] | None, *, description: str, default: int) -> argparse.Namespace:
    """The options of a benchmark that repeats one trial: --trials N and --verbose."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--trials", type=int, default=default)
    parser.add_argument("--verbose", action="store_true", help="print every trial on stderr")
    return parser.parse_args(argv)


def aws_environment(aws: AwsSandbox) -> dict[str, str]:
    """The environment of a process pointed at the AWS front alone, with dummy credentials and no proxy (a proxy
    would add its own latency to what is measured)."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update({"AWS_ENDPOINT_URL": aws.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "NO_PROXY": "127.0.0.1,localhost"})
    return env


def seed_projects(sandbox: Sandbox, prefix: str, count: int, *, project_path: Callable[[int], str],
                  hidden_secret: bool = False) -> list[tuple[str, str, str]]:
    """``count`` IAM users with one key each (through boto3, so the AWS front registers the keys as AWS would),
    and a project per credential holding the pair as two variables (through the emulator's state: the benchmarks
    are not about seeding). Returns (credential name, IAM user, project path) per credential."""
    from rotator.sandbox.seed import aws_client

    iam = aws_client(sandbox.urls(), "iam")
    gitlab: Any = sandbox.gitlab

    def one(index: int) -> tuple[str, str, str]:
        user = f"ci-{prefix}-{index}"
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        project = project_path(index)
        with gitlab.state.lock:
            if gitlab.state.find_project(project)[0] is None:
                gitlab.state.add_project(project)
        gitlab.state.set_variable("project", project, "AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"], masked=True,
                                  protected=True, **({"hidden": True} if hidden_secret else {}))
        gitlab.state.set_variable("project", project, "AWS_ACCESS_KEY_ID", key["AccessKeyId"], masked=True,
                                  protected=True)
        return f"{prefix}-{index}", user, project

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(count)))
