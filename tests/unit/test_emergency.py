"""`rotate --emergency` against the fake world: no grace, no LastUsedDate gate, old keys Inactive as soon as every
target holds the new pair (kept, never deleted by the run), and a summary naming every key still Active."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from rotator.cli.rotate_output import fleet_summary, print_fleet_summary
from rotator.domain import KeyStatus, Phase
from rotator.errors import AwsUnavailable
from rotator.rotation.engine import Rotator
from rotator.rotation.fleet import (
    NOT_STARTED,
    Exposure,
    FleetReport,
    emergency_lines,
    still_exposed,
    summary_lines,
    summary_title,
)
from rotator.rotation.results import Outcome, RotationResult
from tests.unit.worlds import SECURITY, fleet_world, rotation_world


def test_emergency_ignores_grace_and_keeps_the_old_key_inactive_as_evidence() -> None:
    w = rotation_world(grace=timedelta(hours=1), delete_after=timedelta(0))
    result = Rotator(w.ports(), w.spec, emergency=True).run()
    assert result.retired_key_id == w.key_id and "verified with ListAccessKeys" in result.message
    assert w.iam.key(w.key_id).status is KeyStatus.INACTIVE  # not deleted, even with delete_after = 0s
    assert w.every_target_works() and w.iam.calls.count("DeleteAccessKey") == 0
    journal = w.store.journals("payments")[-1]
    assert journal.phase is Phase.RETIRED  # a later normal run deletes it after delete_after
    later = Rotator(w.ports(), w.spec).run()
    assert later.outcome is Outcome.ROTATED and w.key_id not in w.iam.key_ids("ci-payments")


def test_emergency_forces_a_key_that_is_not_due() -> None:
    w = rotation_world()
    first = Rotator(w.ports(), w.spec).run()
    assert first.outcome is Outcome.ROTATED and Rotator(w.ports(), w.spec).run().outcome is Outcome.NOT_DUE
    result = Rotator(w.ports(), w.spec, emergency=True).run()
    assert result.retired_key_id == first.new_key_id and result.new_key_id != first.new_key_id
    assert w.iam.key(first.new_key_id or "").status is KeyStatus.INACTIVE and w.every_target_works()


def test_emergency_skips_the_last_used_gate_that_holds_a_normal_run() -> None:
    w = rotation_world(grace=timedelta(hours=1))
    assert w.run(grace=timedelta(hours=1)).outcome is Outcome.WAITING  # published; the old key in its grace
    w.clock.advance(timedelta(hours=2))
    w.iam.use_key(w.key_id)  # still used long after publish (an attacker, say)
    held = w.run(grace=timedelta(hours=1))
    assert held.outcome is Outcome.HELD and "still in use" in held.message
    assert w.iam.key(w.key_id).status is KeyStatus.ACTIVE
    closed = Rotator(w.ports(), w.spec, emergency=True).run()
    assert closed.retired_key_id == w.key_id and w.iam.key(w.key_id).status is KeyStatus.INACTIVE


def test_the_fleet_summary_names_every_key_still_active_and_the_commands_to_finish() -> None:
    world = fleet_world()  # c's user has two Active keys: a human must choose, so c cannot be closed
    root = world.root()
    report = root.rotation.fleet(world.specs, holder="fleet", concurrency=1, force=False, emergency=True,
                                 scope="every configured credential")
    assert not report.ok
    assert [e.credential for e in report.exposures] == ["c"]
    exposure = report.exposures[0]
    assert set(exposure.active_key_ids) == set(world.iam.key_ids("ci-c"))  # both, as IAM lists them
    commands = exposure.finish_commands()
    assert commands[0] == "rotator rotate c --emergency"
    assert all(f"aws iam update-access-key --user-name ci-c --access-key-id {k} --status Inactive" in commands
               for k in exposure.active_key_ids)
    for name in ("a", "b"):
        user = f"ci-{name}"
        assert [k.status for k in world.iam.keys[user]].count(KeyStatus.ACTIVE) == 1
    security = next(p for p in world.notifier.posted if p.channel == SECURITY)
    assert "1 credential(s) STILL EXPOSED" in security.title and security.title == summary_title(report)
    assert any(line.startswith("c: STILL ACTIVE") for line in security.lines)
    assert any("aws iam update-access-key" in line for line in security.lines)
    assert any(line.startswith("a: rotated to") and "Inactive" in line for line in security.lines)
    assert summary_lines(report, _options())[0].endswith("kept as evidence until delete_after")


def test_a_fleet_where_every_key_was_closed_says_so() -> None:
    world = fleet_world()
    root = world.root()
    report = root.rotation.fleet(world.specs[:2], holder="fleet", concurrency=2, force=False, emergency=True,
                                 scope="group grp")
    assert report.ok and report.exposures == []
    security = next(p for p in world.notifier.posted if p.channel == SECURITY)
    assert security.title.endswith("every exposed key is Inactive") and security.severity == "ok"


def _options():  # type: ignore[no-untyped-def]
    from rotator.rotation.fleet import FleetOptions

    return FleetOptions(holder="x", lease_ttl=timedelta(minutes=2), emergency=True)


def test_the_owners_hear_the_old_key_is_inactive_only_after_iam_lists_it_so() -> None:
    w = rotation_world(grace=timedelta(hours=1))
    w.iam.ignore_deactivate = True  # accepted, never takes effect
    failed = Rotator(w.ports(), w.spec, emergency=True).run()
    assert failed.outcome is Outcome.FAILED and failed.retired_key_id is None
    said = [line for p in w.notifier.posted for line in [p.title, *p.lines]]
    assert not any("Inactive" in line and "IAM still lists" not in line for line in said), said
    assert w.iam.key(w.key_id).status is KeyStatus.ACTIVE
    w.iam.ignore_deactivate = False
    closed = Rotator(w.ports(), w.spec, emergency=True).run()
    assert closed.retired_key_id == w.key_id
    rotated = [p for p in w.notifier.posted if p.title == "rotator: payments rotated (emergency)"]
    assert len(rotated) == 1 and rotated[0].lines[0] == f"new key {closed.new_key_id} is in 2 GitLab target(s)"
    assert rotated[0].lines[1].startswith(f"old key {w.key_id} is Inactive (verified with ListAccessKeys), kept as "
                                          "evidence until ")
    actions = [(e.action, e.outcome, e.detail.get("kind")) for e in w.store.event_rows]
    assert actions.index(("deactivate_key", "ok", None)) < actions.index(("notify", "ok", "rotated"))


def test_an_emergency_run_deactivates_again_a_retired_key_that_is_active_again() -> None:
    w = rotation_world(delete_after=timedelta(days=1))
    assert w.run().outcome is Outcome.WAITING  # retired, waiting for delete_after
    w.iam.key(w.key_id).status = KeyStatus.ACTIVE
    result = Rotator(w.ports(), w.spec, emergency=True).run()
    assert result.retired_key_id == w.key_id and w.iam.key(w.key_id).status is KeyStatus.INACTIVE
    assert "verified with ListAccessKeys" in result.message


def _stopped_after(first: int) -> Any:
    started: list[str] = []

    def should_start(name: str) -> bool:  # SIGINT arrived after ``first`` credentials began
        if len(started) < first:
            started.append(name)
            return True
        return False

    return should_start


def test_an_interrupted_emergency_run_asks_iam_about_the_credentials_it_never_started() -> None:
    world = fleet_world()
    report = world.root().rotation.fleet(world.specs[:2], holder="fleet", concurrency=1, force=False, emergency=True,
                                         scope="group grp", should_start=_stopped_after(1))
    assert [r.credential for r in report.results] == ["a"] and report.not_started == ["b"]
    assert not report.ok
    assert [(e.credential, e.active_key_ids, e.reason) for e in report.exposures] == [
        ("b", (world.iam.key_ids("ci-b")[0],), NOT_STARTED)]
    security = next(p for p in world.notifier.posted if p.channel == SECURITY)
    assert security.title == ("rotator: emergency rotation of 1 credential(s) (1 not started): 1 credential(s) STILL "
                              "EXPOSED (a key still Active)")
    assert f"b: STILL ACTIVE {world.iam.key_ids('ci-b')[0]}: {NOT_STARTED}" in security.lines
    assert "interrupted; not started: b" in security.lines


def test_a_rotated_result_is_not_taken_for_closed_without_asking_iam() -> None:
    world = fleet_world()
    spec = world.specs[0]
    claimed = RotationResult("a", Outcome.ROTATED, "rotated to AKIA-not-real", new_key_id="AKIANOTREALNOTREAL00")
    exposures = still_exposed([spec], [claimed], world.ports)
    assert [(e.credential, e.active_key_ids, e.verified) for e in exposures] == [
        ("a", (world.iam.key_ids("ci-a")[0],), True)]


def test_credentials_iam_could_not_be_asked_about_are_not_verified_never_still_exposed() -> None:
    world = fleet_world()
    results = [RotationResult(s.name, Outcome.FAILED, "AWS did not answer") for s in world.specs[:2]]

    def iam_down() -> None:
        raise AwsUnavailable("iam:ListAccessKeys: cannot reach AWS")

    world.iam.fail["ListAccessKeys"] = iam_down
    exposures = still_exposed(world.specs[:2], results, world.ports)
    assert [(e.credential, e.active_key_ids, e.verify_error) for e in exposures] == [
        ("a", (), "iam:ListAccessKeys: cannot reach AWS"), ("b", (), "iam:ListAccessKeys: cannot reach AWS")]
    assert exposures[0].finish_commands() == ["rotator rotate a --emergency",
                                              "aws iam list-access-keys --user-name ci-a"]
    report = FleetReport(results, world.clock.now(), world.clock.now(), emergency=True, exposures=exposures)
    assert report.still_exposed == [] and report.not_verified == exposures and not report.ok
    assert summary_title(report) == ("rotator: emergency rotation of 2 credential(s): 2 credential(s) NOT VERIFIED "
                                     "(IAM could not be asked)")
    assert emergency_lines(report)[0] == ("a: NOT VERIFIED: IAM could not be asked (iam:ListAccessKeys: cannot reach "
                                          "AWS); the run said: AWS did not answer")


def test_the_cli_summary_separates_not_verified_from_still_active_and_counts_only_posted_messages(
        capsys: pytest.CaptureFixture[str]) -> None:
    world = fleet_world()
    now = world.clock.now()
    exposures = [Exposure("a", "ci-a", ("AKIAAAAAAAAAAAAAAAA1",), "held"),
                 Exposure("b", "ci-b", (), "failed", verify_error="cannot reach AWS")]
    report = FleetReport([RotationResult("a", Outcome.HELD, "held"), RotationResult("b", Outcome.FAILED, "failed")],
                         now, now, owner_posts=[("#team-x", None), ("#team-y", "Slack is down")], emergency=True,
                         exposures=exposures)
    print_fleet_summary(report)
    err = capsys.readouterr().err
    assert "owners told in 1 batched message(s); 1 could not be posted (see Slack below)" in err
    assert "a: still Active AKIAAAAAAAAAAAAAAAA1: held" in err
    assert "b: NOT VERIFIED: IAM could not be asked (cannot reach AWS): failed" in err
    assert "b: still Active" not in err and "every exposed key is Inactive" not in err
    assert "Slack: #team-y: Slack is down" in err
    fleet_json = fleet_summary(report)
    assert [e["credential"] for e in fleet_json["still_exposed"]] == ["a"]
    assert [e["credential"] for e in fleet_json["not_verified"]] == ["b"]
