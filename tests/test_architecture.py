"""The shape DESIGN §4 promises: SDKs only in adapters (and the emulators), imports pointing down, nothing
running at import time, and a CLI that starts without loading any SDK."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rotator"
SDKS = ("boto3", "botocore", "gitlab", "slack_sdk", "sqlalchemy", "alembic", "moto", "psycopg", "werkzeug")
# Modules allowed to import SDKs: adapters, the emulators, and the wiring/CLI entry points (lazily only).
SDK_HOMES = ("rotator/adapters/", "rotator/sandbox/")
USE_CASES = ("domain", "ports", "errors", "rotation", "rotation_support", "publishing", "planning", "batch",
             "revoke", "audit", "audit_analysis", "discovery")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(tree: ast.AST, *, top_level_only: bool) -> list[str]:
    nodes = tree.body if top_level_only and isinstance(tree, ast.Module) else list(ast.walk(tree))
    names: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_sdks_are_imported_only_by_adapters_and_emulators(path: Path) -> None:
    relative = str(path.relative_to(ROOT))
    if relative.startswith(SDK_HOMES):
        return
    tree = ast.parse(path.read_text())
    # Top-level SDK imports are for adapters only; the CLI/bootstrap may import adapters lazily.
    offending = [name for name in _imports(tree, top_level_only=True) if name.split(".")[0] in SDKS]
    assert offending == [], f"{relative} imports {offending} at module level"


@pytest.mark.parametrize("name", USE_CASES)
def test_use_cases_never_import_adapters_or_sdks(name: str) -> None:
    path = PACKAGE / f"{name}.py"
    if not path.exists():
        pytest.skip(f"rotator/{name}.py does not exist")
    names = _imports(ast.parse(path.read_text()), top_level_only=False)
    bad = [n for n in names if n.split(".")[0] in SDKS or n.startswith(("rotator.adapters", "rotator.cli",
                                                                       "rotator.wiring.root", "rotator.sandbox"))]
    assert bad == [], f"rotator/{name}.py reaches outward: {bad}"


def test_domain_uses_the_standard_library_only() -> None:
    names = _imports(ast.parse((PACKAGE / "domain.py").read_text()), top_level_only=False)
    assert all(n.split(".")[0] in sys.stdlib_module_names or n == "__future__" for n in names), names


def test_importing_every_module_starts_nothing() -> None:
    """Importing the whole package starts no thread, connects nowhere and reads no config.
    (urllib3 opens and binds a socket at import to probe IPv6; a connect is what would be ours.)"""
    script = """
import importlib, pkgutil, socket, threading
opened = []
real_socket = socket.socket
class Spy(real_socket):
    def connect(self, address):
        opened.append(address)
        return super().connect(address)
socket.socket = Spy
import rotator
for info in pkgutil.walk_packages(rotator.__path__, "rotator."):
    importlib.import_module(info.name)
assert threading.active_count() == 1, threading.enumerate()
assert opened == [], opened
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/", timeout=120,
                          check=False, env={"PATH": "/usr/bin:/bin", "ROTATOR_CONFIG": "/nonexistent/rotator.toml"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_rotator_help_loads_no_sdk() -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "rotator", "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0
    loaded = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert loaded & set(SDKS) == set(), sorted(loaded & set(SDKS))
    assert "pydantic" not in loaded and "rich" not in loaded


@pytest.mark.parametrize("command", ["run", "rotate", "revoke", "audit", "status", "discover", "check", "db",
                                     "sandbox", "demo", "plan-oidc", "retire-credential"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    done = subprocess.run([sys.executable, "-m", "rotator", command, "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Example" in done.stdout, f"`rotator {command} --help` shows no example"
