"""Cutting the sessions a compromised key spawned, one principal at a time, and saying exactly what was cut.

A session is cut by an inline policy on the principal it acts as (rotator.incident.principals) that denies
everything to sessions issued before T0. One rotator policy per principal, whose T0 only ever moves later:
an existing rotator deny with the same or a later T0 already does the job. Every deny is read back before it
is claimed. What rotator may not or cannot change (an account not configured, an IAM Identity Center role, a
service-linked role, ``[revoke]`` settings, AccessDenied) is a named gap with the command a human runs.

Each principal becomes one ``SessionCut``, rendered as one line; the terminal, the Slack thread, the incident
report and ``--json`` all print that same line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from rotator.errors import AwsAccessDenied, AwsError, AwsNotFound
from rotator.incident.ports import IncidentIam
from rotator.incident.principals import IDENTITY_CENTER_PREFIX, SERVICE_LINKED_PATH, Principal, under_paths
from rotator.incident.steps import (
    SESSION_DENY_POLICY,
    Step,
    StepStatus,
    iso_seconds,
    legacy_session_deny_policy_name,
    parse_iso,
    session_deny_document,
    t0_of_document,
)

READ_BACK_ATTEMPTS = 5  # GetUserPolicy / GetRolePolicy reads, about a second apart: IAM is eventually consistent
CUT_WORKERS = 8


class CutStatus(StrEnum):
    DENIED = "denied"  # written now and read back
    ALREADY = "already denied"  # a rotator deny with this T0 or a later one was there; read
    UNVERIFIED = "not verified"  # written, but the read-back did not show it
    NOT_CUT = "NOT cut"
    PLANNED = "would deny"  # --dry-run


@dataclass(frozen=True)
class RevokeRules:
    """[revoke] as far as cutting sessions is concerned."""

    deny_sessions: bool = True
    role_session_revocation: str = "all"  # "all" | "paths" | "off"
    role_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class SessionCut:
    principal: Principal
    status: CutStatus
    t0: datetime  # sessions issued before it must be denied
    policy: str | None = None  # the inline policy that denies them
    denies_before: str | None = None  # the T0 that policy holds, as read back (at or after t0)
    reason: str = ""  # why not cut (or not verified)
    command: str = ""  # what a human runs instead
    sessions: tuple[str, ...] = ()  # the session key ids found acting as this principal
    found_by: str = ""  # how the principal was found ("AssumeRole by AKIA… at …")
    attempted: bool = False  # rotator asked AWS and was refused (as opposed to not trying at all)

    @property
    def cut(self) -> bool:
        return self.status in (CutStatus.DENIED, CutStatus.ALREADY)

    @property
    def open_gap(self) -> bool:
        """A session was found and is not (provably) cut."""
        return bool(self.sessions) and not self.cut and self.status is not CutStatus.PLANNED

    def line(self) -> str:
        who = f"sessions of {self.principal.describe()}"
        found = f" [found: {', '.join(self.sessions)}]" if self.sessions else ""
        if self.status is CutStatus.DENIED:
            return f"{who} issued before {self.denies_before}: denied (inline policy {self.policy}, read back){found}"
        if self.status is CutStatus.ALREADY:
            return (f"{who} issued before {self.denies_before}: denied (inline policy {self.policy}, in place "
                    f"already, read back){found}")
        if self.status is CutStatus.PLANNED:
            return f"{who} issued before T0: would be denied (inline policy {self.policy}; dry run){found}"
        where = (f" with credentials of account {self.principal.account_id}"
                 if self.principal.account is None and self.principal.account_id else "")
        then = f"; run{where}: {self.command}" if self.command else ""
        return f"{who}: {self.status.value} — {self.reason}{then}{found}"

    def step(self) -> Step:
        status = {CutStatus.DENIED: StepStatus.DONE, CutStatus.ALREADY: StepStatus.ALREADY,
                  CutStatus.PLANNED: StepStatus.PLANNED}.get(self.status)
        if status is None:
            # Not cut: a failure when sessions were found or rotator tried and was refused; a configured
            # choice ([revoke]) with nothing found yet is only reported.
            status = StepStatus.FAILED if self.sessions or self.attempted else StepStatus.SKIPPED
        return Step("deny sessions", status, self.line())

    def with_sessions(self, sessions: Iterable[str], found_by: str = "") -> SessionCut:
        merged = tuple(dict.fromkeys([*self.sessions, *sessions]))
        return replace(self, sessions=merged, found_by=self.found_by or found_by)

    def as_dict(self) -> dict[str, Any]:
        return {"principal": self.principal.as_dict(), "status": self.status.value, "t0": iso_seconds(self.t0),
                "policy": self.policy, "denies_before": self.denies_before, "reason": self.reason,
                "command": self.command, "sessions": list(self.sessions), "found_by": self.found_by,
                "attempted": self.attempted, "line": self.line(), "cut": self.cut}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionCut | None:
        t0 = parse_iso(data.get("t0"))
        try:
            principal = Principal.from_dict(dict(data["principal"]))
            status = CutStatus(str(data["status"]))
        except (KeyError, TypeError, ValueError):
            return None
        if t0 is None:
            return None
        return cls(principal, status, t0, data.get("policy"), data.get("denies_before"), str(data.get("reason") or ""),
                   str(data.get("command") or ""), tuple(data.get("sessions") or ()), str(data.get("found_by") or ""),
                   bool(data.get("attempted")))


# --- what rotator will not or cannot change -------------------------------------------------------------


def deny_command(principal: Principal, t0: datetime) -> str:
    """The AWS CLI command that puts rotator's deny on ``principal``, for a human to run."""
    document = session_deny_document(t0)
    if principal.name.startswith(IDENTITY_CENTER_PREFIX):
        # IAM refuses changes to these roles; their policies come from the permission set in IAM Identity Center.
        return ("aws sso-admin put-inline-policy-to-permission-set --instance-arn <IAM Identity Center instance ARN> "
                f"--permission-set-arn <ARN of the permission set behind {principal.name}> --inline-policy "
                f"'<its current inline policy, with this statement added: {document}>' && aws sso-admin "
                "provision-permission-set --instance-arn <same> --permission-set-arn <same> "
                "--target-type ALL_PROVISIONED_ACCOUNTS")
    flag = "--user-name" if principal.kind == "user" else "--role-name"
    return (f"aws iam put-{principal.kind}-policy {flag} {principal.name} --policy-name {SESSION_DENY_POLICY} "
            f"--policy-document '{document}'")


def refusal(principal: Principal, rules: RevokeRules) -> str | None:
    """Why rotator will not (configuration) or cannot (AWS) put the deny on ``principal``; None when it tries."""
    if not rules.deny_sessions:
        return "[revoke] deny_sessions = false: rotator writes no deny policy"
    if principal.kind == "role" and principal.path.startswith(SERVICE_LINKED_PATH):
        return ("a service-linked role: AWS cannot revoke its sessions and refuses changes to its policies (IAM "
                "User Guide, \"Revoke IAM role temporary security credentials\"); its sessions expire by themselves")
    if principal.kind == "role" and principal.name.startswith(IDENTITY_CENTER_PREFIX):
        return ("an IAM Identity Center role: IAM refuses changes to it (\"only modifiable by AWS\"); add the deny "
                "to its permission set in IAM Identity Center")
    if principal.account is None:
        return (f"account {principal.account_id or '(unknown)'} is not configured: no [[aws.accounts]] entry "
                "reaches it")
    if principal.kind == "role" and rules.role_session_revocation == "off":
        return '[revoke] role_session_revocation = "off"'
    if principal.kind == "role" and rules.role_session_revocation == "paths" and not under_paths(
            principal, rules.role_paths):
        return f"its path {principal.path} is not under [revoke] role_paths ({', '.join(rules.role_paths)})"
    return None


# --- cutting one principal --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CutPorts:
    iam_for: Callable[[str], IncidentIam]  # configured account name → IAM of that account
    rules: RevokeRules
    sleep: Callable[[float], None]
    dry_run: bool = False


def _read(iam: IncidentIam, principal: Principal, policy: str) -> str | None:
    if principal.kind == "user":
        return iam.user_policy(principal.name, policy)
    return iam.role_policy(principal.name, policy)


def _put(iam: IncidentIam, principal: Principal, policy: str, document: str) -> None:
    if principal.kind == "user":
        iam.put_user_policy(principal.name, policy, document)
    else:
        iam.put_role_policy(principal.name, policy, document)


def _in_place(iam: IncidentIam, principal: Principal, t0: datetime, legacy_key_id: str | None) -> tuple[
        str, str] | None:
    """(policy, its T0) of a rotator deny that already cuts every session issued before ``t0``."""
    names = [SESSION_DENY_POLICY, *([legacy_session_deny_policy_name(legacy_key_id)] if legacy_key_id else [])]
    for name in names:
        written = t0_of_document(_read(iam, principal, name) or "")
        moment = parse_iso(written)
        if written is not None and moment is not None and moment >= t0:
            return name, written
    return None


def cut_sessions(ports: CutPorts, principal: Principal, t0: datetime, *, sessions: Sequence[str] = (),
                 found_by: str = "", legacy_key_id: str | None = None) -> SessionCut:
    """Deny every session of ``principal`` issued before ``t0``, and read the deny back. Never raises for
    AWS: a refusal is a SessionCut saying so, with the command for a human."""
    base = SessionCut(principal, CutStatus.NOT_CUT, t0, sessions=tuple(sessions), found_by=found_by,
                      command=deny_command(principal, t0))
    why_not = refusal(principal, ports.rules)
    if why_not is not None:
        return replace(base, reason=why_not, command="" if principal.path.startswith(SERVICE_LINKED_PATH) else
                       base.command)
    assert principal.account is not None
    iam = ports.iam_for(principal.account)
    try:
        found = _in_place(iam, principal, t0, legacy_key_id)
        if found is not None:
            return replace(base, status=CutStatus.ALREADY, policy=found[0], denies_before=found[1], command="")
        if ports.dry_run:
            return replace(base, status=CutStatus.PLANNED, policy=SESSION_DENY_POLICY, command="")
        _put(iam, principal, SESSION_DENY_POLICY, session_deny_document(t0))
    except AwsNotFound as exc:
        return replace(base, attempted=True, reason=f"no such {principal.kind} ({exc.code or 'NoSuchEntity'})")
    except AwsAccessDenied as exc:
        return replace(base, attempted=True, reason=f"rotator's credentials may not change it ({exc.code}: "
                                                    f"{_short(exc.message)})")
    except AwsError as exc:
        return replace(base, attempted=True, reason=_short(exc.message))
    return _read_back(ports, iam, replace(base, policy=SESSION_DENY_POLICY))


def _read_back(ports: CutPorts, iam: IncidentIam, written: SessionCut) -> SessionCut:
    expected = iso_seconds(written.t0)
    seen: str | None = None
    problem = ""
    for attempt in range(READ_BACK_ATTEMPTS):
        try:
            seen = t0_of_document(_read(iam, written.principal, SESSION_DENY_POLICY) or "")
        except AwsError as exc:
            problem = _short(exc.message)
            break
        moment = parse_iso(seen)
        if seen is not None and moment is not None and moment >= written.t0:
            return replace(written, status=CutStatus.DENIED, denies_before=seen, command="")
        if attempt + 1 < READ_BACK_ATTEMPTS:
            ports.sleep(1.0)
    verb = "get-user-policy --user-name" if written.principal.kind == "user" else "get-role-policy --role-name"
    return replace(written, status=CutStatus.UNVERIFIED, attempted=True,
                   reason=f"PutPolicy was accepted but reading {SESSION_DENY_POLICY} back "
                          + (f"failed ({problem})" if problem else f"showed {seen or 'no rotator deny'}, "
                             f"not T0 {expected}"),
                   command=f"aws iam {verb} {written.principal.name} --policy-name {SESSION_DENY_POLICY}")


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."


def required_t0(t0: datetime, minted_at: Iterable[datetime | None]) -> datetime:
    """The T0 a principal's deny needs: the incident's, or later when a session was minted at or after it
    (IAM is eventually consistent: a key can still mint a session moments after it was deactivated)."""
    latest = max((moment for moment in minted_at if moment is not None), default=None)
    if latest is None or latest < t0:
        return t0
    return datetime.fromtimestamp(int(latest.timestamp()) + 1, t0.tzinfo)


# --- many principals, cut as the audit finds them ----------------------------------------------------------


@dataclass(frozen=True)
class FoundSession:
    """A session key the audit found, and who it acts as."""

    key_id: str
    principal: Principal
    minted_at: datetime | None
    found_by: str


@dataclass
class SessionCutter:
    """Cuts each principal once, on its own worker thread, as soon as a session acting as it is found (so the
    last role is cut about when the audit reads its record, not after the whole audit). A principal cut
    earlier (``known``) is cut again only when a session needs a later T0."""

    ports: CutPorts
    t0: datetime
    known: dict[tuple[str, str, str], SessionCut] = field(default_factory=dict)
    workers: int = CUT_WORKERS
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pending: dict[tuple[str, str, str], Future[SessionCut]] = field(default_factory=dict, repr=False)
    _minted: dict[tuple[str, str, str], list[datetime | None]] = field(default_factory=dict, repr=False)
    _sessions: dict[tuple[str, str, str], list[FoundSession]] = field(default_factory=dict, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    def found(self, session: FoundSession) -> None:
        key = session.principal.key
        with self._lock:
            self._sessions.setdefault(key, []).append(session)
            self._minted.setdefault(key, []).append(session.minted_at)
            if key in self._pending:
                return  # finish() re-checks the T0 once everything is found
            earlier = self.known.get(key)
            if earlier is not None and (not earlier.cut or earlier.t0 >= required_t0(self.t0, self._minted[key])):
                return  # cut already (or a known gap): only the session list grows
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="cut")
            self._pending[key] = self._pool.submit(self._cut, session.principal, required_t0(self.t0, [
                session.minted_at]), session.found_by)

    def _cut(self, principal: Principal, t0: datetime, found_by: str) -> SessionCut:
        return cut_sessions(self.ports, principal, max(t0, self.t0), found_by=found_by)

    def finish(self) -> list[SessionCut]:
        """Wait for every cut, re-cut a principal whose later-found session needs a later T0, and return every
        principal's cut (the known ones included), with the sessions found for each."""
        with self._lock:
            pending = dict(self._pending)
        results = {key: future.result() for key, future in pending.items()}
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        cuts = dict(self.known)
        cuts.update(results)
        for key, sessions in self._sessions.items():
            need = required_t0(self.t0, self._minted[key])
            cut = cuts.get(key)
            if cut is not None and cut.cut and cut.t0 < need:
                cut = cut_sessions(self.ports, cut.principal, need, found_by=cut.found_by)
            if cut is None:  # pragma: no cover - every found principal was submitted or known
                continue
            cuts[key] = cut.with_sessions((s.key_id for s in sessions), sessions[0].found_by)
        self.known = cuts
        self._pending.clear()
        return list(cuts.values())


def earlier_cuts(recorded: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], SessionCut]:
    """The cuts an incident recorded, keyed by principal."""
    cuts = (SessionCut.from_dict(item) for item in recorded)
    return {cut.principal.key: cut for cut in cuts if cut is not None}


def minted_after(sessions: Iterable[FoundSession], moment: datetime | None) -> list[FoundSession]:
    """Sessions minted at or after ``moment`` (the verified deactivation): IAM's eventual consistency at work."""
    if moment is None:
        return []
    return [s for s in sessions if s.minted_at is not None and s.minted_at >= moment]
