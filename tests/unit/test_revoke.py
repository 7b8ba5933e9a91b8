"""The compromised-key playbook against fakes of the ports: containment first, then every follow-up."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from rotator.audit import AuditReport, run_audit
from rotator.batch import lease_name, rotate_one
from rotator.domain import (
    CredentialSpec,
    Incident,
    Journal,
    KeyOwner,
    KeyStatus,
    Phase,
    ScopeKind,
    TargetSpec,
)
from rotator.errors import AwsAccessDenied, AwsError, StoreError, UsageError
from rotator.revoke import (
    VERIFY_ATTEMPTS,
    Containment,
    ContainmentPorts,
    NotContained,
    StepStatus,
    contain,
    session_deny_document,
    session_deny_policy_name,
)
from rotator.revoke_config import AccountRole, ContainmentSettings, config_path
from rotator.revoke_followup import FollowUpOptions, FollowUpPorts, IncidentOutcome, follow_up
from rotator.revoke_replace import ReplacePorts, replace_key
from rotator.rotation import RotationPorts
from tests.unit.fakes import T0, FakeCiVariables, FakeClock, FakeNotifier, FakeSealer, FakeSts
from tests.unit.incident_fakes import ACCOUNT, FakeCloudTrail, FakeDirectory, FakeIncidentIam, FakeIncidentStore, record

PROJECT = TargetSpec(ScopeKind.PROJECT, "payments/api")
GROUP = TargetSpec(ScopeKind.GROUP, "payments", environment_scope="production")


@dataclass
class World:
    clock: FakeClock
    iam: FakeIncidentIam
    directory: FakeDirectory
    store: FakeIncidentStore
    notifier: FakeNotifier
    variables: FakeCiVariables
    trail: FakeCloudTrail
    spec: CredentialSpec
    key_id: str
    secret: str
    account_ids: dict[str, str | None] = field(default_factory=lambda: {"default": None})
    others: list[CredentialSpec] = field(default_factory=list)  # configured besides ``spec``

    def ports(self) -> ContainmentPorts:
        return ContainmentPorts(iam_for=lambda account: self.iam, directory=self.directory,
                                account_ids=self.account_ids, tracked_owner=self.store.key_owner, clock=self.clock)

    def contain(self, key_id: str | None = None, **options: object) -> Containment:
        return contain(self.key_id if key_id is None else key_id, self.ports(), **options)  # type: ignore[arg-type]

    def rotation_ports(self, spec: CredentialSpec) -> RotationPorts:
        return RotationPorts(self.iam, FakeSts(self.iam, self.clock), self.variables, self.store, FakeSealer(),
                             self.clock, self.notifier, actor="responder")

    def audit(self, containment: Containment) -> AuditReport:
        return run_audit(self.trail, containment.key_id, start=T0 - timedelta(days=1), end=self.clock.now(),
                         regions=self.trail.regions, account_id=ACCOUNT)

    def follow_up_ports(self, *, dry_run: bool = False) -> FollowUpPorts:
        def replace(identity, tracked):  # type: ignore[no-untyped-def]
            ports = ReplacePorts(
                variables=self.variables, rotation_ports=self.rotation_ports,
                rotate=lambda rotation, spec: rotate_one(rotation, spec, holder="incident/test",
                                                         lease_ttl=timedelta(minutes=2), force=True),
                register=lambda spec: self.store.sync_credentials([spec], self.clock.now()))
            return replace_key(ports, identity, tracked=tracked, configured=[self.spec, *self.others],
                               dry_run=dry_run)

        return FollowUpPorts(clock=self.clock, actor="responder@laptop", holder="incident/test",
                             lease_ttl=timedelta(minutes=2), store=lambda: self.store, notifier=lambda: self.notifier,
                             security_channel="#security", configured=[self.spec, *self.others], replace=replace,
                             audit=self.audit)

    def revoke(self, *, replace: bool = False, dry_run: bool = False, audit: bool = True) -> IncidentOutcome:
        containment = self.contain(dry_run=dry_run)
        return follow_up(containment, self.follow_up_ports(dry_run=dry_run),
                         FollowUpOptions(reason="leaked in a gist", replace=replace, audit=audit, dry_run=dry_run))


def make_world() -> World:
    clock = FakeClock(T0)
    iam = FakeIncidentIam(clock)
    iam.add_user("ci-payments")
    key = iam.keys["ci-payments"][0]
    variables = FakeCiVariables()
    for target in (PROJECT,):
        variables.seed(target.kind, target.path, target.access_key_id_var, key.key_id)
        variables.seed(target.kind, target.path, target.secret_access_key_var, key.secret)
    spec = CredentialSpec("payments", "ci-payments", owners=("#team-payments",), targets=(PROJECT,))
    trail = FakeCloudTrail(["us-east-1", "eu-west-1", "ap-southeast-2"])
    return World(clock, iam, FakeDirectory({ACCOUNT: iam}), FakeIncidentStore(), FakeNotifier(), variables, trail,
                 spec, key.key_id, key.secret)


def step(outcome: IncidentOutcome | Containment, name: str) -> StepStatus:
    return next(s.status for s in outcome.steps if s.name == name)


# --- containment ------------------------------------------------------------------------------------


def test_untracked_key_is_identified_through_aws_then_deactivated_first() -> None:
    world = make_world()
    result = world.contain()
    assert result.contained and result.identity is not None
    assert (result.identity.user_name, result.identity.account, result.identity.source) == ("ci-payments", "default",
                                                                                            "aws")
    assert world.directory.calls == ["GetAccessKeyInfo"]
    assert world.iam.calls[:3] == ["GetAccessKeyLastUsed", "UpdateAccessKey", "ListAccessKeys"]
    assert world.iam.writes[0] == "UpdateAccessKey"  # the first write of the whole command
    assert world.iam.key(world.key_id).status is KeyStatus.INACTIVE
    assert step(result, "deactivate") is StepStatus.DONE


def test_tracked_key_resolves_from_the_store_without_asking_sts() -> None:
    world = make_world()
    world.store.remember_key(KeyOwner(world.key_id, "payments", "default", "ci-payments"), T0, status="Active")
    result = world.contain()
    assert result.identity is not None and result.identity.source == "store"
    assert result.identity.credential == "payments"
    assert world.directory.calls == []
    assert world.iam.calls[0] == "UpdateAccessKey"


def test_a_stale_store_owner_falls_back_to_aws() -> None:
    world = make_world()
    world.store.remember_key(KeyOwner(world.key_id, "old", "default", "someone-else"), T0, status="Active")
    world.iam.add_user("someone-else", keys=0)
    result = world.contain()
    assert result.contained and result.identity is not None
    assert (result.identity.user_name, result.identity.source) == ("ci-payments", "aws")
    assert any("out of date" in attempt for attempt in result.tried)


def test_unknown_key_is_not_contained_and_says_what_was_tried() -> None:
    world = make_world()
    with pytest.raises(NotContained) as failure:
        world.contain("AKIAZZZZZZZZZZZZZZZZ")
    assert failure.value.exit_code == 1
    assert any("GetAccessKeyInfo" in t for t in failure.value.tried)
    assert any("GetAccessKeyLastUsed" in t for t in failure.value.tried)
    assert world.iam.writes == []


@pytest.mark.parametrize("bad", ["AKIA123", "akiaabcdefghijklmnop", "AKIAABCDEFGHIJKLMNOPQ", "ABIAABCDEFGHIJKLMNOP",
                                 "AKIAABCDEFGHIJKLMNO!", ""])
def test_malformed_key_is_a_usage_error_before_any_call(bad: str) -> None:
    world = make_world()
    with pytest.raises(UsageError) as failure:
        world.contain(bad)
    assert failure.value.exit_code == 2
    assert world.iam.calls == [] and world.directory.calls == []


def test_a_refused_update_still_counts_when_the_key_is_already_inactive() -> None:
    world = make_world()
    world.iam.key(world.key_id).status = KeyStatus.INACTIVE

    def deny() -> None:
        raise AwsAccessDenied("iam:UpdateAccessKey: AccessDenied", code="AccessDenied")

    world.iam.fail["UpdateAccessKey"] = deny
    result = world.contain()
    assert result.contained
    assert step(result, "deactivate") is StepStatus.ALREADY


def test_an_update_that_never_takes_effect_is_not_contained() -> None:
    world = make_world()
    world.iam.ignore_deactivate = True
    with pytest.raises(NotContained, match="still Active"):
        world.contain()
    assert world.iam.calls.count("ListAccessKeys") == VERIFY_ATTEMPTS
    assert world.clock.slept == VERIFY_ATTEMPTS - 1  # about a second between reads: IAM is eventually consistent


def test_session_deny_cuts_sessions_issued_before_t0() -> None:
    world = make_world()
    result = world.contain()
    document = json.loads(world.iam.user_policies[("ci-payments", session_deny_policy_name(world.key_id))])
    statement = document["Statement"][0]
    assert (statement["Effect"], statement["Action"], statement["Resource"]) == ("Deny", "*", "*")
    issued_before = statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
    assert issued_before == result.t0.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert result.t0 > T0  # after the key was verified Inactive: every session it minted is older
    assert world.iam.calls.index("PutUserPolicy") > world.iam.calls.index("ListAccessKeys")


def test_rerun_keeps_the_existing_session_deny() -> None:
    world = make_world()
    earlier = session_deny_document(T0)
    world.iam.user_policies[("ci-payments", session_deny_policy_name(world.key_id))] = earlier
    result = world.contain()
    assert step(result, "deny sessions") is StepStatus.ALREADY
    assert "PutUserPolicy" not in world.iam.calls
    assert world.iam.user_policies[("ci-payments", session_deny_policy_name(world.key_id))] == earlier


def test_console_password_is_reported_and_deleted_only_when_asked() -> None:
    world = make_world()
    world.iam.login_profiles["ci-payments"] = T0
    assert step(world.contain(), "console login") is StepStatus.ATTENTION
    assert "ci-payments" in world.iam.login_profiles
    assert step(world.contain(disable_console=True), "console login") is StepStatus.DONE
    assert "ci-payments" not in world.iam.login_profiles


def test_dry_run_changes_nothing() -> None:
    world = make_world()
    outcome = world.revoke(dry_run=True, replace=True)
    assert world.iam.writes == []
    assert world.iam.key(world.key_id).status is KeyStatus.ACTIVE
    assert world.notifier.posted == [] and world.variables.writes == [] and world.store.incident_rows == {}
    assert step(outcome, "deactivate") is StepStatus.PLANNED
    assert step(outcome, "replace") is StepStatus.PLANNED
    assert outcome.exit_code == 0


def test_temporary_key_with_a_role_gets_the_session_deny_on_the_role() -> None:
    world = make_world()
    result = world.contain("ASIAABCDEFGHIJKLMNOP", role="ci-deployer")
    assert result.contained and result.temporary
    assert step(result, "deactivate") is StepStatus.SKIPPED
    assert ("ci-deployer", session_deny_policy_name("ASIAABCDEFGHIJKLMNOP")) in world.iam.role_policies
    assert "UpdateAccessKey" not in world.iam.calls


def test_temporary_key_without_a_known_principal_is_not_contained() -> None:
    world = make_world()
    with pytest.raises(NotContained, match="temporary key") as failure:
        world.contain("ASIAABCDEFGHIJKLMNOP")
    assert "--role" in failure.value.hint


def test_temporary_key_resolved_by_the_store_denies_the_users_sessions() -> None:
    world = make_world()
    world.store.remember_key(KeyOwner("ASIAABCDEFGHIJKLMNOP", None, "default", "ci-payments"), T0, status="minted")
    result = world.contain("ASIAABCDEFGHIJKLMNOP")
    assert result.contained
    assert ("ci-payments", session_deny_policy_name("ASIAABCDEFGHIJKLMNOP")) in world.iam.user_policies


def test_the_key_account_is_matched_to_the_configured_role() -> None:
    world = make_world()
    other = FakeIncidentIam(world.clock)
    other.add_user("ci-prod", keys=3)  # fake key ids count per fake: skip past the default account's
    prod_key = other.keys["ci-prod"][-1].key_id
    world.directory.accounts["111122223333"] = other
    world.account_ids = {"default": None, "prod": "111122223333"}
    iams = {"default": world.iam, "prod": other}
    ports = ContainmentPorts(iam_for=iams.__getitem__, directory=world.directory, account_ids=world.account_ids,
                             tracked_owner=world.store.key_owner, clock=world.clock)
    result = contain(prod_key, ports)
    assert result.identity is not None and result.identity.account == "prod"
    assert other.key(prod_key).status is KeyStatus.INACTIVE and world.iam.writes == []


def test_containment_settings_read_only_aws_and_service(tmp_path: object) -> None:
    from pathlib import Path

    from rotator.config import resolve_config_path
    from rotator.revoke_config import load_containment_settings

    folder = Path(str(tmp_path))
    file = folder / "rotator.toml"
    file.write_text('[aws]\nregion = "eu-west-1"\n[[aws.accounts]]\nname = "prod"\n'
                    'role_arn = "arn:aws:iam::111122223333:role/rotator"\n[gitlab]\nurl = 3\n')
    settings = load_containment_settings(str(file))
    assert settings.region == "eu-west-1"
    assert settings.account_ids() == {"default": None, "prod": "111122223333"}
    assert load_containment_settings(str(folder / "missing.toml")) == ContainmentSettings(str(folder / "missing.toml"))
    environ = {"ROTATOR_CONFIG": "x.toml"}
    assert config_path(None, environ) == resolve_config_path(None, environ)
    assert AccountRole("a", "arn:aws:iam::210987654321:role/x").account_id == "210987654321"


# --- follow-ups -------------------------------------------------------------------------------------


def test_full_run_records_notifies_and_audits_in_one_thread() -> None:
    world = make_world()
    world.trail.add(record("CreateUser", key_id=world.key_id, region="eu-west-1"))
    outcome = world.revoke()
    assert outcome.exit_code == 0, [s for s in outcome.steps if s.failed]
    root, *rest = world.notifier.posted
    assert (root.channel, root.thread) == ("#security", None)
    text = "\n".join(root.lines)
    for expected in (world.key_id, "ci-payments", "account: default", "T0:", "responder@laptop", "leaked in a gist"):
        assert expected in text
    owners = [p for p in rest if p.channel == "#team-payments"]
    assert len(owners) == 1 and owners[0].thread is None
    audit_replies = [p for p in rest if "CloudTrail audit" in p.title]
    assert len(audit_replies) == 1 and audit_replies[0].thread == "1.000"
    incident = next(iter(world.store.incident_rows.values()))
    assert (incident.key_id, incident.user_name, incident.credential) == (world.key_id, "ci-payments", "payments")
    assert incident.slack_thread == "1.000" and incident.t0 == outcome.containment.t0
    assert incident.report_markdown and "identity persistence" in incident.report_markdown
    assert json.loads(incident.report_json or "{}")["audit"]["complete"] is True


def test_rerun_reuses_the_incident_and_its_thread() -> None:
    world = make_world()
    first = world.revoke()
    world.clock.advance(timedelta(minutes=10))
    second = world.revoke()
    assert len(world.store.incident_rows) == 1
    assert second.incident_id == first.incident_id
    assert step(second, "earlier incident") is StepStatus.ALREADY
    assert step(second, "deny sessions") is StepStatus.ALREADY
    assert second.containment.t0 == first.containment.t0
    reruns = [p for p in world.notifier.posted if p.title.startswith("rotator: revoke re-run")]
    assert len(reruns) == 1 and reruns[0].thread == "1.000"


def test_in_flight_rotation_is_superseded_and_its_lease_taken() -> None:
    world = make_world()
    journal = Journal("rot-1", "payments", "default", "ci-payments", "AIDA1", (world.key_id,), world.key_id,
                      Phase.VERIFIED, T0, T0, new_key_id="AKIA9999999999999999", sealed_secret=b"sealed")
    world.store.save_journal(journal)
    world.store.leases[lease_name("payments")] = ("service/1", T0 + timedelta(hours=1))
    outcome = world.revoke()
    after = world.store.journal_rows["rot-1"]
    assert after.phase is Phase.SUPERSEDED and after.sealed_secret is None
    assert "incident" in (after.error or "")
    assert step(outcome, "preempt") is StepStatus.DONE
    assert lease_name("payments") not in world.store.leases  # taken from the service, released when done
    assert any(e.action == "supersede" for e in world.store.event_rows)


def test_slack_failure_is_exit_3_and_never_touches_containment() -> None:
    world = make_world()
    world.notifier.down = True
    outcome = world.revoke()
    assert outcome.containment.contained
    assert world.iam.key(world.key_id).status is KeyStatus.INACTIVE
    assert step(outcome, "notify") is StepStatus.FAILED
    assert step(outcome, "audit") is StepStatus.DONE  # the other follow-ups still ran
    assert outcome.exit_code == 3


def test_store_down_is_exit_3_but_notify_and_audit_still_run() -> None:
    world = make_world()
    ports = world.follow_up_ports()

    def broken() -> FakeIncidentStore:
        raise StoreError("database is unreachable")

    ports = FollowUpPorts(**{**ports.__dict__, "store": broken})
    outcome = follow_up(world.contain(), ports, FollowUpOptions())
    assert step(outcome, "store") is StepStatus.FAILED
    assert step(outcome, "notify") is StepStatus.DONE and step(outcome, "audit") is StepStatus.DONE
    assert outcome.exit_code == 3


def test_incomplete_audit_is_exit_3_and_says_so() -> None:
    world = make_world()
    world.trail.failing["ap-southeast-2"] = AwsError("LookupEvents: still throttled", code="ThrottlingException")
    outcome = world.revoke()
    assert step(outcome, "audit") is StepStatus.FAILED
    assert outcome.audit is not None and "coverage incomplete" in outcome.audit.verdict
    assert outcome.exit_code == 3


def test_replace_puts_a_working_pair_in_every_target_and_keeps_the_old_key() -> None:
    world = make_world()
    # A second place the key was pasted, found only by scanning the configured group.
    world.variables.seed(GROUP.kind, GROUP.path, "DEPLOY_AWS_ACCESS_KEY_ID", world.key_id, scope="production")
    world.variables.seed(GROUP.kind, GROUP.path, "DEPLOY_AWS_SECRET_ACCESS_KEY", world.secret, scope="production")
    world.others = [CredentialSpec("other", "ci-other", targets=(GROUP,))]  # its group gets scanned
    outcome = world.revoke(replace=True)
    assert step(outcome, "replace") is StepStatus.DONE, outcome.steps
    pairs = [(world.variables.value(PROJECT.kind, PROJECT.path, "AWS_ACCESS_KEY_ID"),
              world.variables.value(PROJECT.kind, PROJECT.path, "AWS_SECRET_ACCESS_KEY")),
             (world.variables.value(GROUP.kind, GROUP.path, "DEPLOY_AWS_ACCESS_KEY_ID", "production"),
              world.variables.value(GROUP.kind, GROUP.path, "DEPLOY_AWS_SECRET_ACCESS_KEY", "production"))]
    new_key = pairs[0][0]
    assert new_key != world.key_id and pairs[0] == pairs[1]
    assert all(world.iam.accepts(k, s) for k, s in pairs)
    assert world.iam.key(world.key_id).status is KeyStatus.INACTIVE  # kept as evidence, never deleted
    assert "DeleteAccessKey" not in world.iam.calls
    journal = world.store.journals("payments")[-1]
    assert journal.phase is Phase.DONE and journal.old_key_id == world.key_id


def test_a_later_rotation_never_deletes_a_key_named_in_an_incident() -> None:
    world = make_world()
    world.store.save_incident(Incident("i-1", world.key_id, "default", "ci-payments", "r", "", T0))
    from rotator.rotation import Rotator

    spec = CredentialSpec("payments", "ci-payments", targets=(PROJECT,))
    spec = spec.__class__(**{**spec.__dict__, "policy": spec.policy.__class__(grace=timedelta(0),
                                                                              delete_after=timedelta(0))})
    world.store.sync_credentials([spec], T0)
    result = Rotator(world.rotation_ports(spec), spec, force=True).run()
    assert result.outcome.value == "rotated"
    assert world.iam.key(world.key_id).status is KeyStatus.INACTIVE
    assert "DeleteAccessKey" not in world.iam.calls


def test_replace_without_any_target_holding_the_key_does_nothing() -> None:
    world = make_world()
    world.variables.vars.clear()
    world.spec = CredentialSpec("payments", "ci-payments", targets=())
    outcome = world.revoke(replace=True)
    assert step(outcome, "replace") is StepStatus.NOTHING
    assert "CreateAccessKey" not in world.iam.calls


def test_the_containment_path_imports_nothing_slow() -> None:
    """Everything `revoke` loads before UpdateAccessKey, in a fresh interpreter: no pydantic config, no database
    layer, no GitLab or Slack client (they would cost more than the whole containment budget)."""
    import subprocess
    import sys

    probe = ("import sys, rotator.cli.revoke_cmd, rotator.revoke, rotator.revoke_config, rotator.bootstrap_incident, "
             "rotator.adapters.aws_incident, rotator.adapters.key_index; "
             "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
             "{'gitlab', 'slack_sdk', 'sqlalchemy', 'alembic', 'pydantic', 'structlog', 'rich'} "
             "or m in {'rotator.config', 'rotator.rotation'})))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
