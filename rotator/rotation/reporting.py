"""What the rotation protocol tells the world: history events, Slack to owners, credential status and
progress lines. A Slack failure is recorded, never raised: it must not decide a rotation's outcome."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from rotator.domain import CredentialSpec, CredentialState, Event
from rotator.errors import SlackError
from rotator.rotation.results import Outcome, RotationPorts, RotationResult

log = structlog.get_logger("rotator.rotation")


class Reporter:
    """Everything one rotation run says: step lines, history events, owners' messages, the final status."""

    def __init__(self, ports: RotationPorts, spec: CredentialSpec,
                 on_step: Callable[[str, str], None] | None) -> None:
        self._ports = ports
        self._spec = spec
        self._on_step = on_step
        self.steps: list[str] = []
        self.untold: list[str] = []  # owners a message did not reach, with why

    def step(self, name: str, detail: str) -> None:
        self.steps.append(f"{name}: {detail}")
        log.info("rotation step", credential=self._spec.name, step=name, detail=detail)
        if self._on_step is not None:
            self._on_step(name, detail)

    def event(self, action: str, outcome: str, *, key_ids: tuple[str, ...] = (), **detail: Any) -> None:
        """Append one history event. Callers pass key ids and facts, never secrets."""
        self._ports.store.append_event(Event(
            at=self._ports.clock.now(), actor=self._ports.actor, action=action, outcome=outcome,
            credential=self._spec.name, key_ids=key_ids, detail=detail,
        ))

    def notify(self, kind: str, title: str, lines: list[str], severity: str) -> None:
        """Tell every owner. A Slack failure is logged and recorded, never raised: it must not fail a rotation."""
        if self._ports.notifier is None or not self._spec.owners:
            return
        for channel in self._spec.owners:
            try:
                self._ports.notifier.post(channel, title, lines, severity=severity)
            except SlackError as exc:
                log.warning("slack notification failed", credential=self._spec.name, channel=channel,
                            error=str(exc))
                self.event("notify", "failed", channel=channel, kind=kind, error=str(exc))
                self.untold.append(f"{channel}: {exc.message}")
                self.step("notify", f"{channel} could not be told: {exc.message}")
            else:
                self.event("notify", "ok", channel=channel, kind=kind)

    def untold_text(self) -> str:
        """One line for the result: which owners did not get which news (empty when everyone was told)."""
        return "owners could not be told: " + "; ".join(dict.fromkeys(self.untold)) if self.untold else ""

    def alarm(self, kind: str, title: str, lines: list[str]) -> None:
        """Tell the owners and the security channel now, even during a batched (fleet) run: a target that
        rejects its pipelines cannot wait for the end of the run."""
        notifier = self._ports.urgent or self._ports.notifier
        if notifier is None:
            return
        channels = [*self._spec.owners, *([self._ports.security_channel] if self._ports.security_channel else [])]
        for channel in dict.fromkeys(channels):
            try:
                notifier.post(channel, title, lines, severity="critical")
            except SlackError as exc:
                log.warning("slack alarm failed", credential=self._spec.name, channel=channel, error=str(exc))
                self.event("notify", "failed", channel=channel, kind=kind, error=str(exc))
            else:
                self.event("notify", "ok", channel=channel, kind=kind)

    def finish(self, result: RotationResult) -> None:
        now = self._ports.clock.now()
        if result.outcome is Outcome.BROKEN:
            self._ports.store.set_status(self._spec.name, CredentialState.BROKEN, now, last_error=result.message)
        elif result.outcome is Outcome.HELD:
            self._ports.store.set_status(self._spec.name, CredentialState.HELD, now, last_error=result.message)
        elif result.outcome is Outcome.FAILED:
            self._ports.store.set_status(self._spec.name, CredentialState.FAILED, now, last_error=result.message)
            self.notify("failed", f"rotator: {self._spec.name} rotation failed", [result.message], "warning")
        elif result.outcome is Outcome.WAITING:
            self._ports.store.set_status(self._spec.name, CredentialState.ROTATING, now, last_error=None)
