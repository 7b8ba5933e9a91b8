"""Leases around one credential's rotation: busy when held, taken over from a dead local process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

from rotator.leases import held_by_dead_local_process, new_holder
from rotator.rotation.batch import rotate_one
from rotator.rotation.results import Outcome
from tests.unit.worlds import rotation_world


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_holder_names_say_host_and_pid() -> None:
    holder = new_holder("alice@laptop")
    assert f"host={socket.gethostname()}" in holder and f"pid={os.getpid()}" in holder
    assert not held_by_dead_local_process(holder)  # that is us


def test_a_live_holder_makes_the_credential_busy() -> None:
    w = rotation_world()
    live = f"bob host={socket.gethostname()} pid={os.getppid()} run=abc"
    w.store.try_acquire_lease("credential:payments", live, timedelta(minutes=5))
    result = rotate_one(w.ports(), w.spec, holder=new_holder("test"), lease_ttl=timedelta(minutes=2))
    assert result.outcome is Outcome.BUSY and "bob" in result.message
    assert w.iam.calls.count("CreateAccessKey") == 0


def test_a_dead_local_holder_is_taken_over_at_once() -> None:
    w = rotation_world()
    dead = f"carol host={socket.gethostname()} pid={_dead_pid()} run=abc"
    w.store.try_acquire_lease("credential:payments", dead, timedelta(minutes=5))
    result = rotate_one(w.ports(), w.spec, holder=new_holder("test"), lease_ttl=timedelta(minutes=2))
    assert result.outcome is Outcome.ROTATED
    assert w.store.lease_holder("credential:payments") is None  # released at the end


def test_a_holder_on_another_host_is_never_judged_dead() -> None:
    assert not held_by_dead_local_process(f"dave host=some-other-host pid={_dead_pid()} run=abc")
