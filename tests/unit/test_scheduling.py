"""Which credentials are due: the pure rules of rotator.service.scheduling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from rotator.domain import CredentialState, Phase, Policy
from rotator.service.ports import DueCandidate
from rotator.service.scheduling import (
    DriftSchedule,
    RetryPauses,
    Work,
    in_window,
    jitter_offset,
    select_due,
)

NOW = datetime(2026, 1, 5, 10, 30, tzinfo=UTC)  # a Monday
POLICY = Policy(rotate_every=timedelta(days=30), grace=timedelta(hours=1), delete_after=timedelta(days=7))


def candidate(name: str, **fields: object) -> DueCandidate:
    values: dict[str, object] = {"state": CredentialState.OK, "updated_at": NOW - timedelta(days=1),
                                 "next_due_at": NOW - timedelta(minutes=1)}
    values.update(fields)
    return DueCandidate(name=name, **values)  # type: ignore[arg-type]


def due(*candidates: DueCandidate, policy: Policy = POLICY, now: datetime = NOW,
        pauses: RetryPauses | None = None) -> list[tuple[str, Work]]:
    policies = {c.name: policy for c in candidates}
    return [(w.credential, w.work) for w in select_due(candidates, policies, now, pauses or RetryPauses())]


def test_a_credential_past_its_due_time_is_rotated() -> None:
    assert due(candidate("a")) == [("a", Work.ROTATE)]


def test_a_credential_not_yet_due_is_left_alone() -> None:
    assert due(candidate("a", next_due_at=NOW + timedelta(seconds=1))) == []


def test_a_credential_never_looked_at_is_looked_at() -> None:
    assert due(candidate("new", next_due_at=None)) == [("new", Work.ROTATE)]


def test_recovery_comes_first_then_rotations_then_retire_and_delete() -> None:
    work = due(
        candidate("d-delete", phase=Phase.RETIRED, deactivated_at=NOW - timedelta(days=8)),
        candidate("c-retire", phase=Phase.PUBLISHED, published_at=NOW - timedelta(hours=2)),
        candidate("b-rotate"),
        candidate("a-recover", phase=Phase.CREATED, next_due_at=NOW + timedelta(days=3)),
        candidate("e-recover", phase=Phase.INTENT),
    )
    assert work == [("a-recover", Work.RECOVER), ("e-recover", Work.RECOVER), ("b-rotate", Work.ROTATE),
                    ("c-retire", Work.RETIRE), ("d-delete", Work.DELETE)]


def test_retire_waits_for_the_grace_period_and_delete_for_delete_after() -> None:
    assert due(candidate("r", phase=Phase.PUBLISHED, published_at=NOW - timedelta(minutes=59))) == []
    assert due(candidate("r", phase=Phase.PUBLISHED, published_at=NOW - timedelta(minutes=60))) == [
        ("r", Work.RETIRE)]
    assert due(candidate("d", phase=Phase.RETIRED, deactivated_at=NOW - timedelta(days=6))) == []
    assert due(candidate("d", phase=Phase.RETIRED, deactivated_at=NOW - timedelta(days=7))) == [("d", Work.DELETE)]


@pytest.mark.parametrize(("state", "pause"), [(CredentialState.HELD, RetryPauses().held),
                                               (CredentialState.FAILED, RetryPauses().failed),
                                               (CredentialState.BROKEN, RetryPauses().broken)])
def test_held_failed_and_broken_credentials_are_retried_only_after_a_pause(state: CredentialState,
                                                                            pause: timedelta) -> None:
    recent = candidate("x", state=state, updated_at=NOW - pause + timedelta(seconds=1))
    assert due(recent) == []
    assert due(candidate("x", state=state, updated_at=NOW - pause)) == [("x", Work.ROTATE)]
    # The pause applies to an interrupted rotation too: a held retire is not retried every tick.
    held_retire = candidate("y", state=state, updated_at=NOW - pause + timedelta(seconds=1), phase=Phase.PUBLISHED,
                            published_at=NOW - timedelta(days=1), held=True)
    assert due(held_retire) == []


def test_the_pauses_are_settings_and_a_broken_target_is_retried_within_a_minute() -> None:
    assert RetryPauses().broken == timedelta(minutes=1)
    pauses = RetryPauses(held=timedelta(minutes=5), failed=timedelta(minutes=2), broken=timedelta(seconds=30))
    broken = candidate("b", state=CredentialState.BROKEN, updated_at=NOW - timedelta(seconds=30),
                       phase=Phase.VERIFIED)
    assert due(broken, pauses=pauses) == [("b", Work.RECOVER)]  # resumed: the publish is tried again
    assert due(candidate("h", state=CredentialState.HELD, updated_at=NOW - timedelta(minutes=4)), pauses=pauses) == []
    assert due(candidate("h", state=CredentialState.HELD, updated_at=NOW - timedelta(minutes=5)), pauses=pauses) == [
        ("h", Work.ROTATE)]


def test_a_drift_budget_of_zero_turns_drift_checks_off() -> None:
    schedule = DriftSchedule(["a", "b"], every=timedelta(hours=1), budget=0, start=NOW - timedelta(days=1))
    assert schedule.take_due(NOW) == []


def test_credentials_without_a_policy_are_not_configured_and_skipped() -> None:
    assert select_due([candidate("gone")], {}, NOW) == []


def test_the_window_limits_new_rotations_but_never_steps_under_way() -> None:
    office_hours = Policy(window="* 9-16 * * mon-fri")
    saturday = datetime(2026, 1, 10, 10, 0, tzinfo=UTC)
    assert due(candidate("a"), policy=office_hours, now=NOW) == [("a", Work.ROTATE)]
    assert due(candidate("a"), policy=office_hours, now=saturday) == []
    assert due(candidate("n", next_due_at=None), policy=office_hours, now=saturday) == []
    under_way = [candidate("r", phase=Phase.VERIFIED),
                 candidate("p", phase=Phase.PUBLISHED, published_at=saturday - timedelta(days=1)),
                 candidate("d", phase=Phase.RETIRED, deactivated_at=saturday - timedelta(days=8))]
    assert sorted(due(*under_way, policy=office_hours, now=saturday)) == [
        ("d", Work.DELETE), ("p", Work.RETIRE), ("r", Work.RECOVER)]


def test_jitter_delays_a_due_rotation_by_a_stable_amount_per_name() -> None:
    jitter = timedelta(hours=6)
    offset = jitter_offset("payments-deploy", jitter)
    assert timedelta(0) <= offset < jitter
    assert jitter_offset("payments-deploy", jitter) == offset  # every replica and restart agrees
    policy = Policy(jitter=jitter)
    due_at = NOW - offset
    assert due(candidate("payments-deploy", next_due_at=due_at + timedelta(seconds=1)), policy=policy) == []
    assert due(candidate("payments-deploy", next_due_at=due_at), policy=policy) == [
        ("payments-deploy", Work.ROTATE)]


def test_jitter_spreads_a_fleet_created_on_one_day() -> None:
    jitter = timedelta(hours=24)
    hours = {int(jitter_offset(f"ci-deploy-{i}", jitter).total_seconds() // 3600) for i in range(500)}
    assert len(hours) == 24  # every hour of the day gets some of the fleet
    assert jitter_offset("anything", timedelta(0)) == timedelta(0)


@pytest.mark.parametrize(("window", "when", "inside"), [
    ("* 9-16 * * mon-fri", datetime(2026, 1, 5, 9, 0, tzinfo=UTC), True),
    ("* 9-16 * * mon-fri", datetime(2026, 1, 5, 16, 59, 59, tzinfo=UTC), True),
    ("* 9-16 * * mon-fri", datetime(2026, 1, 5, 17, 0, tzinfo=UTC), False),
    ("* 9-16 * * mon-fri", datetime(2026, 1, 4, 10, 0, tzinfo=UTC), False),  # Sunday
    # crontab numbers days from Sunday = 0 (APScheduler 3.x from Monday): 1-5 is Monday to Friday.
    ("* * * * 1-5", datetime(2026, 1, 5, 3, 0, tzinfo=UTC), True),  # Monday
    ("* * * * 1-5", datetime(2026, 1, 10, 3, 0, tzinfo=UTC), False),  # Saturday
    ("* * * * 0", datetime(2026, 1, 4, 3, 0, tzinfo=UTC), True),  # Sunday
    ("* * * * 7", datetime(2026, 1, 4, 3, 0, tzinfo=UTC), True),  # Sunday again
    ("* * * * 5-7", datetime(2026, 1, 4, 3, 0, tzinfo=UTC), True),  # Friday to Sunday
    ("* * * * 5-7", datetime(2026, 1, 7, 3, 0, tzinfo=UTC), False),  # Wednesday
    ("0-29 2 * * *", datetime(2026, 1, 7, 2, 29, tzinfo=UTC), True),
    ("0-29 2 * * *", datetime(2026, 1, 7, 2, 30, tzinfo=UTC), False),
    # Both day fields restricted: crontab matches either (the 1st of the month, or any Monday).
    ("* * 1 * mon", datetime(2026, 1, 1, 12, 0, tzinfo=UTC), True),  # a Thursday, the 1st
    ("* * 1 * mon", datetime(2026, 1, 5, 12, 0, tzinfo=UTC), True),  # a Monday, the 5th
    ("* * 1 * mon", datetime(2026, 1, 6, 12, 0, tzinfo=UTC), False),
    # Evaluated in UTC whatever the caller's zone: 10:30 at UTC+2 is 08:30 UTC.
    ("* 9-16 * * *", datetime(2026, 1, 5, 10, 30, tzinfo=timezone(timedelta(hours=2))), False),
])
def test_in_window(window: str, when: datetime, inside: bool) -> None:
    assert in_window(window, when) is inside


def test_no_window_means_any_time() -> None:
    assert in_window(None, NOW)


def test_drift_checks_are_spread_and_rationed() -> None:
    names = [f"c{i}" for i in range(100)]
    schedule = DriftSchedule(names, every=timedelta(hours=1), budget=10, start=NOW)
    assert schedule.take_due(NOW - timedelta(seconds=1)) == []
    first_half = schedule.take_due(NOW + timedelta(minutes=30))
    assert len(first_half) == 10  # the budget, although about half the fleet is due
    taken = set(first_half)
    for _ in range(20):
        taken |= set(schedule.take_due(NOW + timedelta(minutes=59, seconds=59)))
    assert taken == set(names)  # within the first period every credential had its check
    # Each is rescheduled a period later, not checked again within the same period.
    assert schedule.take_due(NOW + timedelta(minutes=59, seconds=59)) == []
    next_due = schedule.next_due()
    assert next_due is not None and next_due >= NOW + timedelta(hours=1)


def test_drift_checks_after_a_long_pause_do_not_come_in_a_burst() -> None:
    schedule = DriftSchedule(["a"], every=timedelta(hours=1), budget=10, start=NOW)
    later = NOW + timedelta(days=2)
    assert schedule.take_due(later) == ["a"]
    assert schedule.take_due(later + timedelta(minutes=59)) == []
    assert schedule.take_due(later + timedelta(hours=1)) == ["a"]
