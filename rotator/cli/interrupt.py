"""SIGINT and SIGTERM for one-shot commands: the one place the CLI handles them.

Every command runs inside ``signals_handled`` (``common.handle_errors`` enters it). What a signal does
depends on what the command is doing:

- by default the command stops where it is: ``Interrupted`` is raised in the main thread, ``finally``
  blocks run (leases are released), and the command prints one line and exits 130 (SIGINT) or 143
  (SIGTERM), as a shell reports a process a signal ended;
- inside ``finishing()`` (``rotate``: credentials in flight) the signal is only recorded: the command
  polls ``stop_requested()``, starts nothing new, lets every credential in flight finish its current
  step, reports, and exits 130/143 itself;
- inside ``deferred()`` (``revoke`` until the key is verified Inactive) the signal is recorded; after
  the block the command says what was done and stops.

A second signal while the first is being honoured exits at once (every rotation step is journaled, and a
lease held by a process that no longer exists is recovered by the next run: rotator.leases), except inside
``deferred()``: containment is not journaled, so it is never cut short, whatever arrives.

Standard library only: `revoke` enters this before containment.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import FrameType

from rotator.errors import ExitCode, LeaseLost

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A signal stopped the command. A BaseException, so no ``except RotatorError`` (or Exception) in a use
    case swallows it on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.signum)


class StoppedBySignal(LeaseLost):
    """Raised at a credential's next journaled point once a signal asked the command to stop: the engine
    ends that run there (its lease is released) and the next `rotator rotate` resumes it from the journal."""


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_code_for(signum: int) -> int:
    return int(ExitCode.INTERRUPTED if signum == signal.SIGINT else ExitCode.TERMINATED)


@dataclass
class _State:
    signum: int | None = None
    mode: str = "raise"  # raise | finishing | deferred
    installed: bool = False


_state = _State()
_lock = threading.Lock()


def stop_requested() -> bool:
    return _state.signum is not None


def received() -> int | None:
    """The first signal received, if any."""
    return _state.signum


def stop_guard() -> None:
    """For rotate_many's ``interrupt`` hook: ends a credential's run at its next journaled point."""
    signum = _state.signum
    if signum is not None:
        raise StoppedBySignal(f"stopped by {signal_name(signum)} after its last completed step",
                              hint="run `rotator rotate` again: it resumes from the journal")


def should_start(name: str) -> bool:
    """For rotate_many's ``should_start`` hook: nothing new starts once a signal came."""
    return _state.signum is None


def _handle(signum: int, frame: FrameType | None) -> None:
    if _state.mode == "deferred":
        # Containment is not journaled: cutting it in two could leave the key Active with nobody told.
        # Every further signal waits for the block, which is a few AWS calls long.
        if _state.signum is not None:
            sys.stderr.write(f"rotator: {signal_name(signum)} again: containment is in progress and is not cut "
                             "short; stopping right after it\n")
            sys.stderr.flush()
        _state.signum = _state.signum or signum
        return
    if _state.signum is not None:
        sys.stderr.write(f"rotator: second {signal_name(signum)}: exiting now; every step is journaled and "
                         "the next run resumes it\n")
        sys.stderr.flush()
        os._exit(exit_code_for(_state.signum))
    _state.signum = signum
    if _state.mode == "finishing":
        sys.stderr.write(f"rotator: {signal_name(signum)}: finishing the current step of each credential in "
                         "flight, starting no other (send it again to exit at once)\n")
        sys.stderr.flush()
        return
    raise Interrupted(signum)


@contextmanager
def signals_handled() -> Iterator[None]:
    """Install the handlers for the length of a command (main thread only; nested calls do nothing)."""
    with _lock:
        install = threading.current_thread() is threading.main_thread() and not _state.installed
        if install:
            _state.installed, _state.signum, _state.mode = True, None, "raise"
    if not install:
        yield
        return
    previous = {sig: signal.signal(sig, _handle) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        with _lock:
            _state.installed = False


@contextmanager
def _mode(mode: str) -> Iterator[None]:
    before = _state.mode
    _state.mode = mode
    try:
        yield
    finally:
        _state.mode = before


def finishing() -> AbstractContextManager[None]:
    """Signals are recorded, not raised: the caller polls ``stop_requested()`` / passes ``stop_guard`` and
    ``should_start`` on, and exits with ``exit_code_for(received())`` after reporting."""
    return _mode("finishing")


def deferred() -> AbstractContextManager[None]:
    """A signal is only recorded for the length of the block (which must not be cut in two); afterwards the
    caller looks at ``received()`` and says what was done before it stops."""
    return _mode("deferred")
