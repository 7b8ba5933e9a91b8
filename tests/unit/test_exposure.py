"""What an AWS exposure report does, against the one fake world: the playbook per on_exposed, one incident per
key whatever the deliveries, annotation of a key a human contained, notify changing nothing, failures kept
for another try, and the quarantine signal of each tick."""

from __future__ import annotations

from datetime import timedelta

from rotator.domain import KeyStatus
from rotator.errors import StoreError
from rotator.incident.events import EXPOSED_EVENT_TYPE, QUARANTINE_POLICY_ARNS, Outcome, QuarantineState
from rotator.incident.exposure import ExposurePorts, handle_message
from rotator.incident.quarantine import check_quarantines
from tests.unit.exposure_fakes import EVENT_ARN, health_event
from tests.unit.worlds import SECURITY, World, incident_world

V3 = QUARANTINE_POLICY_ARNS[2]
OTHER_ARN = EVENT_ARN.replace("ABC123", "DEF456")


def world_with(on_exposed: str = "contain_and_replace", **per_credential: str) -> World:
    world = incident_world()
    world.events_config = f'[events]\non_exposed = "{on_exposed}"\n'
    world.on_exposed = dict(per_credential)
    return world


def ports(world: World) -> ExposurePorts:
    return world.root().incident.exposure_ports(holder="service/test")


def incidents(world: World) -> list[str]:
    return sorted(world.store.incident_rows)


def test_an_event_contains_replaces_and_records_one_incident_under_the_event_actor() -> None:
    world = world_with()
    leaked = world.key_id
    verdict = handle_message(health_event(leaked), ports(world))
    assert verdict.settled, verdict
    [result] = verdict.results
    assert (result.outcome, result.action) == (Outcome.ACTED, "contain_and_replace")
    assert world.iam.key(leaked).status is KeyStatus.INACTIVE
    held_key, _ = world.held_pairs()[0]
    assert held_key != leaked and world.every_target_works()
    [incident] = world.store.incident_rows.values()
    assert incident.actor == f"aws-health:{EVENT_ARN}" and incident.incident_id == result.incident_id
    assert EXPOSED_EVENT_TYPE in incident.reason and incident.credential == "payments"
    roots = [p for p in world.notifier.posted if p.thread is None and "is contained" in p.title]
    assert [p.channel for p in roots] == [SECURITY, "#team-payments"]  # one thread, the owners told once
    assert any(f"by: aws-health:{EVENT_ARN}" in line for line in roots[0].lines)
    assert {p.thread for p in world.notifier.posted if p.thread} == {"1.000"}
    assert world.ledger.get(f"aws-health:{EVENT_ARN}#{leaked}").outcome is Outcome.ACTED  # type: ignore[union-attr]


def test_the_same_event_twice_and_the_same_key_in_another_event_make_one_incident() -> None:
    world = world_with()
    leaked = world.key_id
    first = handle_message(health_event(leaked), ports(world))
    posted = len(world.notifier.posted)
    again = handle_message(health_event(leaked), ports(world))
    assert again.settled and [r.outcome for r in again.results] == [Outcome.DUPLICATE]
    assert len(world.notifier.posted) == posted  # a duplicate says nothing
    other = handle_message(health_event(leaked, arn=OTHER_ARN, event_id="other"), ports(world))
    assert other.settled and [r.outcome for r in other.results] == [Outcome.ANNOTATED]
    assert incidents(world) == [first.results[0].incident_id]
    [incident] = world.store.incident_rows.values()
    assert incident.actor == f"aws-health:{EVENT_ARN}"  # the first report opened it
    assert [run["actor"] for run in incident.steps["runs"]][-1] == f"aws-health:{OTHER_ARN}"
    reply = world.notifier.posted[-1]
    assert reply.thread == "1.000" and "reported exposed again" in reply.title
    assert any("nothing was changed" in line for line in reply.lines)
    assert world.iam.max_keys_seen <= 2


def test_a_key_a_human_contained_is_only_annotated() -> None:
    world = world_with()
    leaked = world.key_id
    human = world.revoke()  # `rotator revoke --key`, no --replace: the targets keep the Inactive key
    writes = list(world.iam.writes)
    verdict = handle_message(health_event(leaked), ports(world))
    assert [r.outcome for r in verdict.results] == [Outcome.ANNOTATED] and verdict.settled
    assert world.iam.writes == writes  # no UpdateAccessKey, no CreateAccessKey: nothing changed in AWS
    assert world.held_pairs()[0][0] == leaked  # no replacement behind the human's back
    assert incidents(world) == [human.incident_id]
    assert world.store.incident_rows[human.incident_id].actor == "responder@laptop"


def test_notify_changes_nothing_and_tells_the_owners_what_to_run() -> None:
    world = world_with("notify")
    leaked = world.key_id
    before = world.held_pairs()
    verdict = handle_message(health_event(leaked), ports(world))
    assert verdict.settled and [(r.outcome, r.action) for r in verdict.results] == [(Outcome.NOTIFIED, "notify")]
    assert world.iam.writes == [] and world.iam.key(leaked).status is KeyStatus.ACTIVE
    assert world.held_pairs() == before and world.variables.writes == []
    assert world.store.incident_rows == {}
    told = {p.channel: p for p in world.notifier.posted}
    assert set(told) == {SECURITY, "#team-payments"}
    text = "\n".join(told["#team-payments"].lines)
    assert f"rotator revoke --key {leaked} --replace" in text and "changed nothing" in text
    assert "rotator changed nothing in AWS or GitLab (it did not deactivate the key)" in text
    assert verdict.results[0].detail == (f"nothing changed; told {SECURITY}, #team-payments to run `rotator revoke "
                                         f"--key {leaked} --replace`")
    again = handle_message(health_event(leaked, arn=OTHER_ARN), ports(world))
    assert [r.outcome for r in again.results] == [Outcome.DUPLICATE] and len(world.notifier.posted) == 2


def test_on_exposed_per_credential_beats_the_default() -> None:
    world = world_with("contain_and_replace", payments="contain")
    leaked = world.key_id
    verdict = handle_message(health_event(leaked), ports(world))
    assert [(r.outcome, r.action) for r in verdict.results] == [(Outcome.ACTED, "contain")]
    assert world.iam.key(leaked).status is KeyStatus.INACTIVE
    assert world.held_pairs()[0][0] == leaked  # contained, not replaced


def test_a_key_that_cannot_be_contained_is_kept_for_another_try() -> None:
    world = world_with()
    verdict = handle_message(health_event("AKIA9999999999999999"), ports(world))
    [result] = verdict.results
    assert result.outcome is Outcome.FAILED and "NOT contained" in result.detail and not verdict.settled
    assert world.ledger.records == {} and world.store.incident_rows == {}


def test_an_incident_that_cannot_be_recorded_keeps_the_message() -> None:
    world = world_with()
    leaked = world.key_id

    def down(*args: object) -> None:
        raise StoreError("database down")

    world.store.save_incident = down  # type: ignore[method-assign]
    verdict = handle_message(health_event(leaked), ports(world))
    assert world.iam.key(leaked).status is KeyStatus.INACTIVE  # contained first, whatever the store says
    assert [r.outcome for r in verdict.results] == [Outcome.FAILED] and not verdict.settled
    assert "could not be recorded" in verdict.results[0].detail


def test_a_key_another_replica_is_handling_is_contained_first_and_its_follow_up_left_to_that_replica() -> None:
    world = world_with()
    assert world.store.try_acquire_lease(f"exposure:{world.key_id}", "replica-2", timedelta(minutes=5))
    verdict = handle_message(health_event(world.key_id), ports(world))
    assert [r.outcome for r in verdict.results] == [Outcome.BUSY] and not verdict.settled  # delivered again later
    assert world.iam.key(world.key_id).status is KeyStatus.INACTIVE  # containment never waits for anyone
    assert world.store.incident_rows == {} and world.notifier.posted == [] and world.ledger.records == {}
    assert world.held_pairs()[0][0] == world.key_id  # the replacement is the lease holder's job


def test_a_rejected_message_touches_nothing() -> None:
    world = world_with()
    verdict = handle_message(health_event(world.key_id, account="999999999999"), ports(world))
    assert verdict.rejection is not None and not verdict.settled and verdict.results == ()
    assert world.iam.writes == [] and world.notifier.posted == []


# --- the quarantine signal ----------------------------------------------------------------------------------


def quarantine(world: World, user: str = "ci-payments", arn: str = V3) -> None:
    world.iam.managed_policies.setdefault(arn, set()).add(user)


def test_a_quarantined_user_has_the_key_its_targets_hold_contained_and_replaced() -> None:
    world = world_with()
    leaked = world.key_id
    quarantine(world)
    [result] = check_quarantines(ports(world))
    assert (result.outcome, result.action, result.key_id) == (Outcome.ACTED, "contain_and_replace", leaked)
    assert world.iam.key(leaked).status is KeyStatus.INACTIVE and world.every_target_works()
    [incident] = world.store.incident_rows.values()
    assert incident.actor == "aws-quarantine:default/ci-payments"
    root = world.notifier.posted[0]
    assert any("AWS names no key id" in line and leaked in line for line in root.lines)
    assert "AWS names no key id" in incident.reason
    notes = [p for p in world.notifier.posted if "quarantine policy still attached" in p.title]
    assert len(notes) == 1 and notes[0].thread == "1.000"
    assert any(f"aws iam detach-user-policy --user-name ci-payments --policy-arn {V3}" in line
               for line in notes[0].lines)
    assert V3 in world.iam.managed_policies and "ci-payments" in world.iam.managed_policies[V3]  # never detached
    # The policy stays: the next ticks see it, and leave the new key alone.
    new_key = world.held_pairs()[0][0]
    assert check_quarantines(ports(world)) == []
    assert world.iam.key(new_key).status is KeyStatus.ACTIVE and len(world.store.incident_rows) == 1


def test_after_an_event_the_quarantine_it_brings_never_takes_the_new_key_for_the_leaked_one() -> None:
    world = world_with()
    handle_message(health_event(world.key_id), ports(world))
    new_key = world.held_pairs()[0][0]
    quarantine(world)  # AWS attaches its policy a little after the event
    assert check_quarantines(ports(world)) == []
    assert world.iam.key(new_key).status is KeyStatus.ACTIVE and len(world.store.incident_rows) == 1
    record = world.ledger.get("aws-quarantine:default/ci-payments")
    assert record is not None and record.quarantine is QuarantineState.ATTACHED


def test_a_quarantine_removed_then_attached_again_is_a_new_signal() -> None:
    world = world_with()
    quarantine(world)
    check_quarantines(ports(world))
    second_key = world.held_pairs()[0][0]
    world.iam.managed_policies[V3].clear()  # a human followed the AWS Support case and removed it
    assert check_quarantines(ports(world)) == []
    quarantine(world)
    [result] = check_quarantines(ports(world))
    assert (result.outcome, result.key_id) == (Outcome.ACTED, second_key)
    assert world.iam.key(second_key).status is KeyStatus.INACTIVE and len(world.store.incident_rows) == 2


def test_a_quarantine_when_the_targets_hold_an_inactive_key_names_the_active_ones_and_changes_nothing() -> None:
    world = world_with()
    held = world.key_id
    world.iam.key(held).status = KeyStatus.INACTIVE  # contained earlier; the targets still hold it
    other = world.iam._new_key("ci-payments").key_id  # Active, held by no target
    quarantine(world)
    writes = list(world.iam.writes)
    [result] = check_quarantines(ports(world))
    assert result.outcome is Outcome.NOTIFIED and world.iam.writes == writes
    posted = next(p for p in world.notifier.posted if "quarantined by AWS" in p.title)
    assert (f"user ci-payments's Active key(s) {other} are held by no target, so rotator cannot tell which one "
            "AWS found: nothing was contained or changed") in posted.lines
    assert not any("has no Active key" in line for line in posted.lines)


def test_quarantine_with_notify_changes_nothing() -> None:
    world = world_with("notify")
    quarantine(world)
    before = world.held_pairs()
    [result] = check_quarantines(ports(world))
    assert result.outcome is Outcome.NOTIFIED
    assert world.iam.writes == [] and world.held_pairs() == before and world.store.incident_rows == {}
    assert {p.channel for p in world.notifier.posted} == {SECURITY, "#team-payments"}
    assert check_quarantines(ports(world)) == []  # told once, not every tick


def test_an_untracked_quarantined_user_is_left_to_its_health_event() -> None:
    world = world_with()
    world.iam.add_user("someone-else")
    quarantine(world, user="someone-else")
    assert check_quarantines(ports(world)) == []
    assert world.iam.writes == []


def test_a_report_another_replica_handled_while_this_one_contained_is_a_duplicate() -> None:
    from dataclasses import replace as with_

    from rotator.incident.events import ExposureRecord

    world = world_with()
    signal = f"aws-health:{EVENT_ARN}#{world.key_id}"
    reads = []
    settled = ExposureRecord(signal, "aws-health", "aws-health:x", "default", "ci-payments", world.key_id,
                             "contain_and_replace", Outcome.ACTED, "by replica-2", world.clock.now(),
                             world.clock.now(), "incident-of-replica-2")
    original = world.ledger.for_key

    def for_key(key_id: str) -> list[ExposureRecord]:
        reads.append(key_id)  # the first read decides; by the second, replica 2 has recorded the same report
        if len(reads) == 2:
            world.ledger.records[signal] = settled
        return original(key_id)

    world.ledger.for_key = for_key  # type: ignore[method-assign]
    verdict = handle_message(health_event(world.key_id), ports(world))
    assert [r.outcome for r in verdict.results] == [Outcome.DUPLICATE] and verdict.settled
    assert world.iam.key(world.key_id).status is KeyStatus.INACTIVE and world.store.incident_rows == {}
    assert world.ledger.get(signal) == with_(settled)  # replica 2's record is kept as it wrote it
