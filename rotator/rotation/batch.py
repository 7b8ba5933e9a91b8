"""Rotate several credentials: each under its own lease, each failing on its own, results reported together.

The one worker pool of rotator: `rotate`, the emergency fleet run, `revoke --replace` and the service's tick
all run credentials through ``rotate_many``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

from rotator.domain import CredentialSpec
from rotator.errors import LeaseLost, RotatorError
from rotator.leases import Lease, busy_message, holding, lease_name
from rotator.rotation.engine import Rotator
from rotator.rotation.results import Outcome, RotationPorts, RotationResult


def rotate_one(ports: RotationPorts, spec: CredentialSpec, *, holder: str, lease_ttl: timedelta,
               force: bool = False, on_step: Callable[[str, str], None] | None = None,
               interrupt: Callable[[], None] | None = None, resume_only: bool = False,
               emergency: bool = False) -> RotationResult:
    """Run one credential under its lease. Before every outside step the database proves the lease's tenure is
    still the current one (and extends it now and then), and every write to the store (journal, history, status)
    first proves it too, extending it; losing it (a
    replica took over after expiry, or an incident preempted) stops this run at a journaled point, as busy.

    ``interrupt`` is called at the same points, before the renewal: raising LeaseLost there (the service
    does when it is told to stop) ends the run at that journaled point too, and the lease is released."""
    name = lease_name(spec.name)
    with holding(ports.store, name, holder, lease_ttl) as lease:
        if lease is None:
            return RotationResult(spec.name, Outcome.BUSY, busy_message(ports.store, name))
        held: Lease = lease

        def guard() -> None:
            if interrupt is not None:
                interrupt()
            if not held.check():
                raise LeaseLost(f"lost the lease on {spec.name} (taken over, or preempted by an incident)",
                                hint="nothing to do: the holder continues from the journal")

        fenced = replace(ports, store=held.fenced_store())
        return Rotator(fenced, spec, force=force, guard=guard, on_step=on_step, resume_only=resume_only,
                       emergency=emergency).run()


def rotate_many(specs: Sequence[CredentialSpec], ports_for: Callable[[CredentialSpec], RotationPorts], *,
                holder: str, lease_ttl: timedelta, concurrency: int = 1, force: bool = False,
                on_result: Callable[[RotationResult], None] | None = None,
                on_step: Callable[[str, str, str], None] | None = None, resume_only: bool = False,
                interrupt: Callable[[], None] | None = None,
                should_start: Callable[[str], bool] = lambda name: True,
                emergency: bool = False) -> list[RotationResult]:
    """Every credential runs; one failure never stops the others. Results come back in input order.

    ``should_start`` is asked with each credential's name just before it starts: once it says no (the
    process is stopping), no new credential starts and the ones not started are left out of the results;
    ``interrupt`` stops the running ones at their next journaled point."""

    def one(spec: CredentialSpec) -> RotationResult | None:
        if not should_start(spec.name):
            return None
        step = None if on_step is None else (lambda name, detail: on_step(spec.name, name, detail))
        try:
            result = rotate_one(ports_for(spec), spec, holder=holder, lease_ttl=lease_ttl, force=force,
                                on_step=step, interrupt=interrupt, resume_only=resume_only, emergency=emergency)
        except RotatorError as exc:  # building the ports failed (e.g. an account role cannot be assumed)
            result = RotationResult(spec.name, Outcome.FAILED, str(exc))
        if on_result is not None:
            on_result(result)
        return result

    if concurrency <= 1 or len(specs) <= 1:
        outcomes = [one(spec) for spec in specs]
    else:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(specs)), thread_name_prefix="rotate") as pool:
            outcomes = list(pool.map(one, specs))
    return [result for result in outcomes if result is not None]


def recover_interrupted(specs: Sequence[CredentialSpec], selected: Sequence[CredentialSpec],
                        has_open_journal: Callable[[str], bool],
                        ports_for: Callable[[CredentialSpec], RotationPorts], *, holder: str, lease_ttl: timedelta,
                        on_result: Callable[[RotationResult], None] | None = None,
                        on_step: Callable[[str, str, str], None] | None = None,
                        should_start: Callable[[str], bool] | None = None,
                        interrupt: Callable[[], None] | None = None) -> list[RotationResult]:
    """Recovery runs at every start: an interrupted rotation of a configured credential that is not among
    ``selected`` is finished (or undone) too, but no new rotation is started for it."""
    chosen = {spec.name for spec in selected}
    pending = [spec for spec in specs if spec.name not in chosen and has_open_journal(spec.name)]
    return rotate_many(pending, ports_for, holder=holder, lease_ttl=lease_ttl, resume_only=True,
                       on_step=on_step, on_result=on_result, should_start=should_start or (lambda name: True),
                       interrupt=interrupt)
