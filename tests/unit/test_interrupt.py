"""Signals during containment: `revoke` runs its deactivation inside ``interrupt.deferred()``, which no signal
may cut short, not even a second one (a second signal elsewhere exits at once). Run in a child process, since
the behaviour under test is whether the process survives."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import os, signal
    from rotator.cli import interrupt

    with interrupt.signals_handled():
        with interrupt.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            print("containment finished", flush=True)
        print("first signal:", interrupt.signal_name(interrupt.received() or 0), flush=True)
        try:
            with interrupt.finishing():
                os.kill(os.getpid(), signal.SIGINT)
                print("not reached", flush=True)
        finally:
            print("unreachable after a second signal outside containment", flush=True)
""")


def test_no_signal_cuts_containment_short_and_a_second_one_elsewhere_exits_at_once() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=30, check=False)
    assert done.stdout.splitlines() == ["containment finished", "first signal: SIGINT"]
    assert "SIGTERM again: containment is in progress and is not cut short" in done.stderr
    assert "second SIGINT: exiting now" in done.stderr
    assert done.returncode == 130
