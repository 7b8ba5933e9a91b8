"""Rotation through the real adapters when GitLab applies a write elsewhere than asked.

A group PUT whose filter[environment_scope] matches nothing falls back to the same key in another scope
(Ci::ChangeVariableService, find_by!(key)) and answers 200. Here a colleague deletes the target's production
variable through the API between rotator's read and its PUT: GitLab then updates the staging variable.
rotator reads the scope of the answer, puts staging's previous value back, holds the credential with a message
naming the variable, and never counts the target as published.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from rotator.config.settings import parse_settings
from rotator.domain import CiVariable, GitLabCapabilities, Phase, ScopeKind, Secret, VariableWrite, VarRef
from rotator.ports import CiVariables
from rotator.rotation.engine import Rotator
from rotator.rotation.results import Outcome
from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import config_toml, ensure_group, gitlab_admin
from rotator.wiring.root import Root
from tests.sandbox_support import seed_one, user_keys

STAGING_KEY = "AKIASTAGINGSTAGING00"


# Every test talks to the sandbox through os.environ, as rotator does in a deployment.
pytestmark = pytest.mark.usefixtures("sandbox_env")


class ColleagueDeletesFirst:
    """The real CiVariables adapter, with a colleague who deletes ``victim`` through GitLab's API just before
    rotator's PUT of it (once)."""

    def __init__(self, real: CiVariables, victim: VarRef, delete: Callable[[], None]) -> None:
        self._real, self._victim, self._delete = real, victim, delete

    def capabilities(self) -> GitLabCapabilities:
        return self._real.capabilities()

    def get(self, ref: VarRef) -> CiVariable | None:
        return self._real.get(ref)

    def list(self, kind: ScopeKind, path: str | None) -> list[CiVariable]:
        return self._real.list(kind, path)

    def update_value(self, ref: VarRef, value: str | Secret) -> CiVariable:
        if ref == self._victim:
            self._delete()
            self._victim = replace(ref, key="")  # once
        return self._real.update_value(ref, value)

    def create(self, ref: VarRef, value: str | Secret, *, masked: bool, hidden: bool,
               protected: bool) -> CiVariable:
        return self._real.create(ref, value, masked=masked, hidden=hidden, protected=protected)

    def write_pair(self, first: VariableWrite, second: VariableWrite, *,
                   accept_first: Callable[[CiVariable], None] | None = None) -> tuple[CiVariable, CiVariable]:
        if self._victim in (first.ref, second.ref):
            self._delete()
            self._victim = replace(self._victim, key="")  # once
        return self._real.write_pair(first, second, accept_first=accept_first)

    def delete(self, ref: VarRef) -> bool:
        return self._real.delete(ref)


def test_a_group_put_that_lands_in_another_scope_is_undone_and_never_published(sandbox: Sandbox,
                                                                              tmp_path: Path) -> None:
    seed = seed_one(sandbox)
    group_path = f"{seed.name}-group"
    admin = gitlab_admin(sandbox.urls())
    ensure_group(admin, group_path).variables.create(
        {"key": "AWS_ACCESS_KEY_ID", "value": STAGING_KEY, "environment_scope": "staging", "masked": True,
         "protected": True})
    urls = sandbox.urls()

    def colleague_deletes_production() -> None:
        gone = requests.delete(
            f"{urls['gitlab_url']}/api/v4/groups/{group_path}/variables/AWS_ACCESS_KEY_ID",
            params={"filter[environment_scope]": "production"}, headers={"PRIVATE-TOKEN": urls["gitlab_token"]},
            timeout=10)
        assert gone.status_code == 204, gone.text

    settings = parse_settings(config_toml(urls, [seed], database_url=f"sqlite:///{tmp_path}/r.db",
                                          policy={"rotate_every": "30d", "grace": "0s", "delete_after": "0s",
                                                  "verify_timeout": "8s"}))
    root = Root(settings, actor="test")
    root.rotation.sync_credentials()
    [spec] = settings.credential_specs()
    group = next(t for t in spec.targets if t.kind is ScopeKind.GROUP)
    ports = root.rotation.ports(spec)
    ports = replace(ports, variables=ColleagueDeletesFirst(
        ports.variables, group.var("AWS_ACCESS_KEY_ID"), colleague_deletes_production))

    result = Rotator(ports, spec, force=True).run()

    assert result.outcome is Outcome.HELD, result.message
    assert f"group {group_path} variable AWS_ACCESS_KEY_ID [environment_scope=production]" in result.message
    assert "environment_scope=staging (asked production)" in result.message
    assert f"put back the previous value of group {group_path} variable AWS_ACCESS_KEY_ID " \
           "[environment_scope=staging]" in result.message
    state: Any = sandbox.gitlab
    assert state.state.get_variable("group", group_path, "AWS_ACCESS_KEY_ID", "staging").value == STAGING_KEY
    journal = root.store.journals(spec.name)[-1]
    assert journal.phase is not Phase.PUBLISHED and group.target_id not in journal.targets_done
    # Nothing was passed off as published: both keys stay Active, the old one still in use by the group.
    assert sorted(user_keys(sandbox, seed.iam_user).values()) == ["Active", "Active"]
    puts = [e for e in state.log.entries() if e.key.startswith("PUT") and "groups" in e.key
            and e.key.endswith("/AWS_ACCESS_KEY_ID")]
    assert [e.status for e in puts] == [200, 200]  # the write that landed in staging, and the one undoing it
