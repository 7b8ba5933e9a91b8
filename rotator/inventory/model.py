"""What discovery found: plain, frozen records and the report that gathers them (rotator.inventory.discover
fills it, rotator.inventory.report renders it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rotator.inventory.reach import Reach
from rotator.inventory.rules import Flags, Location, Scope, Shadowing, looks_like_key_id_var

DEFAULT_INSTANCE_VARIABLE_LIMIT = 25  # GitLab's default plan limit ci_instance_level_variables


@dataclass(frozen=True)
class Resolution:
    """Who owns a key id. ``account`` is the configured account name; None when no configured account
    reaches the key's account (then the key is reported as unknown)."""

    key_id: str
    account: str | None = None
    account_id: str | None = None
    user_name: str | None = None
    status: str | None = None
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    problem: str | None = None

    @property
    def known(self) -> bool:
        return self.account is not None and self.user_name is not None


@dataclass(frozen=True)
class KeyFinding:
    key_id: str
    location: Location
    flags: Flags
    partner: Location | None  # the secret variable the naming convention points at
    partner_flags: Flags | None  # None: that variable does not exist next to the key id
    credential: str | None  # tracked: the configured credential that writes this variable
    resolution: Resolution
    same_user_credential: str | None = None  # untracked here, but the user is a configured credential's
    age: timedelta | None = None
    too_old: bool = False
    mismatch: str | None = None  # a tracked location holding another user's key

    @property
    def tracked(self) -> bool:
        return self.credential is not None


@dataclass(frozen=True)
class HiddenVariable:
    location: Location
    flags: Flags
    aws_named: bool  # its name says it may hold a key id or secret


@dataclass(frozen=True)
class UnreferencedKey:
    credential: str
    account: str
    user_name: str
    key_id: str
    status: str
    created_at: datetime
    too_old: bool
    certain: bool  # False when hidden key-id variables or unreadable scopes could still hold it


@dataclass(frozen=True)
class FlagIssue:
    location: Location
    role: str  # "key id" | "secret"
    missing: tuple[str, ...]


@dataclass(frozen=True)
class UnreadableScope:
    scope: Scope
    error: str


@dataclass(frozen=True)
class InstanceRoom:
    """Instance variables against the plan limit ci_instance_level_variables: one more is a 400."""

    count: int
    limit: int
    limit_known: bool  # False: GitLab would not tell this token, and its default is assumed
    needed: int  # variables that configured instance targets with create_missing would still create

    @property
    def room(self) -> int:
        return max(0, self.limit - self.count)

    @property
    def matters(self) -> bool:
        """Full, or too full for what the config would create (or for one more key pair)."""
        return self.room < max(self.needed, 2)

    def describe(self) -> str:
        limit = f"{self.limit}" if self.limit_known else f"{self.limit} (GitLab's default; the limit was not readable)"
        text = (f"the instance holds {self.count} variable(s) of at most {limit} (plan limit "
                f"ci_instance_level_variables): room for {self.room} more")
        if self.needed:
            text += f"; instance targets with create_missing would create {self.needed}"
        return text + (" (next step: delete unused instance variables, raise the limit, or use group variables)"
                       if self.matters else "")


@dataclass
class DiscoveryReport:
    started_at: datetime
    finished_at: datetime | None = None
    reach: Reach | None = None  # None only in reports built without asking GitLab what it can do
    instance_room: InstanceRoom | None = None
    scope_counts: dict[str, int] = field(default_factory=dict)
    findings: list[KeyFinding] = field(default_factory=list)
    hidden: list[HiddenVariable] = field(default_factory=list)
    shadowing: list[Shadowing] = field(default_factory=list)
    unreferenced: list[UnreferencedKey] = field(default_factory=list)
    unreadable: list[UnreadableScope] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def tracked(self) -> list[KeyFinding]:
        return [f for f in self.findings if f.tracked]

    @property
    def untracked(self) -> list[KeyFinding]:
        return [f for f in self.findings if not f.tracked]

    @property
    def unknown(self) -> list[KeyFinding]:
        return [f for f in self.findings if not f.resolution.known]

    @property
    def too_old(self) -> list[KeyFinding]:
        return [f for f in self.findings if f.too_old]

    @property
    def flag_issues(self) -> list[FlagIssue]:
        issues: list[FlagIssue] = []
        for finding in self.findings:
            if missing := finding.flags.missing(want_hidden=False):
                issues.append(FlagIssue(finding.location, "key id", missing))
            if finding.partner is not None and finding.partner_flags is not None and (
                    missing := finding.partner_flags.missing(want_hidden=True)):
                issues.append(FlagIssue(finding.partner, "secret", missing))
        return sorted(set(issues), key=lambda issue: issue.location)

    @property
    def limited(self) -> str | None:
        """Why the walk could not reach what it should have (an administrator without admin mode)."""
        return self.reach.limitation if self.reach is not None else None

    @property
    def complete(self) -> bool:
        """Every scope within reach was read, the reach was what it should be, and no key-id variable was
        hidden from us."""
        return self.limited is None and not self.unreadable and not any(
            h.aws_named and looks_like_key_id_var(h.location.key) for h in self.hidden)
