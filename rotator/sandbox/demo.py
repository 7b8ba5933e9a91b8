"""`rotator demo`: the guided tour, against the emulators, with the real CLI.

Every step runs the `rotator` command as a subprocess, exactly as an operator would type it, against
the sandbox this process hosts. Nothing needs an AWS, GitLab or Slack account.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table

from rotator.sandbox.runner import Sandbox, start_sandbox
from rotator.sandbox.seed import (
    CredentialSeed,
    TargetSeed,
    client_env,
    config_toml,
    pair_works,
    seed_credentials,
    stage_attack,
)

SEEDS = [
    CredentialSeed("payments-deploy", "ci-payments-deploy", (
        TargetSeed("project", "payments/api"),
        TargetSeed("group", "payments", environment_scope="production"),
    ), owners=("#team-payments",)),
    CredentialSeed("data-warehouse", "ci-data-warehouse", (
        TargetSeed("group", "data/platform/warehouse"),
    ), owners=("#team-data",)),
    CredentialSeed("billing-export", "ci-billing-export", (
        TargetSeed("project", "finance/billing-export"),
    ), owners=("#team-finance",)),
]
SCHEDULED = CredentialSeed("nightly-etl", "ci-nightly-etl", (TargetSeed("project", "data/etl"),),
                           owners=("#team-data",))


class Demo:
    def __init__(self, console: Console, *, service_seconds: int, keep: bool = False) -> None:
        self.console = console
        self.service_seconds = service_seconds
        self.keep = keep
        self.workdir = Path(tempfile.mkdtemp(prefix="rotator-demo-"))
        self.sandbox: Sandbox | None = None
        self.env: dict[str, str] = {}
        self.config = self.workdir / "rotator.toml"

    # --- plumbing ----------------------------------------------------------------------------------------
    def heading(self, text: str) -> None:
        self.console.print()
        self.console.print(Rule(f"[bold cyan]{text}[/]", align="left"))

    def rotator(self, *args: str, show: bool = True, check: bool = False) -> subprocess.CompletedProcess[str]:
        command = ["rotator", *args]
        if show:
            self.console.print(f"[bold green]$[/] {' '.join(command).replace(str(self.workdir), '$DEMO')}")
        executable = str(Path(sys.executable).with_name("rotator"))
        done = subprocess.run([executable, *args], env=self.env, text=True, capture_output=True, timeout=300,
                              check=False)
        if show:
            for stream in (done.stderr, done.stdout):
                if stream.strip():
                    self.console.print(stream.rstrip(), markup=False, highlight=False)
            self.console.print(f"[dim](exit code {done.returncode})[/]")
        if check and done.returncode != 0:
            raise SystemExit(f"demo step failed: rotator {' '.join(args)} exited {done.returncode}")
        return done

    @property
    def box(self) -> Sandbox:
        assert self.sandbox is not None
        return self.sandbox

    # --- the tour ----------------------------------------------------------------------------------------
    def run(self) -> int:
        try:
            self.start()
            self.seed()
            self.rotator("check", "--config", str(self.config), check=True)
            self.rotator("status", "--config", str(self.config))
            self.rotate()
            self.discover()
            self.leak()
            if self.service_seconds > 0:
                self.service()
            self.heading("done")
            if self.keep:
                self.console.print(f"Config, database and reports are kept in {self.workdir}")
            else:
                self.console.print("Config, database and reports were in a temporary folder, removed now "
                                   "(`rotator demo --keep` keeps them)")
            return 0
        finally:
            if self.sandbox is not None:
                self.sandbox.stop()

    def start(self) -> None:
        self.heading("1. start the emulators (AWS via moto + a CloudTrail front, GitLab, Slack)")
        self.sandbox = start_sandbox()
        self.box.wait_until_healthy()
        for name, url in self.box.urls().items():
            if not name.endswith("token"):
                self.console.print(f"  {name:<18} {url}")
        self.env = client_env(self.box.urls())
        self.env["COLUMNS"] = "140"

    def seed(self) -> None:
        self.heading("2. seed IAM users with keys, and GitLab projects/groups holding them as CI/CD variables")
        seeded = seed_credentials(self.box.urls(), [*SEEDS, SCHEDULED])
        self.seeded = {s.name: s for s in seeded}
        table = Table(show_edge=False)
        for column in ("credential", "IAM user", "key id", "GitLab targets", "owners"):
            table.add_column(column)
        for s in seeded:
            where = ", ".join(f"{t.kind} {t.path or ''} [{t.environment_scope}]" for t in s.targets)
            table.add_row(s.name, s.iam_user, s.key_id, where, ", ".join(s.owners))
        self.console.print(table)
        self.console.print("Secrets are stored masked + hidden + protected; the demo never prints them.")
        text = config_toml(self.box.urls(), seeded[:3], database_url=f"sqlite:///{self.workdir / 'rotator.db'}",
                           policy={"rotate_every": "30d", "grace": "0s", "delete_after": "0s"})
        text += (f'\n[[credentials]]\nname = "{SCHEDULED.name}"\niam_user = "{SCHEDULED.iam_user}"\n'
                 f'owners = ["#team-data"]\nrotate_every = "25s"\n[[credentials.targets]]\n'
                 f'project = "{SCHEDULED.targets[0].path}"\n')
        text = text.replace('state_key_env = "ROTATOR_STATE_KEY"',
                            'state_key_env = "ROTATOR_STATE_KEY"\ntick = "5s"\nlisten = "127.0.0.1:0"')
        self.config.write_text(text)
        self.console.print(f"Wrote {self.config} (tokens come from the environment, never the file).")

    def rotate(self) -> None:
        self.heading("3. rotate a credential live (grace and delete_after are 0s in this demo)")
        name = "payments-deploy"
        self.rotator("rotate", name, "--dry-run", "--force", "--config", str(self.config))
        self.rotator("rotate", name, "--force", "--config", str(self.config), check=True)
        self.show_targets(self.seeded[name])
        self.show_slack(("#team-payments",))
        self.rotator("status", "--config", str(self.config))

    def show_targets(self, seed: CredentialSeed) -> None:
        state: Any = self.box.gitlab
        for target in seed.targets:
            key = state.state.get_variable(target.kind, target.path, "AWS_ACCESS_KEY_ID", target.environment_scope)
            secret = state.state.get_variable(target.kind, target.path, "AWS_SECRET_ACCESS_KEY",
                                              target.environment_scope)
            works = pair_works(self.box.urls(), key.value, secret.value)
            mark = "[green]✔ AWS accepts the pair[/]" if works else "[red]✘ AWS rejects the pair[/]"
            where = escape(f"{target.kind} {target.path} [{target.environment_scope}]")
            self.console.print(f"  {where}: {key.value}  {mark}")

    def show_slack(self, channels: Sequence[str]) -> None:
        self.console.print("[bold]Slack messages the owners received:[/]")
        for message in self.box.slack.messages():
            if message.get("channel") in channels:
                text = str(message.get("text", "")).replace("\n", "\n      ")
                self.console.print(f"  {message.get('channel')}: {text}", markup=False, highlight=False)

    def discover(self) -> None:
        self.heading("4. where are our keys? (read-only inventory of GitLab)")
        self.rotator("discover", "--config", str(self.config))

    def leak(self) -> None:
        self.heading("5. a key leaks: the attacker uses it in two regions, mints a session, creates a user")
        seed = self.seeded["billing-export"]
        minted = stage_attack(self.box, seed)
        self.console.print(f"  attacker used {seed.key_id} and a session key {minted} it minted")
        self.heading("6. contain: rotator revoke --replace (deactivate first, then everything else)")
        out = self.workdir / "incident"
        self.rotator("revoke", "--key", seed.key_id, "--replace", "--reason", "demo: pasted in a public gist",
                     "--output", str(out), "--config", str(self.config))
        self.show_targets(seed)
        self.show_slack(("#security-incidents", "#team-finance"))
        report = next(out.glob("*.md"), None) if out.exists() else None
        if report is not None:
            self.console.print(f"[bold]Incident report ({report.name}):[/]")
            self.console.print(report.read_text(), markup=False, highlight=False)

    def service(self) -> None:
        self.heading(f"7. the service: `rotator run` for {self.service_seconds}s rotates nightly-etl on schedule")
        self.rotator("db", "upgrade", "--config", str(self.config))
        port = _free_port()
        text = self.config.read_text().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"')
        self.config.write_text(text)
        executable = str(Path(sys.executable).with_name("rotator"))
        self.console.print(f"[bold green]$[/] rotator run --config $DEMO/rotator.toml   (metrics on :{port})")
        env = {**self.env, "ROTATOR_LOG_LEVEL": "info"}
        process = subprocess.Popen([executable, "run", "--config", str(self.config)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + self.service_seconds
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        while time.monotonic() < deadline and process.poll() is None:
            for line in iter(process.stdout.readline, ""):
                if "rotation step" in line or "result" in line or "started" in line:
                    self.console.print(f"  [dim]{line.strip()[:200]}[/]", markup=True, highlight=False)
            time.sleep(0.5)
        self.console.print("[bold]/metrics (excerpt):[/]")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                for line in answer.read().decode().splitlines():
                    if line.startswith("rotator_") and "_bucket" not in line and "_created" not in line:
                        self.console.print(f"  {line}", markup=False, highlight=False)
        except OSError as exc:
            self.console.print(f"  /metrics unreachable: {exc}")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        self.console.print(f"[dim](rotator run exited {process.returncode} after SIGTERM)[/]")
        self.rotator("status", "--config", str(self.config))

    def cleanup(self) -> None:
        """Remove the demo's folder, unless it was started with keep=True (it said where the files are)."""
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
