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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from rotator.domain import (
    AccessKey,
    CiVariable,
    GitLabCapabilities,
    Journal,
    NewAccessKey,
    RoomDecision,
    ScopeKind,
    TargetSpec,
    VariableWrite,
    VarRef,
    decide_room,
    is_access_key_id,
    newest_active,
    provably_replaced,
)
from rotator.errors import GitLabError, GitLabPairSplit, GitLabPermanentError
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


def shown_key_id(value: str | None) -> str:
    """A value read from a key-id variable, as rotator may say it: shown only when it is an access key id.
    Anything else may be the secret itself (a swapped pair), so only its length is said."""
    if value is None:
        return "a value GitLab does not show"
    if is_access_key_id(value):
        return value
    return f"a value that is not an access key id ({len(value)} characters)"


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
        f"{reading.target.label}: {reading.target.access_key_id_var} holds {shown_key_id(held)}, which is neither the "
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
        shown = ", ".join(sorted(shown_key_id(key_id) for key_id in held))
        return f"targets hold different keys ({shown}): fix them by hand, then rotate again"

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

    def room(self, keys: list[AccessKey], *, replacing: str | None, journals: Iterable[Journal], user_id: str,
             is_evidence: Callable[[str], bool]) -> RoomDecision:
        """Which key may be deleted so a new one fits (IAM allows two per user), or why a human must act: the
        rule rotation and ``rotate --dry-run`` share. Besides what the targets hold, the key the rotation
        replaces (``replacing``) is never deleted here: retiring it is the rotation's own later step."""
        evidence = {k.key_id for k in keys if is_evidence(k.key_id)}
        replaced = provably_replaced(journals, user_id, [r.held_key_id for r in self.readings], keys, evidence)
        referenced = self.held | ({replacing} if replacing else set())
        return decide_room(keys, referenced, replaced, unknown_references=self.unknown_references)


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


def preflight(variables: CiVariables, reading: TargetReading) -> Mapping[tuple[str, str], str | None]:
    """Prove the key-id variable can be written: PUT the value it holds, with the same filter, and check
    GitLab's answer like any write (a PUT that landed in another scope is undone and refuses the target).

    Key ids are readable; a hidden or missing key-id variable cannot be proven this way and is skipped
    (the pair write then relies on restoring the old secret, or on the broken state). A transient failure
    (429, 5xx, unreachable) is raised as is. Returns what the group's same-key variables held before (see
    scope_snapshot), for the pair write to check against."""
    target = reading.target
    before = scope_snapshot(variables, target)
    variable = reading.key_id_var
    if variable is None or variable.value is None:
        return before
    ref = target.var(target.access_key_id_var)
    try:
        answer = variables.update_value(ref, variable.value)
        check_answer(variables, reading, ref, answer, _intent(reading, ref, variable), created=False, before=before)
    except WriteMismatch as exc:
        raise PreflightRefused(f"{exc.message}; nothing of the new pair was written there", target=target.label,
                               status=exc.status, hint=exc.hint) from None
    except GitLabPermanentError as exc:
        raise PreflightRefused(
            f"{target.label}: GitLab refused to write {target.access_key_id_var} (HTTP {exc.status}: {exc.message}); "
            f"nothing of the new pair was written there, so it still holds {shown_key_id(variable.value)}",
            target=target.label, status=exc.status,
            hint=(exc.hint + "; " if exc.hint else "") + f"let rotator's token write {target.access_key_id_var} "
                 "(role, protected-variable rules), then run `rotator rotate` again") from None
    return before


def write_pair(variables: CiVariables, reading: TargetReading, new_key: NewAccessKey, *,
               before: Mapping[tuple[str, str], str | None] | None = None) -> None:
    """Secret, then key id, back to back; each PUT keeps the variable's flags, a missing variable (create_missing)
    is created. GitLab's answer to the secret write is checked (scope, flags, value) before the key id goes out;
    the key id's answer after. Reads back what can be read.

    Raises GitLabPairSplit when the secret was written and the key id was not; WriteMismatch (after undoing what
    can be undone) when GitLab wrote elsewhere or otherwise than asked."""
    target = reading.target
    secret_ref = target.var(target.secret_access_key_var)
    key_ref = target.var(target.access_key_id_var)
    before = scope_snapshot(variables, target) if before is None else before
    secret_intent = _intent(reading, secret_ref, reading.secret_var)
    key_intent = _intent(reading, key_ref, reading.key_id_var)
    secret_write = VariableWrite(secret_ref, new_key.secret, create=reading.secret_var is None,
                                 masked=secret_intent.masked, hidden=secret_intent.hidden,
                                 protected=secret_intent.protected)
    key_write = VariableWrite(key_ref, new_key.key_id, create=reading.key_id_var is None, masked=key_intent.masked,
                              hidden=key_intent.hidden, protected=key_intent.protected)

    def accept_secret(written: CiVariable) -> None:
        # Pure checks of GitLab's answer, between the two PUTs: nothing slow widens the window.
        check_answer(variables, reading, secret_ref, written, secret_intent, created=reading.secret_var is None,
                     before=before)
        if written.value is not None and written.value != new_key.secret.reveal():
            raise ReadBackMismatch(f"{secret_ref.label}: GitLab returned a different value after the update",
                                   target=target.label, hint="check for a concurrent writer to this variable")

    _, key_written = variables.write_pair(secret_write, key_write, accept_first=accept_secret)
    check_answer(variables, reading, key_ref, key_written, key_intent, created=reading.key_id_var is None,
                 before=before)
    back = variables.get(key_ref)
    if back is None or (back.value is not None and back.value != new_key.key_id):
        raise ReadBackMismatch(
            f"{key_ref.label}: reads back {'nothing' if back is None else shown_key_id(back.value)} instead of "
            f"{new_key.key_id}",
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


def _intent(reading: TargetReading, ref: VarRef, existing: CiVariable | None) -> WriteIntent:
    """What the variable must look like after the write: as it was, or as rotator creates it."""
    if existing is None:
        return creation_intent(reading, ref)
    return WriteIntent(masked=existing.masked, protected=existing.protected, hidden=existing.hidden)


def check_answer(variables: CiVariables, reading: TargetReading, ref: VarRef, written: CiVariable,
                 intent: WriteIntent, *, created: bool, before: Mapping[tuple[str, str], str | None]) -> None:
    """Compare GitLab's answer to a write with what was asked: a difference is a WriteMismatch naming the
    variable, raised after undoing what can be undone."""
    differences = written_differences(ref, written, intent)
    if differences:
        undone = _undo(variables, ref, written, created=created, before=before)
        raise WriteMismatch(
            f"{ref.label}: GitLab {'created' if created else 'updated'} a variable with "
            f"{', '.join(differences)}; {undone}",
            target=reading.target.label,
            hint="check the variable in GitLab (its environment scopes and flags) and the target's "
                 "environment_scope, then run `rotator rotate` again",
        )


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


def put_back_secret(variables: CiVariables, reading: TargetReading, *,
                    before: Mapping[tuple[str, str], str | None] | None = None) -> str | None:
    """After a split pair: put the old secret back, when it was readable, and check GitLab's answer like any
    write (scope, flags, and the value when GitLab returns it): a PUT that landed in another scope, or came back
    otherwise than asked, does not restore the pair. None when the target provably holds its old pair again;
    else why not, in words (the caller then reports the target broken). ``before``: see scope_snapshot."""
    old = reading.secret_var
    if old is None or old.value is None:
        # Hidden (GitLab never returns it) or created by us: nothing to put back.
        return "the old secret was not readable, so it could not be put back"
    target = reading.target
    ref = target.var(target.secret_access_key_var)
    before = scope_snapshot(variables, target) if before is None else before
    try:
        answer = variables.update_value(ref, old.value)
        check_answer(variables, reading, ref, answer, _intent(reading, ref, old), created=False, before=before)
    except GitLabError as exc:
        return f"putting the old secret back failed ({exc.message})"
    if answer.value is not None and answer.value != old.value:
        return f"putting the old secret back: GitLab returned a different value for {ref.label}"
    return None


def describe_split(reading: TargetReading, split: GitLabPairSplit, new_key_id: str, *,
                   restore_problem: str | None = None) -> str:
    """Which variable holds what, for the owners and the security channel. ``restore_problem``: why the old
    secret is not provably back (then what the secret variable holds is not known either)."""
    target = reading.target
    held = shown_key_id(reading.held_key_id) if reading.held_key_id is not None else "its old value"
    refused = f"GitLab refused the key-id write (HTTP {split.status}: {split.failure.message})"
    if restore_problem is None or reading.secret_var is None or reading.secret_var.value is None:
        return (f"{target.label}: {target.secret_access_key_var} holds the secret of {new_key_id} but "
                f"{target.access_key_id_var} still holds {held}: {refused}")
    return (f"{target.label}: {target.access_key_id_var} still holds {held}: {refused}; "
            f"{restore_problem}, so {target.secret_access_key_var} may hold the secret of {new_key_id}: "
            "check it in GitLab")
