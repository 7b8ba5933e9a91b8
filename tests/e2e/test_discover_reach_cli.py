"""`rotator discover` as far as the token reaches, end to end: an administrator's token on a GitLab that
enables admin mode walks memberships only without the admin_mode scope, and says why and how to fix it; with
the scope it walks every group and project. A member's token over nested groups asks for exactly what it can
read (GitLab would also list the ancestors of its groups), so coverage is complete when all of it was read."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gitlab as python_gitlab

from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import aws_client, client_env, config_toml, create_iam_user, gitlab_admin
from tests.sandbox_support import ROTATOR, clear_logs, unique, writes_in


def _discover(sandbox: Sandbox, tmp_path: Path, token: str) -> tuple[int, dict[str, Any]]:
    config = tmp_path / "rotator.toml"
    config.write_text(config_toml(sandbox.urls(), [], database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    env = client_env(sandbox.urls())
    env["ROTATOR_GITLAB_TOKEN"] = token
    done = subprocess.run([ROTATOR, "discover", "--json", "--config", str(config)], env=env, text=True,
                          capture_output=True, timeout=120, check=False)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def _user_client(sandbox: Sandbox, admin: python_gitlab.Gitlab, *, scopes: tuple[str, ...] = ("api",)
                 ) -> tuple[Any, str]:
    name = unique("user")
    user = admin.users.create({"username": name, "email": f"{name}@example.com", "name": name,
                               "password": "not-used-here-123"})
    token = user.personal_access_tokens.create({"name": "rotator", "scopes": list(scopes)}).token
    return user, token


def _key_in(owner: Any, sandbox: Sandbox, prefix: str) -> str:
    key_id, secret = create_iam_user(aws_client(sandbox.urls(), "iam"), unique(prefix))
    owner.variables.create({"key": "AWS_ACCESS_KEY_ID", "value": key_id, "masked": True, "protected": True})
    owner.variables.create({"key": "AWS_SECRET_ACCESS_KEY", "value": secret, "masked_and_hidden": True,
                            "protected": True})
    return key_id


def _found(report: dict[str, Any]) -> set[str]:
    return {key["key_id"] for key in report["keys"]}


@dataclass
class AdminWorld:
    root_key: str  # in a project the administrator owns
    stranger_key: str  # in a private project of a group the administrator is no member of


def _admin_world(sandbox: Sandbox) -> AdminWorld:
    admin = gitlab_admin(sandbox.urls())
    p = unique("reach")
    root_group = admin.groups.create({"name": f"{p}-root", "path": f"{p}-root"})
    root_project = admin.projects.create({"name": "app", "path": "app", "namespace_id": root_group.id})
    _, token = _user_client(sandbox, admin)
    stranger = python_gitlab.Gitlab(sandbox.urls()["gitlab_url"], private_token=token)
    group = stranger.groups.create({"name": f"{p}-team", "path": f"{p}-team", "visibility": "private"})
    project = stranger.projects.create({"name": "svc", "path": "svc", "namespace_id": group.id})
    return AdminWorld(_key_in(root_project, sandbox, "root"), _key_in(project, sandbox, "stranger"))


def test_admin_mode_without_the_scope_walks_memberships_and_says_why(sandbox: Sandbox, gitlab: Any,
                                                                     tmp_path: Path) -> None:
    world = _admin_world(sandbox)
    gitlab.configure(admin_mode=True)
    clear_logs(sandbox)

    status, limited = _discover(sandbox, tmp_path, gitlab.admin_token)  # root's token: api scope only
    assert status == 1
    assert limited["walk"]["everything"] is False and limited["complete"] is False
    why = limited["walk"]["limited"]
    assert "walk limited to memberships" in why and "lacks the admin_mode scope" in why
    assert "create a token with the admin_mode scope" in why and why in limited["problems"]
    assert limited["gitlab"]["is_admin"] is True and limited["gitlab"]["admin_access"] is False
    assert limited["gitlab"]["token_scopes"] == ["api"]
    assert world.root_key in _found(limited) and world.stranger_key not in _found(limited)
    assert "instance" not in limited["scopes"]

    status, full = _discover(sandbox, tmp_path, gitlab.admin_mode_token)
    assert full["walk"] == {"everything": True, "reach": full["walk"]["reach"], "limited": None}
    assert {world.root_key, world.stranger_key} <= _found(full)
    assert full["scopes"]["instance"] == 1 and full["unreadable_scopes"] == []
    assert full["complete"] is True and status == 0, full["problems"]
    assert writes_in(sandbox)["gitlab"] == []  # discovery only reads


def test_a_member_over_nested_groups_reads_all_it_can_and_coverage_is_complete(sandbox: Sandbox, gitlab: Any,
                                                                               tmp_path: Path) -> None:
    admin = gitlab_admin(sandbox.urls())
    p = unique("nest")
    top = admin.groups.create({"name": p, "path": p})
    team = admin.groups.create({"name": "team", "path": "team", "parent_id": top.id})
    app = admin.projects.create({"name": "app", "path": "app", "namespace_id": team.id})
    top_key = _key_in(top, sandbox, "top")
    app_key = _key_in(app, sandbox, "app")
    member, token = _user_client(sandbox, admin, scopes=("read_api",))
    team.members.create({"user_id": member.id, "access_level": 50})  # Owner of p/team, nothing on p

    # GitLab lists the ancestor p to the member too, though its variables need Owner there.
    as_member = python_gitlab.Gitlab(sandbox.urls()["gitlab_url"], private_token=token)
    assert {g.full_path for g in as_member.groups.list(get_all=True)} >= {p, f"{p}/team"}

    status, report = _discover(sandbox, tmp_path, token)
    assert report["walk"]["everything"] is False and report["walk"]["limited"] is None
    assert report["unreadable_scopes"] == [] and report["problems"] == []
    assert report["complete"] is True and status == 0
    assert app_key in _found(report) and top_key not in _found(report)
    assert report["scopes"] == {"group": 1, "project": 1}
