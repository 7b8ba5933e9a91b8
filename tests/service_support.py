"""Helpers for the service tests: a fleet of credentials seeded into the sandbox, made due, and a config
for `rotator run` against it.

IAM users and keys are created through boto3 (so the AWS front registers the keys as AWS would); the
GitLab variables are seeded in-process through the emulator's state, which is much faster for
hundreds of projects. Keys are made old by setting moto's CreateDate: there is no API for that, and a
rotation is only due once the key is older than rotate_every.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.core.utils import utcnow
from moto.iam.models import iam_backends
from sqlalchemy import make_url

from rotator.adapters.db.store import SqlStore
from rotator.domain import Phase
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import aws_client, client_env
from tests.sandbox_support import ROTATOR


def http_get(url: str, timeout: float = 10) -> tuple[int, str]:
    """(status, body) of a GET to the service's endpoints; an error status is an answer here, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def key_created(store: SqlStore, credential: str) -> Callable[[], bool]:
    """A predicate: the credential's rotation has journaled its new key (and sits in verify, when STS is slow)."""
    def created() -> bool:
        journal = store.open_journal(credential)
        return journal is not None and journal.phase is Phase.CREATED
    return created


@dataclass(frozen=True)
class Seeded:
    name: str
    iam_user: str
    project: str
    key_id: str
    secret: str


def seed_fleet(sandbox: Sandbox, count: int, *, prefix: str, age: timedelta = timedelta(days=40)) -> list[Seeded]:
    """``count`` credentials, each an IAM user under /ci/ with one key ``age`` old, held by one project."""
    urls = sandbox.urls()
    iam = aws_client(urls, "iam")

    def one(index: int) -> Seeded:
        user = f"{prefix}-user-{index}"
        iam.create_user(UserName=user, Path="/ci/")
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return Seeded(f"{prefix}-{index}", user, f"fleet/{prefix}-{index}", key["AccessKeyId"],
                      key["SecretAccessKey"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        seeded = list(pool.map(one, range(count)))
    state = sandbox.gitlab.state  # type: ignore[attr-defined]  # the emulator's in-process state
    for item in seeded:
        state.add_project(item.project)
        state.set_variable("project", item.project, "AWS_SECRET_ACCESS_KEY", item.secret, masked=True,
                           hidden=True, protected=True)
        state.set_variable("project", item.project, "AWS_ACCESS_KEY_ID", item.key_id, masked=True, protected=True)
    age_keys([item.iam_user for item in seeded], age)
    return seeded


def age_keys(users: Iterable[str], age: timedelta) -> None:
    """Pretend every key of ``users`` was created ``age`` ago (moto keeps naive UTC datetimes)."""
    backend = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
    for user in users:
        for key in backend.get_user(user).access_keys:
            key.create_date = utcnow() - age


def service_config(sandbox: Sandbox, seeded: Sequence[Seeded], *, database_url: str, tick: str = "1s",
                   lease_ttl: str = "30s", stop_timeout: str = "20s", listen: str = "127.0.0.1:0",
                   policy: Mapping[str, str] | None = None) -> str:
    """A config for `rotator run`: every secret named by *_env, GitLab's client-side rate lifted."""
    urls = sandbox.urls()
    settings = {"rotate_every": "30d", "grace": "0s", "delete_after": "0s", "verify_timeout": "30s",
                **(policy or {})}
    lines = [
        "[service]", f'database_url = "{database_url}"', 'state_key_env = "ROTATOR_STATE_KEY"',
        f'listen = "{listen}"', f'tick = "{tick}"', f'lease_ttl = "{lease_ttl}"', f'stop_timeout = "{stop_timeout}"',
        "", "[aws]", 'region = "us-east-1"', "iam_requests_per_second = 1000.0",
        "", "[gitlab]", f'url = "{urls["gitlab_url"]}"', 'token_env = "ROTATOR_GITLAB_TOKEN"',
        "requests_per_second = 1000.0",
        "", "[policy]", *(f'{key} = "{value}"' for key, value in settings.items()),
    ]
    for item in seeded:
        lines += ["", "[[credentials]]", f'name = "{item.name}"', f'iam_user = "{item.iam_user}"',
                  "[[credentials.targets]]", f'project = "{item.project}"']
    return "\n".join(lines) + "\n"


@contextmanager
def own_database(pg_url: str) -> Iterator[str]:
    """A PostgreSQL database of its own on ``pg_url``'s server (for tests that run several processes on
    one database, or drop it), dropped afterwards."""
    admin = make_url(pg_url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    database = f"rotator_svc_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
        try:
            yield make_url(pg_url).set(database=database).render_as_string(hide_password=False)
        finally:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def drop_database(url: str) -> None:
    admin = make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE "{make_url(url).database}" WITH (FORCE)')


def service_env(sandbox: Sandbox, state_key: str) -> dict[str, str]:
    env = client_env(sandbox.urls(), state_key=state_key)
    env.pop("ROTATOR_CONFIG", None)
    return env


def create_access_key_calls(sandbox: Sandbox) -> Counter[str]:
    """Successful iam:CreateAccessKey calls per user name, from the AWS front's CloudTrail record."""
    calls: Counter[str] = Counter()
    for event in sandbox.aws.events(region="us-east-1"):
        if event.get("eventName") == "CreateAccessKey" and not event.get("errorCode"):
            calls[str((event.get("requestParameters") or {}).get("userName"))] += 1
    return calls


def gitlab_key_id(sandbox: Sandbox, project: str) -> str | None:
    variable = sandbox.gitlab.state.get_variable("project", project, "AWS_ACCESS_KEY_ID")  # type: ignore[attr-defined]
    return None if variable is None else str(variable.value)


def key_ids(user: str) -> dict[str, str]:
    """The user's keys in moto: key id → Active | Inactive."""
    backend = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
    return {key.access_key_id: key.status for key in backend.get_user(user).access_keys}


# --- `rotator run` as a child process ------------------------------------------------------------------


class ServiceProcess:
    """`rotator run` in a child process; its JSON log lines are collected as they come."""

    def __init__(self, config: Path, env: Mapping[str, str], *extra: str, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen([ROTATOR, "run", "--config", str(config), *extra], env=dict(env),
                                        stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def lines(self) -> list[dict[str, Any]]:
        records = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                record = {"event": raw}
            records.append(record if isinstance(record, dict) else {"event": raw})
        return records

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.process.poll() is not None:
                raise AssertionError(f"rotator run exited ({self.process.returncode}) while waiting for {what}:\n"
                                     + self.log_path.read_text(errors="replace")[-4000:])
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n"
                                     + self.log_path.read_text(errors="replace")[-4000:])
            time.sleep(0.1)

    def listen_url(self, timeout: float = 30) -> str:
        self.wait_for(lambda: bool(self.events("service started")), timeout, "the service to start")
        return str(self.events("service started")[0]["listen"])

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()
