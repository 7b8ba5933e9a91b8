"""Pure rules of discovery: what a found variable is, which variable is its secret partner, which
configured target it is, where variables shadow each other. Standard library and rotator.domain only."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rotator.domain import CiVariable, CredentialSpec, ScopeKind, is_access_key_id

# (mark of the key-id variable, mark of its secret partner), most specific first:
# AWS_ACCESS_KEY_ID ↔ AWS_SECRET_ACCESS_KEY, FOO_AWS_ACCESS_KEY_ID ↔ FOO_AWS_SECRET_ACCESS_KEY,
# *ACCESS_KEY_ID* ↔ *SECRET_ACCESS_KEY*, and the older *_ACCESS_KEY ↔ *_SECRET_KEY (as a suffix only).
PARTNER_CONVENTIONS = (("ACCESS_KEY_ID", "SECRET_ACCESS_KEY"), ("ACCESS_KEY", "SECRET_KEY"))
SECRET_SUFFIXES = tuple(secret for _, secret in PARTNER_CONVENTIONS)


@dataclass(frozen=True, order=True)
class Scope:
    """A variable owner: a project, a group, or the instance."""

    kind: ScopeKind
    path: str | None

    @property
    def label(self) -> str:
        return "instance" if self.kind is ScopeKind.INSTANCE else f"{self.kind.value} {self.path}"


@dataclass(frozen=True, order=True)
class Location:
    """Exactly one CI/CD variable."""

    scope: Scope
    key: str
    environment_scope: str = "*"

    @property
    def label(self) -> str:
        return f"{self.scope.label} variable {self.key} [environment_scope={self.environment_scope}]"


@dataclass(frozen=True)
class Flags:
    masked: bool
    protected: bool
    hidden: bool

    @classmethod
    def of(cls, variable: CiVariable) -> Flags:
        return cls(masked=variable.masked, protected=variable.protected, hidden=variable.hidden)

    def missing(self, *, want_hidden: bool) -> tuple[str, ...]:
        """The protections a variable lacks, as 'not masked' / 'not protected' / 'not hidden'."""
        wanted = [("masked", self.masked), ("protected", self.protected)]
        if want_hidden:
            wanted.append(("hidden", self.hidden))
        return tuple(f"not {name}" for name, present in wanted if not present)


def partner_name(key_var: str) -> str | None:
    """The secret variable that goes with a key-id variable, by naming convention; None when none applies.

    ``*ACCESS_KEY_ID*`` pairs with the same name where (the last) ``ACCESS_KEY_ID`` reads ``SECRET_ACCESS_KEY``,
    so a prefix or suffix is kept (``AWS_ACCESS_KEY_ID_PROD`` ↔ ``AWS_SECRET_ACCESS_KEY_PROD``); the older
    ``*_ACCESS_KEY`` pairs with ``*_SECRET_KEY``."""
    upper = key_var.upper()
    for key_mark, secret_mark in PARTNER_CONVENTIONS:
        at = upper.rfind(key_mark)
        if at < 0 or (key_mark == "ACCESS_KEY" and at + len(key_mark) != len(upper)):
            continue
        return key_var[:at] + secret_mark + key_var[at + len(key_mark):]
    return None


def looks_like_key_id_var(name: str) -> bool:
    return partner_name(name) is not None


def looks_like_secret_var(name: str) -> bool:
    return name.upper().endswith(SECRET_SUFFIXES)


def holds_key_id(variable: CiVariable) -> bool:
    return variable.value is not None and is_access_key_id(variable.value.strip())


def aws_related(variable: CiVariable) -> bool:
    """Worth reporting on: it holds a key id, or its name says it holds a key id or secret."""
    return holds_key_id(variable) or looks_like_key_id_var(variable.key) or looks_like_secret_var(variable.key)


def ancestors(scope: Scope) -> list[Scope]:
    """The scopes whose variables a pipeline of ``scope`` also sees, nearest first: parent groups, then
    the instance. A personal namespace has no group variables; it is listed and simply never matches."""
    if scope.kind is ScopeKind.INSTANCE or scope.path is None:
        return []
    parts = scope.path.split("/")
    groups = [Scope(ScopeKind.GROUP, "/".join(parts[:n])) for n in range(len(parts) - 1, 0, -1)]
    return [*groups, Scope(ScopeKind.INSTANCE, None)]


@dataclass(frozen=True)
class TrackedTarget:
    credential: str
    iam_user: str
    account: str
    secret_var: str


def tracked_targets(specs: Iterable[CredentialSpec]) -> dict[Location, TrackedTarget]:
    """Configured key-id variables → the credential that writes them."""
    found: dict[Location, TrackedTarget] = {}
    for spec in specs:
        for target in spec.targets:
            scope = Scope(target.kind, target.path if target.kind is not ScopeKind.INSTANCE else None)
            environment = "*" if target.kind is ScopeKind.INSTANCE else target.environment_scope
            found[Location(scope, target.access_key_id_var, environment)] = TrackedTarget(
                spec.name, spec.iam_user, spec.account, target.secret_access_key_var)
    return found


@dataclass(frozen=True)
class Shadowing:
    """One variable key defined more than once where a pipeline can see it.

    ``reason`` is "inherited" (a project or subgroup redefines a key of a group above it, or of the
    instance: the nearest definition wins) or "scopes" (one owner defines it for several environment
    scopes: which one a job gets depends on its environment)."""

    key: str
    reason: str
    locations: tuple[Location, ...]

    def describe(self) -> str:
        where = "; ".join(f"{loc.scope.label} [{loc.environment_scope}]" for loc in self.locations)
        if self.reason == "inherited":
            return f"{self.key} is defined at several levels (nearest wins): {where}"
        return f"{self.key} is defined for several environment scopes: {where}"


def find_shadowing(variables: Mapping[Scope, Sequence[CiVariable]]) -> list[Shadowing]:
    """Shadowing among AWS-related variable keys, across inheritance and across environment scopes."""
    by_key: dict[str, dict[Scope, list[str]]] = defaultdict(lambda: defaultdict(list))
    for scope, found in variables.items():
        for variable in found:
            if aws_related(variable):
                by_key[variable.key][scope].append(variable.environment_scope)
    results: list[Shadowing] = []
    for key, owners in sorted(by_key.items()):
        for scope, environments in sorted(owners.items()):
            if len(environments) > 1:
                results.append(Shadowing(key, "scopes", tuple(
                    Location(scope, key, env) for env in sorted(environments))))
        reported: set[frozenset[Scope]] = set()
        # Only the deepest owner of each chain is looked at, so a chain a/b/c + a/b + a is one finding.
        for scope in sorted(owners):
            above = [s for s in ancestors(scope) if s in owners]
            if not above or any(scope in ancestors(other) for other in owners if other != scope):
                continue
            chain = [scope, *above]
            if frozenset(chain) in reported:
                continue
            reported.add(frozenset(chain))
            results.append(Shadowing(key, "inherited", tuple(
                Location(s, key, env) for s in chain for env in sorted(owners[s]))))
    return results


def credential_name_for(user_name: str, taken: Iterable[str]) -> str:
    """A valid, unused [[credentials]] name derived from an IAM user name."""
    base = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in user_name.lower()).strip("-._")
    base = (base or "credential")[:56]
    if not base[0].isalnum():
        base = f"c{base}"[:56]
    used = set(taken)
    name, number = base, 2
    while name in used:
        name = f"{base}-{number}"
        number += 1
    return name
