"""The small things an operator meets first, through the real CLI: --config, -v and -q before or after the
command, "did you mean", the log level documented, NO_COLOR, `./dev` advertising only what exists, and the
demo keeping its folder when it says so. No emulator: GitLab is a closed port, AWS has no credentials."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from rich.console import Console

from rotator.sandbox.demo import Demo
from tests.outage_support import free_port
from tests.sandbox_support import ROTATOR, run_rotator

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "rotator.toml"
    path.write_text(f'''[service]
database_url = "sqlite:///{tmp_path / 'rotator.db'}"
[aws]
region = "us-east-1"
[gitlab]
url = "http://127.0.0.1:{free_port()}"
timeout = "3s"
[[credentials]]
name = "payments"
iam_user = "ci-payments"
[[credentials.targets]]
project = "payments/api"
''')
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "ROTATOR_GITLAB_TOKEN": "glpat-" + "x" * 20, "ROTATOR_STATE_KEY": Fernet.generate_key().decode()}


def _run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_rotator(*args, env=env, cwd=cwd, timeout=60)


def test_config_is_accepted_before_or_after_the_command(config: Path, env: dict[str, str], tmp_path: Path) -> None:
    before = _run("--config", str(config), "incidents", "--json", env=env, cwd=tmp_path)
    after = _run("incidents", "--json", "--config", str(config), env=env, cwd=tmp_path)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert json.loads(before.stdout) == json.loads(after.stdout) == {"incidents": [], "open": 0}
    (tmp_path / "elsewhere").mkdir()
    neither = _run("incidents", env=env, cwd=tmp_path / "elsewhere")
    assert neither.returncode == 2 and "rotator.toml" in neither.stderr  # it did look for ./rotator.toml


@pytest.mark.parametrize(("args", "info", "warning"), [
    (("check",), False, True),
    (("-v", "check"), True, True), (("check", "-v"), True, True),
    (("-q", "check"), False, False), (("check", "--quiet"), False, False),
])
def test_verbosity_before_or_after_the_command(config: Path, env: dict[str, str], tmp_path: Path,
                                               args: tuple[str, ...], info: bool, warning: bool) -> None:
    done = _run(*args, "--config", str(config), env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # GitLab's port is closed, AWS has no credentials
    assert ('"event": "probe"' in done.stderr) is info
    assert ("GitLab unreachable (connection refused), retry 1/1 in 2 s" in done.stderr) is warning


def test_a_mistyped_command_gets_a_suggestion(env: dict[str, str], tmp_path: Path) -> None:
    for typo, meant in (("rotat", "rotate"), ("stauts", "status"), ("incident", "incidents")):
        done = _run(typo, env=env, cwd=tmp_path)
        assert done.returncode == 2 and f"Did you mean '{meant}'" in done.stderr, done.stderr
    nothing = _run("xyzzy", env=env, cwd=tmp_path)
    assert nothing.returncode == 2 and "Did you mean" not in nothing.stderr and "rotator --help" in nothing.stderr


def test_the_log_level_is_documented_and_settable(config: Path, env: dict[str, str], tmp_path: Path) -> None:
    helped = _run("--help", env=env, cwd=tmp_path).stdout
    for words in ("-v, --verbose", "-q, --quiet", "ROTATOR_LOG_LEVEL", "[service] log_level"):
        assert words in helped, words
    example = (REPO / "config.example.toml").read_text()
    assert "-v (info), -vv (debug), -q (errors only) or $ROTATOR_LOG_LEVEL" in example
    quiet = _run("check", "--config", str(config), env={**env, "ROTATOR_LOG_LEVEL": "error"}, cwd=tmp_path)
    assert "GitLab unreachable" not in quiet.stderr
    for command in ("check", "run"):
        wrong = _run(command, "--config", str(config), env={**env, "ROTATOR_LOG_LEVEL": "loud"}, cwd=tmp_path)
        assert wrong.returncode == 2 and "ROTATOR_LOG_LEVEL" in wrong.stderr, (command, wrong.stderr)
        assert "Traceback" not in wrong.stderr


def _on_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> str:
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(args, env=env, cwd=cwd, stdout=follower, stderr=subprocess.DEVNULL)
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        process.wait(timeout=60)
    finally:
        os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_check_honours_no_color(config: Path, env: dict[str, str], tmp_path: Path) -> None:
    command = [ROTATOR, "check", "--config", str(config)]
    coloured = _on_a_terminal(command, env, tmp_path)
    plain = _on_a_terminal(command, {**env, "NO_COLOR": "1"}, tmp_path)
    assert "\x1b[" in coloured and "✘" in coloured  # on a terminal, the marks are coloured
    assert "\x1b[" not in plain and "✘ gitlab GET /user" in plain


def test_dev_advertises_only_options_that_exist(env: dict[str, str], tmp_path: Path) -> None:
    script = (REPO / "dev").read_text()
    advertised = set(re.findall(r"\./dev demo (--[a-z-]+)", script))
    assert advertised, "the script shows how to pass options to the demo"
    helped = _run("demo", "--help", env=env, cwd=tmp_path).stdout
    assert {option for option in advertised if option not in helped} == set()


@pytest.mark.parametrize("keep", [True, False])
def test_the_demo_keeps_its_folder_only_when_it_says_so(keep: bool) -> None:
    tour = Demo(Console(file=open(os.devnull, "w")), service_seconds=0, keep=keep)  # noqa: SIM115
    (tour.workdir / "rotator.db").write_text("")
    tour.cleanup()
    assert tour.workdir.exists() is keep
    if keep:
        (tour.workdir / "rotator.db").unlink()
        tour.workdir.rmdir()
