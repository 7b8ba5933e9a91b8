"""`rotator discover`: where are our AWS keys? An inventory of GitLab CI/CD variables against IAM.

Read-only by construction: the ports it is given offer reads alone (listing GitLab scopes and variables,
sts:GetAccessKeyInfo, iam:GetAccessKeyLastUsed, iam:ListAccessKeys). Written against ports only.

1. Ask GitLab what it can do for the token (rotator.inventory.reach): with working admin access, walk every
   group and project and the instance; otherwise exactly the groups and projects the token can read, and
   say so when an administrator's token lacks admin mode. List each scope's variables.
2. Find variables whose value is an access key id, the secret partner next to each (by name
   convention), and hidden variables whose values GitLab never returns (listed as unknown, never guessed).
3. Resolve each key id to an account (GetAccessKeyInfo, then the configured accounts) and an IAM user
   (GetAccessKeyLastUsed in that account); a key of an account no configured account reaches is unknown.
4. Compare with the config: tracked and untracked locations, tracked users' keys no variable holds,
   keys older than rotate_every, shadowed keys, weak flags.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from rotator.domain import AccessKey, CiVariable, CredentialSpec, GitLabCapabilities, Policy, ScopeKind
from rotator.errors import AwsError, GitLabError
from rotator.inventory.locate import KeyLocator, Unlocated
from rotator.inventory.model import (
    DEFAULT_INSTANCE_VARIABLE_LIMIT,
    DiscoveryReport,
    HiddenVariable,
    InstanceRoom,
    KeyFinding,
    Resolution,
    UnreadableScope,
    UnreferencedKey,
)
from rotator.inventory.reach import Reach, reach_of
from rotator.inventory.rules import (
    Flags,
    Location,
    Scope,
    Shadowing,
    TrackedTarget,
    aws_related,
    find_shadowing,
    holds_key_id,
    partner_name,
    tracked_targets,
)
from rotator.ports import Clock, Iam

__all__ = ["DiscoveryPorts", "DiscoveryReport", "Inventory", "KeyFinding", "Location", "Scope", "discover"]

Progress = Callable[[str, int, int | None], None]  # phase, done, total (None while unknown)


class Inventory(Protocol):
    """What discovery reads from GitLab."""

    def capabilities(self) -> GitLabCapabilities:
        """The capability probe: version, the token's user, whether admin endpoints answer it."""
        ...

    def scopes(self, *, everything: bool) -> Iterator[tuple[ScopeKind, str | None]]:
        """``everything``: every group and project, then the instance (needs working admin access).
        Otherwise the groups where the token's user is Owner and the projects where it is Maintainer."""
        ...

    def variables(self, kind: ScopeKind, path: str | None) -> list[CiVariable]:
        """Every variable of one scope (hidden values are None). Raises a GitLabError when it cannot."""
        ...

    def instance_variable_limit(self) -> int | None:
        """The plan limit on instance variables; None when GitLab does not tell this token."""
        ...


@dataclass(frozen=True)
class DiscoveryPorts:
    inventory: Inventory
    locator: KeyLocator
    iam_for: Callable[[str], Iam]  # configured account name → IAM of that account
    clock: Clock


def discover(specs: Sequence[CredentialSpec], default_policy: Policy, ports: DiscoveryPorts, *,
             concurrency: int = 4, progress: Progress | None = None) -> DiscoveryReport:
    report = DiscoveryReport(started_at=ports.clock.now(), reach=reach_of(ports.inventory.capabilities()))
    assert report.reach is not None
    if report.limited is not None:
        report.problems.append(report.limited)
    tell = progress or (lambda phase, done, total: None)
    variables = _read_variables(ports.inventory, report.reach, report, concurrency, tell)
    located = _key_locations(variables, report)
    resolver = _Resolver(ports)
    key_ids = sorted({key_id for key_id, _ in located})
    done = 0
    tell("resolve", 0, len(key_ids))

    def resolve(key_id: str) -> Resolution:
        nonlocal done
        resolution = resolver.resolve(key_id)
        with resolver.lock:
            done += 1
            tell("resolve", done, len(key_ids))
        return resolution

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="discover") as pool:
        resolutions = dict(zip(key_ids, pool.map(resolve, key_ids), strict=True))
    if ports.locator.ambient_problem is not None:
        report.problems.append(f"{ports.locator.ambient_problem} (the ambient credentials' account)")
    tracked = tracked_targets(specs)
    by_user = {(spec.account, spec.iam_user): spec for spec in specs}
    policies = {spec.name: spec.policy for spec in specs}
    now = ports.clock.now()
    for key_id, (location, variable) in located:
        report.findings.append(_finding(key_id, location, variable, variables[location.scope],
                                        resolutions[key_id], tracked, by_user, policies, default_policy, now))
    report.shadowing = find_shadowing(variables)
    report.problems.extend(_unaddressable_group_keys(report.shadowing, report.reach.capabilities))
    report.instance_room = _instance_room(ports.inventory, variables, specs)
    if report.instance_room is not None and report.instance_room.matters:
        report.problems.append(report.instance_room.describe())
    report.unreferenced = _unreferenced(specs, {k for k, _ in located}, resolver, report, now)
    report.finished_at = ports.clock.now()
    return report


# --- 1. walk GitLab ------------------------------------------------------------------------------------


def _read_variables(inventory: Inventory, reach: Reach, report: DiscoveryReport, concurrency: int,
                    tell: Progress) -> dict[Scope, list[CiVariable]]:
    scopes: list[Scope] = []
    for kind, path in inventory.scopes(everything=reach.everything):
        scopes.append(Scope(kind, path))
        tell("walk", len(scopes), None)
    tell("walk", len(scopes), len(scopes))
    for scope in scopes:
        report.scope_counts[scope.kind.value] = report.scope_counts.get(scope.kind.value, 0) + 1
    found: dict[Scope, list[CiVariable]] = {}
    lock = threading.Lock()
    tell("variables", 0, len(scopes))

    def read(scope: Scope) -> None:
        try:
            listed = inventory.variables(scope.kind, scope.path)
        except GitLabError as exc:  # one unreadable scope is reported; the walk goes on
            with lock:
                report.unreadable.append(UnreadableScope(scope, str(exc)))
        else:
            with lock:
                found[scope] = listed
        with lock:
            tell("variables", len(found) + len(report.unreadable), len(scopes))

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="discover") as pool:
        list(pool.map(read, scopes))
    report.unreadable.sort(key=lambda u: u.scope)
    return dict(sorted(found.items()))


def _key_locations(variables: Mapping[Scope, list[CiVariable]],
                   report: DiscoveryReport) -> list[tuple[str, tuple[Location, CiVariable]]]:
    located: list[tuple[str, tuple[Location, CiVariable]]] = []
    partners_of_found: set[Location] = set()
    for scope, listed in variables.items():
        for variable in listed:
            if holds_key_id(variable):
                assert variable.value is not None
                location = Location(scope, variable.key, variable.environment_scope)
                located.append((variable.value.strip(), (location, variable)))
                if (name := partner_name(variable.key)) is not None:
                    partners_of_found.add(Location(scope, name, variable.environment_scope))
    for scope, listed in variables.items():
        for variable in listed:
            location = Location(scope, variable.key, variable.environment_scope)
            if variable.value is None and location not in partners_of_found:
                report.hidden.append(HiddenVariable(location, Flags.of(variable), aws_related(variable)))
    report.hidden.sort(key=lambda h: (not h.aws_named, h.location))
    return sorted(located, key=lambda item: item[1][0])


def _unaddressable_group_keys(shadowing: Sequence[Shadowing], capabilities: GitLabCapabilities) -> list[str]:
    """Before 16.9 GitLab ignores filter[environment_scope] when updating a group variable: a key a group defines
    for several environment scopes cannot be written one scope at a time, and rotation refuses such targets."""
    if capabilities.group_filter:
        return []
    return [f"group {s.locations[0].scope.path} defines {s.key} for several environment scopes "
            f"({', '.join(loc.environment_scope for loc in s.locations)}), and GitLab {capabilities.version} "
            "ignores filter[environment_scope] when updating group variables (honoured from 16.9): rotator "
            "refuses group targets on this key (next step: upgrade GitLab, or give each scope's pair its own keys)"
            for s in shadowing if s.reason == "scopes" and s.locations[0].scope.kind is ScopeKind.GROUP]


def _instance_room(inventory: Inventory, variables: Mapping[Scope, list[CiVariable]],
                   specs: Sequence[CredentialSpec]) -> InstanceRoom | None:
    """Instance variables against their plan limit, when the instance was read."""
    listed = variables.get(Scope(ScopeKind.INSTANCE, None))
    if listed is None:
        return None
    present = {v.key for v in listed}
    needed = {name for spec in specs for target in spec.targets
              if target.kind is ScopeKind.INSTANCE and target.create_missing
              for name in (target.access_key_id_var, target.secret_access_key_var) if name not in present}
    limit = inventory.instance_variable_limit()
    return InstanceRoom(count=len(listed), limit=limit if limit is not None else DEFAULT_INSTANCE_VARIABLE_LIMIT,
                        limit_known=limit is not None, needed=len(needed))


# --- 2. resolve keys in AWS ----------------------------------------------------------------------------


class _Resolver:
    """Key id → account → user through the one key locator, plus each user's key list, asked once."""

    def __init__(self, ports: DiscoveryPorts) -> None:
        self._ports = ports
        self.lock = threading.Lock()
        self._keys: dict[tuple[str, str], list[AccessKey] | AwsError] = {}

    def keys_of(self, account: str, user_name: str) -> list[AccessKey] | AwsError:
        with self.lock:
            cached = self._keys.get((account, user_name))
        if cached is not None:
            return cached
        try:
            answer: list[AccessKey] | AwsError = self._ports.iam_for(account).list_access_keys(user_name)
        except AwsError as exc:
            answer = exc
        with self.lock:
            self._keys[(account, user_name)] = answer
        return answer

    def resolve(self, key_id: str) -> Resolution:
        location = self._ports.locator.locate(key_id)
        if location.failure is Unlocated.ACCOUNT_UNKNOWN:
            return Resolution(key_id, problem=location.problem)
        if location.failure is Unlocated.NOT_CONFIGURED:
            return Resolution(key_id, account_id=location.account_id,
                              problem=f"{location.problem} to resolve the user")
        account = location.account or (location.accounts[0] if location.accounts else None)
        if location.failure is Unlocated.NO_USER or location.last_used is None or account is None:
            return Resolution(key_id, account, location.account_id, problem=location.problem)
        used, user_name = location.last_used, location.last_used.user_name
        assert user_name is not None
        keys = self.keys_of(account, user_name)
        if isinstance(keys, AwsError):
            return Resolution(key_id, account, location.account_id, user_name, last_used_at=used.last_used_at,
                              problem=f"iam:ListAccessKeys: {keys.message}")
        key = next((k for k in keys if k.key_id == key_id), None)
        if key is None:
            return Resolution(key_id, account, location.account_id, user_name, status="deleted",
                              last_used_at=used.last_used_at,
                              problem=f"{key_id} is no longer among the keys of {user_name}")
        return Resolution(key_id, account, location.account_id, user_name, key.status.value, key.created_at,
                          used.last_used_at)


# --- 3. compare with the config -------------------------------------------------------------------------


def _finding(key_id: str, location: Location, variable: CiVariable, neighbours: Sequence[CiVariable],
             resolution: Resolution, tracked: Mapping[Location, TrackedTarget],
             by_user: Mapping[tuple[str, str], CredentialSpec], policies: Mapping[str, Policy],
             default_policy: Policy, now: datetime) -> KeyFinding:
    target = tracked.get(location)
    partner_key = target.secret_var if target is not None else partner_name(location.key)
    partner = Location(location.scope, partner_key, location.environment_scope) if partner_key else None
    partner_var = next((v for v in neighbours if partner is not None and v.key == partner.key
                        and v.environment_scope == partner.environment_scope), None)
    owner_spec = (by_user.get((resolution.account, resolution.user_name))
                  if resolution.account and resolution.user_name else None)
    policy = default_policy
    mismatch = None
    if target is not None:
        policy = policies.get(target.credential, default_policy)
        if resolution.user_name is not None and (resolution.user_name, resolution.account) != (
                target.iam_user, target.account):
            mismatch = (f"configured for {target.iam_user} in account {target.account!r}, but holds a key of "
                        f"{resolution.user_name} in account {resolution.account or resolution.account_id!r}")
    elif owner_spec is not None:
        policy = owner_spec.policy
    age = now - resolution.created_at if resolution.created_at else None
    return KeyFinding(
        key_id=key_id, location=location, flags=Flags.of(variable), partner=partner,
        partner_flags=Flags.of(partner_var) if partner_var is not None else None,
        credential=target.credential if target else None, resolution=resolution,
        same_user_credential=owner_spec.name if owner_spec is not None and target is None else None,
        age=age, too_old=age is not None and age > policy.rotate_every, mismatch=mismatch)


def _unreferenced(specs: Sequence[CredentialSpec], referenced: set[str], resolver: _Resolver,
                  report: DiscoveryReport, now: datetime) -> list[UnreferencedKey]:
    found: list[UnreferencedKey] = []
    certain = report.complete
    seen: set[tuple[str, str]] = set()
    for spec in specs:
        if (spec.account, spec.iam_user) in seen:
            continue
        seen.add((spec.account, spec.iam_user))
        keys = resolver.keys_of(spec.account, spec.iam_user)
        if isinstance(keys, AwsError):
            report.problems.append(f"credential {spec.name}: cannot list the keys of {spec.iam_user}: {keys.message}")
            continue
        for key in keys:
            if key.key_id not in referenced:
                found.append(UnreferencedKey(spec.name, spec.account, spec.iam_user, key.key_id, key.status.value,
                                             key.created_at, now - key.created_at > spec.policy.rotate_every,
                                             certain))
    return found
