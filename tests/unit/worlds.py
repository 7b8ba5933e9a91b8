"""The one fake world of the unit tests: fakes of every port, a config file for them, and the real composition
root (``rotator.wiring.root.Root``) assembled over the fakes, so use cases are wired by the same code as in
production.

``rotation_world`` (one credential with a project and a group target), ``incident_world`` (one credential with a
project target, a CloudTrail, an STS key directory) and ``fleet_world`` (three credentials) are the same World,
seeded differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from rotator.config.early import ContainmentSettings
from rotator.config.settings import Settings, parse_settings
from rotator.domain import CredentialSpec, Policy, ScopeKind, TargetSpec, format_duration
from rotator.incident.audit.run import AuditReport, run_audit
from rotator.incident.containment import Containment, ContainmentPorts, StepStatus, contain
from rotator.incident.followup import FollowUpOptions, FollowUpPorts, IncidentOutcome, follow_up
from rotator.inventory.locate import KeyLocator
from rotator.ports import Notifier
from rotator.rotation.engine import Rotator
from rotator.rotation.results import RotationPorts, RotationResult
from rotator.wiring.containment import ContainmentWiring
from rotator.wiring.root import Root
from tests.unit.exposure_fakes import FakeExposureLedger, FakeQueue
from tests.unit.fakes import T0, FakeCiVariables, FakeClock, FakeNotifier, FakeSealer, FakeSts
from tests.unit.incident_fakes import ACCOUNT, FakeCloudTrail, FakeDirectory, FakeIncidentIam, FakeIncidentStore

PROJECT = TargetSpec(ScopeKind.PROJECT, "payments/api")
GROUP = TargetSpec(ScopeKind.GROUP, "payments", environment_scope="production")
SECURITY = "#security"
ENVIRON = {"ROTATOR_GITLAB_TOKEN": "glpat-unit-test-token-000000", "ROTATOR_SLACK_TOKEN": "xoxb-unit-test-000000",
           "ROTATOR_STATE_KEY": "unit-test-state-key"}


# --- the parties, as the composition root sees them --------------------------------------------------------


@dataclass
class FakeAws:
    """AwsAccess over fakes: one FakeIncidentIam and one FakeCloudTrail per configured account."""

    iams: dict[str, FakeIncidentIam]
    sts: FakeSts
    directory: FakeDirectory
    trails: dict[str, FakeCloudTrail]  # account id → its CloudTrail
    account_ids: dict[str, str | None]
    privilege: dict[str, Any] = field(default_factory=dict)  # account → a fake PrivilegeReads
    event_queue: FakeQueue = field(default_factory=FakeQueue)

    def client(self, service: str, account: str = "default") -> Any:
        raise AssertionError(f"unit tests talk to fakes of the ports, never to a boto3 {service} client")

    def iam(self, account: str = "default") -> FakeIncidentIam:
        return self.iams[account]

    def incident_iam(self, account: str = "default") -> FakeIncidentIam:
        return self.iams[account]

    def sts_for(self, account: str = "default") -> FakeSts:
        return self.sts

    def locator(self, *, paced: bool = False) -> KeyLocator:
        return KeyLocator(self.directory, self.account_ids, self.iam)

    def account_id(self, account: str = "default") -> str:
        return self.account_ids.get(account) or self.directory.ambient_account()

    def caller_account_id(self, account: str = "default") -> str:
        return self.account_ids.get(account) or self.directory.ambient_account()

    def cloudtrail(self, account: str = "default", *, backoff: Any = None) -> FakeCloudTrail:
        return self.trails[self.account_ids.get(account) or self.directory.ambient]

    def oidc_iam(self, account: str = "default") -> Any:
        raise AssertionError("the OIDC use cases have their own fakes (tests/unit/test_oidc.py)")

    def privilege_reads(self, account: str = "default") -> Any:
        return self.privilege[account]  # set by tests/unit/test_least_privilege.py

    def queue(self, queue_url: str, account: str = "default") -> FakeQueue:
        assert queue_url == self.event_queue.url, queue_url
        return self.event_queue


@dataclass
class FakeGitLab:
    variables: FakeCiVariables

    @property
    def client(self) -> Any:
        raise AssertionError("unit tests talk to fakes of the ports, never to python-gitlab")

    @property
    def inventory(self) -> Any:
        raise AssertionError("discovery has its own inventory fake (tests/unit/test_discovery.py)")

    @property
    def protected_refs(self) -> Any:
        raise AssertionError("plan-oidc's protected refs have their own fake (tests/unit/test_oidc_protection.py)")


@dataclass
class FakeSlack:
    notifier: Notifier | None

    def whoami(self) -> str:
        return "bot unit-test in team fake"


@dataclass
class FakeDatabase:
    store: FakeIncidentStore
    exposures: FakeExposureLedger = field(default_factory=FakeExposureLedger)

    @property
    def service_queries(self) -> Any:
        raise AssertionError("the service's fleet queries are tested against SQLite and PostgreSQL")

    @property
    def outbox(self) -> FakeIncidentStore:
        return self.store

    def read_only_store(self) -> FakeIncidentStore:
        return self.store

    def close(self) -> None:
        return None


# --- the world ---------------------------------------------------------------------------------------------


@dataclass
class World:
    clock: FakeClock
    iam: FakeIncidentIam
    sts: FakeSts
    variables: FakeCiVariables
    store: FakeIncidentStore
    notifier: FakeNotifier
    directory: FakeDirectory
    trail: FakeCloudTrail
    specs: list[CredentialSpec]
    key_id: str = ""  # the first credential's key when the world was made
    secret: str = ""
    account_ids: dict[str, str | None] = field(default_factory=lambda: {"default": None})
    iams: dict[str, FakeIncidentIam] = field(default_factory=dict)
    sealer: FakeSealer = field(default_factory=FakeSealer)
    privilege: dict[str, Any] = field(default_factory=dict)
    queue: FakeQueue = field(default_factory=FakeQueue)
    ledger: FakeExposureLedger = field(default_factory=FakeExposureLedger)
    events_config: str = ""  # an [events] section, appended to the config file
    on_exposed: dict[str, str] = field(default_factory=dict)  # credential name → its on_exposed
    trails: dict[str, FakeCloudTrail] = field(default_factory=dict)  # other accounts' CloudTrails, by account id
    revoke_config: str = ""  # a [revoke] section for the config file

    def add_account(self, name: str, account_id: str) -> FakeIncidentIam:
        """A second configured account ([[aws.accounts]] name), with its own IAM, CloudTrail and keys."""
        iam = FakeIncidentIam(self.clock)
        self.iams[name] = iam
        self.account_ids[name] = account_id
        self.directory.accounts[account_id] = iam
        self.trails[account_id] = FakeCloudTrail(self.trail.regions, clock=self.clock)
        return iam

    def foreign_trail(self, account_id: str) -> FakeCloudTrail:
        """The CloudTrail of an account rotator has no role in (nobody asks it; it is there to be staged)."""
        return self.trails.setdefault(account_id, FakeCloudTrail(self.trail.regions, clock=self.clock))

    @property
    def spec(self) -> CredentialSpec:
        return self.specs[0]

    @spec.setter
    def spec(self, spec: CredentialSpec) -> None:
        self.specs[0] = spec

    # --- the composition root over the fakes ---
    def settings(self) -> Settings:
        # partial: like `revoke`, a world may have no credential configured at all.
        settings = parse_settings(config_for(self.specs, self.account_ids, self.on_exposed) + self.events_config
                                  + self.revoke_config,
                                  source="unit-test.toml", environ=ENVIRON, partial=True)
        assert settings.credential_specs() == tuple(self.specs), "config_for must describe the specs exactly"
        return settings

    def aws(self) -> FakeAws:
        return FakeAws({"default": self.iam, **self.iams}, self.sts, self.directory,
                       {ACCOUNT: self.trail, **self.trails}, self.account_ids, self.privilege, self.queue)

    def root(self, *, notifier: Notifier | bool | None = True) -> Root:
        """The real composition root over the fakes; ``notifier=None`` as if there were no [slack] section."""
        chosen = self.notifier if notifier is True else (None if notifier is False else notifier)
        return Root(self.settings(), actor="responder@laptop", aws=self.aws(), gitlab=FakeGitLab(self.variables),
                    slack=FakeSlack(chosen), database=FakeDatabase(self.store, self.ledger), clock=self.clock,
                    sealer=self.sealer)

    def ports(self, spec: CredentialSpec | None = None) -> RotationPorts:
        return self.root().rotation.ports(spec or self.spec)

    rotation_ports = ports

    # --- rotation ---
    def run(self, **policy: timedelta) -> RotationResult:
        spec = replace(self.spec, policy=replace(self.spec.policy, **policy)) if policy else self.spec
        return Rotator(self.ports(spec), spec).run()

    def held_pairs(self, spec: CredentialSpec | None = None) -> list[tuple[str, str]]:
        pairs = []
        for target in (spec or self.spec).targets:
            key = self.variables.vars[(target.kind, target.path, target.access_key_id_var, target.environment_scope)]
            secret = self.variables.vars[
                (target.kind, target.path, target.secret_access_key_var, target.environment_scope)]
            pairs.append((key.value or "", secret.value or ""))
        return pairs

    def every_target_works(self, spec: CredentialSpec | None = None) -> bool:
        return all(self.iam.accepts(k, s) for k, s in self.held_pairs(spec))

    # --- the compromised-key playbook, as `rotator revoke` runs it ---
    def containment_ports(self, **early: Any) -> ContainmentPorts:
        settings = ContainmentSettings(source="unit-test.toml", **early)

        def earlier_t0(key_id: str) -> datetime | None:
            return min((i.t0 for i in self.store.incidents_for_key(key_id)), default=None)

        return ContainmentWiring(settings, aws=self.aws(), tracked_owner=self.store.key_owner, earlier_t0=earlier_t0,
                                 clock=self.clock).containment_ports()

    def contain(self, key_id: str | None = None, *, early: dict[str, Any] | None = None,
                **options: Any) -> Containment:
        return contain(self.key_id if key_id is None else key_id, self.containment_ports(**(early or {})), **options)

    def audit(self, containment: Containment) -> AuditReport:
        return run_audit(self.trail, containment.key_id, start=T0 - timedelta(days=1), end=self.clock.now(),
                         regions=self.trail.regions, account_id=ACCOUNT)

    def follow_up_ports(self, *, dry_run: bool = False) -> FollowUpPorts:
        return self.root().incident.follow_up_ports(holder="incident/test", dry_run=dry_run)

    def revoke(self, key_id: str | None = None, *, replace: bool = False, dry_run: bool = False, audit: bool = True,
               early: dict[str, Any] | None = None, **options: Any) -> IncidentOutcome:
        containment = self.contain(key_id, dry_run=dry_run, early=early, **options)
        ports = self.follow_up_ports(dry_run=dry_run)
        return follow_up(containment, ports, FollowUpOptions(reason="leaked in a gist", replace=replace, audit=audit,
                                                             dry_run=dry_run))


def config_for(specs: Sequence[CredentialSpec], account_ids: dict[str, str | None],
               on_exposed: dict[str, str] | None = None) -> str:
    """A config file that describes ``specs`` exactly (World.settings checks it)."""
    lines = ['[service]', 'state_key_env = "ROTATOR_STATE_KEY"', '[aws]', 'region = "us-east-1"',
             'audit_regions = ["us-east-1", "eu-west-1", "ap-southeast-2"]']
    for name, account_id in account_ids.items():
        if name != "default":
            lines += ['[[aws.accounts]]', f'name = "{name}"', f'role_arn = "arn:aws:iam::{account_id}:role/rotator"']
    lines += ['[gitlab]', 'url = "https://gitlab.example.com"', 'token_env = "ROTATOR_GITLAB_TOKEN"',
              # Slack's real limit is about one message a second; unit tests must not sleep on it.
              '[slack]', 'token_env = "ROTATOR_SLACK_TOKEN"', f'security_channel = "{SECURITY}"',
              'messages_per_second = 1000.0']
    for spec in specs:
        lines += ['[[credentials]]', f'name = "{spec.name}"', f'iam_user = "{spec.iam_user}"',
                  f'account = "{spec.account}"', f'owners = {list(spec.owners)!r}'.replace("'", '"')]
        policy = spec.policy
        for name in ("rotate_every", "grace", "delete_after", "verify_timeout", "last_used_skew", "jitter"):
            lines.append(f'{name} = "{format_duration(getattr(policy, name))}"')
        if policy.window:
            lines.append(f'window = "{policy.window}"')
        if spec.name in (on_exposed or {}):
            lines.append(f'on_exposed = "{(on_exposed or {})[spec.name]}"')
        for target in spec.targets:
            where = (f'project = "{target.path}"' if target.kind is ScopeKind.PROJECT else
                     f'group = "{target.path}"' if target.kind is ScopeKind.GROUP else "instance = true")
            lines += ['[[credentials.targets]]', where, f'environment_scope = "{target.environment_scope}"',
                      f'access_key_id_var = "{target.access_key_id_var}"',
                      f'secret_access_key_var = "{target.secret_access_key_var}"',
                      f'create_missing = {str(target.create_missing).lower()}',
                      f'accept_masked_only = {str(target.accept_masked_only).lower()}']
    return "\n".join(lines) + "\n"


def _world(specs_for: Any, *, users: Sequence[str], hidden_secret: bool = False, age: timedelta = timedelta(0),
           sts_delay: timedelta = timedelta(seconds=3)) -> World:
    clock = FakeClock(T0)
    iam = FakeIncidentIam(clock)
    variables = FakeCiVariables()
    for user in users:
        iam.add_user(user)
    specs: list[CredentialSpec] = specs_for()
    for spec in specs:
        key = iam.keys[spec.iam_user][0]
        for target in spec.targets:
            variables.seed(target.kind, target.path, target.access_key_id_var, key.key_id,
                           scope=target.environment_scope)
            variables.seed(target.kind, target.path, target.secret_access_key_var, key.secret,
                           scope=target.environment_scope, hidden=hidden_secret)
    clock.advance(age)
    first = iam.keys[specs[0].iam_user][0]
    store = FakeIncidentStore(db_now=clock.now)  # leases judged by the "database's" clock
    return World(clock, iam, FakeSts(iam, clock, delay=sts_delay), variables, store, FakeNotifier(),
                 FakeDirectory({ACCOUNT: iam}),
                 FakeCloudTrail(["us-east-1", "eu-west-1", "ap-southeast-2"], clock=clock), specs, first.key_id,
                 first.secret)


def rotation_world(*, hidden_secret: bool = False, grace: timedelta = timedelta(0),
                   delete_after: timedelta = timedelta(0)) -> World:
    """One credential, a project and a group target, its key 40 days old (due under a 30-day policy)."""
    policy = Policy(rotate_every=timedelta(days=30), grace=grace, delete_after=delete_after)
    return _world(lambda: [CredentialSpec("payments", "ci-payments", owners=("#team-payments",), policy=policy,
                                          targets=(PROJECT, GROUP))],
                  users=["ci-payments"], hidden_secret=hidden_secret, age=timedelta(days=40))


def incident_world() -> World:
    """One credential with a project target, under the default policy; its key is the one that leaked."""
    return _world(lambda: [CredentialSpec("payments", "ci-payments", owners=("#team-payments",),
                                          targets=(PROJECT,))], users=["ci-payments"])


def fleet_world() -> World:
    """Three credentials in three projects; c's user has two Active keys, so a human must choose."""
    policy = Policy(rotate_every=timedelta(days=30), grace=timedelta(0), delete_after=timedelta(0))
    owners = {"a": ("#team-x",), "b": ("#team-x",), "c": ("#team-x", "#team-y")}
    world = _world(lambda: [CredentialSpec(name, f"ci-{name}", owners=owners[name], policy=policy,
                                           targets=(TargetSpec(ScopeKind.PROJECT, f"grp/{name}"),))
                            for name in owners],
                   users=[f"ci-{name}" for name in owners], hidden_secret=True, sts_delay=timedelta(0))
    world.iam._new_key("ci-c")
    return world


def step(outcome: IncidentOutcome | Containment, name: str) -> StepStatus:
    return next(s.status for s in outcome.steps if s.name == name)
