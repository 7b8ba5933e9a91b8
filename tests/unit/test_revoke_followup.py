"""The follow-ups after containment against fakes: preempt, record, one Slack thread, replace, audit, exit codes."""

from __future__ import annotations

import json
from datetime import timedelta

from rotator.domain import CredentialSpec, Incident, Journal, KeyStatus, Phase
from rotator.errors import AwsError, StoreError
from rotator.incident.containment import StepStatus
from rotator.incident.followup import FollowUpOptions, FollowUpPorts, follow_up
from rotator.leases import lease_name
from tests.unit.fakes import T0
from tests.unit.incident_fakes import FakeIncidentStore, record
from tests.unit.worlds import GROUP, PROJECT, incident_world, step


def test_full_run_records_notifies_and_audits_in_one_thread() -> None:
    world = incident_world()
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
    coverage = json.loads(incident.report_json or "{}")["audit"]["coverage"]
    assert coverage["failed"] is False and coverage["state"] == "pending follow-up"  # until the follow-up
    assert incident.is_open and incident.follow_up_at == incident.t0 + timedelta(minutes=20)


def test_rerun_reuses_the_incident_and_its_thread() -> None:
    world = incident_world()
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
    world = incident_world()
    journal = Journal("rot-1", "payments", "default", "ci-payments", "AIDA1", (world.key_id,), world.key_id,
                      Phase.VERIFIED, T0, T0, new_key_id="AKIA9999999999999999", sealed_secret=b"sealed")
    world.store.save_journal(journal)
    assert world.store.try_acquire_lease(lease_name("payments"), "service/1", timedelta(hours=1)) == 1
    outcome = world.revoke()
    after = world.store.journal_rows["rot-1"]
    assert after.phase is Phase.SUPERSEDED and after.sealed_secret is None
    assert "incident" in (after.error or "")
    assert step(outcome, "preempt") is StepStatus.DONE
    # taken from the service (a new tenure: the service's token is fenced out), released when done
    assert world.store.lease_holder(lease_name("payments")) is None
    assert world.store.leases[lease_name("payments")].token == 2
    assert any(e.action == "supersede" for e in world.store.event_rows)


def test_with_no_rotation_in_flight_the_credentials_lease_is_held_and_said_so() -> None:
    world = incident_world()
    outcome = world.revoke()
    preempt = next(s for s in outcome.steps if s.name == "preempt")
    assert preempt.status is StepStatus.NOTHING
    assert preempt.detail == ("no rotation of this key was in flight; holding the lease of credential payments "
                              "until done")
    assert world.store.leases[lease_name("payments")].token == 1 and world.store.lease_holder(
        lease_name("payments")) is None  # taken, then released when done


def test_slack_failure_is_exit_3_and_never_touches_containment() -> None:
    world = incident_world()
    world.notifier.down = True
    outcome = world.revoke()
    assert outcome.containment.contained
    assert world.iam.key(world.key_id).status is KeyStatus.INACTIVE
    assert step(outcome, "notify") is StepStatus.FAILED
    assert step(outcome, "audit") is StepStatus.DONE  # the other follow-ups still ran
    assert outcome.exit_code == 3


def test_store_down_is_exit_3_but_notify_and_audit_still_run() -> None:
    world = incident_world()
    ports = world.follow_up_ports()

    def broken() -> FakeIncidentStore:
        raise StoreError("database is unreachable")

    ports = FollowUpPorts(**{**ports.__dict__, "store": broken})
    outcome = follow_up(world.contain(), ports, FollowUpOptions())
    assert step(outcome, "store") is StepStatus.FAILED
    assert step(outcome, "notify") is StepStatus.DONE and step(outcome, "audit") is StepStatus.DONE
    assert outcome.exit_code == 3


def test_incomplete_audit_is_exit_3_and_says_so() -> None:
    world = incident_world()
    world.trail.failing["ap-southeast-2"] = AwsError("LookupEvents: still throttled", code="ThrottlingException")
    outcome = world.revoke()
    assert step(outcome, "audit") is StepStatus.FAILED
    assert outcome.audit is not None and "coverage incomplete" in outcome.audit.verdict
    assert outcome.exit_code == 3


def test_replace_puts_a_working_pair_in_every_target_and_keeps_the_old_key() -> None:
    world = incident_world()
    # A second place the key was pasted, found only by scanning the configured group.
    world.variables.seed(GROUP.kind, GROUP.path, "DEPLOY_AWS_ACCESS_KEY_ID", world.key_id, scope="production")
    world.variables.seed(GROUP.kind, GROUP.path, "DEPLOY_AWS_SECRET_ACCESS_KEY", world.secret, scope="production")
    world.specs[1:] = [CredentialSpec("other", "ci-other", targets=(GROUP,))]  # its group gets scanned
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
    world = incident_world()
    world.store.save_incident(Incident("i-1", world.key_id, "default", "ci-payments", "r", "", T0))
    from rotator.rotation.engine import Rotator

    spec = CredentialSpec("payments", "ci-payments", targets=(PROJECT,))
    spec = spec.__class__(**{**spec.__dict__, "policy": spec.policy.__class__(grace=timedelta(0),
                                                                              delete_after=timedelta(0))})
    world.store.sync_credentials([spec], T0)
    result = Rotator(world.rotation_ports(spec), spec, force=True).run()
    assert result.outcome.value == "rotated"
    assert world.iam.key(world.key_id).status is KeyStatus.INACTIVE
    assert "DeleteAccessKey" not in world.iam.calls


def test_replace_without_any_target_holding_the_key_does_nothing() -> None:
    world = incident_world()
    world.variables.vars.clear()
    world.specs.clear()  # the key is tracked nowhere, and no variable holds it
    outcome = world.revoke(replace=True)
    assert step(outcome, "replace") is StepStatus.NOTHING
    assert "CreateAccessKey" not in world.iam.calls


def test_dry_run_without_a_database_yet_is_not_a_failure() -> None:
    world = incident_world()

    def no_database() -> FakeIncidentStore:
        raise StoreError("no database at rotator.db yet (a dry run creates none)")

    ports = FollowUpPorts(**{**world.follow_up_ports(dry_run=True).__dict__, "store": no_database})
    outcome = follow_up(world.contain(dry_run=True), ports, FollowUpOptions(dry_run=True))
    assert step(outcome, "store") is StepStatus.SKIPPED
    assert outcome.exit_code == 0


def test_sessions_the_key_minted_can_be_revoked_later_without_a_role() -> None:
    world = incident_world()
    minted = "ASIAMINTEDMINTED0001"
    world.trail.add(record("GetSessionToken", key_id=world.key_id, minted=minted))
    world.revoke()
    owner = world.store.key_owner(minted)
    assert owner is not None and owner.user_name == "ci-payments"
    later = world.contain(minted)  # no --role: the store resolves the user the session acts as
    assert later.contained
    assert ("ci-payments", "rotator-deny-sessions") in world.iam.user_policies
    assert any(s.name == "deny sessions" and s.status is StepStatus.ALREADY for s in later.steps)
