"""The follow-up after CloudTrail's delivery delay, on the fake world: a role session minted just before T0 and
delivered late is found by the service's follow-up job, cut, told in the same thread, and the incident closes;
and `revoke --replace` of a key leaked inside its rotation's grace period."""

from __future__ import annotations

import json
from datetime import timedelta

from rotator.domain import KeyStatus, Phase
from rotator.errors import ExitCode
from rotator.incident.reaudit import reaudit
from rotator.incident.steps import SESSION_DENY_POLICY, StepStatus
from rotator.service.incident_followup import follow_up_due_incidents
from tests.unit.incident_fakes import ACCOUNT, record
from tests.unit.worlds import SECURITY, rotation_world, step

ROLE = f"arn:aws:iam::{ACCOUNT}:role/deploy/payments"
LATE = "ASIA8888888888888888"


def iso(moment: object) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # type: ignore[attr-defined]


def test_a_session_delivered_late_is_cut_by_the_follow_up_which_then_closes_the_incident() -> None:
    from tests.unit.worlds import incident_world

    world = incident_world()
    world.iam.add_role("payments", "/deploy/")
    minted_at = world.clock.now() - timedelta(minutes=1)  # just before the leak was reported
    world.trail.add(record("AssumeRole", key_id=world.key_id, role_arn=ROLE, minted=LATE, at=iso(minted_at)),
                    visible_at=world.clock.now() + timedelta(minutes=12))  # CloudTrail delivers it late
    outcome = world.revoke()
    assert outcome.exit_code == ExitCode.OK and ("payments", SESSION_DENY_POLICY) not in world.iam.role_policies
    incident = world.store.incident_rows[outcome.incident_id or ""]
    assert incident.is_open and incident.follow_up_at == incident.t0 + timedelta(minutes=20)
    assert outcome.audit is not None and outcome.audit.state == "pending follow-up"

    root = world.root()
    assert follow_up_due_incidents(root, "service/test") == []  # not due yet
    world.clock.advance(incident.follow_up_at - world.clock.now())
    [first] = follow_up_due_incidents(root, "service/test")
    assert world.iam.role_policies[("payments", SESSION_DENY_POLICY)]  # cut now
    assert [cut.principal.name for cut in first.added] == ["payments"] and not first.closed
    after = world.store.incident_rows[incident.incident_id]
    assert after.follow_up_at == incident.t0 + timedelta(minutes=60) and after.is_open
    assert any(dict(s)["principal"]["name"] == "payments" and dict(s)["cut"] for s in after.sessions)
    addition = world.notifier.posted[-1]
    assert (addition.channel, addition.thread) == (SECURITY, "1.000")  # the incident's own thread
    assert "follow-up audit" in addition.title and any("sessions of role payments" in line and "denied" in line
                                                         for line in addition.lines)
    assert after.report_markdown is not None and "sessions of role payments" in after.report_markdown
    assert "## Follow-ups" in after.report_markdown

    world.clock.advance(timedelta(minutes=40))
    [second] = follow_up_due_incidents(root, "service/test")
    closed = world.store.incident_rows[incident.incident_id]
    assert second.closed and closed.closed_at is not None and closed.follow_up_at is None
    assert closed.status == "closed"
    assert second.added == []  # nothing new; nothing cut twice
    assert world.iam.calls.count("PutRolePolicy") == 1
    assert any("closed" in line for line in world.notifier.posted[-1].lines)
    assert world.store.open_incidents() == []
    assert json.loads(closed.report_json or "{}")["closed_at"] is not None


def test_a_session_minted_after_the_deactivation_is_flagged_and_covered() -> None:
    from tests.unit.worlds import incident_world

    world = incident_world()
    outcome = world.revoke()
    contained_at = outcome.containment.contained_at
    assert contained_at is not None
    # IAM had not propagated the deactivation yet: the key minted a session after it, even after T0.
    late_at = outcome.containment.t0 + timedelta(seconds=30)
    world.trail.add(record("GetSessionToken", key_id=world.key_id, minted=LATE, at=iso(late_at)))
    world.clock.advance(timedelta(minutes=20))
    done = reaudit(world.root().incident.reaudit_ports(holder="audit/test"), outcome.incident_id or "", by_hand=True)
    assert [s.key_id for s in done.late] == [LATE]
    assert any("minted after the key was verified Inactive" in line for line in done.lines())
    document = json.loads(world.iam.user_policies[("ci-payments", SESSION_DENY_POLICY)])
    moved = document["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
    assert moved > iso(late_at)  # the user's T0 moved later, past the late session: it is cut too
    user = next(c for c in done.cuts if c.principal.name == "ci-payments")
    assert user.cut and LATE in user.sessions


def test_a_follow_up_that_cannot_cover_everything_keeps_the_incident_open() -> None:
    from rotator.errors import AwsThrottled
    from tests.unit.worlds import incident_world

    world = incident_world()
    outcome = world.revoke()
    world.trail.failing["eu-west-1"] = AwsThrottled("still throttled", code="ThrottlingException")
    world.clock.advance(timedelta(hours=2))  # every scheduled follow-up is past
    done = reaudit(world.root().incident.reaudit_ports(holder="audit/test"), outcome.incident_id or "")
    assert not done.closed and done.exit_code == ExitCode.CONTAINED_FOLLOW_UP_FAILED
    assert done.incident.follow_up_at is not None and done.incident.follow_up_at > world.clock.now()


# --- --replace of a key leaked inside its rotation's grace period ---------------------------------------------------


def test_replace_during_grace_frees_a_slot_and_strands_no_active_key() -> None:
    world = rotation_world(grace=timedelta(hours=1), delete_after=timedelta(days=7))
    world.run()
    journal = world.store.journals("payments")[-1]
    assert journal.phase is Phase.PUBLISHED  # every target holds the new key; the old one waits out its grace
    previous, leaked = world.key_id, journal.new_key_id
    assert leaked is not None and world.iam.key(previous).status is KeyStatus.ACTIVE  # in its grace period
    outcome = world.revoke(leaked, replace=True)
    assert step(outcome, "retire replaced key") is StepStatus.DONE
    assert step(outcome, "replace") is StepStatus.DONE, [s for s in outcome.steps if s.name == "replace"]
    assert world.every_target_works()
    keys = {k.key_id: k.status for k in world.iam.list_access_keys("ci-payments")}
    assert len(keys) <= 2 and world.iam.max_keys_seen <= 2
    assert keys[leaked] is KeyStatus.INACTIVE  # evidence, kept
    assert previous not in keys  # made room for the replacement: replaced by the journal, retired, deleted
    journals = world.store.journals("payments")
    active = [key for key, status in keys.items() if status is KeyStatus.ACTIVE]
    assert active and all(any(j.new_key_id == key and j.phase is not Phase.SUPERSEDED for j in journals)
                          for key in active)  # every Active key has a journal that will retire it in turn
    assert any(j.phase is Phase.SUPERSEDED and j.new_key_id == leaked for j in journals)


def test_without_replace_the_previous_key_is_retired_not_stranded() -> None:
    world = rotation_world(grace=timedelta(hours=1), delete_after=timedelta(days=7))
    world.run()
    leaked = world.store.journals("payments")[-1].new_key_id
    assert leaked is not None
    outcome = world.revoke(leaked)
    assert step(outcome, "retire replaced key") is StepStatus.DONE
    assert all(status is KeyStatus.INACTIVE for status in
               (k.status for k in world.iam.list_access_keys("ci-payments")))





def test_a_superseded_rotation_proves_its_old_key_replaced_only_once_it_was_published() -> None:
    from rotator.domain import AccessKey, Journal, provably_replaced
    from tests.unit.fakes import T0

    keys = [AccessKey("AKIAOLD0000000000001", KeyStatus.INACTIVE, T0), AccessKey("AKIANEW0000000000002",
                                                                                 KeyStatus.INACTIVE, T0)]
    published = Journal("r-1", "payments", "default", "ci", "AIDA1", (), "AKIAOLD0000000000001", Phase.SUPERSEDED,
                        T0, T0, new_key_id="AKIANEW0000000000002", published_at=T0)
    unpublished = Journal("r-1", "payments", "default", "ci", "AIDA1", (), "AKIAOLD0000000000001", Phase.SUPERSEDED,
                          T0, T0, new_key_id="AKIANEW0000000000002")
    assert provably_replaced([published], "AIDA1", [None], keys, ()) == {"AKIAOLD0000000000001"}
    assert provably_replaced([unpublished], "AIDA1", [None], keys, ()) == set()
    assert provably_replaced([published], "AIDA1", [None], keys, ("AKIAOLD0000000000001",)) == set()  # evidence
