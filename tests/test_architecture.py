"""The shape of the house: import-linter's contracts (pyproject.toml) hold and would catch a violation, no
import circle, no stray module at the top of the package, subpackage faces empty, nothing running at import
time, and a CLI that starts without loading any SDK."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rotator"
SDKS = ("boto3", "botocore", "gitlab", "slack_sdk", "sqlalchemy", "alembic", "moto", "psycopg", "werkzeug")
# The modules that may sit at the top of the package: pure rules, the error tree, the ports, and the shared
# mechanisms every feature uses. Everything else lives in a feature package.
TOP_LEVEL = {"__init__.py", "__main__.py", "domain.py", "errors.py", "ports.py", "leases.py", "ratelimit.py",
             "logs.py"}
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=project, capture_output=True, text=True,
                          timeout=300, check=False, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(project)})


def test_the_import_contracts_hold() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("planted, broken", [
    # A feature reaching up into the composition root.
    ("rotator/rotation/_planted.py", "from rotator.wiring.root import Root\n"),
    # A use case talking to an SDK directly.
    ("rotator/incident/_planted.py", "import boto3\n"),
    # The CLI building an adapter itself.
    ("rotator/cli/_planted.py", "from rotator.adapters.slack import SlackNotifier\n"),
])
def test_a_planted_violation_breaks_a_contract(tmp_path: Path, planted: str, broken: str) -> None:
    shutil.copytree(PACKAGE, tmp_path / "rotator", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / planted).write_text(broken)
    done = _lint_imports(tmp_path)
    assert done.returncode == 1 and "_planted" in done.stdout, done.stdout[-3000:]


def test_no_stray_module_at_the_top_of_the_package() -> None:
    stray = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in TOP_LEVEL)
    assert stray == [], f"put these in a feature package: {stray}"


def test_subpackage_faces_import_nothing() -> None:
    """Cold start and containment speed depend on it: importing rotator.incident must not import the playbook."""
    faces = [p for p in PACKAGE.rglob("__init__.py") if "sandbox" not in p.parts and p.parent != PACKAGE]
    assert faces
    for face in faces:
        assert _imports(ast.parse(face.read_text())) == [], f"{face.relative_to(ROOT)} imports something"


def test_no_import_circle_between_modules() -> None:
    """grimp's graph of rotator (what import-linter reads), searched for a cycle between two modules. Imports
    made only for type checking are left out: they never run."""
    import grimp

    graph = grimp.build_graph("rotator", cache_dir=None, exclude_type_checking_imports=True)
    modules = sorted(m for m in graph.modules if not m.startswith("rotator.sandbox"))
    cycles = []
    for module in modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported != module and imported.startswith("rotator.") \
                    and graph.chain_exists(importer=imported, imported=module):
                cycles.append((module, imported))
    assert cycles == [], cycles[:10]


def test_domain_uses_the_standard_library_only() -> None:
    names = _imports(ast.parse((PACKAGE / "domain.py").read_text()))
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
