"""Emergency rotation against fakes of the ports: every credential runs the full protocol, owners' messages
are batched per channel, one summary goes to security, and Slack failing changes no outcome."""

from __future__ import annotations

from typing import Any

from rotator.domain import CredentialSpec
from rotator.rotation.fleet import FleetReport, summary_title
from rotator.rotation.results import Outcome
from tests.unit.worlds import SECURITY, World, fleet_world


def fleet(world: World, specs: list[CredentialSpec], **root: Any) -> FleetReport:
    return world.root(**root).rotation.fleet(specs, holder="fleet", concurrency=1, force=True, scope="group grp")


def test_owners_get_one_batched_message_per_channel_and_security_one_summary() -> None:
    world = fleet_world()
    root = world.root()
    report = root.rotation.fleet(world.specs, holder="fleet", concurrency=1, force=True, scope="group grp")
    iam, notifier, store = world.iam, world.notifier, world.store
    assert {r.credential: r.outcome for r in report.results} == {
        "a": Outcome.ROTATED, "b": Outcome.ROTATED, "c": Outcome.HELD}
    assert [k.key_id for k in iam.keys["ci-a"]] == [report.results[0].new_key_id]
    channels = [p.channel for p in notifier.posted]
    assert sorted(channels) == ["#security", "#team-x", "#team-y"]
    assert root.pacers.all()["slack"].stats().acquired == 3  # every post waited its turn
    team_x = next(p for p in notifier.posted if p.channel == "#team-x")
    assert team_x.title.endswith("3 of your credential(s)") and team_x.severity == "warning"
    assert team_x.lines[0].startswith("c held")  # what needs the owner comes first, with its reason
    assert any("maximum number of access keys" in line for line in team_x.lines)
    security = next(p for p in notifier.posted if p.channel == SECURITY)
    assert security.title == summary_title(report) and "2 rotated, 1 held" in security.title
    assert any(line.startswith("c: held") for line in security.lines) and security.severity == "critical"
    assert [e.detail["channel"] for e in store.events(limit=50) if e.action == "notify_digest"] == [
        "#team-y", "#team-x"]


def test_slack_down_changes_no_outcome_and_is_reported() -> None:
    world = fleet_world()
    world.notifier.down = True
    report = fleet(world, world.specs[:2])
    store = world.store
    assert [r.outcome for r in report.results] == [Outcome.ROTATED, Outcome.ROTATED]
    assert report.owner_posts == [("#team-x", "Slack is down")] and report.security_post == "Slack is down"
    assert [e.outcome for e in store.events(limit=50) if e.action == "notify_digest"] == ["failed"]


def test_without_a_notifier_nobody_is_told_and_rotations_still_run() -> None:
    world = fleet_world()
    report = fleet(world, world.specs[:1], notifier=False)
    assert report.results[0].outcome is Outcome.ROTATED and world.notifier.posted == [] and report.owner_posts == []
