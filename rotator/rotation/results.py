"""What the rotation protocol tells the world: history events, Slack to owners, credential status,
progress lines; and the STS verification loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

import structlog

from rotator.domain import CredentialSpec, CredentialState, Event, IamUser, NewAccessKey
from rotator.errors import AwsThrottled, AwsUnavailable, SlackError
from rotator.ports import CiVariables, Clock, Iam, Notifier, SecretSealer, Store, Sts

log = structlog.get_logger("rotator.rotation")


class Outcome(StrEnum):
    ROTATED = "rotated"  # reached the end of the protocol in this run
    WAITING = "waiting"  # progressing; the next step is due later (grace, delete_after)
    NOT_DUE = "not_due"
    HELD = "held"  # a human must look; nothing unsafe was done
    FAILED = "failed"
    BUSY = "busy"  # another process holds the credential's lease

    @property
    def ok(self) -> bool:
        return self in (Outcome.ROTATED, Outcome.WAITING, Outcome.NOT_DUE)


@dataclass(frozen=True)
class RotationResult:
    credential: str
    outcome: Outcome
    message: str
    key_id: str | None = None
    new_key_id: str | None = None
    steps: tuple[str, ...] = ()

    @property
    def state(self) -> CredentialState:
        return {
            Outcome.ROTATED: CredentialState.OK, Outcome.NOT_DUE: CredentialState.OK,
            Outcome.WAITING: CredentialState.ROTATING, Outcome.HELD: CredentialState.HELD,
            Outcome.FAILED: CredentialState.FAILED, Outcome.BUSY: CredentialState.ROTATING,
        }[self.outcome]


@dataclass(frozen=True)
class RotationPorts:
    iam: Iam
    sts: Sts
    variables: CiVariables
    store: Store
    sealer: SecretSealer
    clock: Clock
    notifier: Notifier | None = None
    actor: str = "rotator"




class Reporter:
    def __init__(self, ports: RotationPorts, spec: CredentialSpec,
                 on_step: Callable[[str, str], None] | None) -> None:
        self._p = ports
        self._spec = spec
        self._on_step = on_step
        self.steps: list[str] = []

    def step(self, name: str, detail: str) -> None:
        self.steps.append(f"{name}: {detail}")
        log.info("rotation step", credential=self._spec.name, step=name, detail=detail)
        if self._on_step is not None:
            self._on_step(name, detail)

    def event(self, action: str, outcome: str, *, key_ids: tuple[str, ...] = (), **detail: Any) -> None:
        """Append one history event. Callers pass key ids and facts, never secrets."""
        self._p.store.append_event(Event(
            at=self._p.clock.now(), actor=self._p.actor, action=action, outcome=outcome,
            credential=self._spec.name, key_ids=key_ids, detail=detail,
        ))

    def notify(self, kind: str, title: str, lines: list[str], severity: str) -> None:
        """Tell every owner. A Slack failure is logged and recorded, never raised: it must not fail a rotation."""
        if self._p.notifier is None or not self._spec.owners:
            return
        for channel in self._spec.owners:
            try:
                self._p.notifier.post(channel, title, lines, severity=severity)
            except SlackError as exc:
                log.warning("slack notification failed", credential=self._spec.name, channel=channel,
                            error=str(exc))
                self.event("notify", "failed", channel=channel, kind=kind, error=str(exc))
            else:
                self.event("notify", "ok", channel=channel, kind=kind)

    def finish(self, result: RotationResult) -> None:
        now = self._p.clock.now()
        if result.outcome is Outcome.HELD:
            self._p.store.set_status(self._spec.name, CredentialState.HELD, now, last_error=result.message)
        elif result.outcome is Outcome.FAILED:
            self._p.store.set_status(self._spec.name, CredentialState.FAILED, now, last_error=result.message)
            self.notify("failed", f"rotator: {self._spec.name} rotation failed", [result.message], "warning")
        elif result.outcome is Outcome.WAITING:
            self._p.store.set_status(self._spec.name, CredentialState.ROTATING, now, last_error=None)


def verify_new_key(ports: RotationPorts, new_key: NewAccessKey, user: IamUser, timeout: timedelta,
                   guard: Callable[[], None]) -> tuple[bool, str]:
    """GetCallerIdentity with the new pair about once a second until it answers with the user's ARN.

    IAM is eventually consistent (typically 3-15 s). Throttling or an unreachable endpoint means
    "ask again later", never "key invalid".
    """
    deadline = ports.clock.now() + timeout
    attempts = 0
    throttled = 0
    while True:
        attempts += 1
        try:
            arn = ports.sts.caller_arn(new_key)
        except (AwsThrottled, AwsUnavailable):
            throttled += 1
            arn = None
        if arn == user.arn:
            return True, f"STS accepted {new_key.key_id} as {arn} after {attempts} attempt(s)"
        if arn is not None:
            return False, f"STS says {new_key.key_id} belongs to {arn}, not {user.arn}"
        if ports.clock.now() >= deadline:
            why = f" ({throttled} attempt(s) throttled or unreachable)" if throttled else ""
            return False, (f"STS did not accept {new_key.key_id} within {int(timeout.total_seconds())}s "
                           f"after {attempts} attempt(s){why}")
        guard()
        ports.clock.sleep(min(1.0 * (2 ** min(throttled, 3)), 8.0) if throttled else 1.0)
