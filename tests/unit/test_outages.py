"""Outside parties that do not answer, against fakes: notifications are kept and delivered in order, never
decide an outcome; a credential failed on an unreachable party backs off; retry budgets are bounded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rotator.domain import CredentialState, KeyStatus
from rotator.errors import AwsError, AwsNoCredentials, AwsUnavailable, SlackError, SlackUnavailable
from rotator.incident.containment import NotContained, StepStatus
from rotator.ratelimit import RetryBudget
from rotator.rotation.results import Outcome
from rotator.service.outbox import OutboxNotifier
from rotator.service.ports import DueCandidate
from rotator.service.runner import tick_deadline, tick_problem
from rotator.service.scheduling import Work, select_due, unreachable_backoff
from tests.unit.fakes import T0, FakeClock, FakeNotifier
from tests.unit.incident_fakes import FakeIncidentStore, record
from tests.unit.worlds import incident_world, rotation_world, step


def _outbox(notifier: FakeNotifier, store: FakeIncidentStore, failures: list[SlackError]) -> OutboxNotifier:
    return OutboxNotifier(notifier, lambda: store, FakeClock(T0), holder="unit-test", on_failed=failures.append)


def _post_while_slack_is_down(outbox: OutboxNotifier, notifier: FakeNotifier, *titles: str) -> None:
    """Slack stops answering; each title is posted and refused to the caller (and kept by the outbox)."""
    notifier.unreachable = True
    for title in titles:
        with pytest.raises(SlackUnavailable):
            outbox.post("#team-a", title, [])


# --- the outbox ------------------------------------------------------------------------------------------


def test_a_message_slack_does_not_answer_for_is_kept_and_the_caller_told_so() -> None:
    notifier, store, failures = FakeNotifier(), FakeIncidentStore(), []
    outbox = _outbox(notifier, store, failures)
    notifier.unreachable = True
    with pytest.raises(SlackUnavailable, match="kept in the database and sent once Slack answers, by `rotator run`"):
        outbox.post("#team-a", "first", ["one"])
    assert [(m.channel, m.title, m.lines) for m in store.queued_notifications()] == [("#team-a", "first", ("one",))]
    assert len(failures) == 1 and isinstance(failures[0], SlackUnavailable)


def test_after_one_failure_later_messages_queue_without_trying_slack_again() -> None:
    notifier, store, failures = FakeNotifier(), FakeIncidentStore(), []
    outbox = _outbox(notifier, store, failures)
    _post_while_slack_is_down(outbox, notifier, "first", "second", "third")
    assert notifier.attempts == 1  # every try costs the whole retry budget: one per process while down
    assert [m.title for m in store.queued_notifications()] == ["first", "second", "third"]


def test_kept_messages_are_delivered_oldest_first_once_slack_answers() -> None:
    notifier, store, failures = FakeNotifier(), FakeIncidentStore(), []
    outbox = _outbox(notifier, store, failures)
    _post_while_slack_is_down(outbox, notifier, "first", "second")
    notifier.unreachable = False
    delivery = outbox.send_queued()
    assert (delivery.delivered, delivery.waiting, delivery.error) == (2, 0, None)
    assert [p.title for p in notifier.posted] == ["first", "second"]
    assert outbox.post("#team-a", "third", []) is not None  # Slack answers: posted at once again
    assert [p.title for p in notifier.posted] == ["first", "second", "third"]


def test_a_new_message_waits_behind_kept_ones_so_owners_read_them_in_order() -> None:
    """Another process kept a message; this one finds Slack answering: it delivers the kept one first."""
    notifier, store, failures = FakeNotifier(), FakeIncidentStore(), []
    earlier = _outbox(notifier, store, failures)
    notifier.unreachable = True
    with pytest.raises(SlackUnavailable):
        earlier.post("#team-a", "earlier", [])
    notifier.unreachable = False
    _outbox(notifier, store, failures).post("#team-a", "later", [])
    assert [p.title for p in notifier.posted] == ["earlier", "later"] and store.queued_count() == 0


def test_delivery_stops_at_the_first_message_slack_still_does_not_take() -> None:
    notifier, store, failures = FakeNotifier(), FakeIncidentStore(), []
    outbox = _outbox(notifier, store, failures)
    _post_while_slack_is_down(outbox, notifier, "first", "second")
    delivery = outbox.send_queued()
    assert delivery.delivered == 0 and delivery.waiting == 2 and delivery.error
    assert [m.attempts for m in store.queued_notifications()] == [1, 0]


def test_a_refusal_is_not_kept_and_does_not_block_the_others() -> None:
    notifier, store, failures = FakeNotifier(), FakeIncidentStore(), []
    outbox = _outbox(notifier, store, failures)
    notifier.down = True  # Slack answers, and says no (bad token, unknown channel): sending again cannot help
    with pytest.raises(SlackError) as refused:
        outbox.post("#gone", "refused", [])
    assert not isinstance(refused.value, SlackUnavailable) and store.queued_count() == 0
    assert failures == [refused.value]


# --- rotation and revoke with Slack unreachable -------------------------------------------------------------


def test_rotation_finishes_and_says_the_owners_could_not_be_told() -> None:
    world = rotation_world()
    world.notifier.unreachable = True
    result = world.run()
    assert result.outcome is Outcome.ROTATED and world.every_target_works()
    assert "owners could not be told" in result.message and "#team-payments" in result.message
    assert [m.channel for m in world.store.queued_notifications()] == ["#team-payments"]
    world.notifier.unreachable = False
    root = world.root()
    assert root.outbox_sender is not None and root.outbox_sender.send_queued().delivered == 1
    assert "payments rotated" in world.notifier.posted[-1].title


def test_revoke_with_slack_unreachable_is_exit_3_with_report_and_audit() -> None:
    world = incident_world()
    world.notifier.unreachable = True
    outcome = world.revoke()
    assert world.iam.key(world.key_id).status is KeyStatus.INACTIVE
    assert step(outcome, "notify") is StepStatus.FAILED and step(outcome, "audit") is StepStatus.DONE
    assert outcome.exit_code == 3
    [incident] = world.store.incidents_for_key(world.key_id)
    assert incident.report_markdown and "kept" in incident.report_markdown
    assert world.store.queued_count() >= 1  # the security channel hears about it once Slack answers


# --- a credential failed on an unreachable party -----------------------------------------------------------


def test_gitlab_unreachable_fails_the_run_naming_the_party() -> None:
    world = rotation_world()
    world.variables.unreachable = True
    result = world.run()
    assert result.outcome is Outcome.FAILED and result.unreachable == "gitlab"
    assert "cannot reach GitLab" in result.message
    assert [k.status for k in world.iam.keys["ci-payments"]] == [KeyStatus.ACTIVE]  # nothing left behind


def test_unreachable_backoff_doubles_up_to_its_cap() -> None:
    first, cap = timedelta(seconds=30), timedelta(minutes=5)
    assert [unreachable_backoff(n, first, cap) for n in range(1, 7)] == [
        timedelta(seconds=30), timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4), cap, cap]


def test_a_failed_credential_with_a_retry_time_waits_for_it_not_for_the_fixed_pause() -> None:
    def candidate(retry_in: timedelta | None) -> DueCandidate:
        return DueCandidate("c", CredentialState.FAILED, updated_at=T0, next_due_at=T0,
                            retry_at=None if retry_in is None else T0 + retry_in)

    policies = {"c": rotation_world().spec.policy}
    later = T0 + timedelta(seconds=31)
    assert select_due([candidate(timedelta(seconds=30))], policies, T0 + timedelta(seconds=29)) == []
    assert [w.work for w in select_due([candidate(timedelta(seconds=30))], policies, later)] == [Work.ROTATE]
    assert select_due([candidate(None)], policies, later) == []  # other failures keep the fixed pause


# --- retry budgets -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("window", "planned", "waits"), [
    (30.0, 3, [2.0, 4.0, 8.0]), (15.0, 3, [2.0, 4.0, 8.0]), (6.0, 1, [2.0]), (2.0, 0, []),
])
def test_a_retry_budget_never_waits_past_its_window(window: float, planned: int, waits: list[float]) -> None:
    budget = RetryBudget("GitLab", window)
    assert budget.planned == planned
    spent, seen = 0.0, []
    while (wait := budget.next_wait(len(seen), spent)) is not None:
        seen.append(wait)
        spent += wait
    assert seen == waits and spent <= window


def test_a_slow_attempt_uses_the_window_up() -> None:
    budget = RetryBudget("Slack", 15.0)
    assert budget.next_wait(0, elapsed=14.0) is None  # the first attempt hung until its timeout


# --- revoke names what is really wrong, and what minted a session ------------------------------------------


def test_a_session_key_minted_by_a_user_names_the_key_that_minted_it() -> None:
    world = incident_world()
    minted = "ASIAMINTEDMINTED0002"
    world.trail.add(record("GetSessionToken", key_id=world.key_id, minted=minted))
    world.revoke()
    owner = world.store.key_owner(minted)
    assert owner is not None and owner.minted_by == world.key_id
    later = world.contain(minted)
    assert later.contained and later.identity is not None and later.identity.minted_by == world.key_id
    [upstream] = [s for s in later.steps if s.name == "upstream key"]
    assert upstream.status is StepStatus.ATTENTION and f"rotator revoke --key {world.key_id}" in upstream.detail


@pytest.mark.parametrize(("error", "said"), [
    (AwsNoCredentials("sts:GetAccessKeyInfo: no AWS credentials found", code="NoCredentials",
                      hint="give the process credentials"), "no AWS credentials found"),
    (AwsUnavailable("sts:GetAccessKeyInfo: AWS endpoint unreachable", code="EndpointConnectionError",
                    hint="check network access"), "the AWS endpoint is unreachable"),
])
def test_revoke_says_what_is_wrong_instead_of_asking_for_a_permission(error: AwsError, said: str) -> None:
    world = incident_world()

    def fail() -> None:
        raise error

    world.directory.fail = fail
    with pytest.raises(NotContained) as raised:
        world.contain("AKIAUNTRACKED0000001")
    assert said in raised.value.message and "sts:GetAccessKeyInfo to" not in raised.value.hint


# --- /readyz: a tick stuck past its deadline ---------------------------------------------------------------


def test_a_tick_stuck_past_its_deadline_is_reported_until_it_makes_progress() -> None:
    deadline, recent = 120.0, 90.0
    assert tick_problem(1000.0, started=950.0, progress=None, deadline=deadline, recent=recent) is None
    stuck = tick_problem(1000.0, started=800.0, progress=850.0, deadline=deadline, recent=recent)
    assert stuck is not None and "stuck" in stuck and "120s" in stuck
    assert tick_problem(1000.0, started=800.0, progress=990.0, deadline=deadline, recent=recent) is None
    idle = tick_problem(1000.0, started=None, progress=800.0, deadline=deadline, recent=recent)
    assert idle is not None and "no tick finished in the last 90s" in idle


def test_the_tick_deadline_follows_the_parties_timeouts() -> None:
    settings = rotation_world().settings()
    assert tick_deadline(settings) == 120.0  # 4 x [gitlab] timeout (30s) beats 3 ticks, a minute, 2 x verify
