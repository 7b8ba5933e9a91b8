"""Reading, judging and writing the key pairs a credential's GitLab targets hold. Written against
ports.CiVariables only.

Order matters: the secret variable is written first, then the key-id variable. A crash between the two
leaves the target with the new secret and the old key id; recovery rolls forward and completes the pair,
so the window never outlives a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from rotator.domain import (
    AccessKey,
    CiVariable,
    GitLabCapabilities,
    NewAccessKey,
    ScopeKind,
    Secret,
    TargetSpec,
    VarRef,
    newest_active,
)
from rotator.errors import GitLabError, GitLabPermanentError
from rotator.ports import CiVariables


@dataclass(frozen=True)
class TargetReading:
    target: TargetSpec
    key_id_var: CiVariable | None
    secret_var: CiVariable | None
    # Probed only when the answer matters here: a variable to create (can this GitLab hide it?).
    capabilities: GitLabCapabilities | None = None

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
    refuse_ambiguous_group_key(variables, target)
    key_ref, secret_ref = target.var(target.access_key_id_var), target.var(target.secret_access_key_var)
    reading = TargetReading(target=target, key_id_var=variables.get(key_ref), secret_var=variables.get(secret_ref))
    if reading.missing_variables() and target.create_missing:
        reading = replace(reading, capabilities=variables.capabilities())
    return reading


def missing_variable_error(reading: TargetReading) -> GitLabPermanentError | None:
    missing = reading.missing_variables()
    if not missing:
        return None
    if reading.target.create_missing:
        return refuse_visible_secret(reading)
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
    """Secret first, then key id; each PUT keeps the variable's flags, and each answer is checked against what
    was asked (write_checked) before the next step. Reads back what can be read."""
    target = reading.target
    secret_ref = target.var(target.secret_access_key_var)
    key_ref = target.var(target.access_key_id_var)
    before = scope_snapshot(variables, target)
    written = write_checked(variables, reading, secret_ref, new_key.secret, before, after_write=on_secret_written)
    if written.value is not None and written.value != new_key.secret.reveal():
        raise ReadBackMismatch(f"{secret_ref.label}: GitLab returned a different value after the update",
                               target=target.label, hint="check for a concurrent writer to this variable")
    write_checked(variables, reading, key_ref, new_key.key_id, before)
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


# --- what GitLab can do, and what it did ------------------------------------------------------------------
# GitLab may apply a request to another variable than the one addressed, or with other flags, and answer 200:
# before 16.9 a group PUT ignores filter[environment_scope] and updates the first variable with the key in any
# scope; from 16.9 a group PUT whose filter matches nothing still falls back to that (Ci::ChangeVariableService,
# find_by!(key)); and before 17.4 GitLab drops masked_and_hidden. So what a target needs is checked against the
# GitLab version before any write, and every answer is compared with what was asked before the next step.


class UnsupportedByGitLab(GitLabPermanentError):
    """This GitLab version cannot do what the target needs without risking another variable or the secret."""


class WriteMismatch(GitLabPermanentError):
    """GitLab applied a write to another variable, or with other flags, than asked: never counted as published."""


@dataclass(frozen=True)
class WriteIntent:
    """The flags a written variable must have afterwards (its environment scope is the reference's)."""

    masked: bool
    protected: bool
    hidden: bool


def refuse_ambiguous_group_key(variables: CiVariables, target: TargetSpec) -> None:
    """Before 16.9 a group PUT takes the first variable with the key, whatever filter it carries (GET and DELETE
    honoured the filter already): a target whose key exists in several environment scopes of its group could
    overwrite another scope's. Refused at once, before any write."""
    if target.kind is not ScopeKind.GROUP:
        return
    capabilities = variables.capabilities()
    if capabilities.group_filter:
        return
    listed = variables.list(ScopeKind.GROUP, target.path)
    for name in (target.access_key_id_var, target.secret_access_key_var):
        scopes = sorted({v.environment_scope for v in listed if v.key == name})
        if len(scopes) > 1:
            raise UnsupportedByGitLab(
                f"{target.label}: GitLab {capabilities.version} ignores filter[environment_scope] when updating a "
                f"group variable (honoured from GitLab 16.9), and {name} exists in {len(scopes)} environment scopes "
                f"of group {target.path} ({', '.join(scopes)}): a write could change another scope's variable, "
                "so the target is refused before any write",
                target=target.label,
                hint="upgrade GitLab to 16.9 or later, or keep one environment scope per variable key in this "
                     "group: give each scope's pair its own keys and name them in the target's access_key_id_var "
                     "and secret_access_key_var",
            )


def refuse_visible_secret(reading: TargetReading) -> UnsupportedByGitLab | None:
    """Before 17.4 GitLab cannot create a hidden variable: it drops masked_and_hidden and creates the secret
    masked but visible to the maintainers. Refused unless the target says accept_masked_only."""
    target, capabilities = reading.target, reading.capabilities
    if (reading.secret_var is not None or target.kind is ScopeKind.INSTANCE or capabilities is None
            or capabilities.masked_and_hidden or target.accept_masked_only):
        return None
    return UnsupportedByGitLab(
        f"{target.label}: {target.secret_access_key_var} does not exist, and GitLab {capabilities.version} cannot "
        "create hidden variables (masked_and_hidden arrived in GitLab 17.4): create_missing would leave the "
        "secret masked but visible to the maintainers, so the target is refused before any write",
        target=target.label,
        hint=f"create {target.secret_access_key_var} in GitLab yourself (masked, protected), or upgrade GitLab to "
             "17.4 or later, or set accept_masked_only = true on the target to accept a masked, visible secret",
    )


def creation_intent(reading: TargetReading, ref: VarRef) -> WriteIntent:
    """Created variables are masked and protected; the secret is also hidden where GitLab can hide it
    (instance variables never can; before 17.4 only accept_masked_only lets it be created at all)."""
    target, capabilities = reading.target, reading.capabilities
    hideable = target.kind is not ScopeKind.INSTANCE and (capabilities is None or capabilities.masked_and_hidden)
    return WriteIntent(masked=True, protected=True, hidden=ref.key == target.secret_access_key_var and hideable)


def scope_snapshot(variables: CiVariables, target: TargetSpec) -> Mapping[tuple[str, str], str | None]:
    """The target's two keys in every environment scope of its group, before writing: what a PUT that lands in
    another scope is rolled back to (None: hidden, unknown). Only a group PUT falls back to another scope;
    project and instance requests answer 404 or 409 instead."""
    if target.kind is not ScopeKind.GROUP:
        return {}
    keys = (target.access_key_id_var, target.secret_access_key_var)
    return {(v.key, v.environment_scope): v.value for v in variables.list(ScopeKind.GROUP, target.path)
            if v.key in keys}


def write_checked(variables: CiVariables, reading: TargetReading, ref: VarRef, value: str | Secret,
                  before: Mapping[tuple[str, str], str | None], *,
                  after_write: Callable[[], None] = lambda: None) -> CiVariable:
    """Create the variable (when the reading found none) or PUT its value, then compare GitLab's answer with
    what was asked: a difference is a WriteMismatch naming the variable, raised after undoing what can be
    undone. ``after_write`` runs as soon as GitLab has answered, before the check (the journal's marker)."""
    existing = reading.secret_var if ref.key == reading.target.secret_access_key_var else reading.key_id_var
    if existing is None:
        intent = creation_intent(reading, ref)
        written = variables.create(ref, value, masked=intent.masked, hidden=intent.hidden,
                                   protected=intent.protected)
    else:
        intent = WriteIntent(masked=existing.masked, protected=existing.protected, hidden=existing.hidden)
        written = variables.update_value(ref, value)
    after_write()
    differences = written_differences(ref, written, intent)
    if differences:
        undone = _undo(variables, ref, written, created=existing is None, before=before)
        raise WriteMismatch(
            f"{ref.label}: GitLab {'created' if existing is None else 'updated'} a variable with "
            f"{', '.join(differences)}; {undone}",
            target=reading.target.label,
            hint="check the variable in GitLab (its environment scopes and flags) and the target's "
                 "environment_scope, then run `rotator rotate` again",
        )
    return written


def written_differences(ref: VarRef, written: CiVariable, intent: WriteIntent) -> list[str]:
    """How GitLab's answer to a write differs from what was asked (scope and flags), in words."""
    found = []
    if ref.kind is not ScopeKind.INSTANCE and written.environment_scope != ref.environment_scope:
        found.append(f"environment_scope={written.environment_scope} (asked {ref.environment_scope})")
    for name in ("masked", "protected", "hidden"):
        wanted, got = getattr(intent, name), getattr(written, name)
        if wanted != got:
            found.append(f"{name}={str(got).lower()} (asked {str(wanted).lower()})")
    return found


def _undo(variables: CiVariables, ref: VarRef, written: CiVariable, *, created: bool,
          before: Mapping[tuple[str, str], str | None]) -> str:
    """Undo a write that went wrong where that is provably ours to undo; says what happened, in words."""
    landed = ref if ref.kind is ScopeKind.INSTANCE else replace(ref, environment_scope=written.environment_scope)
    try:
        if created:
            variables.delete(landed)
            return f"rotator deleted the variable it had just created ({landed.label})"
        if landed == ref:
            return "the value went where asked"
        previous = before.get((ref.key, landed.environment_scope))
        if previous is None:
            return (f"{landed.label} now holds the new value, and its previous value is unknown (hidden or not "
                    "read): put it back by hand")
        restored = variables.update_value(landed, previous)
    except GitLabError as exc:
        return f"undoing it failed ({exc}): check {landed.label} by hand"
    if restored.environment_scope != landed.environment_scope or restored.value not in (None, previous):
        return f"putting back the previous value of {landed.label} did not land where asked either: check it by hand"
    return f"rotator put back the previous value of {landed.label}"
