"""Printing for `rotate`: live step lines, the final table, JSON."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rotator.cli.common import print_json
from rotator.planning import Plan
from rotator.rotation import Outcome, RotationResult

OUTCOME_STYLE = {
    Outcome.ROTATED: "green", Outcome.WAITING: "cyan", Outcome.NOT_DUE: "dim",
    Outcome.HELD: "yellow", Outcome.FAILED: "red", Outcome.BUSY: "magenta",
}


class LiveProgress:
    """One line per step as it happens (stderr, so stdout stays the result)."""

    def __init__(self, *, enabled: bool) -> None:
        self._console = Console(stderr=True, highlight=False)
        self._enabled = enabled
        self._lock = threading.Lock()

    def step(self, credential: str, step: str, detail: str) -> None:
        if self._enabled:
            with self._lock:
                self._console.print(f"[bold]{escape(credential)}[/]  {step:<10} {escape(detail)}", soft_wrap=True)

    def result(self, result: RotationResult) -> None:
        if self._enabled:
            style = OUTCOME_STYLE[result.outcome]
            with self._lock:
                self._console.print(f"[bold]{escape(result.credential)}[/]  [{style}]{result.outcome.value}[/]")


def print_results(results: Sequence[RotationResult], *, as_json: bool) -> None:
    if as_json:
        print_json({"results": [
            {**asdict(r), "outcome": r.outcome.value, "state": r.state.value, "ok": r.outcome.ok} for r in results
        ], "ok": all(r.outcome.ok for r in results)})
        return
    table = Table(title="rotation results", title_justify="left")
    for column in ("credential", "outcome", "key", "detail"):
        table.add_column(column, overflow="fold")
    for r in results:
        style = OUTCOME_STYLE[r.outcome]
        table.add_row(escape(r.credential), f"[{style}]{r.outcome.value}[/]", r.new_key_id or r.key_id or "-",
                      escape(r.message))
    Console(file=sys.stdout, width=max(Console().width, 120)).print(table)
    failed = [r for r in results if not r.outcome.ok]
    if failed:
        Console(stderr=True).print(f"[red]{len(failed)} of {len(results)} credential(s) need attention[/]")


def print_plans(plans: Sequence[Plan], *, as_json: bool) -> None:
    if as_json:
        print_json({"dry_run": True, "plans": [asdict(p) for p in plans]})
        return
    console = Console(file=sys.stdout, highlight=False)
    for plan in plans:
        console.print(f"[bold]{escape(plan.credential)}[/]: {plan.action} (dry run: nothing will be changed)")
        for number, step in enumerate(plan.steps, 1):
            console.print(f"  {number}. {escape(step)}", soft_wrap=True)
