"""Printing for `rotate`: live step lines (or a progress bar for many credentials), the final table, JSON."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rotator.cli.common import print_json
from rotator.rotation.plan import Plan
from rotator.rotation.results import Outcome, RotationResult

if TYPE_CHECKING:
    from rotator.rotation.fleet import FleetReport

STEP_LINES_UP_TO = 10  # more credentials than this: a progress bar, and a line only for those not ok

OUTCOME_STYLE = {
    Outcome.ROTATED: "green", Outcome.WAITING: "cyan", Outcome.NOT_DUE: "dim",
    Outcome.HELD: "yellow", Outcome.FAILED: "red", Outcome.BUSY: "magenta", Outcome.BROKEN: "bold red",
}


class Progress(Protocol):
    def step(self, credential: str, step: str, detail: str) -> None: ...

    def result(self, result: RotationResult) -> None: ...

    def __enter__(self) -> Progress: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None: ...


def progress_for(count: int, *, enabled: bool) -> Progress:
    """Step lines for a few credentials; a live progress bar for many (stderr in both cases)."""
    return LiveProgress(enabled=enabled) if count <= STEP_LINES_UP_TO else BarProgress(count, enabled=enabled)


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

    def __enter__(self) -> LiveProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        return None


class BarProgress:
    """A rich progress bar with a running count per outcome; a line above it for each credential not ok."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self._total = total
        self._enabled = enabled
        self._lock = threading.Lock()
        self._counts: Counter[Outcome] = Counter()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> BarProgress:
        if self._enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("rotating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TextColumn("{task.description}"), console=Console(stderr=True, highlight=False))
            self._task = self._bar.add_task("", total=self._total)
            self._bar.start()
        return self

    def step(self, credential: str, step: str, detail: str) -> None:
        return None  # hundreds of credentials: the bar and the final table say enough

    def result(self, result: RotationResult) -> None:
        if self._bar is None:
            return
        with self._lock:
            self._counts[result.outcome] += 1
            counts = " ".join(f"[{OUTCOME_STYLE[o]}]{n} {o.value}[/]" for o, n in sorted(self._counts.items()))
            self._bar.update(self._task, advance=1, description=counts)
            if not result.outcome.ok:
                style = OUTCOME_STYLE[result.outcome]
                self._bar.console.print(f"[bold]{escape(result.credential)}[/]  [{style}]{result.outcome.value}[/]  "
                                        f"{escape(result.message)}", soft_wrap=True)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()


def print_results(results: Sequence[RotationResult], *, as_json: bool, fleet: FleetReport | None = None,
                  interrupted: tuple[str, list[str]] | None = None) -> None:
    """``interrupted``: (signal name, credentials not started) when a signal stopped the run."""
    if as_json:
        payload: dict[str, Any] = {"results": [
            {**asdict(r), "outcome": r.outcome.value, "state": r.state.value, "ok": r.outcome.ok} for r in results
        ], "ok": all(r.outcome.ok for r in results) and interrupted is None}
        if fleet is not None:
            payload["fleet"] = fleet_summary(fleet)
        if interrupted is not None:
            payload["interrupted"] = {"signal": interrupted[0], "not_started": interrupted[1]}
        print_json(payload)
        return
    table = Table(title="rotation results", title_justify="left")
    for column in ("credential", "outcome", "key", "detail"):
        table.add_column(column, overflow="fold")
    for r in results:
        style = OUTCOME_STYLE[r.outcome]
        table.add_row(escape(r.credential), f"[{style}]{r.outcome.value}[/]", r.new_key_id or r.key_id or "-",
                      escape(r.message))
    Console(file=sys.stdout, width=max(Console().width, 120)).print(table)
    if interrupted is not None:
        signal_name, not_started = interrupted
        Console(file=sys.stdout, highlight=False, width=max(Console().width, 120)).print(
            f"[yellow]interrupted by {signal_name}; not started: {escape(', '.join(not_started)) or 'none'}[/] "
            "(run `rotator rotate` again to finish)", soft_wrap=True)
    failed = [r for r in results if not r.outcome.ok]
    if failed:
        Console(stderr=True).print(f"[red]{len(failed)} of {len(results)} credential(s) need attention[/]")


def fleet_summary(report: FleetReport) -> dict[str, Any]:
    seconds = report.elapsed.total_seconds()
    return {
        "counts": dict(report.counts), "seconds": round(seconds, 3),
        "credentials_per_second": round(len(report.results) / seconds, 3) if seconds > 0 else None,
        "owner_messages": [{"channel": c, "error": e} for c, e in report.owner_posts],
        "security_summary_error": report.security_post,
        "rate_limits": [{"party": b.name, "configured_rate": b.configured_rate, "requests": b.acquired,
                         "throttled": b.throttled, "waited_seconds": round(b.waited_seconds, 3)}
                        for b in report.buckets],
        "emergency": report.emergency,
        "still_exposed": [{"credential": e.credential, "active_key_ids": list(e.active_key_ids), "reason": e.reason,
                           "finish": e.finish_commands()} for e in report.still_exposed],
        "not_verified": [{"credential": e.credential, "verify_error": e.verify_error, "reason": e.reason,
                          "finish": e.finish_commands()} for e in report.not_verified],
        "not_started": list(report.not_started),
        "ok": report.ok,
    }


def print_fleet_summary(report: FleetReport) -> None:
    summary = fleet_summary(report)
    console = Console(stderr=True, highlight=False)
    rate = summary["credentials_per_second"]
    posted = sum(1 for _, error in report.owner_posts if error is None)
    unposted = len(report.owner_posts) - posted
    console.print(f"{len(report.results)} credential(s) in {summary['seconds']}s"
                  + (f" ({rate}/s)" if rate else "") + f"; owners told in {posted} batched message(s)"
                  + (f"; {unposted} could not be posted (see Slack below)" if unposted else ""), soft_wrap=True)
    for party in summary["rate_limits"]:
        console.print(f"  {party['party']}: {party['requests']} request(s) at ≤{party['configured_rate']}/s, "
                      f"throttled {party['throttled']} time(s)")
    if report.emergency:
        if not report.exposures:
            # still_exposed asked IAM about every credential in scope, not-started ones included.
            console.print("[green]every exposed key is Inactive (IAM ListAccessKeys)[/]")
        for exposure in report.still_exposed:
            console.print(f"[red]{escape(exposure.credential)}: still Active {', '.join(exposure.active_key_ids)}[/]: "
                          f"{escape(exposure.reason)}", soft_wrap=True)
            for command in exposure.finish_commands():
                console.print(f"    {escape(command)}", soft_wrap=True)
        for exposure in report.not_verified:
            console.print(f"[yellow]{escape(exposure.credential)}: NOT VERIFIED: IAM could not be asked "
                          f"({escape(exposure.verify_error or '')})[/]: {escape(exposure.reason)}", soft_wrap=True)
            for command in exposure.finish_commands():
                console.print(f"    {escape(command)}", soft_wrap=True)
    problems = [f"{c}: {e}" for c, e in report.owner_posts if e] + (
        [f"security summary: {report.security_post}"] if report.security_post else [])
    for problem in problems:
        console.print(f"[yellow]Slack: {escape(problem)}[/]")


def print_plans(plans: Sequence[Plan], *, as_json: bool) -> None:
    if as_json:
        print_json({"dry_run": True, "plans": [asdict(p) for p in plans]})
        return
    console = Console(file=sys.stdout, highlight=False)
    for plan in plans:
        console.print(f"[bold]{escape(plan.credential)}[/]: {plan.action} (dry run: nothing will be changed)")
        for number, step in enumerate(plan.steps, 1):
            console.print(f"  {number}. {escape(step)}", soft_wrap=True)
