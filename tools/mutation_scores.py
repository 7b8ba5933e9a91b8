"""Per-module mutation scores from the results `mutmut run` left in mutants/, as a Markdown table, followed by
every mutant that no test detected (with the line it changes), so that each can be killed or argued equivalent.

    python tools/mutation_scores.py                          every module in [tool.mutmut] only_mutate
    python tools/mutation_scores.py rotator/domain.py        only the named modules (path or dotted name)
    python tools/mutation_scores.py --fail-under 85          exit 1 when a module scores below 85 %

`./dev mutate` runs mutmut and then this script. Run it from the project root. It reads mutmut's own result files
(`mutants/<module>.meta`: mutant name → exit code of the test run) and names statuses the way the installed mutmut
does, so the numbers are the ones `mutmut browse` shows.

score = detected / checked, where detected counts mutants the tests killed, mutants that made the tests time out
(the mutant loops; the run did not pass), and mutants the type checker rejected; checked leaves out mutants not yet
run and mutants skipped by pragma. "no tests" (no unit test runs the function) counts as undetected.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import tomllib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MUTANTS = Path("mutants")
DETECTED = frozenset({"killed", "timeout", "caught by type check"})
UNCHECKED = frozenset({"not checked", "skipped", "check was interrupted by user"})
COLUMNS = ("killed", "timeout", "survived", "no tests")


@dataclass(frozen=True)
class ModuleScore:
    path: str
    statuses: dict[str, str]  # mutant name → mutmut's status

    @property
    def counts(self) -> Counter[str]:
        return Counter(self.statuses.values())

    @property
    def checked(self) -> int:
        return sum(n for status, n in self.counts.items() if status not in UNCHECKED)

    @property
    def detected(self) -> int:
        return sum(n for status, n in self.counts.items() if status in DETECTED)

    @property
    def percent(self) -> float:
        return 100.0 * self.detected / self.checked if self.checked else 0.0

    def undetected(self) -> list[str]:
        return sorted((name for name, status in self.statuses.items()
                       if status not in DETECTED | UNCHECKED), key=_natural)

    def timed_out(self) -> list[str]:
        return sorted((name for name, status in self.statuses.items() if status == "timeout"), key=_natural)


def _natural(mutant: str) -> tuple[str, int]:
    function, _, number = mutant.rpartition("__mutmut_")
    return function, int(number) if number.isdigit() else -1


def configured_modules(pyproject: Path = Path("pyproject.toml")) -> list[str]:
    config = tomllib.loads(pyproject.read_text("utf-8")).get("tool", {}).get("mutmut", {})
    return [str(p) for p in config.get("only_mutate", [])]


def module_path(name: str) -> str:
    """'rotator/domain.py', 'rotator.domain' or 'domain' (when unambiguous) → 'rotator/domain.py'."""
    wanted = name.removeprefix("./") if name.endswith(".py") else name.replace(".", "/") + ".py"
    candidates = [m for m in configured_modules() if m == wanted or m.endswith("/" + wanted)]
    if len(candidates) != 1:
        raise SystemExit(f"mutation_scores: {name!r} is not exactly one of the mutated modules {configured_modules()}")
    return candidates[0]


def mutant_pattern(path: str) -> str:
    """The `mutmut run` argument that selects every mutant of one module ('rotator.domain.*')."""
    return path.removesuffix(".py").replace("/", ".") + ".*"


def load(path: str) -> ModuleScore | None:
    from mutmut.stats import status_by_exit_code

    meta = MUTANTS / (path + ".meta")
    if not meta.exists():
        return None
    codes: dict[str, int | None] = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
    return ModuleScore(path, {name: status_by_exit_code[code] for name, code in codes.items()})


def table(scores: Sequence[ModuleScore]) -> list[str]:
    lines = ["| module | " + " | ".join(COLUMNS) + " | other | detected / checked | score |",
             "|---|" + "---:|" * (len(COLUMNS) + 3)]
    for score in scores:
        counts = score.counts
        other = score.checked - sum(counts[c] for c in COLUMNS)
        cells = [str(counts[c]) for c in COLUMNS] + [str(other), f"{score.detected} / {score.checked}",
                                                    f"{score.percent:.1f} %"]
        lines.append(f"| `{score.path}` | " + " | ".join(cells) + " |")
    return lines


def changed_lines(path: str, mutant: str) -> list[str]:
    """The lines a mutant changes, as '-'/'+' pairs with the line number in the source file."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(mutant, path=path).splitlines()
    source = Path(path).read_text("utf-8").splitlines()
    first, last = _function_span(path, mutant)
    out = []
    for line in diff:
        if line.startswith(("---", "+++", "@@")) or not line.startswith(("-", "+")):
            continue
        where = ""
        if line.startswith("-"):
            # the diff shows the function dedented (a method loses its class indentation)
            numbers = [i + 1 for i in range(first - 1, last) if source[i].strip() == line[1:].strip()]
            where = f"L{numbers[0]}" if numbers else ""
        out.append(f"    {where:>5} {line[0]} {line[1:].strip()}")
    return out


def _function_span(path: str, mutant: str) -> tuple[int, int]:
    """First and last source line of the function a mutant belongs to (the whole file when not found)."""
    mangled = mutant.rpartition("__mutmut_")[0].rpartition(".")[2]
    parts = mangled.split("ǁ")  # mutmut names a method xǁClassǁmethod and a function x_function
    wanted = (parts[1], parts[2]) if len(parts) == 3 else (None, mangled.removeprefix("x_"))
    tree = ast.parse(Path(path).read_text("utf-8"))
    for owner, node in _functions(tree.body, None):
        if (owner, node.name) == wanted:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return start, node.end_lineno or start
    return 1, len(Path(path).read_text("utf-8").splitlines())


def _functions(body: Iterable[ast.stmt], owner: str | None) -> Iterable[tuple[str | None, ast.FunctionDef]]:
    for node in body:
        if isinstance(node, ast.FunctionDef):
            yield owner, node
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node.body, node.name)


def report(scores: Sequence[ModuleScore], *, diffs: bool) -> list[str]:
    lines = table(scores)
    for score in scores:
        for title, names in (("undetected", score.undetected()), ("timed out (counted as detected)",
                                                                  score.timed_out())):
            if not names:
                continue
            lines += ["", f"{score.path}: {len(names)} {title}"]
            for name in names:
                lines.append(f"  {name}  [{score.statuses[name]}]")
                if diffs:
                    lines += changed_lines(score.path, name)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="paths or dotted names; default: [tool.mutmut] only_mutate")
    parser.add_argument("--no-diff", action="store_true", help="list undetected mutants by name only")
    parser.add_argument("--fail-under", type=float, metavar="PCT", help="exit 1 if a module scores below PCT")
    parser.add_argument("--patterns", action="store_true",
                        help="print the `mutmut run` arguments that select the modules, and exit")
    args = parser.parse_args(argv)
    paths = [module_path(m) for m in args.modules] or configured_modules()
    if args.patterns:
        print(" ".join(mutant_pattern(p) for p in paths))
        return 0
    scores = [s for p in paths if (s := load(p)) is not None and s.checked]
    if not scores:
        print("mutation_scores: no results in mutants/; run `./dev mutate` first", file=sys.stderr)
        return 2
    print("\n".join(report(scores, diffs=not args.no_diff)))
    below = [s.path for s in scores if args.fail_under is not None and s.percent < args.fail_under]
    if below:
        print(f"\nbelow {args.fail_under:g} %: {', '.join(below)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
