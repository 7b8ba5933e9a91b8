"""Per-credential leases: the one way any part of rotator takes, renews and gives back the lock that makes a
rotation (or a drift check, an incident, a retirement) happen in one process at a time.

The store takes a lease with one atomic conditional statement, judged by the database's clock (replicas on
different hosts disagree about the time; the database is the one clock they share). Each tenure gets a fencing
token: a process that stalled past its lease (a GC pause, SIGSTOP, a network stall) finds, at its next write or
outside step, that its token is no longer the current one, and stops instead of acting beside the new holder
(Kleppmann, "How to do distributed locking": a lease alone cannot stop a paused holder, a fencing token can).

Around that, this module adds what every caller needs: a holder name that says who and where; recovery of a
lease whose holder was a local process that has died (otherwise `kill -9` of a CLI run would block its
credential for lease_ttl); and, for an incident, taking the lease away from whoever holds it (``expire_first``).
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from rotator.ports import LeaseFence, Store


def lease_name(credential: str) -> str:
    return f"credential:{credential}"


def new_holder(actor: str) -> str:
    """A lease holder name that says who and where: a dead local holder can then be recognised."""
    return f"{actor} host={socket.gethostname()} pid={os.getpid()} run={uuid.uuid4().hex[:8]}"


_HOLDER = re.compile(r" host=(?P<host>\S+) pid=(?P<pid>\d+) run=")


def held_by_dead_local_process(holder: str) -> bool:
    """True when the holder was a process on this host that no longer exists (killed, crashed).

    Holders on other hosts (replicas) are never judged this way: only expiry frees their leases.
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


class Lease:
    """One tenure of a lease this process holds."""

    def __init__(self, store: Store, fence: LeaseFence) -> None:
        self.store = store
        self.fence = fence
        self._extended_at = time.monotonic()

    @property
    def name(self) -> str:
        return self.fence.name

    @property
    def holder(self) -> str:
        return self.fence.holder

    @property
    def token(self) -> int:
        return self.fence.token

    def renew(self) -> bool:
        """Extend the tenure; False when it is over (expired and taken over, or preempted by an incident)."""
        extended_at = time.monotonic()
        if not self.store.renew_lease(self.fence):
            return False
        self._extended_at = extended_at
        return True

    def check(self) -> bool:
        """Before an outside step: is this tenure still the current one? Proven by the database each time. The
        tenure is also extended once a third of lease_ttl has passed since it last was (every write through
        ``fenced_store`` extends it too): a read is enough the rest of the time, and a read takes no write
        lock (SQLite lets one writer in at a time) and flushes nothing to disk."""
        if time.monotonic() - self._extended_at >= self.fence.ttl.total_seconds() / 3:
            return self.renew()
        return self.store.lease_is_current(self.fence)

    def fenced_store(self) -> Store:
        """The store whose every write first proves this tenure is still the current one (else LeaseLost)."""
        return self.store.fenced(self.fence)

    def release(self) -> None:
        self.store.release_lease(self.name, self.holder)


def acquire(store: Store, name: str, holder: str, ttl: timedelta, *, expire_first: bool = False) -> Lease | None:
    """Take the lease, or None when another live process holds it.

    ``expire_first`` ends the current tenure first, whoever holds it: an incident takes precedence over a
    rotation, whose next renewal or fenced write then fails so it stops at a journaled point."""
    if expire_first:
        store.expire_lease(name)
    token = store.try_acquire_lease(name, holder, ttl)
    if token is None:
        current = store.lease_holder(name)
        if current is None or not held_by_dead_local_process(current[0]):
            return None
        store.expire_lease(name)
        token = store.try_acquire_lease(name, holder, ttl)
        if token is None:
            return None
    return Lease(store, LeaseFence(name, holder, token, ttl))


@contextmanager
def holding(store: Store, name: str, holder: str, ttl: timedelta, *,
            expire_first: bool = False) -> Iterator[Lease | None]:
    """``acquire`` for the length of a ``with`` block; the lease is released at its end. Yields None when busy."""
    lease = acquire(store, name, holder, ttl, expire_first=expire_first)
    try:
        yield lease
    finally:
        if lease is not None:
            lease.release()


def busy_message(store: Store, name: str) -> str:
    """Who holds a lease we could not take, for the operator."""
    current = store.lease_holder(name)
    who = f" ({current[0]}, until {current[1].isoformat()})" if current else ""
    return f"another rotator process is working on this credential{who}"
