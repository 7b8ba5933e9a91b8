"""The audit report as Markdown (for people), JSON (for tools) and a few Slack lines. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rotator.incident.audit.analysis import Finding
from rotator.incident.audit.run import NOT_IN_LOOKUP_EVENTS, AuditReport

TOP = 15


def _iso(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def rerun_command(report: AuditReport) -> str:
    return f"rotator audit --key {report.key_id} --since {_iso(report.start)}"


def delivery_note(report: AuditReport) -> str:
    if report.pending:
        return report.pending_note[0].upper() + report.pending_note[1:] + "."
    return (f"CloudTrail delivers events minutes after the call: everything before {_iso(report.reliable_until)} "
            "had the delivery delay to arrive, which covers the whole window that mattered.")


def coverage_lines(report: AuditReport) -> list[str]:
    """What was covered and what was not, stated the same way in every report: the state, each missing piece
    with how to fill it, and what LookupEvents cannot show at all."""
    accounts = sorted({c.account_id or report.account_id or "the key's account" for c in report.coverage})
    lines = [f"coverage: {report.state}" + (f" ({report.pending_note})" if report.pending and not report.failed
                                            else ""),
             f"queried: {len(report.regions)} region(s) ({', '.join(report.regions)}) in {len(accounts)} account(s) "
             f"({', '.join(accounts)}), {_iso(report.start)} → {_iso(report.end)}; LookupEvents answers per region "
             "and per account, at most 90 days back"]
    lines += [f"NOT covered: {c.key_id} in {c.region}" + (f" of account {c.account_id}" if c.account_id else "")
              + f": {c.error}" for c in report.failed_lookups]
    lines += [f"NOT covered: {gap}" for gap in report.gaps]
    if report.pending and report.failed:
        lines.append(report.pending_note)
    lines.append(NOT_IN_LOOKUP_EVENTS)
    return lines


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _counts(title: str, counts: Sequence[tuple[str, int]], flagged: set[str] | None = None) -> list[str]:
    if not counts:
        return []
    rows = [(f"{name} ⚠ outside known_cidrs" if flagged and name in flagged else name, count)
            for name, count in counts[:TOP]]
    more = [f"_…and {len(counts) - TOP} more_"] if len(counts) > TOP else []
    return [f"### {title}", "", *_table(("value", "events"), rows), *more, ""]


def _finding_row(finding: Finding) -> tuple[object, ...]:
    return (finding.severity, finding.category.value, finding.title, ", ".join(finding.regions),
            _iso(finding.first_seen), _iso(finding.last_seen), ", ".join(finding.examples))


def render_markdown(report: AuditReport) -> str:
    summary = report.summary
    lines = [f"# CloudTrail audit of {report.key_id}", "", f"**Verdict: {report.verdict}**", "",
             f"- Window: {_iso(report.start)} → {_iso(report.end)} (UTC)",
             f"- Regions: {len(report.regions)} ({', '.join(report.regions)})",
             f"- Keys audited: {len(report.keys)}", f"- Events found: {summary.total}"
             + (f", first {_iso(summary.first_seen)}, last {_iso(summary.last_seen)}" if summary.total else ""), ""]
    lines += ["## Findings", ""]
    if summary.findings:
        lines += _table(("severity", "category", "what", "regions", "first seen", "last seen", "events"),
                        [_finding_row(f) for f in summary.findings])
    else:
        lines.append("None in what was covered.")
    lines += ["", "## Keys audited", ""]
    for key in report.keys:
        origin = f": minted by {key.minted_by}" if key.minted_by else " (the reported key)"
        acts = f", acts as {key.principal.describe()}" if key.principal else ""
        lines.append(f"- `{key.key_id}` since {_iso(key.since)}{origin}{acts}")
    lines += ["", "## Activity", ""]
    lines += _counts("By event", summary.by_event)
    lines += _counts("By region", summary.by_region)
    lines += _counts("By source IP", summary.by_source_ip, set(summary.unknown_ips))
    lines += _counts("By user agent", summary.by_user_agent)
    lines += _counts("By key", summary.by_key)
    lines += _counts("Errors", summary.by_error)
    state = {"complete": "complete", "pending follow-up": "pending follow-up",
             "incomplete": "coverage incomplete"}[report.state]
    lines += ["## Coverage", "", f"**{state}**", ""]
    lines += [f"- {line}" for line in coverage_lines(report)]
    lines += [""]
    lines += _table(("account", "key", "region", "pages", "events", "throttled", "status"),
                    [(c.account_id or report.account_id or "-", c.key_id, c.region, c.pages, c.events, c.throttled,
                      "ok" if c.error is None else f"FAILED: {c.error}") for c in report.coverage])
    lines += ["", f"Pages read: {sum(c.pages for c in report.coverage)}; throttled requests (waited out and "
              f"retried): {sum(c.throttled for c in report.coverage)}.", "", delivery_note(report), ""]
    return "\n".join(lines)


def report_json(report: AuditReport) -> dict[str, Any]:
    summary = report.summary
    return {
        "key_id": report.key_id, "account_id": report.account_id, "verdict": report.verdict,
        "complete": report.complete, "window": {"start": _iso(report.start), "end": _iso(report.end)},
        "regions": list(report.regions),
        "keys": [{"key_id": k.key_id, "since": _iso(k.since), "minted_by": k.minted_by, "minted_via": k.minted_via,
                  "account_id": k.account_id, "principal": k.principal.as_dict() if k.principal else None}
                 for k in report.keys],
        "findings": [{"severity": f.severity, "category": f.category.value, "title": f.title, "count": f.count,
                      "regions": list(f.regions), "first_seen": _iso(f.first_seen), "last_seen": _iso(f.last_seen),
                      "events": list(f.examples)} for f in summary.findings],
        "summary": {
            "total": summary.total, "first_seen": _iso(summary.first_seen) if summary.first_seen else None,
            "last_seen": _iso(summary.last_seen) if summary.last_seen else None,
            "by_event": dict(summary.by_event), "by_region": dict(summary.by_region),
            "by_source_ip": dict(summary.by_source_ip), "by_user_agent": dict(summary.by_user_agent),
            "by_error": dict(summary.by_error), "by_key": dict(summary.by_key),
            "ips_outside_known_cidrs": list(summary.unknown_ips),
        },
        "coverage": {
            "complete": report.complete, "state": report.state, "failed": report.failed,
            "pending": report.pending, "reliable_until": _iso(report.reliable_until),
            "follow_up_at": _iso(report.follow_up_at) if report.follow_up_at else None,
            "lines": coverage_lines(report),
            "lookups": [{"account_id": c.account_id or report.account_id, "key_id": c.key_id, "region": c.region,
                         "pages": c.pages, "events": c.events, "throttled": c.throttled, "error": c.error}
                        for c in report.coverage],
            "gaps": list(report.gaps),
            "pages": sum(c.pages for c in report.coverage),
            "throttled": sum(c.throttled for c in report.coverage),
            "delivery_delay_seconds": int(report.delivery_delay.total_seconds()),
            "not_in_lookup_events": NOT_IN_LOOKUP_EVENTS,
            "rerun": rerun_command(report),
        },
        "events": [{"event_id": e.event_id, "time": _iso(e.at), "name": e.name, "source": e.source,
                    "region": e.region, "key_id": e.key_id, "principal": e.principal, "source_ip": e.source_ip,
                    "user_agent": e.user_agent, "error_code": e.error_code,
                    "minted_key_id": e.minted_key_id} for e in report.events],
    }


def slack_lines(report: AuditReport) -> list[str]:
    """A handful of lines for the incident thread: verdict, top findings, coverage, how to re-run."""
    summary = report.summary
    lines = [f"*{report.verdict}*",
             f"{summary.total} event(s) by {len(report.keys)} key(s) in {len(report.regions)} region(s), "
             f"{_iso(report.start)} → {_iso(report.end)}"]
    for finding in summary.findings[:6]:
        lines.append(f"[{finding.severity}] {finding.title} — {', '.join(finding.regions)} "
                     f"({', '.join(finding.examples[:3])})")
    if summary.unknown_ips:
        lines.append(f"source IPs outside known_cidrs: {', '.join(summary.unknown_ips[:5])}")
    lines += coverage_lines(report)
    return lines
