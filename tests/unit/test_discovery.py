"""Discovery against small fakes of its ports: naming conventions, shadowing, account resolution (a key of an
unconfigured account is unknown), hidden values never guessed, tracked vs untracked, --emit-config."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest

from rotator.config.settings import parse_settings
from rotator.domain import (
    AccessKey,
    CiVariable,
    CredentialSpec,
    GitLabCapabilities,
    KeyLastUsed,
    KeyStatus,
    Policy,
    ScopeKind,
    TargetSpec,
)
from rotator.errors import AwsAccessDenied, AwsNotFound, GitLabForbidden
from rotator.inventory.discover import DiscoveryPorts, DiscoveryReport, discover
from rotator.inventory.locate import KeyLocator
from rotator.inventory.report import as_json, emit_config, summary_line, text_sections
from rotator.inventory.rules import Location, Scope, ancestors, credential_name_for, find_shadowing, partner_name
from tests.unit.fakes import MODERN_GITLAB, T0, FakeClock

PROD, STAGING, STRANGER = "111111111111", "222222222222", "999999999999"


@dataclass
class FakeInventory:
    """The groups and projects of a GitLab, as one token lists them: every one with working admin access,
    otherwise the ``readable`` ones (where the token's user is Owner / Maintainer; None: all but the instance)."""

    variables_by_scope: dict[tuple[ScopeKind, str | None], list[CiVariable]] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    gitlab: GitLabCapabilities = MODERN_GITLAB
    readable: set[tuple[ScopeKind, str | None]] | None = None
    instance_limit: int | None = None
    walks: list[bool] = field(default_factory=list)

    def capabilities(self) -> GitLabCapabilities:
        return self.gitlab

    def scopes(self, *, everything: bool) -> Iterator[tuple[ScopeKind, str | None]]:
        self.walks.append(everything)
        for scope in self.variables_by_scope:
            if everything or (scope[0] is not ScopeKind.INSTANCE
                              and (self.readable is None or scope in self.readable)):
                yield scope

    def instance_variable_limit(self) -> int | None:
        return self.instance_limit

    def variables(self, kind: ScopeKind, path: str | None) -> list[CiVariable]:
        self.calls.append(f"GET {kind.value} {path}")
        if path in self.forbidden:
            raise GitLabForbidden(f"{kind.value} {path}: GitLab answered 403", status=403)
        return list(self.variables_by_scope[(kind, path)])


class FakeDirectory:
    def __init__(self, owners: dict[str, str], ambient: str | Exception) -> None:
        self.owners = owners
        self.ambient = ambient
        self.ambient_calls = 0

    def account_of_key(self, key_id: str) -> str:
        return self.owners[key_id]

    def ambient_account(self) -> str:
        self.ambient_calls += 1
        if isinstance(self.ambient, Exception):
            raise self.ambient
        return self.ambient


class AccountIam:
    """IAM of one account, reads only; mutating calls would fail the test loudly."""

    def __init__(self, keys: dict[str, list[AccessKey]]) -> None:
        self.keys = keys
        self.denied: set[str] = set()

    def get_access_key_last_used(self, key_id: str) -> KeyLastUsed:
        if key_id in self.denied:
            raise AwsAccessDenied("iam:GetAccessKeyLastUsed: AccessDenied", code="AccessDenied")
        for user, keys in self.keys.items():
            if any(k.key_id == key_id for k in keys):
                return KeyLastUsed(key_id, user, None, None, None)
        raise AwsNotFound(f"no key {key_id}", code="NoSuchEntity")

    def list_access_keys(self, user_name: str) -> list[AccessKey]:
        return list(self.keys[user_name])


def key(n: int, age_days: int = 1, status: KeyStatus = KeyStatus.ACTIVE) -> AccessKey:
    return AccessKey(f"AKIA{n:016d}", status, T0 - timedelta(days=age_days))


def var(name: str, value: str | None, *, scope: str = "*", masked: bool = True, protected: bool = True,
        hidden: bool = False) -> CiVariable:
    return CiVariable(name, None if hidden else value, scope, masked=masked or hidden, hidden=hidden,
                      protected=protected)


PROJECT, GROUP = ScopeKind.PROJECT, ScopeKind.GROUP
K1, K2, K3, K4 = (key(1, age_days=45), key(2), key(3), key(4))
SPARE = key(5, status=KeyStatus.INACTIVE)


def world() -> tuple[FakeInventory, FakeDirectory, dict[str, AccountIam]]:
    inventory = FakeInventory({
        (GROUP, "a"): [var("AWS_ACCESS_KEY_ID", K2.key_id), var("AWS_SECRET_ACCESS_KEY", "s", hidden=True)],
        (GROUP, "a/b"): [],
        (PROJECT, "a/b/app"): [var("AWS_ACCESS_KEY_ID", K1.key_id),
                               var("AWS_SECRET_ACCESS_KEY", "s", hidden=True)],
        (PROJECT, "a/tools"): [var("FOO_AWS_ACCESS_KEY_ID", K3.key_id, protected=False),
                               var("FOO_AWS_SECRET_ACCESS_KEY", "plain", masked=False)],
        (PROJECT, "x/stranger"): [var("ACCESS_KEY", K4.key_id)],
        (PROJECT, "x/hidden"): [var("OLD_AWS_ACCESS_KEY_ID", "AKIA0000000000000042", hidden=True),
                                var("DB_PASSWORD", "pw", hidden=True)],
    })
    directory = FakeDirectory({K1.key_id: PROD, K2.key_id: PROD, K3.key_id: STAGING, K4.key_id: STRANGER}, PROD)
    iams = {"prod": AccountIam({"ci-app": [K1, SPARE], "ci-shared": [K2]}),
            "staging": AccountIam({"ci-tools": [K3]})}
    return inventory, directory, iams


SPECS = (CredentialSpec("app", "ci-app", account="prod", policy=Policy(rotate_every=timedelta(days=30)),
                        targets=(TargetSpec(PROJECT, "a/b/app"),)),)
ACCOUNT_IDS = {"default": None, "prod": PROD, "staging": STAGING}


def run(inventory: FakeInventory, directory: FakeDirectory, iams: dict[str, AccountIam],
        specs: tuple[CredentialSpec, ...] = SPECS) -> DiscoveryReport:
    ports = DiscoveryPorts(inventory=inventory, locator=KeyLocator(directory, ACCOUNT_IDS, iams.__getitem__),
                           iam_for=iams.__getitem__, clock=FakeClock())
    return discover(specs, Policy(rotate_every=timedelta(days=90)), ports, concurrency=3)


@pytest.mark.parametrize(("key_var", "partner"), [
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), ("FOO_AWS_ACCESS_KEY_ID", "FOO_AWS_SECRET_ACCESS_KEY"),
    ("DEPLOY_ACCESS_KEY_ID", "DEPLOY_SECRET_ACCESS_KEY"), ("S3_ACCESS_KEY", "S3_SECRET_KEY"), ("TOKEN", None)])
def test_secret_partner_follows_the_naming_convention(key_var: str, partner: str | None) -> None:
    assert partner_name(key_var) == partner


def test_every_finding_is_classified() -> None:
    inventory, directory, iams = world()
    report = run(inventory, directory, iams)
    found = {f.location.scope.path: f for f in report.findings}
    assert set(found) == {"a", "a/b/app", "a/tools", "x/stranger"}
    app = found["a/b/app"]
    assert app.tracked and app.credential == "app" and app.resolution.user_name == "ci-app"
    assert app.too_old  # 45 days under the credential's 30d policy
    assert not found["a"].tracked and not found["a"].too_old and found["a"].resolution.account == "prod"
    tools = found["a/tools"]
    assert tools.resolution.account == "staging" and tools.partner == Location(
        Scope(PROJECT, "a/tools"), "FOO_AWS_SECRET_ACCESS_KEY")
    stranger = found["x/stranger"]
    assert not stranger.resolution.known and stranger.resolution.account_id == STRANGER
    assert "not configured" in (stranger.resolution.problem or "")
    assert stranger.partner is not None and stranger.partner.key == "SECRET_KEY" and stranger.partner_flags is None
    issues = {(i.location.key, i.role): i.missing for i in report.flag_issues}
    assert issues == {("FOO_AWS_ACCESS_KEY_ID", "key id"): ("not protected",),
                      ("FOO_AWS_SECRET_ACCESS_KEY", "secret"): ("not masked", "not hidden")}
    hidden = [(h.location.key, h.aws_named) for h in report.hidden]
    assert hidden == [("OLD_AWS_ACCESS_KEY_ID", True), ("DB_PASSWORD", False)]
    assert "AKIA0000000000000042" not in str(as_json(report))
    unreferenced = [(u.key_id, u.certain) for u in report.unreferenced]
    assert unreferenced == [(SPARE.key_id, False)]  # a hidden key-id variable might hold it


def test_ambient_account_is_asked_once_and_its_failure_leaves_keys_unknown() -> None:
    inventory, directory, iams = world()
    directory.owners[K4.key_id] = "444444444444"
    directory.ambient = AwsAccessDenied("sts:GetCallerIdentity: AccessDenied", code="AccessDenied")
    report = run(inventory, directory, iams)
    assert directory.ambient_calls == 1
    assert any("GetCallerIdentity" in p for p in report.problems)
    assert [f.resolution.known for f in report.findings if f.key_id == K4.key_id] == [False]


def test_ambient_account_maps_to_default() -> None:
    inventory, directory, iams = world()
    directory.ambient = STRANGER
    iams["default"] = AccountIam({"ci-legacy": [K4]})
    report = run(inventory, directory, iams)
    stranger = next(f for f in report.findings if f.key_id == K4.key_id)
    assert (stranger.resolution.account, stranger.resolution.user_name) == ("default", "ci-legacy")


def test_an_unreadable_scope_and_a_denied_lookup_are_reported_not_fatal() -> None:
    inventory, directory, iams = world()
    inventory.forbidden.add("a/tools")
    iams["prod"].denied.add(K2.key_id)
    report = run(inventory, directory, iams)
    assert [u.scope.path for u in report.unreadable] == ["a/tools"]
    group = next(f for f in report.findings if f.key_id == K2.key_id)
    assert not group.resolution.known and "AccessDenied" in (group.resolution.problem or "")
    assert not report.complete


def test_a_tracked_location_holding_another_users_key_is_a_mismatch() -> None:
    inventory, directory, iams = world()
    inventory.variables_by_scope[(PROJECT, "a/b/app")][0] = var("AWS_ACCESS_KEY_ID", K2.key_id)
    report = run(inventory, directory, iams)
    app = next(f for f in report.findings if f.location.scope.path == "a/b/app")
    assert app.tracked and app.mismatch is not None and "ci-shared" in app.mismatch


def test_shadowing_across_levels_and_environment_scopes() -> None:
    variables = {
        Scope(GROUP, "a"): [var("AWS_ACCESS_KEY_ID", K1.key_id)],
        Scope(GROUP, "a/b"): [var("AWS_ACCESS_KEY_ID", K2.key_id)],
        Scope(PROJECT, "a/b/app"): [var("AWS_ACCESS_KEY_ID", K3.key_id)],
        Scope(PROJECT, "a/other"): [var("AWS_ACCESS_KEY_ID", K3.key_id, scope="prod"),
                                    var("AWS_ACCESS_KEY_ID", K4.key_id, scope="dev")],
        Scope(PROJECT, "z/alone"): [var("AWS_ACCESS_KEY_ID", K4.key_id), var("UNRELATED", "x")],
    }
    found = {(s.reason, tuple(f"{loc.scope.path}[{loc.environment_scope}]" for loc in s.locations))
             for s in find_shadowing(variables)}
    assert found == {
        ("inherited", ("a/b/app[*]", "a/b[*]", "a[*]")),
        ("inherited", ("a/other[dev]", "a/other[prod]", "a[*]")),
        ("scopes", ("a/other[dev]", "a/other[prod]")),
    }
    assert ancestors(Scope(PROJECT, "a/b/app")) == [Scope(GROUP, "a/b"), Scope(GROUP, "a"),
                                                    Scope(ScopeKind.INSTANCE, None)]


BASE_CONFIG = """
[gitlab]
url = "https://gitlab.example.com"
[[aws.accounts]]
name = "prod"
role_arn = "arn:aws:iam::111111111111:role/rotator"
[[aws.accounts]]
name = "staging"
role_arn = "arn:aws:iam::222222222222:role/rotator"
[[credentials]]
name = "app"
iam_user = "ci-app"
account = "prod"
[[credentials.targets]]
project = "a/b/app"
"""


def test_emitted_config_appends_to_a_valid_config() -> None:
    inventory, directory, iams = world()
    iams["prod"].keys["ci-app"].append(K2)  # the group key is the tracked user's: emitted as a comment only
    iams["prod"].keys.pop("ci-shared")
    report = run(inventory, directory, iams)
    text = emit_config(report, ["app"])
    settings = parse_settings(BASE_CONFIG + text)
    added = {spec.name: spec for spec in settings.credential_specs() if spec.name != "app"}
    assert list(added) == ["ci-tools"]
    assert added["ci-tools"].account == "staging"
    assert [(t.path, t.access_key_id_var, t.secret_access_key_var) for t in added["ci-tools"].targets] == [
        ("a/tools", "FOO_AWS_ACCESS_KEY_ID", "FOO_AWS_SECRET_ACCESS_KEY")]
    assert "already rotated as credential 'app'" in text and f"{K4.key_id} in project x/stranger" in text
    assert text_sections(report)[0][0] == "AWS access keys found in GitLab variables"


def test_generated_credential_names_are_valid_and_unique() -> None:
    assert credential_name_for("CI.Deploy+Bot@corp", []) == "ci.deploy-bot-corp"
    assert credential_name_for("ci-app", ["ci-app", "ci-app-2"]) == "ci-app-3"
    assert credential_name_for("___", []) == "credential"


# --- how far the walk reaches: admin mode, memberships, old GitLab, the instance-variable limit -------------

ADMIN_WITHOUT_ADMIN_MODE = replace(MODERN_GITLAB, admin_access=False, token_scopes=("api",))
MEMBER = GitLabCapabilities("17.6.1-ee", "ci-bot", token_scopes=("read_api",))


def test_an_admin_token_without_admin_mode_walks_memberships_and_says_why() -> None:
    inventory, directory, iams = world()
    inventory.gitlab = ADMIN_WITHOUT_ADMIN_MODE
    inventory.readable = {(GROUP, "a"), (PROJECT, "a/b/app")}
    report = run(inventory, directory, iams)
    assert inventory.walks == [False]
    assert {f.location.scope.path for f in report.findings} == {"a", "a/b/app"}
    assert not report.complete and report.limited is not None
    assert "admin mode is enabled and the token lacks the admin_mode scope" in report.limited
    assert "admin_mode scope" in report.limited.split("next step:")[1]
    assert report.limited in report.problems
    assert "INCOMPLETE (the walk was limited to memberships" in summary_line(report)
    document = as_json(report)
    assert document["walk"]["everything"] is False and document["walk"]["limited"] == report.limited
    assert document["gitlab"]["admin_access"] is False and document["complete"] is False
    assert all(not u.certain for u in report.unreferenced)  # a key no walked variable holds may be elsewhere


def test_an_admin_token_with_admin_access_walks_everything_and_the_instance() -> None:
    inventory, directory, iams = world()
    inventory.variables_by_scope[(ScopeKind.INSTANCE, None)] = []
    report = run(inventory, directory, iams)
    assert inventory.walks == [True] and report.scope_counts["instance"] == 1 and report.limited is None
    assert "every group and project, and the instance variables" in summary_line(report)


def test_an_administrators_complete_walk_is_complete_without_qualification() -> None:
    inventory = FakeInventory({(GROUP, "a"): [var("AWS_ACCESS_KEY_ID", K1.key_id),
                                              var("AWS_SECRET_ACCESS_KEY", "s", hidden=True)]})
    inventory.variables_by_scope[(ScopeKind.INSTANCE, None)] = []
    _, directory, iams = world()
    report = run(inventory, directory, iams)
    assert report.complete, report.problems
    assert summary_line(report).endswith("coverage complete")


def test_a_member_token_reading_all_it_can_read_has_complete_coverage() -> None:
    # Nested groups a ⊃ a/b: the user owns a/b only; GitLab would also list the ancestor a for a member, whose
    # variables it cannot read. The walk asks for what it can read, so nothing unreadable is listed.
    inventory = FakeInventory({
        (GROUP, "a"): [var("AWS_ACCESS_KEY_ID", K2.key_id)],
        (GROUP, "a/b"): [var("AWS_ACCESS_KEY_ID", K1.key_id), var("AWS_SECRET_ACCESS_KEY", "s", hidden=True)],
        (PROJECT, "a/b/app"): [var("AWS_ACCESS_KEY_ID", K1.key_id), var("AWS_SECRET_ACCESS_KEY", "s", hidden=True)],
    }, gitlab=MEMBER, readable={(GROUP, "a/b"), (PROJECT, "a/b/app")})
    _, directory, iams = world()
    report = run(inventory, directory, iams)
    assert inventory.walks == [False] and inventory.calls == ["GET group a/b", "GET project a/b/app"]
    assert report.complete and not report.unreadable and not report.problems
    assert "the groups where ci-bot is Owner and the projects where ci-bot is Maintainer" in summary_line(report)
    assert summary_line(report).endswith("coverage complete within that reach (the instance's other groups, "
                                         "projects and variables need an administrator's token)")


@pytest.mark.parametrize(("version", "flagged"), [("16.8.1-ee", True), ("16.9.0-ee", False)])
def test_a_group_key_in_several_scopes_is_flagged_before_16_9(version: str, flagged: bool) -> None:
    inventory, directory, iams = world()
    inventory.gitlab = replace(MODERN_GITLAB, version=version)
    inventory.variables_by_scope[(GROUP, "a")].append(var("AWS_ACCESS_KEY_ID", K3.key_id, scope="production"))
    report = run(inventory, directory, iams)
    problems = [p for p in report.problems if "ignores filter[environment_scope]" in p]
    assert bool(problems) is flagged
    if flagged:
        assert "group a defines AWS_ACCESS_KEY_ID for several environment scopes (*, production)" in problems[0]
        assert f"GitLab {version}" in problems[0] and "upgrade GitLab" in problems[0]


@pytest.mark.parametrize(("count", "limit", "create_missing", "matters"), [
    (24, None, False, True),   # GitLab's default 25 assumed: no room for a pair
    (20, None, False, False),
    (20, 21, False, True),
    (20, 100, False, False),
    (22, 25, True, False),     # room for 3; the instance target would create 2
    (24, 27, True, False),
])
def test_the_instance_variable_limit_is_reported_when_it_matters(count: int, limit: int | None,
                                                                 create_missing: bool, matters: bool) -> None:
    inventory, directory, iams = world()
    inventory.variables_by_scope[(ScopeKind.INSTANCE, None)] = [var(f"V{n}", "x" * 8) for n in range(count)]
    inventory.instance_limit = limit
    specs = (*SPECS, CredentialSpec("shared", "ci-shared", account="prod", targets=(
        TargetSpec(ScopeKind.INSTANCE, None, create_missing=create_missing),)))
    report = run(inventory, directory, iams, specs)
    room = report.instance_room
    assert room is not None and room.count == count and room.limit == (limit or 25)
    assert room.limit_known is (limit is not None) and room.needed == (2 if create_missing else 0)
    assert room.matters is matters
    assert any("plan limit ci_instance_level_variables" in p for p in report.problems) is matters
    assert as_json(report)["instance_variables"]["matters"] is matters
