"""Emergency rotation against fakes of the ports: every credential runs the full protocol, owners' messages
are batched per channel, one summary goes to security, and Slack failing changes no outcome."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from rotator.domain import CredentialSpec, Policy, ScopeKind, TargetSpec
from rotator.rotation.fleet import FleetOptions, PacedNotifier, rotate_fleet, summary_title
from rotator.rotation.results import Outcome, RotationPorts
from tests.unit.fakes import T0, FakeCiVariables, FakeClock, FakeIam, FakeNotifier, FakeSealer, FakeStore, FakeSts

SECURITY = "#security"


class CountingPacer:
    def __init__(self) -> None:
        self.acquired = 0

    def acquire(self) -> float:
        self.acquired += 1
        return 0.0

    def throttled(self, retry_after: float | None = None) -> None:
        return None


def fleet_world() -> tuple[list[CredentialSpec], RotationPorts, FakeIam, FakeNotifier, FakeStore]:
    clock = FakeClock(T0)
    iam = FakeIam(clock)
    variables = FakeCiVariables()
    specs = []
    policy = Policy(rotate_every=timedelta(days=30), grace=timedelta(0), delete_after=timedelta(0))
    for name, owners in (("a", ("#team-x",)), ("b", ("#team-x",)), ("c", ("#team-x", "#team-y"))):
        iam.add_user(f"ci-{name}")
        key = iam.keys[f"ci-{name}"][0]
        target = TargetSpec(ScopeKind.PROJECT, f"grp/{name}")
        variables.seed(target.kind, target.path, target.access_key_id_var, key.key_id)
        variables.seed(target.kind, target.path, target.secret_access_key_var, key.secret, hidden=True)
        specs.append(CredentialSpec(name, f"ci-{name}", owners=owners, policy=policy, targets=(target,)))
    iam._new_key("ci-c")  # two Active keys: c is held, a human must choose
    notifier, store = FakeNotifier(), FakeStore()
    ports = RotationPorts(iam=iam, sts=FakeSts(iam, clock, delay=timedelta(0)), variables=variables, store=store,
                          sealer=FakeSealer(), clock=clock, notifier=notifier, actor="test")
    return specs, ports, iam, notifier, store


OPTIONS = FleetOptions(holder="fleet", lease_ttl=timedelta(minutes=5), concurrency=1, force=True,
                       security_channel=SECURITY, scope="group grp")


def test_owners_get_one_batched_message_per_channel_and_security_one_summary() -> None:
    specs, ports, iam, notifier, store = fleet_world()
    pacer = CountingPacer()
    report = rotate_fleet(specs, lambda spec: ports, OPTIONS, notifier=PacedNotifier(notifier, pacer),
                          clock=ports.clock, store=store)
    assert {r.credential: r.outcome for r in report.results} == {
        "a": Outcome.ROTATED, "b": Outcome.ROTATED, "c": Outcome.HELD}
    assert [k.key_id for k in iam.keys["ci-a"]] == [report.results[0].new_key_id]
    channels = [p.channel for p in notifier.posted]
    assert sorted(channels) == ["#security", "#team-x", "#team-y"] and pacer.acquired == 3
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
    specs, ports, _, notifier, store = fleet_world()
    notifier.down = True
    report = rotate_fleet(specs[:2], lambda spec: ports, OPTIONS, notifier=notifier, clock=ports.clock, store=store)
    assert [r.outcome for r in report.results] == [Outcome.ROTATED, Outcome.ROTATED]
    assert report.owner_posts == [("#team-x", "Slack is down")] and report.security_post == "Slack is down"
    assert [e.outcome for e in store.events(limit=50) if e.action == "notify_digest"] == ["failed"]


def test_without_a_notifier_nobody_is_told_and_rotations_still_run() -> None:
    specs, ports, _, notifier, _ = fleet_world()
    quiet = replace(ports, notifier=None)
    report = rotate_fleet(specs[:1], lambda spec: quiet, OPTIONS, notifier=None, clock=ports.clock)
    assert report.results[0].outcome is Outcome.ROTATED and notifier.posted == [] and report.owner_posts == []
