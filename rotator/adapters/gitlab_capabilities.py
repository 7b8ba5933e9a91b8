"""The GitLab capability probe: which GitLab, which token, which admin access. Only GET requests.

- ``GET /version`` (lib/api/version.rb: any authenticated token) gives the release, which says whether group
  variable updates honour filter[environment_scope] (16.9) and whether masked_and_hidden exists (17.4).
- ``GET /user`` gives the account and ``is_admin``, which is the account's flag, not what the token may do.
- ``GET /personal_access_tokens/self`` (lib/api/personal_access_tokens/self_information.rb) gives the token's
  scopes; GitLab answers 400 for any token that is not a personal access token (OAuth, job tokens) and 404
  before the endpoint existed: then the scopes are unknown, which is reported, not guessed.
- For an administrator, ``GET /admin/ci/variables`` tells whether admin endpoints answer: with admin mode
  enabled on the instance, an API token is in admin mode only with the ``admin_mode`` scope
  (lib/api/api_guard.rb, bypass_session_for_admin_mode?), and without it admin endpoints answer 403.

The answer is kept for a day (``CapabilityProbe``): GitLab upgrades are rare, and every rotation asks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import gitlab
import structlog

from rotator.adapters.gitlab import current_user, gitlab_call
from rotator.domain import GitLabCapabilities, ScopeKind
from rotator.errors import GitLabForbidden, GitLabPermanentError

ONE_DAY = 24 * 3600.0
log = structlog.get_logger("rotator.gitlab")


def probe_capabilities(client: gitlab.Gitlab) -> GitLabCapabilities:
    with gitlab_call("GET /version", ScopeKind.INSTANCE):
        version = client.http_get("/version")
    assert isinstance(version, dict)
    user = current_user(client)
    is_admin = bool(user.get("is_admin"))
    return GitLabCapabilities(
        version=str(version.get("version") or "unknown"), username=str(user.get("username") or "?"),
        is_admin=is_admin, admin_access=is_admin and _admin_endpoints_answer(client),
        token_scopes=_token_scopes(client),
    )


def _token_scopes(client: gitlab.Gitlab) -> tuple[str, ...] | None:
    try:
        with gitlab_call("GET /personal_access_tokens/self", ScopeKind.INSTANCE):
            data = client.http_get("/personal_access_tokens/self")
    except GitLabPermanentError as exc:
        if exc.status in (400, 404):  # not a personal access token, or a GitLab without the endpoint
            return None
        raise
    scopes = data.get("scopes") if isinstance(data, dict) else None
    return tuple(str(scope) for scope in scopes) if isinstance(scopes, list) else None


def _admin_endpoints_answer(client: gitlab.Gitlab) -> bool:
    try:
        with gitlab_call("GET /admin/ci/variables", ScopeKind.INSTANCE):
            client.http_get("/admin/ci/variables", query_data={"per_page": 1})
    except GitLabForbidden:
        return False
    return True


class CapabilityProbe:
    """Probes on first use, then answers from memory for ``max_age`` seconds. A failed probe is not kept."""

    def __init__(self, client: gitlab.Gitlab, *, max_age: float = ONE_DAY,
                 monotonic: Callable[[], float] = time.monotonic,
                 probe: Callable[[gitlab.Gitlab], GitLabCapabilities] = probe_capabilities) -> None:
        self._client = client
        self._max_age = max_age
        self._monotonic = monotonic
        self._probe = probe
        self._lock = threading.Lock()
        self._answer: tuple[float, GitLabCapabilities] | None = None

    def capabilities(self) -> GitLabCapabilities:
        with self._lock:
            now = self._monotonic()
            if self._answer is None or now - self._answer[0] >= self._max_age:
                found = self._probe(self._client)
                # Said once a day in the service's log: which GitLab rotator is deciding for.
                log.info("gitlab capabilities", version=found.version, user=found.username,
                         is_admin=found.is_admin, admin_access=found.admin_access, token_scopes=found.token_scopes,
                         group_filter=found.group_filter, masked_and_hidden=found.masked_and_hidden)
                self._answer = (now, found)
            return self._answer[1]

    def forget(self) -> None:
        """The next call probes again (after an upgrade, or to show `check` a fresh answer)."""
        with self._lock:
            self._answer = None

