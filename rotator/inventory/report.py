"""What `rotator discover` prints: a readable report, JSON, and ready-to-paste [[credentials]] TOML.

Pure functions of a DiscoveryReport: no I/O here except what the caller does with the strings. Key ids
are shown (they identify, they do not authenticate); secret values are never read, so never shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from rotator.domain import ScopeKind
from rotator.inventory.discover import DiscoveryReport, KeyFinding
from rotator.inventory.rules import Flags, Location, credential_name_for


def _flags_text(flags: Flags | None) -> str:
    if flags is None:
        return "missing"
    shown = [name for name, on in (("masked", flags.masked), ("protected", flags.protected),
                                   ("hidden", flags.hidden)) if on]
    return ", ".join(shown) or "no protection"


def _age(delta: timedelta | None) -> str:
    return "?" if delta is None else f"{delta.days}d"


def owner_text(finding: KeyFinding) -> str:
    r = finding.resolution
    if r.known:
        return f"{r.user_name} ({r.account}{f' {r.account_id}' if r.account_id else ''})"
    if r.account_id and r.account is None:
        return f"unknown (account {r.account_id} not configured)"
    return "unknown"


def status_text(finding: KeyFinding) -> str:
    if finding.tracked:
        return f"tracked: {finding.credential}"
    if finding.same_user_credential:
        return f"untracked location of {finding.same_user_credential}'s user"
    return "untracked"


# --- text ----------------------------------------------------------------------------------------------


def text_sections(report: DiscoveryReport) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, column names, rows) for each non-empty section, in reading order."""
    sections: list[tuple[str, list[str], list[list[str]]]] = []
    rows = [[f.key_id, f.location.scope.label, f"{f.location.key} [{f.location.environment_scope}]", owner_text(f),
             status_text(f), _age(f.age) + (" (too old)" if f.too_old else ""),
             f"{f.partner.key if f.partner else '?'}: {_flags_text(f.partner_flags)}",
             "; ".join(n for n in (f.mismatch, f.resolution.problem) if n)] for f in report.findings]
    sections.append(("AWS access keys found in GitLab variables",
                     ["key id", "scope", "variable [environment]", "IAM user", "status", "age", "secret partner",
                      "notes"], rows))
    issues = report.flag_issues
    if issues:
        sections.append(("Variables missing a protection", ["variable", "holds", "missing"],
                         [[i.location.label, i.role, ", ".join(i.missing)] for i in issues]))
    if report.shadowing:
        sections.append(("Shadowing", ["key", "why", "definitions"],
                         [[s.key, s.reason, s.describe()] for s in report.shadowing]))
    if report.hidden:
        aws_named = [h for h in report.hidden if h.aws_named]
        others = len(report.hidden) - len(aws_named)
        rows = [[h.location.label, "unknown: hidden, GitLab never returns its value"] for h in aws_named]
        if others:
            rows.append([f"{others} other hidden variable(s)", "unknown: see --json for the list"])
        sections.append(("Hidden variables (values cannot be read)", ["variable", "value"], rows))
    if report.unreferenced:
        sections.append(("IAM keys of tracked users that no variable references",
                         ["credential", "IAM user", "key id", "status", "created", "note"],
                         [[u.credential, f"{u.user_name} ({u.account})", u.key_id, u.status,
                           u.created_at.date().isoformat(), ("older than rotate_every; " if u.too_old else "")
                           + ("" if u.certain else "a hidden or unreadable variable may still hold it")]
                          for u in report.unreferenced]))
    old = report.too_old
    old_unreferenced = [u for u in report.unreferenced if u.too_old]
    if old or old_unreferenced:
        sections.append(("Keys older than rotate_every", ["key id", "owner", "age"],
                         [[f.key_id, owner_text(f), _age(f.age)] for f in old]
                         + [[u.key_id, f"{u.user_name} ({u.account})", "unreferenced"] for u in old_unreferenced]))
    if report.unreadable:
        sections.append(("Scopes that could not be read (coverage incomplete)", ["scope", "error"],
                         [[u.scope.label, u.error] for u in report.unreadable]))
    if report.problems:
        sections.append(("Problems", ["problem"], [[p] for p in report.problems]))
    return sections


def summary_line(report: DiscoveryReport) -> str:
    counts = ", ".join(f"{n} {kind}(s)" for kind, n in sorted(report.scope_counts.items())) or "nothing"
    if report.limited is not None:
        coverage = "INCOMPLETE (the walk was limited to memberships: see Problems)"
    elif report.complete:
        # A regular user's walk is complete for what the token can be given, not for the instance.
        everything = report.reach is None or report.reach.everything
        coverage = "complete" if everything else "complete within that reach (the instance's other groups, " \
            "projects and variables need an administrator's token)"
    else:
        coverage = "INCOMPLETE (see hidden variables / unreadable scopes)"
    reach = report.reach
    where = f"GitLab {reach.capabilities.version}, {reach.describe()}: " if reach is not None else ""
    return (f"walked {where}{counts}; {len(report.findings)} key id(s) found: {len(report.tracked)} tracked, "
            f"{len(report.untracked)} untracked, {len(report.unknown)} unknown owner; coverage {coverage}")


# --- JSON ----------------------------------------------------------------------------------------------


def _location(location: Location | None) -> dict[str, Any] | None:
    if location is None:
        return None
    return {"scope": location.scope.kind.value, "path": location.scope.path, "key": location.key,
            "environment_scope": location.environment_scope}


def _flags(flags: Flags | None) -> dict[str, bool] | None:
    return None if flags is None else {"masked": flags.masked, "protected": flags.protected, "hidden": flags.hidden}


def as_json(report: DiscoveryReport) -> dict[str, Any]:
    def finding(f: KeyFinding) -> dict[str, Any]:
        r = f.resolution
        return {
            "key_id": f.key_id, "location": _location(f.location), "flags": _flags(f.flags),
            "tracked": f.tracked, "credential": f.credential, "same_user_credential": f.same_user_credential,
            "account": r.account, "account_id": r.account_id, "user_name": r.user_name, "known": r.known,
            "key_status": r.status, "created_at": r.created_at, "last_used_at": r.last_used_at,
            "age_days": f.age.days if f.age is not None else None, "too_old": f.too_old,
            "partner": _location(f.partner), "partner_flags": _flags(f.partner_flags),
            "mismatch": f.mismatch, "problem": r.problem,
        }

    reach, room = report.reach, report.instance_room
    return {
        "started_at": report.started_at, "finished_at": report.finished_at, "complete": report.complete,
        "gitlab": None if reach is None else {
            "version": reach.capabilities.version, "user": reach.capabilities.username,
            "is_admin": reach.capabilities.is_admin, "admin_access": reach.capabilities.admin_access,
            "token_scopes": reach.capabilities.token_scopes, "group_filter": reach.capabilities.group_filter,
            "masked_and_hidden": reach.capabilities.masked_and_hidden},
        "walk": None if reach is None else {"everything": reach.everything, "reach": reach.describe(),
                                            "limited": reach.limitation},
        "instance_variables": None if room is None else {
            "count": room.count, "limit": room.limit, "limit_known": room.limit_known, "needed": room.needed,
            "room": room.room, "matters": room.matters},
        "scopes": report.scope_counts,
        "keys": [finding(f) for f in report.findings],
        "flag_issues": [{"location": _location(i.location), "holds": i.role, "missing": list(i.missing)}
                        for i in report.flag_issues],
        "shadowing": [{"key": s.key, "reason": s.reason, "locations": [_location(loc) for loc in s.locations]}
                      for s in report.shadowing],
        "hidden": [{"location": _location(h.location), "flags": _flags(h.flags), "aws_named": h.aws_named,
                    "value": "unknown"} for h in report.hidden],
        "unreferenced_keys": [{"credential": u.credential, "account": u.account, "user_name": u.user_name,
                               "key_id": u.key_id, "status": u.status, "created_at": u.created_at,
                               "too_old": u.too_old, "certain": u.certain} for u in report.unreferenced],
        "unreadable_scopes": [{"scope": u.scope.kind.value, "path": u.scope.path, "error": u.error}
                              for u in report.unreadable],
        "problems": list(report.problems),
    }


# --- --emit-config -------------------------------------------------------------------------------------


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string of printable text is a valid TOML basic string


def _target_lines(finding: KeyFinding) -> list[str]:
    location = finding.location
    lines = ["[[credentials.targets]]"]
    if location.scope.kind is ScopeKind.INSTANCE:
        lines.append("instance = true")
    else:
        assert location.scope.path is not None
        lines.append(f"{location.scope.kind.value} = {_q(location.scope.path)}")
        lines.append(f"environment_scope = {_q(location.environment_scope)}")
    secret = finding.partner.key if finding.partner else "AWS_SECRET_ACCESS_KEY"
    lines.append(f"access_key_id_var = {_q(location.key)}")
    lines.append(f"secret_access_key_var = {_q(secret)}")
    if finding.partner_flags is None:
        lines.insert(0, f"# {secret} was not found next to {location.key}: create it (masked, hidden, protected) "
                        "before the first rotation")
    return lines


def emit_config(report: DiscoveryReport, taken_names: Iterable[str]) -> str:
    """[[credentials]] TOML for every untracked key whose user is known, one entry per IAM user.

    Keys whose owner is unknown, and untracked locations of users that already have a credential, come out
    as comments: appending them as tables would either not load or make two credentials rotate one user."""
    taken = set(taken_names)
    grouped: dict[tuple[str, str], list[KeyFinding]] = {}
    comments: list[str] = []
    for finding in report.untracked:
        r = finding.resolution
        if not r.known or r.account is None or r.user_name is None:
            comments.append(f"# {finding.key_id} in {finding.location.label}: owner unknown "
                            f"({r.problem or 'unresolved'}); not emitted")
        elif finding.same_user_credential:
            comments.append(f"# {finding.key_id} in {finding.location.label} belongs to {r.user_name}, already "
                            f"rotated as credential {finding.same_user_credential!r}: add this target to it:")
            comments += [f"#   {line}" for line in _target_lines(finding)]
        else:
            grouped.setdefault((r.account, r.user_name), []).append(finding)
    out = ["# Generated by `rotator discover --emit-config`: review owners and policy, then append to the config."]
    for (account, user), findings in sorted(grouped.items()):
        name = credential_name_for(user, taken)
        taken.add(name)
        keys = sorted({f.key_id for f in findings})
        out += ["", f"# {user}: key(s) {', '.join(keys)} found in {len(findings)} variable(s)", "[[credentials]]",
                f"name = {_q(name)}", f"iam_user = {_q(user)}"]
        if account != "default":
            out.append(f"account = {_q(account)}")
        out.append('owners = []  # e.g. ["#team-name"]: who hears about this key')
        for finding in sorted(findings, key=lambda f: f.location):
            out += _target_lines(finding)
    if comments:
        out += ["", *comments]
    return "\n".join(out) + "\n"
