"""`revoke --replace`: a fresh key, through the rotation protocol, into every GitLab variable that held the
compromised one: the credential's tracked targets plus any target found by scanning the configured
projects and groups for a key-id variable equal to the compromised key.

The compromised key stays Inactive as evidence: the Rotator never deletes a key an incident names, and
the replacement runs with no grace period (the old key is already refused, so no pipeline can be helped
by waiting).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from rotator.domain import CiVariable, CredentialSpec, ScopeKind, TargetSpec
from rotator.errors import GitLabError, RotatorError
from rotator.incident.containment import KeyIdentity, Step, StepStatus
from rotator.inventory.rules import partner_name
from rotator.ports import CiVariables
from rotator.rotation.results import Outcome, RotationPorts, RotationResult


@dataclass(frozen=True)
class ReplacePorts:
    variables: CiVariables
    rotation_ports: Callable[[CredentialSpec], RotationPorts]
    # Runs one credential's rotation under the incident's lease (batch.rotate_one with force=True).
    rotate: Callable[[RotationPorts, CredentialSpec], RotationResult]
    register: Callable[[CredentialSpec], None]  # make the credential (configured or ad hoc) known to the store


@dataclass(frozen=True)
class Scan:
    found: tuple[TargetSpec, ...]
    problems: tuple[str, ...]
    scanned: int


def scopes_of(specs: Iterable[CredentialSpec]) -> list[tuple[ScopeKind, str | None]]:
    """Every project, group (and the instance) a configured target lives in, once each."""
    return list(dict.fromkeys((t.kind, t.path) for spec in specs for t in spec.targets))


def _secret_var_for(variable: CiVariable, siblings: Sequence[CiVariable], known: Sequence[TargetSpec],
                    kind: ScopeKind, path: str | None) -> str | None:
    """The configured partner of a key-id variable, else the conventional one when it exists beside it."""
    for target in known:
        if (target.kind, target.path, target.environment_scope, target.access_key_id_var) == (
                kind, path, variable.environment_scope, variable.key):
            return target.secret_access_key_var
    guess = partner_name(variable.key)
    present = any(v.key == guess and v.environment_scope == variable.environment_scope for v in siblings)
    return guess if present else None


def scan_for_key(variables: CiVariables, scopes: Sequence[tuple[ScopeKind, str | None]], key_id: str,
                 known: Sequence[TargetSpec]) -> Scan:
    """Targets whose key-id variable holds ``key_id``. A scope that cannot be listed is a problem, never
    "not there"."""
    found: list[TargetSpec] = []
    problems: list[str] = []
    for kind, path in scopes:
        try:
            listed = variables.list(kind, path)
        except GitLabError as exc:
            problems.append(f"could not scan {kind.value} {path or ''}: {exc}".replace("  ", " "))
            continue
        for variable in listed:
            if variable.value != key_id:
                continue
            where = f"{'instance' if kind is ScopeKind.INSTANCE else f'{kind.value} {path}'}"
            secret_var = _secret_var_for(variable, listed, known, kind, path)
            if secret_var is None:
                problems.append(f"{where} variable {variable.key} [environment_scope={variable.environment_scope}] "
                                "holds the key, but no matching secret variable was found: replace it by hand")
                continue
            found.append(TargetSpec(kind, path, environment_scope=variable.environment_scope,
                                    access_key_id_var=variable.key, secret_access_key_var=secret_var))
    return Scan(tuple(found), tuple(problems), len(scopes))


def replacement_spec(identity: KeyIdentity, tracked: CredentialSpec | None, found: Sequence[TargetSpec]) -> tuple[
        CredentialSpec, list[str]]:
    """The credential to rotate: the tracked one with the found targets added, or an ad-hoc one."""
    skipped: list[str] = []
    assert identity.user_name is not None
    base = tracked or CredentialSpec(name=f"revoke-{identity.key_id.lower()}", iam_user=identity.user_name,
                                     account=identity.account)
    targets = {t.target_id: t for t in base.targets}
    for target in found:
        existing = targets.get(target.target_id)
        if existing is None:
            targets[target.target_id] = target
        elif (existing.access_key_id_var, existing.secret_access_key_var) != (
                target.access_key_id_var, target.secret_access_key_var):
            skipped.append(f"{target.label}: {target.access_key_id_var} also holds the key, besides the tracked "
                           f"{existing.access_key_id_var}; replace it by hand")
    # The old key is already Inactive: a grace period would only delay the targets getting a working pair.
    policy = replace(base.policy, grace=timedelta(0))
    return replace(base, targets=tuple(targets.values()), policy=policy), skipped


def replace_key(ports: ReplacePorts, identity: KeyIdentity, *, tracked: CredentialSpec | None,
                configured: Sequence[CredentialSpec], dry_run: bool) -> Step:
    if identity.user_name is None:
        return Step("replace", StepStatus.SKIPPED, "a temporary key has no replacement: its sessions expire")
    scan = scan_for_key(ports.variables, scopes_of(configured), identity.key_id,
                        [t for spec in configured for t in spec.targets])
    spec, skipped = replacement_spec(identity, tracked, scan.found)
    problems = [*scan.problems, *skipped]
    where = ", ".join(t.label for t in spec.targets) or "no target"
    scanned = f"scanned {scan.scanned} project/group scope(s), found {len(scan.found)} holding the key"
    if not spec.targets:
        status = StepStatus.FAILED if problems else StepStatus.NOTHING
        return Step("replace", status, "; ".join([f"no GitLab variable holds {identity.key_id} ({scanned})",
                                                  *problems]))
    if dry_run:
        return Step("replace", StepStatus.PLANNED, "; ".join([f"rotate a fresh key for user {identity.user_name} "
                                                              f"into {where} ({scanned})", *problems]))
    try:
        ports.register(spec)
        result = ports.rotate(ports.rotation_ports(spec), spec)
    except RotatorError as exc:
        return Step("replace", StepStatus.FAILED, "; ".join([f"{where}: {exc}", *problems]))
    if result.outcome is Outcome.ROTATED:
        detail = (f"new key {result.new_key_id} verified and written to {len(spec.targets)} target(s): {where}; "
                  f"{identity.key_id} stays Inactive as evidence ({scanned})")
        return Step("replace", StepStatus.FAILED if problems else StepStatus.DONE, "; ".join([detail, *problems]))
    return Step("replace", StepStatus.FAILED, "; ".join([f"rotation {result.outcome.value}: {result.message}",
                                                         *problems]))
