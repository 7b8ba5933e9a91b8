"""Never split a pair: the preflight write of the key-id variable, the pair written back to back, and what
happens when GitLab still refuses the key id after the secret was written (restored, or BROKEN)."""

from __future__ import annotations

from datetime import timedelta

from rotator.domain import CredentialState, KeyStatus, Phase, ScopeKind, VarRef
from rotator.leases import lease_name, new_holder
from rotator.rotation.batch import rotate_one
from rotator.rotation.results import Outcome
from tests.unit.worlds import GROUP, PROJECT, SECURITY, rotation_world

GROUP_KEY_ID = (ScopeKind.GROUP, "payments", "AWS_ACCESS_KEY_ID")


def test_a_refused_preflight_leaves_the_target_untouched_and_holds_the_credential() -> None:
    w = rotation_world()
    old, old_secret = w.key_id, w.secret
    w.variables.refuse_variable[GROUP_KEY_ID] = 0  # GitLab refuses every write of that one variable
    result = w.run()
    assert result.outcome is Outcome.HELD and not result.outcome.ok
    assert "AWS_ACCESS_KEY_ID" in result.message and "403" in result.message and GROUP.label in result.message
    assert w.variables.value(ScopeKind.GROUP, "payments", "AWS_SECRET_ACCESS_KEY", "production") == old_secret
    assert w.iam.key(old).status is KeyStatus.ACTIVE  # the group's pipelines still use it
    assert w.every_target_works()  # the project holds the new pair, the group its old one
    assert w.store.get_status("payments").state is CredentialState.HELD
    told = [p for p in w.notifier.posted if p.channel == "#team-payments"]
    assert any("AWS_ACCESS_KEY_ID" in line and "refused" in line for p in told for line in p.lines)


def test_a_refusal_at_every_target_rolls_the_new_key_back() -> None:
    w = rotation_world()
    w.variables.refuse_variable[GROUP_KEY_ID] = 0
    w.variables.refuse_variable[(ScopeKind.PROJECT, "payments/api", "AWS_ACCESS_KEY_ID")] = 0
    result = w.run()
    assert result.outcome is Outcome.HELD and "new key" in result.message and "deleted" in result.message
    assert w.iam.key_ids("ci-payments") == [w.key_id]  # only the old key, still Active
    assert w.every_target_works() and w.variables.pairs == []  # no pair write was even started


def test_a_key_id_refused_after_a_readable_secret_was_written_gets_the_old_secret_back() -> None:
    w = rotation_world()
    w.variables.refuse_variable[GROUP_KEY_ID] = 1  # the preflight passes, the pair's key-id write does not
    result = w.run()
    assert result.outcome is Outcome.HELD
    assert "put back" in result.message and f"holds {w.key_id} again" in result.message
    assert w.variables.value(ScopeKind.GROUP, "payments", "AWS_SECRET_ACCESS_KEY", "production") == w.secret
    assert w.every_target_works() and w.iam.key(w.key_id).status is KeyStatus.ACTIVE
    journal = w.store.open_journal("payments")
    assert journal is not None and journal.broken_targets == frozenset()
    assert GROUP.target_id not in {t.split("#")[0] for t in journal.targets_done}  # untouched again


def test_a_key_id_refused_after_a_hidden_secret_was_written_is_broken_said_at_once_and_repaired_later() -> None:
    w = rotation_world(hidden_secret=True)
    old = w.key_id
    w.variables.refuse_variable[GROUP_KEY_ID] = 1
    result = w.run()
    assert result.outcome is Outcome.BROKEN and not result.outcome.ok
    assert "still holds" not in result.message.replace(f"still holds {old}", "")  # never claims a working pair
    assert f"AWS_SECRET_ACCESS_KEY holds the secret of {result.new_key_id}" in result.message
    assert f"AWS_ACCESS_KEY_ID still holds {old}" in result.message
    assert w.store.get_status("payments").state is CredentialState.BROKEN
    journal = w.store.open_journal("payments")
    assert journal is not None and journal.phase is Phase.VERIFIED and journal.broken_targets == {GROUP.target_id}
    assert w.iam.key(old).status is KeyStatus.ACTIVE and w.iam.key(result.new_key_id or "").status is KeyStatus.ACTIVE
    alarmed = {p.channel for p in w.notifier.posted if "BROKEN" in p.title}
    assert alarmed == {"#team-payments", SECURITY} and all(
        p.severity == "critical" for p in w.notifier.posted if "BROKEN" in p.title)
    # Still refused on the next try: still broken (the preflight now proves nothing about a touched target).
    assert w.run().outcome is Outcome.BROKEN
    # GitLab accepts the write again: the next run completes the pair with the same key.
    del w.variables.refuse_variable[GROUP_KEY_ID]
    fixed = w.run()
    assert fixed.outcome is Outcome.ROTATED and fixed.new_key_id == result.new_key_id
    assert w.every_target_works() and w.iam.key_ids("ci-payments") == [result.new_key_id]
    assert w.store.get_status("payments").state is CredentialState.OK


def test_the_pair_is_written_as_one_back_to_back_call_after_the_preflight() -> None:
    w = rotation_world()
    w.run()
    assert w.variables.pairs == [("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")] * len((PROJECT, GROUP))


def test_a_rotation_whose_lease_was_taken_over_mid_run_stops_and_writes_nothing_more() -> None:
    w = rotation_world()
    name = lease_name("payments")
    taken: list[int] = []

    def stall_then_lose_the_lease() -> None:  # the rotation is paused in verify past its lease
        if not taken:
            w.clock.advance(timedelta(minutes=3))  # longer than lease_ttl, by the "database's" clock
            token = w.store.try_acquire_lease(name, "replica-b", timedelta(minutes=2))
            assert token is not None
            taken.append(token)

    w.sts.fail = stall_then_lose_the_lease
    events_before = len(w.store.event_rows)
    result = rotate_one(w.ports(), w.spec, holder=new_holder("replica-a"), lease_ttl=timedelta(minutes=2))
    assert result.outcome is Outcome.BUSY and "lease" in result.message
    assert taken == [2]  # a new tenure
    journal = w.store.open_journal("payments")
    assert journal is not None and journal.phase is Phase.CREATED  # nothing journaled after the takeover
    assert w.variables.writes == []  # nothing published
    after = w.store.event_rows[events_before:]
    assert [e.action for e in after] == ["create_key"]  # written before the takeover; nothing after it
    assert (w.store.lease_holder(name) or ("",))[0] == "replica-b"  # replica a did not release b's lease


def test_a_put_back_secret_that_lands_in_another_scope_leaves_the_target_broken_never_holding_its_key_again() -> None:
    w = rotation_world()
    w.variables.seed(ScopeKind.GROUP, "payments", "AWS_SECRET_ACCESS_KEY", "staging-secret-0000000", scope="staging")
    w.variables.refuse_variable[GROUP_KEY_ID] = 1  # the preflight passes, the pair's key-id write does not
    secret_writes: list[str] = []

    def production_secret_vanishes_before_the_put_back(ref: VarRef) -> None:
        if ref.kind is ScopeKind.GROUP and ref.key == "AWS_SECRET_ACCESS_KEY":
            secret_writes.append(ref.label)
            if len(secret_writes) == 2:  # the put-back: GitLab's filter now matches nothing, so it lands in staging
                w.variables.vars.pop((ScopeKind.GROUP, "payments", "AWS_SECRET_ACCESS_KEY", "production"))

    w.variables.before_write = production_secret_vanishes_before_the_put_back
    result = w.run()
    assert result.outcome is Outcome.BROKEN
    assert f"holds {w.key_id} again" not in result.message
    assert "putting the old secret back failed" in result.message and "environment_scope=staging" in result.message
    assert "may hold the secret of" in result.message
    assert w.variables.value(ScopeKind.GROUP, "payments", "AWS_SECRET_ACCESS_KEY", "staging") == (
        "staging-secret-0000000")  # the other scope's value put back from the snapshot
    assert w.store.get_status("payments").state is CredentialState.BROKEN
    assert not any(e.action == "publish" and e.outcome == "restored" for e in w.store.event_rows)


CANARY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYCANARYKEY1"  # a secret pasted into the key-id variable


def test_a_secret_in_the_key_id_variable_never_reaches_slack_the_result_or_the_database() -> None:
    w = rotation_world()
    w.variables.seed(ScopeKind.GROUP, "payments", "AWS_ACCESS_KEY_ID", CANARY, scope="production")
    result = w.run()
    assert result.outcome is Outcome.HELD
    assert "a value that is not an access key id (40 characters)" in result.message
    said = [result.message, *result.steps, *(f"{p.title} {p.lines}" for p in w.notifier.posted),
            repr(w.store.statuses), repr(w.store.event_rows), repr(w.store.journal_rows)]
    assert w.notifier.posted and all(CANARY not in text for text in said)
