"""A world of fakes for the revoke use cases: one IAM user whose key sits in a GitLab project, a store,
Slack, and a CloudTrail; ``revoke()`` runs containment and every follow-up as the CLI would."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from rotator.domain import CredentialSpec, ScopeKind, TargetSpec
from rotator.incident.audit.run import AuditReport, run_audit
from rotator.incident.containment import Containment, ContainmentPorts, StepStatus, contain
from rotator.incident.followup import FollowUpOptions, FollowUpPorts, IncidentOutcome, follow_up
from rotator.incident.replace import ReplacePorts, replace_key
from rotator.rotation.batch import rotate_one
from rotator.rotation.results import RotationPorts
from tests.unit.fakes import T0, FakeCiVariables, FakeClock, FakeNotifier, FakeSealer, FakeSts
from tests.unit.incident_fakes import ACCOUNT, FakeCloudTrail, FakeDirectory, FakeIncidentIam, FakeIncidentStore

PROJECT = TargetSpec(ScopeKind.PROJECT, "payments/api")
GROUP = TargetSpec(ScopeKind.GROUP, "payments", environment_scope="production")


@dataclass
class World:
    clock: FakeClock
    iam: FakeIncidentIam
    directory: FakeDirectory
    store: FakeIncidentStore
    notifier: FakeNotifier
    variables: FakeCiVariables
    trail: FakeCloudTrail
    spec: CredentialSpec
    key_id: str
    secret: str
    account_ids: dict[str, str | None] = field(default_factory=lambda: {"default": None})
    others: list[CredentialSpec] = field(default_factory=list)  # configured besides ``spec``

    def ports(self) -> ContainmentPorts:
        return ContainmentPorts(iam_for=lambda account: self.iam, directory=self.directory,
                                account_ids=self.account_ids, tracked_owner=self.store.key_owner, clock=self.clock)

    def contain(self, key_id: str | None = None, **options: object) -> Containment:
        return contain(self.key_id if key_id is None else key_id, self.ports(), **options)  # type: ignore[arg-type]

    def rotation_ports(self, spec: CredentialSpec) -> RotationPorts:
        return RotationPorts(self.iam, FakeSts(self.iam, self.clock), self.variables, self.store, FakeSealer(),
                             self.clock, self.notifier, actor="responder")

    def audit(self, containment: Containment) -> AuditReport:
        return run_audit(self.trail, containment.key_id, start=T0 - timedelta(days=1), end=self.clock.now(),
                         regions=self.trail.regions, account_id=ACCOUNT)

    def follow_up_ports(self, *, dry_run: bool = False) -> FollowUpPorts:
        def replace(identity, tracked):  # type: ignore[no-untyped-def]
            ports = ReplacePorts(
                variables=self.variables, rotation_ports=self.rotation_ports,
                rotate=lambda rotation, spec: rotate_one(rotation, spec, holder="incident/test",
                                                         lease_ttl=timedelta(minutes=2), force=True),
                register=lambda spec: self.store.sync_credentials([spec], self.clock.now()))
            return replace_key(ports, identity, tracked=tracked, configured=[self.spec, *self.others],
                               dry_run=dry_run)

        return FollowUpPorts(clock=self.clock, actor="responder@laptop", holder="incident/test",
                             lease_ttl=timedelta(minutes=2), store=lambda: self.store, notifier=lambda: self.notifier,
                             security_channel="#security", configured=[self.spec, *self.others], replace=replace,
                             audit=self.audit)

    def revoke(self, *, replace: bool = False, dry_run: bool = False, audit: bool = True) -> IncidentOutcome:
        containment = self.contain(dry_run=dry_run)
        return follow_up(containment, self.follow_up_ports(dry_run=dry_run),
                         FollowUpOptions(reason="leaked in a gist", replace=replace, audit=audit, dry_run=dry_run))


def make_world() -> World:
    clock = FakeClock(T0)
    iam = FakeIncidentIam(clock)
    iam.add_user("ci-payments")
    key = iam.keys["ci-payments"][0]
    variables = FakeCiVariables()
    for target in (PROJECT,):
        variables.seed(target.kind, target.path, target.access_key_id_var, key.key_id)
        variables.seed(target.kind, target.path, target.secret_access_key_var, key.secret)
    spec = CredentialSpec("payments", "ci-payments", owners=("#team-payments",), targets=(PROJECT,))
    trail = FakeCloudTrail(["us-east-1", "eu-west-1", "ap-southeast-2"])
    return World(clock, iam, FakeDirectory({ACCOUNT: iam}), FakeIncidentStore(), FakeNotifier(), variables, trail,
                 spec, key.key_id, key.secret)


def step(outcome: IncidentOutcome | Containment, name: str) -> StepStatus:
    return next(s.status for s in outcome.steps if s.name == name)


