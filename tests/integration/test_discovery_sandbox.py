"""`discover` through the real adapters (python-gitlab, boto3) against the emulators.

The sandbox is seeded the way a team's GitLab grows: a tracked key in a project under nested groups
(a/b/c), an untracked key at group level with weak flags, the same key name redefined at several levels
and for several environment scopes, a hidden key-id variable, a tracked user's spare key no variable
holds, an old key. Every case must be reported, and the emulators' request logs must show zero writes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.core.utils import utcnow
from moto.iam.models import iam_backends

from rotator.adapters.gitlab_inventory import GitLabInventory
from rotator.config.settings import parse_settings
from rotator.domain import ScopeKind
from rotator.inventory.discover import DiscoveryReport, discover
from rotator.inventory.report import as_json, emit_config, summary_line, text_sections
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import aws_client, create_iam_user, ensure_group, ensure_project, gitlab_admin
from rotator.wiring.root import Root
from tests.sandbox_support import clear_logs, unique, writes_in

# Every test talks to the sandbox through os.environ, as rotator does in a deployment.
pytestmark = pytest.mark.usefixtures("sandbox_env")


@dataclass
class World:
    prefix: str
    tracked_key: str
    spare_key: str
    untracked_key: str
    staging_key: str
    hidden_key: str
    untracked_user: str
    config: str


def _variable(owner: Any, key: str, value: str, **flags: Any) -> None:
    owner.variables.create({"key": key, "value": value, **flags})


def seed_world(sandbox: Sandbox) -> World:
    urls = sandbox.urls()
    iam = aws_client(urls, "iam")
    gl = gitlab_admin(urls)
    p = unique("disc")
    tracked_user, untracked_user, staging_user, hidden_user = (f"ci-{p}-{n}" for n in ("t", "u", "s", "h"))
    tracked_key, tracked_secret = create_iam_user(iam, tracked_user)
    spare_key = iam.create_access_key(UserName=tracked_user)["AccessKey"]["AccessKeyId"]
    iam.update_access_key(UserName=tracked_user, AccessKeyId=spare_key, Status="Inactive")
    untracked_key, untracked_secret = create_iam_user(iam, untracked_user)
    staging_key, staging_secret = create_iam_user(iam, staging_user)
    hidden_key, hidden_secret = create_iam_user(iam, hidden_user)
    # The tracked user's key is 40 days old (rotate_every is 30d).
    for key in iam_backends[DEFAULT_ACCOUNT_ID]["global"].get_user(tracked_user).access_keys:
        key.create_date = utcnow() - timedelta(days=40)

    app = ensure_project(gl, f"{p}/a/b/c/app")  # nested groups a/b/c
    _variable(app, "AWS_ACCESS_KEY_ID", tracked_key, masked=True, protected=True)
    _variable(app, "AWS_SECRET_ACCESS_KEY", tracked_secret, masked_and_hidden=True, protected=True)
    group_b = ensure_group(gl, f"{p}/a/b")
    _variable(group_b, "DEPLOY_AWS_ACCESS_KEY_ID", untracked_key, masked=True)  # not protected
    _variable(group_b, "DEPLOY_AWS_SECRET_ACCESS_KEY", untracked_secret)  # not masked, protected or hidden
    group_a = ensure_group(gl, f"{p}/a")
    _variable(group_a, "AWS_ACCESS_KEY_ID", untracked_key, masked=True, protected=True)  # shadowed by app's
    _variable(group_a, "AWS_SECRET_ACCESS_KEY", untracked_secret, masked_and_hidden=True, protected=True)
    svc = ensure_project(gl, f"{p}/svc")
    for scope, key, secret in (("production", untracked_key, untracked_secret),
                               ("staging", staging_key, staging_secret)):
        _variable(svc, "AWS_ACCESS_KEY_ID", key, masked=True, protected=True, environment_scope=scope)
        _variable(svc, "AWS_SECRET_ACCESS_KEY", secret, masked_and_hidden=True, protected=True,
                  environment_scope=scope)
    legacy = ensure_project(gl, f"{p}/legacy")
    _variable(legacy, "LEGACY_ACCESS_KEY_ID", hidden_key, masked_and_hidden=True, protected=True)
    _variable(legacy, "LEGACY_SECRET_ACCESS_KEY", hidden_secret, masked_and_hidden=True, protected=True)
    _variable(legacy, "UNRELATED", "just-some-setting")
    config = "\n".join([
        "[service]", 'database_url = "sqlite:///unused.db"', "[gitlab]", f'url = "{urls["gitlab_url"]}"',
        "requests_per_second = 1000.0", "[aws]", "iam_requests_per_second = 1000.0",
        "[policy]", 'rotate_every = "30d"',
        "[[credentials]]", f'name = "{p}-tracked"', f'iam_user = "{tracked_user}"',
        "[[credentials.targets]]", f'project = "{p}/a/b/c/app"', ""])
    return World(p, tracked_key, spare_key, untracked_key, staging_key, hidden_key, untracked_user, config)


@pytest.fixture(scope="module")
def world(sandbox: Sandbox) -> World:
    return seed_world(sandbox)


def run(world: World, sandbox: Sandbox, *, per_page: int = 100) -> tuple[DiscoveryReport, Root]:
    settings = parse_settings(world.config)
    wiring = Root(settings, actor="test")
    ports = dataclasses.replace(wiring.inventory.discovery_ports(),
                                inventory=GitLabInventory(wiring.gitlab.client, per_page=per_page))
    report = discover(settings.credential_specs(), settings.policy.to_policy(), ports, concurrency=4)
    return report, wiring


def mine(report: DiscoveryReport, world: World) -> DiscoveryReport:
    """Only what this world seeded (the module's sandbox may hold other tests' scopes)."""
    def ours(path: str | None) -> bool:
        return (path or "").startswith(world.prefix)

    return dataclasses.replace(report, findings=[f for f in report.findings if ours(f.location.scope.path)],
                               hidden=[h for h in report.hidden if ours(h.location.scope.path)],
                               shadowing=[s for s in report.shadowing if ours(s.locations[0].scope.path)])


def test_every_case_is_reported_and_nothing_is_written(sandbox: Sandbox, world: World) -> None:
    clear_logs(sandbox)
    full, _ = run(world, sandbox)
    assert writes_in(sandbox) == {"aws": [], "gitlab": [], "slack": []}
    report = mine(full, world)
    by_place = {(f.location.scope.path, f.location.key, f.location.environment_scope): f for f in report.findings}
    p = world.prefix

    tracked = by_place[(f"{p}/a/b/c/app", "AWS_ACCESS_KEY_ID", "*")]
    assert tracked.tracked and tracked.credential == f"{p}-tracked"
    assert tracked.resolution.known and tracked.resolution.account == "default"
    assert tracked.too_old and tracked.age is not None and tracked.age.days >= 40
    assert tracked.partner is not None and tracked.partner.key == "AWS_SECRET_ACCESS_KEY"
    assert tracked.partner_flags is not None and tracked.partner_flags.hidden

    group_key = by_place[(f"{p}/a/b", "DEPLOY_AWS_ACCESS_KEY_ID", "*")]
    assert not group_key.tracked and group_key.resolution.user_name == world.untracked_user
    assert group_key.partner is not None and group_key.partner.key == "DEPLOY_AWS_SECRET_ACCESS_KEY"
    assert not group_key.too_old
    issues = {(i.location.key, i.role): i.missing for i in report.flag_issues}
    assert issues[("DEPLOY_AWS_ACCESS_KEY_ID", "key id")] == ("not protected",)
    assert issues[("DEPLOY_AWS_SECRET_ACCESS_KEY", "secret")] == ("not masked", "not protected", "not hidden")
    assert ("AWS_ACCESS_KEY_ID", "key id") not in issues  # masked + protected key ids are fine

    staging = by_place[(f"{p}/svc", "AWS_ACCESS_KEY_ID", "staging")]
    assert staging.key_id == world.staging_key and not staging.tracked

    reasons = {(s.key, s.reason, tuple((loc.scope.path, loc.environment_scope) for loc in s.locations))
               for s in report.shadowing}
    assert ("AWS_ACCESS_KEY_ID", "inherited", ((f"{p}/a/b/c/app", "*"), (f"{p}/a", "*"))) in reasons
    assert ("AWS_ACCESS_KEY_ID", "scopes", ((f"{p}/svc", "production"), (f"{p}/svc", "staging"))) in reasons

    hidden = {h.location.key for h in report.hidden}
    assert {"LEGACY_ACCESS_KEY_ID", "LEGACY_SECRET_ACCESS_KEY"} <= hidden
    assert "AWS_SECRET_ACCESS_KEY" not in hidden  # a hidden partner of a readable key id is expected
    assert world.hidden_key not in str(as_json(full))  # a hidden value is never guessed
    assert not full.complete  # a hidden key-id variable means coverage is not complete

    unreferenced = [u for u in full.unreferenced if u.credential == f"{p}-tracked"]
    assert [(u.key_id, u.status, u.certain) for u in unreferenced] == [(world.spare_key, "Inactive", False)]


def test_groups_come_in_offset_pages_and_projects_in_keyset_pages_past_the_offset_ceiling(
        sandbox: Sandbox, world: World) -> None:
    state: Any = sandbox.gitlab
    # Offset pages beyond 2 rows answer 405 where GitLab enforces its ceiling: on /projects (keyset is not
    # affected), and on /groups for anonymous callers only; an authenticated /groups is plain offset pages.
    state.state.offset_pagination_limit = 2
    clear_logs(sandbox)
    try:
        report, _ = run(world, sandbox, per_page=2)
    finally:
        state.state.offset_pagination_limit = 50_000
    listed = [e for e in state.log.entries() if e.key in ("GET /api/v4/projects", "GET /api/v4/groups")]
    assert all(e.status == 200 for e in listed)
    # 3+ projects and 4+ groups at 2 per page: more than one page each, and the 2nd page is past the ceiling
    assert sum(e.key == "GET /api/v4/projects" for e in listed) >= 2
    assert sum(e.key == "GET /api/v4/groups" for e in listed) >= 2
    paths = {(f.location.scope.path, f.location.key) for f in mine(report, world).findings}
    assert (f"{world.prefix}/svc", "AWS_ACCESS_KEY_ID") in paths
    assert (f"{world.prefix}/a/b", "DEPLOY_AWS_ACCESS_KEY_ID") in paths  # a group's key: every group was walked
    assert report.scope_counts[ScopeKind.PROJECT.value] >= 3 and report.scope_counts["instance"] == 1


def test_unreadable_scope_is_reported_and_the_walk_goes_on(sandbox: Sandbox, world: World) -> None:
    from rotator.sandbox.server import Fault

    gitlab: Any = sandbox.gitlab
    gitlab.faults.add(Fault(match=rf"^GET /api/v4/projects/{world.prefix}%2Flegacy/variables", status=403,
                            message="403 Forbidden"))
    try:
        report, _ = run(world, sandbox)
    finally:
        gitlab.faults.clear()
    assert [u.scope.path for u in report.unreadable] == [f"{world.prefix}/legacy"]
    assert "403" in report.unreadable[0].error
    assert any(f.key_id == world.staging_key for f in report.findings)


def test_emitted_config_loads_and_tracks_the_untracked_user(sandbox: Sandbox, world: World, tmp_path: Path) -> None:
    report, _ = run(world, sandbox)
    text = emit_config(mine(report, world), [f"{world.prefix}-tracked"])
    settings = parse_settings(world.config + "\n" + text)
    added = [spec for spec in settings.credential_specs() if spec.iam_user == world.untracked_user]
    assert len(added) == 1
    places = {(t.kind.value, t.path, t.environment_scope, t.access_key_id_var, t.secret_access_key_var)
              for t in added[0].targets}
    p = world.prefix
    assert places == {("group", f"{p}/a/b", "*", "DEPLOY_AWS_ACCESS_KEY_ID", "DEPLOY_AWS_SECRET_ACCESS_KEY"),
                      ("group", f"{p}/a", "*", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
                      ("project", f"{p}/svc", "production", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    # Rendering the report never fails and names each section.
    titles = [title for title, _, _ in text_sections(report)]
    assert "Shadowing" in titles and "IAM keys of tracked users that no variable references" in titles
    assert "untracked" in summary_line(report)
