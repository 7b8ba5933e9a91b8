"""The GitLab adapters against the GitLab emulator, through python-gitlab: the capability probe (kept a day;
admin mode), the discovery walk's resumption when a listing answers 429 (an injected fault and GitLab's own
application limit), and the plan limit on instance variables."""

from __future__ import annotations

import gitlab
import pytest

from rotator.adapters.gitlab import GitLabVariables, connect
from rotator.adapters.gitlab_capabilities import ONE_DAY, CapabilityProbe
from rotator.adapters.gitlab_inventory import GitLabInventory
from rotator.domain import ScopeKind, Secret, VarRef
from rotator.errors import GitLabPermanentError, GitLabUnavailable
from rotator.sandbox.gitlab import GitLabSandbox
from rotator.sandbox.server import Fault
from tests.integration.gitlab_support import Seeder, World, unique

pytest_plugins = ["tests.integration.gitlab_fixtures"]


def client(sandbox: GitLabSandbox, token: str | None = None) -> gitlab.Gitlab:
    return connect(sandbox.url, Secret(token or sandbox.admin_token), timeout=10)


def requests_to(sandbox: GitLabSandbox, key: str) -> int:
    return sum(entry.key == key for entry in sandbox.log.entries())


def test_the_probe_asks_once_and_again_after_a_day(gitlab_fake: GitLabSandbox) -> None:
    now = [1000.0]
    probe = CapabilityProbe(client(gitlab_fake), monotonic=lambda: now[0])
    first = probe.capabilities()
    assert first.version == str(gitlab_fake.state.version) and first.username == "root"
    assert first.is_admin and first.admin_access
    assert probe.capabilities() is first
    assert requests_to(gitlab_fake, "GET /api/v4/version") == 1
    now[0] += ONE_DAY
    probe.capabilities()
    assert requests_to(gitlab_fake, "GET /api/v4/version") == 2
    assert all(entry.method == "GET" for entry in gitlab_fake.log.entries())


def test_a_members_token_is_no_administrator(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder,
                                            gitlab_world: World) -> None:
    token = gitlab_seed.user_with_role("groups", gitlab_world.group_id, 50)
    found = CapabilityProbe(client(gitlab_fake, token)).capabilities()
    assert not found.is_admin and not found.admin_access and not found.admin_mode_missing
    assert requests_to(gitlab_fake, "GET /api/v4/admin/ci/variables") == 0  # asked of administrators only


def test_a_listing_that_answers_429_is_asked_again_from_the_same_page(gitlab_fake: GitLabSandbox,
                                                                      gitlab_seed: Seeder) -> None:
    for _ in range(3):
        gitlab_seed.group()
    pauses: list[float] = []
    inventory = GitLabInventory(client(gitlab_fake), per_page=1, max_retries=0,
                                pause=0.01, sleep=pauses.append)
    gitlab_fake.faults.add(Fault(match=r"^GET /api/v4/groups$", status=429, count=2))
    walked = [path for kind, path in inventory.scopes(everything=True) if kind is ScopeKind.GROUP]
    assert len(pauses) == 2
    undisturbed = GitLabInventory(client(gitlab_fake), per_page=1)
    assert walked == [path for kind, path in undisturbed.scopes(everything=True) if kind is ScopeKind.GROUP]
    assert len(walked) >= 3


def test_a_listing_that_keeps_answering_429_names_the_limit(gitlab_fake: GitLabSandbox) -> None:
    inventory = GitLabInventory(client(gitlab_fake), max_retries=0, rate_limit_wait=0.03,
                                pause=0.01, sleep=lambda _: None)
    gitlab_fake.faults.add(Fault(match=r"^GET /api/v4/groups$", status=429))
    with pytest.raises(GitLabUnavailable) as raised:
        list(inventory.scopes(everything=True))
    assert "application rate limit groups_api" in str(raised.value) and "Admin area" in str(raised.value)


def test_with_admin_mode_only_a_token_with_its_scope_acts_as_administrator(gitlab_fake: GitLabSandbox) -> None:
    gitlab_fake.configure(admin_mode=True)
    without = CapabilityProbe(client(gitlab_fake)).capabilities()
    assert without.is_admin and not without.admin_access and without.admin_mode_missing
    assert without.token_scopes == ("api",)
    assert "lacks the admin_mode scope" in without.admin_state()
    with_scope = CapabilityProbe(client(gitlab_fake, gitlab_fake.admin_mode_token)).capabilities()
    assert with_scope.admin_access and "admin_mode" in (with_scope.token_scopes or ())


def test_an_instance_variable_past_the_plan_limit_names_the_limit(gitlab_fake: GitLabSandbox) -> None:
    probe = CapabilityProbe(client(gitlab_fake))
    variables = GitLabVariables(client(gitlab_fake), capabilities=probe.capabilities)
    present = len(variables.list(ScopeKind.INSTANCE, None))
    gitlab_fake.configure(max_instance_variables=present + 1)
    variables.create(VarRef(ScopeKind.INSTANCE, None, unique("ONE_MORE").replace("-", "_")), "x" * 8,
                     masked=False, hidden=False, protected=False)
    with pytest.raises(GitLabPermanentError) as raised:
        variables.create(VarRef(ScopeKind.INSTANCE, None, unique("TOO_MANY").replace("-", "_")), "x" * 8,
                         masked=False, hidden=False, protected=False)
    assert raised.value.status == 400 and "Maximum number of ci instance level variables" in str(raised.value)
    assert "ci_instance_level_variables" in raised.value.hint


def test_the_groups_api_limit_pauses_the_walk_until_its_window_passes(gitlab_fake: GitLabSandbox,
                                                                      gitlab_seed: Seeder) -> None:
    for _ in range(3):
        gitlab_seed.group()
    undisturbed = [path for kind, path in GitLabInventory(client(gitlab_fake), per_page=1).scopes(everything=True)
                   if kind is ScopeKind.GROUP]
    gitlab_fake.reset_rate_limits()
    gitlab_fake.configure(groups_api_limit=1)  # one GET /groups per user per minute
    pauses: list[float] = []

    def the_window_passes(seconds: float) -> None:
        pauses.append(seconds)
        gitlab_fake.reset_rate_limits()

    inventory = GitLabInventory(client(gitlab_fake), per_page=1, max_retries=0, sleep=the_window_passes)
    walked = [path for kind, path in inventory.scopes(everything=True) if kind is ScopeKind.GROUP]
    assert walked == undisturbed
    throttled = [e for e in gitlab_fake.log.entries() if e.key == "GET /api/v4/groups" and e.status == 429]
    assert len(pauses) == len(throttled) >= 2
