"""Reading, judging and writing the key pairs a credential's GitLab targets hold. Written against
ports.CiVariables only.

Order matters: the secret variable is written first, then the key-id variable. GitLab cannot write both
atomically, so three rules keep a target from being left with half a pair:

1. preflight: before the secret is written, the key-id variable is written with the value it already holds
   (with the same environment-scope filter): a refusal (a protected-variable rule, a role change, any 4xx)
   then leaves the target untouched;
2. the two PUTs go back to back (``CiVariables.write_pair``: no rate-limit wait or Retry-After between them);
3. if the key-id PUT still fails after the secret was written, the old secret is put back when it was
   readable; otherwise the target is broken, and the caller says so loudly.

A crash between the two PUTs leaves the new secret and the old key id; recovery rolls forward and completes
the pair, so that window never outlives a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from rotator.domain import AccessKey, CiVariable, NewAccessKey, TargetSpec, VariableWrite, newest_active
from rotator.errors import GitLabError, GitLabPairSplit, GitLabPermanentError
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


class PreflightRefused(GitLabPermanentError):
    """GitLab refused a write of the key-id variable before anything of the new pair was written."""


def preflight(variables: CiVariables, reading: TargetReading) -> None:
    """Prove the key-id variable can be written: PUT the value it holds, with the same filter.

    Key ids are readable; a hidden or missing key-id variable cannot be proven this way and is skipped
    (the pair write then relies on rule 3). A transient failure (429, 5xx, unreachable) is raised as is."""
    variable = reading.key_id_var
    if variable is None or variable.value is None:
        return
    target = reading.target
    ref = target.var(target.access_key_id_var)
    try:
        variables.update_value(ref, variable.value)
    except GitLabPermanentError as exc:
        raise PreflightRefused(
            f"{target.label}: GitLab refused to write {target.access_key_id_var} (HTTP {exc.status}: {exc.message}); "
            f"nothing of the new pair was written there, so it still holds {variable.value}",
            target=target.label, status=exc.status,
            hint=(exc.hint + "; " if exc.hint else "") + f"let rotator's token write {target.access_key_id_var} "
                 "(role, protected-variable rules), then run `rotator rotate` again") from None


def write_pair(variables: CiVariables, reading: TargetReading, new_key: NewAccessKey) -> None:
    """Secret, then key id, back to back; each PUT keeps the variable's flags. Reads back what can be read.

    Raises GitLabPairSplit when the secret was written and the key id was not."""
    target = reading.target
    secret_ref = target.var(target.secret_access_key_var)
    key_ref = target.var(target.access_key_id_var)
    # A missing variable (create_missing set) is created: the secret masked + hidden + protected.
    secret_write = VariableWrite(secret_ref, new_key.secret, create=reading.secret_var is None, masked=True,
                                 hidden=True, protected=True)
    key_write = VariableWrite(key_ref, new_key.key_id, create=reading.key_id_var is None, masked=True,
                              hidden=False, protected=True)
    written, _ = variables.write_pair(secret_write, key_write)
    if written.value is not None and written.value != new_key.secret.reveal():
        raise ReadBackMismatch(f"{secret_ref.label}: GitLab returned a different value after the update",
                               target=target.label, hint="check for a concurrent writer to this variable")
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


def restore_secret(variables: CiVariables, reading: TargetReading) -> bool:
    """After a split pair: put the old secret back, when it was readable. True when the target holds its old
    pair again."""
    old = reading.secret_var
    if old is None or old.value is None:
        return False  # hidden (GitLab never returns it) or created by us: nothing to put back
    target = reading.target
    try:
        variables.update_value(target.var(target.secret_access_key_var), old.value)
    except GitLabError:
        return False
    return True


def describe_split(reading: TargetReading, split: GitLabPairSplit, new_key_id: str) -> str:
    """Which variable holds what, for the owners and the security channel."""
    target = reading.target
    return (f"{target.label}: {target.secret_access_key_var} holds the secret of {new_key_id} but "
            f"{target.access_key_id_var} still holds {reading.held_key_id or 'its old value'}: GitLab refused the "
            f"key-id write (HTTP {split.status}: {split.failure.message})")
