"""The Kubernetes manifests and the Dockerfile pass the field's linters, offline: kubernetes-validate --strict
(its schemas ship in the package) and hadolint (a static binary) in every run; checkov under
`./dev lint-deploy`, which installs it in a virtualenv of its own and points ROTATOR_CHECKOV at it.
Findings must be accepted in deploy/ACCEPTED-FINDINGS.md."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy_judges import DEPLOY, ROOT, Finding, stale, unaccepted

MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
# Not a Kubernetes object: kustomize's own file, which kubectl reads and never sends to the API server.
KUSTOMIZATION = DEPLOY / "kubernetes" / "kustomization.yaml"


def tool(name: str) -> str:
    """A console script of this virtualenv ([dev] installs them): missing is an error, never a skip."""
    path = Path(sys.executable).with_name(name)
    assert path.exists(), f"{name} is not installed: pip install -e '.[dev]'"
    return str(path)


def test_kubernetes_validate_strict_accepts_every_manifest() -> None:
    objects = [path for path in MANIFESTS if path != KUSTOMIZATION]
    result = subprocess.run([tool("kubernetes-validate"), "--strict", *map(str, objects)],
                            capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert not re.search(r"^(ERROR|WARN)", output, flags=re.MULTILINE), output
    for path in objects:  # each file was judged, not skipped for want of a schema
        assert re.search(rf"^INFO {re.escape(str(path))} passed for resource", output, flags=re.MULTILINE), path
    # --strict refuses fields the schema does not know, so a typo in a manifest cannot pass.
    typo = subprocess.run([tool("kubernetes-validate"), "--strict", "-"], input="apiVersion: v1\nkind: ConfigMap\n"
                          "metadata: {name: x}\ndata: {a: b}\nunknownField: 1\n", capture_output=True, text=True,
                          timeout=60, check=False)
    assert typo.returncode != 0


def hadolint_findings(dockerfile: Path) -> list[Finding]:
    result = subprocess.run([tool("hadolint"), "--format", "json", "--no-fail", str(dockerfile)],
                            capture_output=True, text=True, timeout=60, check=True)
    return [Finding("Dockerfile", "hadolint", item["code"]) for item in json.loads(result.stdout or "[]")]


def test_hadolint_finds_nothing_beyond_the_accepted_findings(tmp_path: Path) -> None:
    findings = hadolint_findings(DEPLOY / "Dockerfile")
    assert unaccepted(findings) == []
    assert [row.finding for row in stale("hadolint", findings)] == []
    # It really lints: an unpinned base image and apt-get without versions are found.
    probe = tmp_path / "Dockerfile"
    probe.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\n")
    assert {"DL3006", "DL3008"} <= {f.finding for f in hadolint_findings(probe)}


def checkov_binary() -> str | None:
    configured = os.environ.get("ROTATOR_CHECKOV")
    if configured:
        return configured
    default = ROOT / ".venv-lint-deploy" / "bin" / "checkov"
    return str(default) if default.exists() else None


def _relative(file_path: str) -> str:
    """checkov names files relative to the directory it scans or to its working directory, or absolutely."""
    path = Path(file_path)
    if path.is_absolute() and path.is_relative_to(DEPLOY):
        return path.relative_to(DEPLOY).as_posix()
    text = file_path.lstrip("/")
    return text.removeprefix("deploy/")


def test_checkov_finds_nothing_beyond_the_accepted_findings() -> None:
    checkov = checkov_binary()
    if checkov is None:
        pytest.skip("checkov runs under ./dev lint-deploy (it is heavy and pins an older boto3)")
    result = subprocess.run([checkov, "--directory", str(DEPLOY), "--output", "json", "--compact", "--quiet",
                             "--skip-download"], capture_output=True, text=True, timeout=600, cwd=ROOT, check=False)
    assert result.returncode in (0, 1), result.stderr  # 1: some check failed, read below
    reports = json.loads(result.stdout)
    findings = []
    passed = failed = 0
    for report in reports if isinstance(reports, list) else [reports]:
        summary = report.get("summary", {})
        passed += summary.get("passed", 0)
        failed += summary.get("failed", 0)
        assert summary.get("parsing_errors", 0) == 0, report.get("check_type")
        findings += [Finding(_relative(check["file_path"]), "checkov", check["check_id"])
                     for check in report.get("results", {}).get("failed_checks", [])]
    print(f"checkov: {passed} passed, {failed} failed: {sorted(map(str, findings))}")
    assert passed > 0
    assert unaccepted(findings) == []
    assert [row.finding for row in stale("checkov", findings)] == []
