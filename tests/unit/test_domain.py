"""The pure rules of rotator.domain: durations, secrets, key choice, due dates and making room for a new key."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest

from rotator.domain import (
    AccessKey,
    Journal,
    KeyLastUsed,
    KeyStatus,
    Phase,
    Policy,
    Secret,
    decide_room,
    format_duration,
    is_due,
    newest_active,
    next_rotation_due,
    parse_duration,
    provably_replaced,
)

OLD = "AKIAOLDOLDOLDOLDOLD1"
MID = "AKIAMIDMIDMIDMIDMID2"
NEW = "AKIANEWNEWNEWNEWNEW3"
T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
POLICY = Policy(rotate_every=timedelta(days=30))


def key(key_id: str, status: KeyStatus, days_after_t0: int) -> AccessKey:
    return AccessKey(key_id, status, T0 + timedelta(days=days_after_t0))


# --- durations --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("1h", timedelta(hours=1)),
    ("30d", timedelta(days=30)), (" 2h ", timedelta(hours=2)),
])
def test_a_duration_is_a_whole_number_and_a_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("value", ["1 hour", "1.5h", "", 90, None])
def test_anything_else_is_refused_with_the_accepted_forms(value: object) -> None:
    # A TOML integer (`grace = 90`) reaches the parser as an int: it gets the same teaching error, not a crash.
    with pytest.raises(ValueError, match=r"write a whole number and a unit: '90s', '15m', '1h', '30d'"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(days=7), "7d"), (timedelta(hours=48), "2d"), (timedelta(hours=3), "3h"),
    (timedelta(minutes=1), "1m"), (timedelta(minutes=90), "90m"), (timedelta(seconds=90), "90s"),
    (timedelta(0), "0s"),
])
def test_a_duration_is_written_in_its_largest_whole_unit(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text
    assert parse_duration(text) == delta  # what is written reads back as the same duration


# --- secrets ----------------------------------------------------------------------------------------------------


def test_equal_secrets_are_interchangeable_as_keys_without_revealing_the_value() -> None:
    assert Secret("same-value") == Secret("same-value")
    assert Secret("same-value") != Secret("other-value")
    assert len({Secret("same-value"), Secret("same-value")}) == 1
    assert hash(Secret("same-value")) == hash(Secret("same-value"))


def test_a_secret_refuses_to_be_pickled_and_says_why() -> None:
    with pytest.raises(TypeError, match=r"^Secret values must not be pickled$"):
        pickle.dumps(Secret("do-not-persist"))


# --- what IAM says about a key ----------------------------------------------------------------------------------


def test_last_use_is_described_with_service_and_region_or_a_question_mark() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert KeyLastUsed(OLD, "ci", at, "s3", "eu-west-1").describe() == (
        "last used at 2026-01-02T03:04:05+00:00 by service s3 in region eu-west-1")
    assert KeyLastUsed(OLD, "ci", at, None, None).describe() == (
        "last used at 2026-01-02T03:04:05+00:00 by service ? in region ?")
    assert KeyLastUsed(OLD, "ci", None, None, None).describe() == "never used"


def test_the_current_key_is_the_newest_active_one_never_an_inactive_one() -> None:
    keys = [key(OLD, KeyStatus.ACTIVE, 0), key(MID, KeyStatus.ACTIVE, 5), key(NEW, KeyStatus.INACTIVE, 9)]
    assert newest_active(keys) == keys[1]
    assert newest_active([key(NEW, KeyStatus.INACTIVE, 9)]) is None
    assert newest_active([]) is None


# --- when a rotation is due -------------------------------------------------------------------------------------


def test_the_next_rotation_counts_from_the_newer_of_key_creation_and_last_rotation() -> None:
    created, rotated = T0, T0 + timedelta(days=10)
    assert next_rotation_due(created, rotated, POLICY) == rotated + timedelta(days=30)
    assert next_rotation_due(rotated, created, POLICY) == rotated + timedelta(days=30)
    assert next_rotation_due(created, None, POLICY) == created + timedelta(days=30)
    assert next_rotation_due(None, rotated, POLICY) == rotated + timedelta(days=30)


def test_a_credential_with_neither_date_has_no_due_date_and_is_due_now() -> None:
    assert next_rotation_due(None, None, POLICY) is None
    assert is_due(None, None, POLICY, now=T0)


def test_a_rotation_is_due_from_the_due_instant_on() -> None:
    due = T0 + timedelta(days=30)
    assert not is_due(T0, None, POLICY, now=due - timedelta(seconds=1))
    assert is_due(T0, None, POLICY, now=due)
    assert is_due(T0, None, POLICY, now=due + timedelta(days=1))
    # the newer date decides: rotated recently, so an old key creation date does not make it due
    assert not is_due(T0 - timedelta(days=90), T0, POLICY, now=due - timedelta(seconds=1))
    assert not is_due(T0, T0 - timedelta(days=90), POLICY, now=due - timedelta(seconds=1))


# --- making room for a new key ----------------------------------------------------------------------------------

HOLD_PREFIX = "the user already has the maximum number of access keys"
HOLD_SUFFIX = ("A human must confirm which key is unused, deactivate and delete it, then run `rotator rotate` "
               "again")


def test_room_is_made_by_deleting_the_oldest_key_that_is_inactive_unreferenced_and_replaced() -> None:
    keys = [key(NEW, KeyStatus.INACTIVE, 9), key(OLD, KeyStatus.INACTIVE, 0), key(MID, KeyStatus.INACTIVE, 5)]
    decision = decide_room(keys, referenced=set(), replaced={OLD, MID, NEW}, unknown_references=False)
    assert (decision.delete_key_id, decision.hold_reason) == (OLD, None)


def test_a_referenced_or_unreplaced_inactive_key_is_never_chosen() -> None:
    keys = [key(OLD, KeyStatus.INACTIVE, 0), key(MID, KeyStatus.INACTIVE, 5), key(NEW, KeyStatus.INACTIVE, 9)]
    decision = decide_room(keys, referenced={OLD}, replaced={OLD, NEW}, unknown_references=False)
    assert decision.delete_key_id == NEW  # OLD is still held by a target, MID was never proven replaced


def test_two_active_keys_hold_with_the_keys_named_and_the_next_step() -> None:
    keys = [key(OLD, KeyStatus.ACTIVE, 0), key(NEW, KeyStatus.ACTIVE, 9)]
    decision = decide_room(keys, referenced=set(), replaced={OLD}, unknown_references=False)
    assert decision.delete_key_id is None
    assert decision.hold_reason == (f"{HOLD_PREFIX} [{OLD} (Active), {NEW} (Active)]: both keys are Active. "
                                    f"{HOLD_SUFFIX}")


def test_an_inactive_key_not_proven_replaced_holds_and_names_the_possible_causes() -> None:
    keys = [key(OLD, KeyStatus.INACTIVE, 0), key(NEW, KeyStatus.ACTIVE, 9)]
    decision = decide_room(keys, referenced={OLD}, replaced={OLD}, unknown_references=False)
    assert decision.delete_key_id is None
    assert decision.hold_reason == (
        f"{HOLD_PREFIX} [{OLD} (Inactive), {NEW} (Active)]: the Inactive key cannot be proven replaced (a target "
        f"still holds it, targets disagree, or it is evidence of an incident). {HOLD_SUFFIX}")


def test_a_hidden_key_id_variable_holds_even_when_a_key_looks_deletable() -> None:
    keys = [key(OLD, KeyStatus.INACTIVE, 0), key(NEW, KeyStatus.ACTIVE, 9)]
    decision = decide_room(keys, referenced=set(), replaced={OLD}, unknown_references=True)
    assert decision.delete_key_id is None
    assert decision.hold_reason == (
        f"{HOLD_PREFIX} [{OLD} (Inactive), {NEW} (Active)]: a target's key-id variable is hidden, so no key can be "
        f"proven unreferenced. {HOLD_SUFFIX}")


# --- keys provably replaced -------------------------------------------------------------------------------------


def published_away_from(old_key_id: str, *, user_id: str = "AIDAPAYMENTS") -> Journal:
    return Journal("r-1", "payments", "default", "ci-payments", user_id, (old_key_id,), old_key_id, Phase.DONE, T0,
                   T0, new_key_id=NEW, published_at=T0)


def test_every_readable_target_holding_one_active_key_proves_the_others_replaced() -> None:
    keys = [key(OLD, KeyStatus.INACTIVE, 0), key(NEW, KeyStatus.ACTIVE, 30)]
    assert provably_replaced([], "AIDAPAYMENTS", [NEW, NEW], keys, ()) == {OLD}


def test_targets_that_disagree_or_cannot_be_read_prove_nothing() -> None:
    keys = [key(OLD, KeyStatus.ACTIVE, 0), key(NEW, KeyStatus.ACTIVE, 30)]
    assert provably_replaced([], "AIDAPAYMENTS", [NEW, OLD], keys, ()) == set()
    assert provably_replaced([], "AIDAPAYMENTS", [NEW, None], keys, ()) == set()


def test_targets_holding_an_inactive_key_prove_nothing_about_the_active_one() -> None:
    keys = [key(OLD, KeyStatus.INACTIVE, 0), key(NEW, KeyStatus.ACTIVE, 30)]
    assert provably_replaced([], "AIDAPAYMENTS", [OLD], keys, ()) == set()


def test_the_journals_and_the_targets_proofs_add_up() -> None:
    keys = [key(MID, KeyStatus.INACTIVE, 10), key(NEW, KeyStatus.ACTIVE, 30)]
    journals = [published_away_from(OLD), published_away_from("AKIAOTHERUSER0000001", user_id="AIDAOTHER")]
    assert provably_replaced(journals, "AIDAPAYMENTS", [NEW], keys, ()) == {OLD, MID}
