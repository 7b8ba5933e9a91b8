"""Rotate several credentials: each under its own lease, each failing on its own, results reported together."""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from rotator.domain import CredentialSpec
from rotator.errors import LeaseLost, RotatorError
from rotator.ports import Clock, Store
from rotator.rotation.engine import Outcome, RotationPorts, RotationResult, Rotator


def lease_name(credential: str) -> str:
    return f"credential:{credential}"


def new_holder(actor: str) -> str:
    """A lease holder name that says who and where: a dead local holder can then be recognised."""
    return f"{actor} host={socket.gethostname()} pid={os.getpid()} run={uuid.uuid4().hex[:8]}"


_HOLDER = re.compile(r" host=(?P<host>\S+) pid=(?P<pid>\d+) run=")


def held_by_dead_local_process(holder: str) -> bool:
    """True when the holder was a process on this host that no longer exists (killed, crashed).

    Its lease would otherwise block this credential for lease_ttl after `kill -9` of a CLI run. Holders on
    other hosts (replicas) are never judged this way: only expiry frees their leases.
    """
    match = _HOLDER.search(holder)
    if match is None or match["host"] != socket.gethostname() or int(match["pid"]) == os.getpid():
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, under another user
    return False


def acquire(store: Store, name: str, holder: str, ttl: timedelta, clock: Clock) -> bool:
    if store.try_acquire_lease(name, holder, ttl, clock.now()):
        return True
    current = store.lease_holder(name)
    if current is not None and held_by_dead_local_process(current[0]):
        store.expire_lease(name)
        return store.try_acquire_lease(name, holder, ttl, clock.now())
    return False


def rotate_one(ports: RotationPorts, spec: CredentialSpec, *, holder: str, lease_ttl: timedelta,
               force: bool = False, on_step: Callable[[str, str], None] | None = None,
               interrupt: Callable[[], None] | None = None, resume_only: bool = False) -> RotationResult:
    """Run one credential under its lease. The lease is renewed before every outside step; losing it
    (a replica took over after expiry, or an incident preempted) stops this run at a journaled point.

    ``interrupt`` is called at the same points, before the renewal: raising LeaseLost there (the service
    does when it is told to stop) ends the run at that journaled point too, and the lease is released."""
    store: Store = ports.store
    clock: Clock = ports.clock
    name = lease_name(spec.name)
    if not acquire(store, name, holder, lease_ttl, clock):
        current = store.lease_holder(name)
        who = f" ({current[0]}, until {current[1].isoformat()})" if current else ""
        return RotationResult(spec.name, Outcome.BUSY, f"another rotator process is working on this credential{who}")

    def guard() -> None:
        if interrupt is not None:
            interrupt()
        if not store.renew_lease(name, holder, lease_ttl, clock.now()):
            raise LeaseLost(f"lost the lease on {spec.name} (taken over, or preempted by an incident)",
                            hint="nothing to do: the holder continues from the journal")

    try:
        return Rotator(ports, spec, force=force, guard=guard, on_step=on_step, resume_only=resume_only).run()
    finally:
        store.release_lease(name, holder)


def rotate_many(specs: Sequence[CredentialSpec], ports_for: Callable[[CredentialSpec], RotationPorts], *,
                holder: str, lease_ttl: timedelta, concurrency: int = 1, force: bool = False,
                on_result: Callable[[RotationResult], None] | None = None,
                on_step: Callable[[str, str, str], None] | None = None,
                resume_only: bool = False) -> list[RotationResult]:
    """Every credential runs; one failure never stops the others. Results come back in input order."""

    def one(spec: CredentialSpec) -> RotationResult:
        step = None if on_step is None else (lambda name, detail: on_step(spec.name, name, detail))
        try:
            result = rotate_one(ports_for(spec), spec, holder=holder, lease_ttl=lease_ttl, force=force,
                                on_step=step, resume_only=resume_only)
        except RotatorError as exc:  # building the ports failed (e.g. an account role cannot be assumed)
            result = RotationResult(spec.name, Outcome.FAILED, str(exc))
        if on_result is not None:
            on_result(result)
        return result

    if concurrency <= 1 or len(specs) <= 1:
        return [one(spec) for spec in specs]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="rotate") as pool:
        return list(pool.map(one, specs))
