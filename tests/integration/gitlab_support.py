"""Helpers for the GitLab emulator's conformance tests: raw HTTP calls and seeding over HTTP.

The fixtures live in :mod:`tests.integration.gitlab_fixtures` (loaded with ``pytest_plugins``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import requests

from rotator.sandbox.gitlab import GitLabSandbox

OK_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS-shaped: maskable
OK_KEY_ID = "AKIAIOSFODNN7EXAMPLE"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def call(sandbox: GitLabSandbox, method: str, path: str, token: str | None = None,
         **kwargs: Any) -> requests.Response:
    """One raw HTTP request to ``/api/v4{path}``; ``token`` goes in PRIVATE-TOKEN when given."""
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["PRIVATE-TOKEN"] = token
    kwargs.setdefault("allow_redirects", False)
    return requests.request(method, f"{sandbox.api_url}{path}", headers=headers, timeout=15, **kwargs)


def enc(path: str) -> str:
    """A full path as GitLab wants it in ``:id``."""
    return path.replace("/", "%2F")


class Seeder:
    """Seeds over HTTP as the administrator; fails the test loudly if GitLab refuses.

    It uses the token with the ``admin_mode`` scope, which keeps its powers when a test enables
    admin mode (as one seeds a real GitLab that has admin mode on).
    """

    def __init__(self, sandbox: GitLabSandbox) -> None:
        self.sandbox = sandbox

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = call(self.sandbox, "POST", path, self.sandbox.admin_mode_token, json=body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def group(self, path: str | None = None, parent_id: int | None = None) -> dict[str, Any]:
        path = path or unique("grp")
        body: dict[str, Any] = {"name": path, "path": path}
        if parent_id is not None:
            body["parent_id"] = parent_id
        return self._post("/groups", body)

    def project(self, namespace_id: int, path: str | None = None, visibility: str = "private") -> dict[str, Any]:
        path = path or unique("proj")
        return self._post("/projects", {"name": path, "path": path, "namespace_id": namespace_id,
                                        "visibility": visibility})

    def user(self, admin: bool = False) -> dict[str, Any]:
        name = unique("user")
        return self._post("/users", {"username": name, "email": f"{name}@example.com", "name": name,
                                     "admin": admin, "password": "not-used-here-123"})

    def token(self, user_id: int, scopes: tuple[str, ...] = ("api",), expires_at: str | None = None) -> str:
        body: dict[str, Any] = {"name": "t", "scopes": list(scopes)}
        if expires_at is not None:
            body["expires_at"] = expires_at
        token: str = self._post(f"/users/{user_id}/personal_access_tokens", body)["token"]
        return token

    def member(self, kind: str, owner_id: int, user_id: int, level: int) -> None:
        self._post(f"/{kind}/{owner_id}/members", {"user_id": user_id, "access_level": level})

    def user_with_role(self, kind: str, owner_id: int, level: int, scopes: tuple[str, ...] = ("api",)) -> str:
        """A new user holding ``level`` on the project or group; returns their token."""
        user = self.user()
        self.member(kind, owner_id, user["id"], level)
        return self.token(user["id"], scopes)

    def variable(self, kind: str, owner_id: int | None, **body: Any) -> dict[str, Any]:
        path = "/admin/ci/variables" if kind == "instance" else f"/{kind}/{owner_id}/variables"
        return self._post(path, body)


@dataclass
class World:
    """A fresh group with one project in it, both owned by the admin."""

    group: dict[str, Any]
    project: dict[str, Any]

    @property
    def group_id(self) -> int:
        return int(self.group["id"])

    @property
    def project_id(self) -> int:
        return int(self.project["id"])

    @property
    def project_path(self) -> str:
        return str(self.project["path_with_namespace"])


def forget_traffic(sandbox: GitLabSandbox) -> None:
    """Empty the request log and the rate-limit counters."""
    sandbox.log.clear()
    sandbox.reset_rate_limits()
