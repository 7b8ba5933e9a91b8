"""deploy/: the IAM policy covers every AWS call the code makes and nothing is a wildcard; the systemd
unit verifies; the Dockerfile, the Kubernetes manifests and the alert rules hold what operators rely on."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore import xform_name
from botocore.session import get_session
from prometheus_client.parser import text_string_to_metric_families

from rotator.config.settings import parse_settings
from rotator.logs import is_secret_field, redact_text
from rotator.service.observability import Metrics
from rotator.service.ports import FleetSnapshot

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CODE = [path for path in (ROOT / "rotator").rglob("*.py") if "sandbox" not in path.parts]
ADAPTERS = sorted((ROOT / "rotator" / "adapters").glob("*.py"))

# --- which AWS actions the code needs -------------------------------------------------------------------

_DECLARED = re.compile(r'aws_call\(\s*"([a-z0-9-]+:[A-Za-z0-9]+)"')
_CLIENT_SERVICE = re.compile(r'\.client\(\s*"([a-z0-9-]+)"')
# Calls on a boto3 client: `self._iam.create_access_key(`, `client.lookup_events(`, `self._client.x(`.
_CLIENT_CALL = re.compile(r"\b(?:self\._(?P<attr>[a-z0-9]+)|(?P<var>[a-z_]*client))\.(?P<method>[a-z][a-z0-9_]*)\(")
_PAGINATOR = re.compile(r'get_paginator\(\s*"([a-z0-9_]+)"\s*\)')
# boto3 client methods that are not API operations.
_NOT_OPERATIONS = {"get_paginator", "get_waiter", "close", "can_paginate", "generate_presigned_url"}


def declared_actions() -> set[str]:
    """Every `aws_call("service:Action", ...)` outside the sandbox: the adapters name what they call."""
    return {match for path in CODE for match in _DECLARED.findall(path.read_text())}


def _operations() -> dict[str, dict[str, str]]:
    """snake_case method → "service:Operation", for every service the code builds a client for."""
    services = {match for path in CODE for match in _CLIENT_SERVICE.findall(path.read_text())}
    session = get_session()
    return {service: {xform_name(op): f"{service}:{op}" for op in session.get_service_model(service).operation_names}
            for service in services}


def called_actions() -> set[str]:
    """The boto3 operations the adapters call, found in their source, whether or not declared."""
    operations = _operations()
    found: set[str] = set()
    for path in ADAPTERS:
        text = path.read_text()
        names = [(m["attr"], m["method"]) for m in _CLIENT_CALL.finditer(text)]
        names += [(None, name) for name in _PAGINATOR.findall(text)]
        for receiver, method in names:
            if method in _NOT_OPERATIONS:
                continue
            if receiver is None or receiver.endswith("client"):
                services = list(operations)  # a paginator name, or a client whose service the name does not say
            elif receiver in operations:
                services = [receiver]  # self._iam, self._kms...
            else:
                continue  # self._fernet.encrypt(...) and the like: not AWS
            matches = {operations[s][method] for s in services if method in operations[s]}
            assert len(matches) <= 1, f"{path.name}: {method} is ambiguous: {matches}"
            found |= matches
    return found


def required_actions() -> set[str]:
    """What rotator's own principal needs: every call, except those only an operator's move of a credential
    to GitLab OIDC makes (`plan-oidc --apply`, `retire-credential`; see oidc-migration-policy.json)."""
    return (declared_actions() | called_actions()) - operator_only_actions()


OPERATOR_ADAPTER = ROOT / "rotator" / "adapters" / "aws_oidc.py"


def operator_only_actions() -> set[str]:
    """Actions declared in the OIDC migration adapter and nowhere else."""
    elsewhere = {match for path in CODE if path != OPERATOR_ADAPTER for match in _DECLARED.findall(path.read_text())}
    return set(_DECLARED.findall(OPERATOR_ADAPTER.read_text())) - elsewhere


def policy(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DEPLOY / name).read_text())
    return loaded


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def allowed(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """action (lower case) → the Allow statements granting it."""
    grants: dict[str, list[dict[str, Any]]] = {}
    for statement in document["Statement"]:
        if statement["Effect"] == "Allow":
            for action in _as_list(statement["Action"]):
                grants.setdefault(action.lower(), []).append(statement)
    return grants


def test_the_scan_finds_what_the_code_is_known_to_call() -> None:
    required = required_actions()
    # The rotation protocol, the incident playbook and the audit; if the scan stopped finding these, it broke.
    assert {"iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:DeleteAccessKey", "iam:ListAccessKeys",
            "iam:GetAccessKeyLastUsed", "sts:GetCallerIdentity", "sts:GetAccessKeyInfo", "iam:PutUserPolicy",
            "cloudtrail:LookupEvents"} <= required
    assert "cloudtrail:LookupEvents" in called_actions()  # called without an aws_call declaration


POLICY_FILES = sorted(path.name for path in DEPLOY.glob("*.json"))
# rotator's own principal: in its account, and the role it assumes in every other one (with and without
# [revoke] deny_sessions).
SERVICE_POLICIES = ["iam-policy.json", "cross-account-role.json",
                    "iam-policy-no-session-deny.json", "cross-account-role-no-session-deny.json"]


@pytest.mark.parametrize("name", POLICY_FILES)
def test_no_policy_has_a_wildcard_action(name: str) -> None:
    document = policy(name)
    assert document["Version"] == "2012-10-17"
    for statement in document["Statement"]:
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in _as_list(statement["Action"]):
            assert "*" not in action, f"{name} {statement.get('Sid')}: wildcard action {action!r}"
        assert statement.get("Sid"), "every statement says what it is for in its Sid"


def test_the_iam_policy_covers_every_aws_call_the_code_makes() -> None:
    grants = allowed(policy("iam-policy.json"))
    missing = sorted(action for action in required_actions() if action.lower() not in grants)
    assert missing == []
    for action in ("cloudtrail:LookupEvents", "sts:GetAccessKeyInfo", "iam:PutUserPolicy"):
        assert action.lower() in grants


def test_the_cross_account_role_covers_every_call_made_in_another_account() -> None:
    grants = allowed(policy("cross-account-role.json"))
    # AssumeRole is what rotator does from its own account; the KMS key and the exposure queue live in rotator's
    # own account.
    elsewhere = {a for a in required_actions() if a != "sts:AssumeRole" and not a.startswith(("kms:", "sqs:"))}
    assert sorted(a for a in elsewhere if a.lower() not in grants) == []
    assert "sts:assumerole" not in grants


def test_the_oidc_migration_policy_covers_plan_oidc_and_retire_credential_and_no_more() -> None:
    grants = allowed(policy("oidc-migration-policy.json"))
    needed = set(_DECLARED.findall(OPERATOR_ADAPTER.read_text())) | {"iam:ListAccessKeys", "iam:UpdateAccessKey"}
    assert sorted(a for a in needed if a.lower() not in grants) == []
    assert operator_only_actions() and not operator_only_actions() & {a.lower() for a in allowed(policy(
        "iam-policy.json"))}  # the service itself cannot create roles
    for action, statements in grants.items():  # roles it creates or changes are the gitlab-oidc-* ones only
        if "role" in action and action != "iam:listattachedrolepolicies":
            assert all(r.endswith(":role/gitlab-oidc-*") for s in statements for r in _as_list(s["Resource"])), action


def test_key_actions_are_scoped_to_the_ci_user_path() -> None:
    for name in SERVICE_POLICIES:
        for action, statements in allowed(policy(name)).items():
            if action.startswith("iam:") and ("accesskey" in action or "userpolicy" in action
                                              or "loginprofile" in action or action == "iam:getuser"):
                for statement in statements:
                    for resource in _as_list(statement["Resource"]):
                        assert re.fullmatch(r"arn:aws:iam::[0-9*]+:user/ci/\*", resource), (name, action, resource)
            if action.startswith("iam:"):
                assert all(r != "*" for s in statements for r in _as_list(s["Resource"])), (name, action)


def test_the_trust_policies_name_one_principal_and_an_external_id() -> None:
    [cross] = policy("cross-account-trust-policy.json")["Statement"]
    assert cross["Action"] == "sts:AssumeRole"
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", cross["Principal"]["AWS"])
    assert "sts:ExternalId" in cross["Condition"]["StringEquals"]
    [irsa] = policy("irsa-trust-policy.json")["Statement"]
    assert irsa["Action"] == "sts:AssumeRoleWithWebIdentity"
    subjects = [v for k, v in irsa["Condition"]["StringEquals"].items() if k.endswith(":sub")]
    assert subjects == ["system:serviceaccount:rotator:rotator"]


# --- systemd --------------------------------------------------------------------------------------------


def unit_directives() -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for line in (DEPLOY / "rotator.service").read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            directives.setdefault(key.strip(), []).append(value.strip())
    return directives


def test_the_systemd_unit_is_hardened_and_migrates_first() -> None:
    unit = unit_directives()
    assert unit["DynamicUser"] == ["yes"]
    assert unit["StateDirectory"] == ["rotator"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["Restart"] == ["on-failure"]
    assert {value.split(":", 1)[0] for value in unit["LoadCredential"]} == {"gitlab-token", "slack-token", "state-key"}
    assert [value.split()[1:] for value in unit["ExecStartPre"]] == [["db", "upgrade"]]
    assert unit["ExecStart"][0].endswith("rotator run")
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert not any(key.startswith("Environment") and re.search(r"(TOKEN|SECRET|PASSWORD|KEY)=", value)
                   for key, values in unit.items() for value in values), "secrets travel as credentials only"
    # systemd gives up waiting after TimeoutStopSec: it must outlast the default stop_timeout (30s).
    assert int(unit["TimeoutStopSec"][0].rstrip("s")) > 30


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    # verify checks that ExecStart's binary exists: point it at this environment's rotator.
    unit = tmp_path / "rotator.service"
    unit.write_text((DEPLOY / "rotator.service").read_text().replace(
        "/opt/rotator/bin/rotator", str(Path(sys.executable).with_name("rotator"))))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "rotator.service" not in result.stderr, result.stderr  # no warning about our unit either


# --- Dockerfile -----------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line[:-1].strip()}" if line.endswith("\\") else f"{pending} {line}"
        if not line.endswith("\\"):
            keyword, _, rest = pending.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
            pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_the_image_is_slim_runs_as_non_root_and_checks_healthz() -> None:
    instructions = dockerfile_instructions()
    defaults = dict(arg.split("=", 1) for keyword, arg in instructions if keyword == "ARG" and "=" in arg)
    stage = final_stage()
    base = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], stage[0][1])
    assert re.fullmatch(r"python:3\.\d+-slim", base), base
    users = [arg for keyword, arg in stage if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    [healthcheck] = [arg for keyword, arg in stage if keyword == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    assert ("ENTRYPOINT", '["rotator"]') in stage and ("CMD", '["run"]') in stage


def test_the_image_bakes_in_no_secret() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert redact_text(text) == text  # nothing shaped like an AWS secret, a token or a Fernet key
    for keyword, arg in dockerfile_instructions():
        if keyword in ("ENV", "ARG"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", arg):
                assert not is_secret_field(name) and "SECRET" not in name and "TOKEN" not in name, name
        if keyword in ("COPY", "ADD"):
            sources = [part for part in arg.split() if not part.startswith("--")][:-1]
            for source in sources:
                assert not re.search(r"(?<!pyproject)\.toml$|\.env$|credential|secret|\.pem$|state-key", source), source
                if "--from=" not in arg:  # from the build context, not from an earlier stage
                    assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"


# --- Kubernetes ------------------------------------------------------------------------------------------


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) → object, for the files kustomization.yaml applies."""
    directory = DEPLOY / "kubernetes"
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        for document in yaml.safe_load_all((directory / resource).read_text()):
            objects[(document["kind"], document["metadata"]["name"])] = document
    return objects


def pod_spec(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = objects[("Deployment", "rotator")]["spec"]["template"]["spec"]
    return spec


def test_the_deployment_runs_two_replicas_with_irsa_probes_and_no_static_key() -> None:
    objects = manifests()
    deployment = objects[("Deployment", "rotator")]
    assert deployment["spec"]["replicas"] == 2
    pod = pod_spec(objects)
    account = objects[("ServiceAccount", pod["serviceAccountName"])]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+",
                        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False and account["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    assert container["args"] == ["run"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert [init.get("args") for init in pod["initContainers"]][-1] == ["db", "upgrade"]  # last: after pgpass
    env_names = {e["name"] for c in [container, *pod["initContainers"]] for e in c.get("env", [])}
    assert not env_names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def test_every_container_init_ones_included_is_restricted_and_sized() -> None:
    pod = pod_spec(manifests())
    containers = [*pod["initContainers"], *pod["containers"]]
    assert [c["name"] for c in containers] == ["pgpass", "migrate", "rotator"]
    for container in containers:
        assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                 "capabilities": {"drop": ["ALL"]}}, container["name"]
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
        assert "memory" in resources["limits"], container["name"]


def test_the_database_password_reaches_libpq_as_a_0600_pgpass_file_never_in_the_environment() -> None:
    objects = manifests()
    pod = pod_spec(objects)
    containers = {c["name"]: c for c in [*pod["initContainers"], *pod["containers"]]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    examples = {doc["metadata"]["name"]: doc for doc in
                yaml.safe_load_all((DEPLOY / "kubernetes" / "secret.example.yaml").read_text())}
    for container in containers.values():  # no Secret in any environment: where PostgreSQL is, from a ConfigMap
        assert all("secretRef" not in source for source in container.get("envFrom", [])), container["name"]
        assert all("secretKeyRef" not in e.get("valueFrom", {}) for e in container.get("env", [])), container["name"]
        assert "PGPASSWORD" not in {e["name"] for e in container.get("env", [])}
    database = objects[("ConfigMap", "rotator-database")]["data"]
    assert {"PGHOST", "PGPORT", "PGDATABASE", "PGUSER"} <= set(database) and "PGPASSWORD" not in database
    # The Secret holds one pgpass line, hostname:port:database:username:password, for that database.
    [line] = examples["rotator-database"]["stringData"]["pgpass"].splitlines()
    host, port, dbname, user, password = re.split(r"(?<!\\):", line)
    assert (host, port, dbname, user) == (database["PGHOST"], database["PGPORT"], database["PGDATABASE"],
                                          database["PGUSER"]) and password
    # libpq ignores a pgpass file with any group or other bit (fe-connect.c, passwordFromFile). The kubelet adds
    # group read to Secret files when fsGroup is set, so the init container copies it with mode 0600 into
    # a memory volume, and PGPASSFILE names that copy.
    secret_volume = volumes["database-secret"]["secret"]
    assert secret_volume["secretName"] == "rotator-database" and secret_volume["defaultMode"] == 0o400
    assert volumes["pgpass"]["emptyDir"]["medium"] == "Memory"
    copy = containers["pgpass"]["command"]
    assert copy[:3] == ["install", "-m", "0600"]
    source, target = copy[3:]
    mounts = {m["mountPath"]: m["name"] for m in containers["pgpass"]["volumeMounts"]}
    assert mounts[str(Path(source).parent)] == "database-secret" and mounts[str(Path(target).parent)] == "pgpass"
    for name in ("migrate", "rotator"):
        env = {e["name"]: e.get("value") for e in containers[name]["env"]}
        assert env["PGPASSFILE"] == target
        read_only = {m["mountPath"]: m.get("readOnly") for m in containers[name]["volumeMounts"]}
        assert read_only[str(Path(target).parent)] is True
        assert [s["configMapRef"]["name"] for s in containers[name]["envFrom"]] == ["rotator-database"]
    assert config_map_settings(objects).service.database_url == "postgresql+psycopg://"  # all from libpq
    secrets = {volume["secret"]["secretName"] for volume in pod["volumes"] if "secret" in volume}
    assert secrets == set(examples)


def test_the_network_policy_lets_in_prometheus_only_and_out_dns_postgresql_and_https() -> None:
    objects = manifests()
    policy = objects[("NetworkPolicy", "rotator")]["spec"]
    labels = objects[("Deployment", "rotator")]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    [ingress] = policy["ingress"]
    [source] = ingress["from"]
    assert source == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    container_ports = {p["name"]: p["containerPort"] for p in pod_spec(objects)["containers"][0]["ports"]}
    assert ingress["ports"] == [{"protocol": "TCP", "port": container_ports["http"]}]
    allowed = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]}
    assert allowed == {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 443)}
    dns = [rule for rule in policy["egress"] if ("UDP", 53) in {(p["protocol"], p["port"]) for p in rule["ports"]}]
    assert dns[0]["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    database = objects[("ConfigMap", "rotator-database")]["data"]
    assert ("TCP", int(database["PGPORT"])) in allowed


def test_kustomize_pins_the_image_by_digest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    images = {image["name"]: image for image in kustomization["images"]}
    for container in [*pod_spec(manifests())["initContainers"], *pod_spec(manifests())["containers"]]:
        name = container["image"].split("@")[0].rsplit(":", 1)[0]
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", images[name]["digest"]), container["name"]
        assert "newTag" not in images[name]  # a tag next to the digest would be ignored, and misleading


def test_kustomize_renders_every_image_as_a_digest() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed here (kubectl kustomize renders deploy/kubernetes offline)")
    rendered = subprocess.run([kubectl, "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, text=True,
                              timeout=60, check=True).stdout
    images = re.findall(r"^\s+image:\s*(\S+)$", rendered, flags=re.MULTILINE)
    assert len(images) == 3 and all(re.fullmatch(r"[\w./-]+@sha256:[0-9a-f]{64}", image) for image in images)


def config_map_settings(objects: dict[tuple[str, str], dict[str, Any]]) -> Any:
    text = objects[("ConfigMap", "rotator-config")]["data"]["rotator.toml"]
    return parse_settings(text, source="deploy/kubernetes/configmap.yaml", environ={})


def test_the_config_map_is_a_valid_rotator_config_that_fits_the_pod() -> None:
    objects = manifests()
    settings = config_map_settings(objects)  # raises ConfigError if rotator would refuse it
    assert settings.service.listen.startswith("0.0.0.0:")
    port = int(settings.service.listen.rsplit(":", 1)[1])
    pod = objects[("Deployment", "rotator")]["spec"]["template"]["spec"]
    assert pod["containers"][0]["ports"][0]["containerPort"] == port
    assert pod["terminationGracePeriodSeconds"] > settings.service.stop_timeout.total_seconds()
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    for path in (settings.gitlab.token_file, settings.slack.token_file, settings.service.state_key_file):
        assert str(Path(path).parent) in mounts


def test_the_disruption_budget_keeps_one_replica() -> None:
    objects = manifests()
    budget = objects[("PodDisruptionBudget", "rotator")]
    labels = objects[("Deployment", "rotator")]["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


# --- alerts and comments -----------------------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    metrics = Metrics(lambda: FleetSnapshot(key_created_at={"c": datetime.now(UTC)}, incidents=1),
                      lambda: datetime.now(UTC))
    metrics.step_duration.labels("verify").observe(1.0)
    metrics.last_tick.set(1.0)
    return {sample.name for family in text_string_to_metric_families(metrics.exposition().decode())
            for sample in family.samples}


def alert_rules() -> dict[str, dict[str, Any]]:
    """The rules of deploy/prometheus-alerts.yaml, checked against Prometheus' rule-file structure (promtool is
    not available here): groups with a name and rules, each an alert with expr, for, labels and annotations."""
    document = yaml.safe_load((DEPLOY / "prometheus-alerts.yaml").read_text())
    assert set(document) == {"groups"}
    rules: dict[str, dict[str, Any]] = {}
    for group in document["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule
            assert isinstance(rule["expr"], str) and rule["expr"].count("(") == rule["expr"].count(")")
            assert re.fullmatch(r"\d+[smhd]", rule.get("for", "0s")), rule
            assert rule["labels"]["severity"] in {"info", "warning", "critical"} and rule["annotations"]["summary"]
            assert rule["alert"] not in rules
            rules[rule["alert"]] = rule
    return rules


def seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[duration[-1]]


def test_the_alert_rules_cover_old_keys_held_credentials_and_a_silent_service() -> None:
    rules = alert_rules()
    assert {"RotatorKeyTooOld", "RotatorCredentialHeld", "RotatorNoTick"} <= set(rules)
    assert "rotator_key_age_seconds" in rules["RotatorKeyTooOld"]["expr"]
    assert 'state="held"' in rules["RotatorCredentialHeld"]["expr"]
    assert "rotator_last_tick_timestamp_seconds" in rules["RotatorNoTick"]["expr"]
    assert "300" in rules["RotatorNoTick"]["expr"]  # five minutes
    exported = exported_metric_names()
    for rule in rules.values():
        for name in re.findall(r"\brotator_[a-z_]+", rule["expr"]):
            assert name in exported, f"{rule['alert']} uses {name}, which rotator does not export"


def test_no_tick_covers_absence_and_staleness_and_waits_out_a_cold_start() -> None:
    rule = alert_rules()["RotatorNoTick"]
    expression = " ".join(rule["expr"].split())
    assert "(time() - max(rotator_last_tick_timestamp_seconds)) > 300" in expression
    assert " or absent(rotator_last_tick_timestamp_seconds)" in expression
    # A cold start: the startup probe's budget, then the first tick (at most `tick` away), all within `for:`.
    objects = manifests()
    startup = pod_spec(objects)["containers"][0]["startupProbe"]
    tick = config_map_settings(objects).service.tick.total_seconds()
    assert seconds(rule["for"]) > startup["periodSeconds"] * startup["failureThreshold"] + tick


def test_the_last_tick_is_exported_only_once_a_tick_has_finished() -> None:
    metrics = Metrics(lambda: FleetSnapshot(key_created_at={}, incidents=0), lambda: datetime.now(UTC))

    def last_tick_samples() -> list[float]:
        return [sample.value for family in text_string_to_metric_families(metrics.exposition().decode())
                for sample in family.samples if sample.name == "rotator_last_tick_timestamp_seconds"]

    assert last_tick_samples() == []  # absent, not 0: "no tick since 1970" would fire RotatorNoTick at once
    metrics.last_tick.set(1_700_000_000.0)
    assert last_tick_samples() == [1_700_000_000.0]


def test_every_deploy_file_is_commented_or_documented() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_dir() or path.suffix == ".md":
            continue
        relative = path.relative_to(DEPLOY).as_posix()
        if path.suffix == ".json":  # JSON has no comments: the README explains it, Sids name each part
            assert path.name in readme, f"{relative} is not described in deploy/README.md"
            continue
        comments = [line for line in path.read_text().splitlines() if line.lstrip().startswith("#")]
        assert len(comments) >= 2, f"{relative} carries no explanatory comments"
        top = relative.split("/")[0]
        assert top in readme or path.name in readme, f"{relative} is not described in deploy/README.md"
