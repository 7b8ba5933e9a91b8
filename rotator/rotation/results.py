"""What one run of a credential's rotation comes back with, and the ports the protocol is written against."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rotator.domain import CredentialState
from rotator.ports import CiVariables, Clock, Iam, Notifier, SecretSealer, Store, Sts


class Outcome(StrEnum):
    ROTATED = "rotated"  # reached the end of the protocol in this run
    WAITING = "waiting"  # progressing; the next step is due later (grace, delete_after)
    NOT_DUE = "not_due"
    HELD = "held"  # a human must look; nothing unsafe was done
    FAILED = "failed"
    BROKEN = "broken"  # a target holds half a pair (the new secret, the old key id): AWS rejects it
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
    # The outside party ("aws", "gitlab") that could not be reached when that ended the run: the credential
    # is retried with a backoff rather than after the fixed pause of other failures.
    unreachable: str | None = None
    retired_key_id: str | None = None  # the old key this run saw Inactive (or gone) in IAM after deactivating it

    @property
    def state(self) -> CredentialState:
        return {
            Outcome.ROTATED: CredentialState.OK, Outcome.NOT_DUE: CredentialState.OK,
            Outcome.WAITING: CredentialState.ROTATING, Outcome.HELD: CredentialState.HELD,
            Outcome.FAILED: CredentialState.FAILED, Outcome.BUSY: CredentialState.ROTATING,
            Outcome.BROKEN: CredentialState.BROKEN,
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
    security_channel: str | None = None
    # For what must be said at once even when ``notifier`` batches (a broken target); None: ``notifier``.
    urgent: Notifier | None = None
