"""The field's judges of deploy/ (parliament, cloudsplaining, hadolint, kubernetes-validate, checkov) and the
findings we accept from them, read from deploy/ACCEPTED-FINDINGS.md.

A finding is (file, tool, finding id). ACCEPTED-FINDINGS.md lists accepted ones in a Markdown table whose
header is ``| file | tool | finding | reason |``; ``file`` holds one or more shell patterns separated by commas
(``iam-policy*.json``, ``generated:oidc-trust-*``), ``finding`` one pattern, ``reason`` must not be empty.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
ACCEPTED_FILE = DEPLOY / "ACCEPTED-FINDINGS.md"


@dataclass(frozen=True)
class Finding:
    file: str  # relative to deploy/, or "generated:<name>" for a policy rotator writes at run time
    tool: str
    finding: str

    def __str__(self) -> str:
        return f"{self.file} | {self.tool} | {self.finding}"


@dataclass(frozen=True)
class Accepted:
    files: tuple[str, ...]
    tool: str
    finding: str
    reason: str

    def covers(self, finding: Finding) -> bool:
        return (finding.tool == self.tool and fnmatch.fnmatchcase(finding.finding, self.finding)
                and any(fnmatch.fnmatchcase(finding.file, pattern) for pattern in self.files))


def _cells(line: str) -> list[str]:
    return [cell.strip().strip("`").strip() for cell in line.strip().strip("|").split("|")]


@functools.cache
def accepted() -> tuple[Accepted, ...]:
    rows: list[Accepted] = []
    in_table = False
    for line in ACCEPTED_FILE.read_text().splitlines():
        if not line.lstrip().startswith("|"):
            in_table = False
            continue
        cells = _cells(line)
        if [c.lower() for c in cells] == ["file", "tool", "finding", "reason"]:
            in_table = True
            continue
        if not in_table or set("".join(cells)) <= set("-: "):
            continue
        files, tool, finding, reason = cells
        assert reason, f"ACCEPTED-FINDINGS.md: {line!r} gives no reason"
        rows.append(Accepted(tuple(p.strip().strip("`") for p in files.split(",")), tool, finding, reason))
    assert rows, "ACCEPTED-FINDINGS.md has no table of accepted findings"
    return tuple(rows)


def unaccepted(findings: Iterable[Finding]) -> list[str]:
    return sorted(str(f) for f in findings if not any(row.covers(f) for row in accepted()))


def stale(tool: str, findings: Iterable[Finding]) -> list[Accepted]:
    """Accepted rows of ``tool`` that no current finding matches: the file must not keep excuses for
    findings that are gone."""
    found = list(findings)
    return [row for row in accepted() if row.tool == tool and not any(row.covers(f) for f in found)]


# --- parliament ------------------------------------------------------------------------------------------


@functools.cache
def _parliament() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament imports pkg_resources, which warns of its own deprecation
        import parliament
    # What `parliament --include-community-auditors` does first: their findings' severities and titles.
    parliament.override_config(str(Path(parliament.__file__).parent / "community_auditors" / "config_override.yaml"))
    return parliament


def _finding_id(issue: str, location: dict[str, Any], detail: Any) -> str:
    """ISSUE, qualified by what makes it this finding: the escalation method, the actions involved, or the
    detail parliament gives (an unknown condition, a malformed element)."""
    if location.get("type"):
        return f"{issue}/{location['type']}"
    if location.get("actions"):
        return f"{issue}/{','.join(sorted(str(a) for a in location['actions']))}"
    if isinstance(detail, str) and detail:
        return f"{issue}/{detail}"
    return issue


def parliament_findings(name: str, document: str) -> list[Finding]:
    """Every finding of parliament with its community auditors, at every severity but MUTE."""
    parliament = _parliament()
    policy = parliament.analyze_policy_string(document, name, include_community_auditors=True,
                                              config=parliament.config)
    findings = []
    for raw in policy.findings:
        finding = parliament.enhance_finding(raw)
        if finding.severity == "MUTE":
            continue
        findings.append(Finding(name, "parliament", _finding_id(finding.issue, dict(finding.location),
                                                                 finding.detail)))
    return findings


# --- cloudsplaining --------------------------------------------------------------------------------------


def cloudsplaining_escalations(name: str, document: dict[str, Any], *, strict: bool) -> list[Finding]:
    """cloudsplaining's privilege-escalation methods found in one identity policy.

    ``strict`` is `cloudsplaining scan-policy-file --flag-all-risky-actions`: resource ARNs and conditions do
    not count as constraints. Otherwise its default: a statement scoped to ARNs or conditioned is trusted.
    """
    from cloudsplaining.scan.policy_document import PolicyDocument
    from cloudsplaining.shared.exclusions import Exclusions

    scanned = PolicyDocument(document, exclusions=Exclusions({}), flag_conditional_statements=strict,
                             flag_resource_arn_statements=strict)
    return [Finding(name, "cloudsplaining", f"PrivilegeEscalation/{method['type']}")
            for method in scanned.allows_privilege_escalation]


def policy_files() -> list[Path]:
    return sorted(DEPLOY.glob("*.json"))


def is_trust_policy(document: dict[str, Any]) -> bool:
    """A role's trust policy names who may assume it (Principal); an identity policy names no principal."""
    return any("Principal" in statement for statement in document["Statement"])


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded
