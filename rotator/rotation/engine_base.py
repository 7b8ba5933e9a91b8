"""Shared machinery of a rotation run: journal saves, results, holds and the read of every target.

Split from rotation.py so that the protocol's phases read as a sequence of steps there and in
rotation_retire.py; nothing here talks to an outside party except through the ports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from rotator.domain import CredentialSpec, IamUser, Journal
from rotator.rotation.results import Outcome, Reporter, RotationPorts, RotationResult
from rotator.rotation.targets import TargetReading, missing_variable_error, read_target


class Stop(Exception):
    def __init__(self, result: RotationResult) -> None:
        super().__init__(result.message)
        self.result = result


class RotationBase:
    """State of one run of one credential's rotation, and the helpers every phase uses."""

    def __init__(self, ports: RotationPorts, spec: CredentialSpec, *, force: bool = False,
                 guard: Callable[[], None] | None = None,
                 on_step: Callable[[str, str], None] | None = None, resume_only: bool = False) -> None:
        """``resume_only``: finish or undo an interrupted rotation, but never start a new one."""
        self.p = ports
        self.spec = spec
        self.force = force
        self.resume_only = resume_only
        self._guard = guard or (lambda: None)
        self.report = Reporter(ports, spec, on_step)

    # --- helpers ------------------------------------------------------------------------------------
    def _read_targets(self) -> list[TargetReading]:
        readings = []
        for target in self.spec.targets:
            reading = read_target(self.p.variables, target)
            error = missing_variable_error(reading)
            if error is not None:
                raise error
            readings.append(reading)
        return readings

    def _check_user_identity(self, user: IamUser) -> None:
        earlier = [j for j in self.p.store.journals(self.spec.name) if j.user_id]
        if earlier and earlier[-1].user_id != user.user_id:
            reason = (f"IAM user {user.name} was recreated (UserId {earlier[-1].user_id} → {user.user_id}) since "
                      "the last rotation")
            self.report.notify("held", f"rotator: {self.spec.name} held", [reason], "warning")
            raise Stop(self._hold(reason))

    def _latest(self, journal: Journal) -> Journal:
        latest = self.p.store.open_journal(self.spec.name)
        return latest if latest is not None and latest.rotation_id == journal.rotation_id else journal

    def _save(self, journal: Journal) -> Journal:
        journal = replace(journal, updated_at=self.p.clock.now())
        self.p.store.save_journal(journal)
        return journal

    def _result(self, outcome: Outcome, message: str, *, key_id: str | None = None,
                new_key_id: str | None = None) -> RotationResult:
        return RotationResult(self.spec.name, outcome, message, key_id, new_key_id, tuple(self.report.steps))

    def _hold(self, reason: str, *, key_id: str | None = None, new_key_id: str | None = None) -> RotationResult:
        self.report.event("hold", "held", reason=reason)
        return self._result(Outcome.HELD, reason, key_id=key_id, new_key_id=new_key_id)

    def _fail(self, message: str, *, hint: str = "") -> RotationResult:
        text = f"{message} (next step: {hint})" if hint else message
        self.report.event("rotation", "failed", error=text)
        return self._result(Outcome.FAILED, text)
