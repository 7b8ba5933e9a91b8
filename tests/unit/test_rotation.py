"""The rotation protocol against the fake world: the happy path, crashes at every step, and every refusal."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from rotator.domain import (
    CredentialState,
    Journal,
    KeyStatus,
    Phase,
    Secret,
)
from rotator.errors import AwsThrottled
from rotator.rotation.deactivation import read_back_inactive
from rotator.rotation.engine import Rotator
from rotator.rotation.results import Outcome
from tests.unit.fakes import T0, Crash, FakeSealer
from tests.unit.worlds import GROUP, PROJECT, World, rotation_world


def old_key(world: World) -> str:
    return world.held_pairs()[0][0]


def test_one_call_with_zero_grace_ends_with_only_the_new_key() -> None:
    w = rotation_world()
    before = old_key(w)
    result = w.run()
    assert result.outcome is Outcome.ROTATED
    keys = w.iam.keys["ci-payments"]
    assert [k.key_id for k in keys] == [result.new_key_id] and before != result.new_key_id
    assert w.every_target_works()
    assert w.iam.max_keys_seen <= 2
    journal = w.store.journals("payments")[-1]
    assert journal.phase is Phase.DONE and journal.sealed_secret is None
    assert w.store.get_status("payments").state is CredentialState.OK
    assert any("rotated" in p.title for p in w.notifier.posted)
    # for every target: the key-id variable proven writable (its own value put back), then the secret, then the
    # key id, the last two as one back-to-back pair
    assert w.variables.writes == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"] * 2
    assert w.variables.pairs == [("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")] * 2


def test_grace_and_delete_after_are_waited_out_across_runs() -> None:
    w = rotation_world(grace=timedelta(hours=1), delete_after=timedelta(days=7))
    old = old_key(w)
    first = w.run(grace=timedelta(hours=1), delete_after=timedelta(days=7))
    assert first.outcome is Outcome.WAITING and w.iam.key(old).status is KeyStatus.ACTIVE
    w.clock.advance(timedelta(hours=1, seconds=1))
    second = w.run(grace=timedelta(hours=1), delete_after=timedelta(days=7))
    assert second.outcome is Outcome.WAITING and w.iam.key(old).status is KeyStatus.INACTIVE
    w.clock.advance(timedelta(days=7, seconds=1))
    third = w.run(grace=timedelta(hours=1), delete_after=timedelta(days=7))
    assert third.outcome is Outcome.ROTATED and old not in w.iam.key_ids("ci-payments")


def test_not_due_does_nothing() -> None:
    w = rotation_world()
    w.run()
    writes = len(w.variables.writes)
    result = w.run()
    assert result.outcome is Outcome.NOT_DUE and len(w.variables.writes) == writes


def test_crash_after_create_before_journal_deletes_the_orphan() -> None:
    w = rotation_world(grace=timedelta(hours=1))
    old = old_key(w)
    w.iam.crash_after = "CreateAccessKey"
    with pytest.raises(Crash):
        w.run(grace=timedelta(hours=1))
    orphan = next(k for k in w.iam.key_ids("ci-payments") if k != old)
    result = w.run(grace=timedelta(hours=1))
    assert orphan not in w.iam.key_ids("ci-payments")
    assert w.iam.key(old).status is KeyStatus.ACTIVE
    assert result.outcome is Outcome.WAITING and result.new_key_id not in (old, orphan)
    assert w.every_target_works() and w.iam.max_keys_seen <= 2


def test_crash_after_journal_before_publish_rolls_forward_with_the_same_key() -> None:
    w = rotation_world()

    def crash() -> None:
        raise Crash("during verify")

    w.sts.fail = crash
    with pytest.raises(Crash):
        w.run()
    journaled = w.store.open_journal("payments")
    assert journaled is not None and journaled.phase is Phase.CREATED
    w.sts.fail = None
    result = w.run()
    assert result.outcome is Outcome.ROTATED and result.new_key_id == journaled.new_key_id
    assert w.iam.calls.count("CreateAccessKey") == 1
    assert w.every_target_works()


def test_crash_between_secret_and_key_id_completes_the_pair() -> None:
    w = rotation_world()
    old = old_key(w)
    w.variables.crash_after_write = 2  # the preflight (key id, its own value), then the secret
    with pytest.raises(Crash):
        w.run()
    key_id, secret = w.held_pairs()[0]
    assert key_id == old and secret != w.secret  # only the secret was written
    result = w.run()
    assert result.outcome is Outcome.ROTATED and w.every_target_works()
    assert w.iam.calls.count("CreateAccessKey") == 1


def test_crash_after_publish_resumes_and_retires_on_time() -> None:
    w = rotation_world(grace=timedelta(hours=1))
    old = old_key(w)
    assert w.run(grace=timedelta(hours=1)).outcome is Outcome.WAITING
    w.clock.advance(timedelta(minutes=30))
    assert w.run(grace=timedelta(hours=1)).outcome is Outcome.WAITING  # still in grace: untouched
    assert w.iam.key(old).status is KeyStatus.ACTIVE
    w.clock.advance(timedelta(minutes=31))
    assert w.run(grace=timedelta(hours=1)).outcome is Outcome.ROTATED
    assert old not in w.iam.key_ids("ci-payments")


def test_stale_journal_is_discarded() -> None:
    w = rotation_world()
    stale = Journal("stale-1", "payments", "default", "ci-payments", w.iam.users["ci-payments"].user_id,
                    (old_key(w),), old_key(w), Phase.CREATED, T0, T0, new_key_id="AKIA0000000000GONE01",
                    sealed_secret=FakeSealer().seal(Secret("x" * 40)))
    w.store.save_journal(stale)
    result = w.run()
    assert w.store.journal_rows["stale-1"].phase is Phase.DISCARDED
    assert result.outcome is Outcome.ROTATED and w.every_target_works()


def test_inactive_unreferenced_replaced_key_makes_room() -> None:
    w = rotation_world()
    current = old_key(w)
    spare = w.iam._new_key("ci-payments")
    # the spare is older than the key every target holds: make it so, and Inactive
    spare.created_at = w.iam.key(current).created_at - timedelta(days=1)
    spare.status = KeyStatus.INACTIVE
    result = w.run()
    assert result.outcome is Outcome.ROTATED
    assert spare.key_id not in w.iam.key_ids("ci-payments")
    assert any(e.action == "make_room" for e in w.store.event_rows)
    assert w.iam.max_keys_seen <= 2 and w.every_target_works()


def test_two_active_keys_hold_and_change_nothing() -> None:
    w = rotation_world()
    w.iam._new_key("ci-payments")
    keys_before = w.iam.key_ids("ci-payments")
    result = w.run()
    assert result.outcome is Outcome.HELD and "both keys are Active" in result.message
    assert w.iam.key_ids("ci-payments") == keys_before and w.variables.writes == []
    assert all(k.status is KeyStatus.ACTIVE for k in w.iam.keys["ci-payments"])
    assert w.store.get_status("payments").state is CredentialState.HELD
    assert any("held" in p.title and "A human must" in " ".join(p.lines) for p in w.notifier.posted)


def test_new_key_never_accepted_is_deleted_and_old_untouched() -> None:
    w = rotation_world()
    old = old_key(w)
    w.sts.never = True
    result = w.run()
    assert result.outcome is Outcome.FAILED and "did not accept" in result.message
    assert w.iam.key_ids("ci-payments") == [old] and w.iam.key(old).status is KeyStatus.ACTIVE
    assert w.variables.writes == [] and w.every_target_works()
    assert w.clock.slept >= 55  # it kept asking for about verify_timeout


def test_forbidden_on_one_of_two_targets_holds_with_both_keys_active() -> None:
    w = rotation_world()
    old = old_key(w)
    w.variables.forbidden.add((GROUP.kind, GROUP.path))
    # the pre-flight read of the group fails, so nothing is created at all
    first = w.run()
    assert first.outcome is Outcome.FAILED and "403" in first.message
    assert w.iam.key_ids("ci-payments") == [old]


def test_forbidden_during_publish_keeps_both_keys_and_tells_owners() -> None:
    w = rotation_world()
    old = old_key(w)

    w.variables.forbidden_writes.add((GROUP.kind, GROUP.path))
    result = w.run()
    assert result.outcome is Outcome.HELD and "group payments" in result.message
    keys = {k.key_id: k.status for k in w.iam.keys["ci-payments"]}
    assert len(keys) == 2 and all(s is KeyStatus.ACTIVE for s in keys.values()) and old in keys
    assert any("stale" in " ".join(p.lines) or "still hold" in " ".join(p.lines) for p in w.notifier.posted)
    assert w.every_target_works()  # project has the new pair, group still the old one: both accepted
    # the operator fixes the permission; the next run rolls forward with the same new key
    w.variables.forbidden_writes.clear()
    again = w.run()
    assert again.outcome is Outcome.ROTATED and again.new_key_id == result.new_key_id


def test_ambiguous_scope_is_a_permanent_error_naming_the_scope() -> None:
    w = rotation_world()
    w.variables.ambiguous.add((GROUP.kind, GROUP.path, GROUP.access_key_id_var))
    result = w.run()
    assert result.outcome is Outcome.FAILED
    assert "environment_scope=production" in result.message and "409" in result.message
    assert w.iam.calls.count("CreateAccessKey") == 0


def test_old_key_used_after_publish_is_held_with_details() -> None:
    w = rotation_world(grace=timedelta(hours=1))
    old = old_key(w)
    w.run(grace=timedelta(hours=1))
    w.clock.advance(timedelta(minutes=40))
    w.iam.use_key(old, service="s3", region="eu-west-1")
    w.clock.advance(timedelta(minutes=21))
    result = w.run(grace=timedelta(hours=1))
    assert result.outcome is Outcome.HELD
    assert "still in use" in result.message and "s3" in result.message and "eu-west-1" in result.message
    assert w.iam.key(old).status is KeyStatus.ACTIVE
    # once the key has stood unused for a whole grace period, it is retired
    w.clock.advance(timedelta(hours=1, minutes=1))
    assert w.run(grace=timedelta(hours=1)).outcome is Outcome.ROTATED


def test_recreated_user_is_held() -> None:
    w = rotation_world(grace=timedelta(hours=1))
    w.run(grace=timedelta(hours=1))
    w.iam.recreate_user("ci-payments")
    w.clock.advance(timedelta(hours=2))
    result = w.run(grace=timedelta(hours=1))
    assert result.outcome is Outcome.HELD and "recreated" in result.message


def test_throttled_sts_backs_off_and_never_reads_as_invalid() -> None:
    w = rotation_world()
    throttles = iter(range(3))

    def throttle() -> None:
        if next(throttles, None) is not None:
            raise AwsThrottled("Rate exceeded", code="Throttling")

    w.sts.fail = throttle
    result = w.run()
    assert result.outcome is Outcome.ROTATED and w.every_target_works()


def test_iam_throttling_fails_cleanly_without_touching_keys() -> None:
    w = rotation_world()
    old = old_key(w)

    def throttle() -> None:
        raise AwsThrottled("iam:CreateAccessKey: Throttling: Rate exceeded", code="Throttling")

    w.iam.fail["CreateAccessKey"] = throttle
    result = w.run()
    assert result.outcome is Outcome.FAILED and "Throttling" in result.message and "invalid" not in result.message
    assert w.iam.key_ids("ci-payments") == [old]


def test_hidden_secret_variable_is_rotated() -> None:
    w = rotation_world(hidden_secret=True)
    result = w.run()
    assert result.outcome is Outcome.ROTATED and w.every_target_works()


def test_drift_holds_and_never_overwrites() -> None:
    w = rotation_world()
    w.variables.seed(PROJECT.kind, PROJECT.path, PROJECT.access_key_id_var, "AKIAZZZZZZZZZZZZZZZZ")
    result = w.run()
    assert result.outcome is Outcome.HELD and "AKIAZZZZZZZZZZZZZZZZ" in result.message
    assert w.variables.writes == [] and w.iam.calls.count("CreateAccessKey") == 0
    assert any("drift" in p.title for p in w.notifier.posted)


def test_slack_outage_never_fails_a_rotation() -> None:
    w = rotation_world()
    w.notifier.down = True
    result = w.run()
    assert result.outcome is Outcome.ROTATED
    assert any(e.action == "notify" and e.outcome == "failed" for e in w.store.event_rows)


def test_missing_variable_is_an_error_unless_create_missing() -> None:
    w = rotation_world()
    del w.variables.vars[(PROJECT.kind, PROJECT.path, "AWS_SECRET_ACCESS_KEY", "*")]
    result = w.run()
    assert result.outcome is Outcome.FAILED and "AWS_SECRET_ACCESS_KEY does not exist" in result.message
    w.spec = replace(w.spec, targets=(replace(PROJECT, create_missing=True), GROUP))
    result = w.run()
    assert result.outcome is Outcome.ROTATED
    created = w.variables.vars[(PROJECT.kind, PROJECT.path, "AWS_SECRET_ACCESS_KEY", "*")]
    assert created.hidden and created.masked and created.protected


def test_events_never_hold_a_secret() -> None:
    w = rotation_world()
    result = w.run()
    secret = w.iam.key(result.new_key_id or "").secret
    assert secret not in repr(w.store.event_rows)
    assert secret not in repr(w.notifier.posted)


def test_an_unjournaled_key_a_target_now_holds_is_not_deleted() -> None:
    w = rotation_world(grace=timedelta(hours=1))
    w.iam.crash_after = "CreateAccessKey"
    with pytest.raises(Crash):
        w.run(grace=timedelta(hours=1))
    orphan = next(k for k in w.iam.key_ids("ci-payments") if k != old_key(w))
    # someone put the new key into a target by hand before the restart: it is not provably ours alone
    w.variables.seed(PROJECT.kind, PROJECT.path, PROJECT.access_key_id_var, orphan)
    result = w.run(grace=timedelta(hours=1))
    assert result.outcome is Outcome.HELD and orphan in result.message
    assert orphan in w.iam.key_ids("ci-payments")


def test_a_newer_inactive_key_nobody_holds_also_makes_room() -> None:
    w = rotation_world()
    spare = w.iam._new_key("ci-payments")  # created after the key the targets hold, then deactivated
    spare.status = KeyStatus.INACTIVE
    result = w.run()
    assert result.outcome is Outcome.ROTATED and spare.key_id not in w.iam.key_ids("ci-payments")
    assert w.every_target_works() and w.iam.max_keys_seen <= 2


def test_an_inactive_key_is_kept_when_a_target_cannot_be_read() -> None:
    w = rotation_world()
    spare = w.iam._new_key("ci-payments")
    spare.status = KeyStatus.INACTIVE
    hidden = w.variables.vars[(GROUP.kind, GROUP.path, GROUP.access_key_id_var, GROUP.environment_scope)]
    w.variables.vars[(GROUP.kind, GROUP.path, GROUP.access_key_id_var, GROUP.environment_scope)] = replace(
        hidden, hidden=True, masked=True)
    result = w.run()
    assert result.outcome is Outcome.HELD and spare.key_id in w.iam.key_ids("ci-payments")


def test_resume_only_finishes_an_interrupted_rotation_but_starts_none() -> None:
    w = rotation_world()
    assert Rotator(w.ports(), w.spec, resume_only=True).run().outcome is Outcome.NOT_DUE
    assert w.iam.calls.count("CreateAccessKey") == 0  # due, but not asked for: nothing started
    w.variables.crash_after_write = 1
    with pytest.raises(Crash):
        w.run()
    result = Rotator(w.ports(), w.spec, resume_only=True).run()
    assert result.outcome is Outcome.ROTATED and w.every_target_works()


def test_retire_reads_the_deactivation_back_and_waits_out_iams_eventual_consistency() -> None:
    w = rotation_world()
    old = old_key(w)
    w.iam.ignore_deactivate = True  # UpdateAccessKey is accepted; IAM lists the change only on the third read
    reads: list[str] = []

    def lagging() -> None:
        if "UpdateAccessKey" in w.iam.calls:
            reads.append("ListAccessKeys")
            if len(reads) == 3:
                w.iam.key(old).status = KeyStatus.INACTIVE

    w.iam.fail["ListAccessKeys"] = lagging
    result = w.run()
    assert result.outcome is Outcome.ROTATED
    after = w.iam.calls[w.iam.calls.index("UpdateAccessKey"):]
    assert after == ["UpdateAccessKey", "ListAccessKeys", "ListAccessKeys", "ListAccessKeys", "DeleteAccessKey"]
    assert f"retire: deactivated {old}: Inactive (verified with ListAccessKeys)" in result.steps


def test_an_accepted_deactivation_iam_never_shows_is_never_called_retired() -> None:
    w = rotation_world(delete_after=timedelta(days=1))
    old = old_key(w)
    w.iam.ignore_deactivate = True
    result = w.run()
    assert result.outcome is Outcome.FAILED
    assert result.message.startswith(f"UpdateAccessKey {old} Inactive was accepted, but IAM still lists {old} as "
                                     "Active after 5 ListAccessKeys read(s)")
    assert not any(s.startswith("retire: deactivated") for s in result.steps) and "is Inactive" not in result.message
    journal = w.store.open_journal("payments")
    assert journal is not None and journal.phase is Phase.PUBLISHED  # the next run deactivates again
    assert w.iam.key(old).status is KeyStatus.ACTIVE and old in w.iam.key_ids("ci-payments")
    w.iam.ignore_deactivate = False
    waiting = w.run()
    assert waiting.outcome is Outcome.WAITING and waiting.message.startswith(
        f"{old} is Inactive (verified with ListAccessKeys); deleted at ")
    assert w.iam.key(old).status is KeyStatus.INACTIVE


def test_a_retired_key_made_active_again_is_neither_deleted_nor_called_inactive() -> None:
    w = rotation_world(delete_after=timedelta(days=1))
    old = old_key(w)
    assert w.run().outcome is Outcome.WAITING
    w.iam.key(old).status = KeyStatus.ACTIVE  # someone needed it back
    w.clock.advance(timedelta(days=2))
    held = w.run()
    assert held.outcome is Outcome.HELD and "is Inactive" not in held.message
    assert held.message.startswith(f"{old} was retired at ") and "lists it as Active" in held.message
    assert old in w.iam.key_ids("ci-payments") and w.iam.key(old).status is KeyStatus.ACTIVE
    told = [line for p in w.notifier.posted if "held before deleting" in p.title for line in p.lines]
    assert told and told[0] == held.message
    assert w.run().outcome is Outcome.HELD and len(
        [p for p in w.notifier.posted if "held before deleting" in p.title]) == 1  # told once
    w.iam.key(old).status = KeyStatus.INACTIVE  # a human deactivated it again
    assert w.run().outcome is Outcome.ROTATED and old not in w.iam.key_ids("ci-payments")


def test_the_read_back_lists_at_least_once_a_second_apart_and_returns_the_key_as_last_listed() -> None:
    w = rotation_world()
    slept, calls = w.clock.slept, len(w.iam.calls)
    once = read_back_inactive(w.iam, "ci-payments", w.key_id, w.clock, attempts=0)
    assert once is not None and once.status is KeyStatus.ACTIVE and w.iam.calls[calls:] == ["ListAccessKeys"]
    still = read_back_inactive(w.iam, "ci-payments", w.key_id, w.clock, attempts=3)
    assert still is not None and still.status is KeyStatus.ACTIVE
    assert w.iam.calls[calls + 1:] == ["ListAccessKeys"] * 3 and w.clock.slept == slept + 2.0
    w.iam.key(w.key_id).status = KeyStatus.INACTIVE
    seen = read_back_inactive(w.iam, "ci-payments", w.key_id, w.clock)
    assert seen is not None and seen.status is KeyStatus.INACTIVE and w.clock.slept == slept + 2.0
    assert read_back_inactive(w.iam, "ci-payments", "AKIANOSUCHKEYNOSUCH0", w.clock) is None
