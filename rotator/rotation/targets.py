"""Reading, judging and writing the key pairs a credential's GitLab targets hold. Written against
ports.CiVariables only.

Order matters: the secret variable is written first, then the key-id variable. A crash between the two
leaves the target with the new secret and the old key id; recovery rolls forward and completes the pair,
so the window never outlives a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rotator.domain import AccessKey, CiVariable, NewAccessKey, TargetSpec, newest_active
from rotator.errors import GitLabPermanentError
from rotator.ports import CiVariables


@dataclass(frozen=True)
class TargetReading:
    target: TargetSpec
    key_id_var: CiVariable | None
    secret_var: CiVariable | None

    @property
    def held_key_id(self) -> str | None:
        """The key id the target holds, when GitLab lets us read it."""
        return self.key_id_var.value if self.key_id_var is not None else None

    @property
    def key_id_unreadable(self) -> bool:
        return self.key_id_var is not None and self.key_id_var.value is None

    def missing_variables(self) -> list[str]:
        missing = []
        if self.secret_var is None:
            missing.append(self.target.secret_access_key_var)
        if self.key_id_var is None:
            missing.append(self.target.access_key_id_var)
        return missing


def read_target(variables: CiVariables, target: TargetSpec) -> TargetReading:
    return TargetReading(
        target=target,
        key_id_var=variables.get(target.var(target.access_key_id_var)),
        secret_var=variables.get(target.var(target.secret_access_key_var)),
    )


def missing_variable_error(reading: TargetReading) -> GitLabPermanentError | None:
    missing = reading.missing_variables()
    if not missing or reading.target.create_missing:
        return None
    return GitLabPermanentError(
        f"{reading.target.label}: variable {' and '.join(missing)} does not exist",
        target=reading.target.label, status=404,
        hint="create it in GitLab (masked, protected, hidden for the secret) or set create_missing = true "
             "on the target",
    )


class DriftError(GitLabPermanentError):
    """A target holds a key id rotator did not put there: never overwritten silently."""


def check_drift(reading: TargetReading, expected: set[str]) -> DriftError | None:
    held = reading.held_key_id
    if held is None or held in expected:
        return None
    return DriftError(
        f"{reading.target.label}: {reading.target.access_key_id_var} holds {held}, which is neither the "
        f"current key nor the new one ({', '.join(sorted(expected)) or 'none'})",
        target=reading.target.label,
        hint="find out who changed the variable; put the right key back or remove the target from the config, "
             "then run `rotator rotate` again",
    )


@dataclass(frozen=True)
class TargetAssessment:
    """Every target of a credential read once and judged against the user's keys: the one place that says
    whether the targets lack a variable, hold a key rotator did not put there, or disagree with each other.
    Rotation, the service's drift check and ``rotate --dry-run`` all decide from it."""

    readings: tuple[TargetReading, ...]
    missing: tuple[GitLabPermanentError, ...] = ()
    drift: tuple[DriftError, ...] = ()

    @property
    def held(self) -> set[str]:
        """The key ids the readable targets hold."""
        return {r.held_key_id for r in self.readings if r.held_key_id}

    @property
    def disagreement(self) -> str | None:
        held = self.held
        if len(held) <= 1:
            return None
        return f"targets hold different keys ({', '.join(sorted(held))}): fix them by hand, then rotate again"

    @property
    def unknown_references(self) -> bool:
        """Some target's key-id variable is hidden: no key can be proven unreferenced."""
        return any(r.key_id_unreadable for r in self.readings)

    def hold_reasons(self) -> list[str]:
        """Why a human must look before rotator writes anything: drift and disagreeing targets."""
        reasons = [str(problem) for problem in self.drift]
        if self.disagreement is not None:
            reasons.append(self.disagreement)
        return reasons

    def problems(self) -> list[str]:
        return [*(str(problem) for problem in self.missing), *self.hold_reasons()]

    def key_in_use(self, keys: list[AccessKey]) -> str | None:
        """The key the targets hold, else (no target readable yet) the user's newest Active key."""
        held = sorted(self.held)
        if held:
            return held[0]
        current = newest_active(keys)
        return current.key_id if current is not None else None


def assess_targets(variables: CiVariables, targets: tuple[TargetSpec, ...], known_key_ids: set[str]) -> (
        TargetAssessment):
    """Read every target and judge it against ``known_key_ids`` (the user's keys, or old and new key)."""
    readings = tuple(read_target(variables, target) for target in targets)
    return TargetAssessment(
        readings=readings,
        missing=tuple(error for r in readings if (error := missing_variable_error(r)) is not None),
        drift=tuple(error for r in readings if (error := check_drift(r, known_key_ids)) is not None),
    )


class ReadBackMismatch(GitLabPermanentError):
    pass


def write_pair(variables: CiVariables, reading: TargetReading, new_key: NewAccessKey,
               on_secret_written: Callable[[], None]) -> None:
    """Secret first, then key id; each PUT keeps the variable's flags. Reads back what can be read."""
    target = reading.target
    secret_ref = target.var(target.secret_access_key_var)
    key_ref = target.var(target.access_key_id_var)
    if reading.secret_var is None:
        # Missing and create_missing is set: the secret is created masked + hidden + protected.
        written = variables.create(secret_ref, new_key.secret, masked=True, hidden=True, protected=True)
    else:
        written = variables.update_value(secret_ref, new_key.secret)
    on_secret_written()
    if written.value is not None and written.value != new_key.secret.reveal():
        raise ReadBackMismatch(f"{secret_ref.label}: GitLab returned a different value after the update",
                               target=target.label, hint="check for a concurrent writer to this variable")
    if reading.key_id_var is None:
        variables.create(key_ref, new_key.key_id, masked=True, hidden=False, protected=True)
    else:
        variables.update_value(key_ref, new_key.key_id)
    back = variables.get(key_ref)
    if back is None or (back.value is not None and back.value != new_key.key_id):
        raise ReadBackMismatch(
            f"{key_ref.label}: reads back {'nothing' if back is None else back.value} instead of {new_key.key_id}",
            target=target.label, hint="check for a concurrent writer to this variable",
        )
    if reading.secret_var is not None and not reading.secret_var.hidden:
        secret_back = variables.get(secret_ref)
        if secret_back is None or (secret_back.value is not None and secret_back.value != new_key.secret.reveal()):
            raise ReadBackMismatch(f"{secret_ref.label}: does not read back the new secret",
                                   target=target.label, hint="check for a concurrent writer to this variable")
