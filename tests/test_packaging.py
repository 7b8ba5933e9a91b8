"""The wheel must carry every package and the migrations (`rotator db upgrade` runs from an installed copy)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_rotator_package_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "rotator").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert on_disk - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert {"rotator._migrations", "rotator._migrations.versions"} <= listed


def test_migrations_ship_as_a_package() -> None:
    assert (ROOT / "migrations" / "env.py").is_file()
    assert (ROOT / "migrations" / "versions" / "0001_initial.py").is_file()
    assert (ROOT / "migrations" / "script.py.mako").is_file()
