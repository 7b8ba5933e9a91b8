"""Run every benchmark module's ``main()`` in turn and print their ratio lines together at the end.

    python -m benchmarks                        all of them
    python -m benchmarks containment_latency    only the named ones
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _modules() -> list[str]:
    return sorted(info.name for info in pkgutil.iter_modules([str(Path(__file__).parent)])
                  if not info.name.startswith("_"))


def run(names: list[str]) -> int:
    lines: list[str] = []
    failed = 0
    for name in names or _modules():
        module = importlib.import_module(f"benchmarks.{name}")
        entry: Callable[..., Any] | None = getattr(module, "main", None)
        if entry is None:
            continue
        print(f"== {name}", flush=True)
        try:
            # main(argv) gets no arguments (its defaults); a main() without parameters is called as is.
            result = entry([]) if inspect.signature(entry).parameters else entry()
            lines.append(str(result) if result is not None else f"{name}: done (see its output above)")
        except Exception as exc:  # one broken benchmark must not hide the others' numbers
            failed += 1
            lines.append(f"{name}: FAILED: {type(exc).__name__}: {exc}")
    print("\n".join(["", "summary:", *lines]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
