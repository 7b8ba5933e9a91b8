"""python-gitlab adapter for CI/CD variables at project, group and instance level.

python-gitlab owns the HTTP details: it obeys 429 + Retry-After and retries 5xx/connection errors
(``retry_transient_errors``). What survives its retries becomes a typed error naming the target.
Every single-variable request carries ``filter[environment_scope]`` (GitLab answers 409 without it when
several variables share a key). Values travel only in request bodies, never in URLs.

Every answer is returned as GitLab gave it, for the caller to check against what it asked: GitLab before 16.9
ignores the filter on group variable updates (docs: api/group_level_variables), and a group PUT whose filter matches
nothing updates the key in another scope (Ci::ChangeVariableService falls back to find_by!(key),
app/services/ci/change_variable_service.rb; MR 140874 kept that for compatibility).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import gitlab
import gitlab.exceptions
import requests
import requests.adapters

from rotator.domain import CiVariable, GitLabCapabilities, ScopeKind, Secret, VarRef
from rotator.errors import (
    GitLabAmbiguousScope,
    GitLabError,
    GitLabForbidden,
    GitLabNotFound,
    GitLabPermanentError,
    GitLabUnavailable,
)
from rotator.ratelimit import Pacer

VARIABLE_NOT_FOUND = ("404 Variable Not Found", "404 GroupVariable Not Found", "404 InstanceVariable Not Found")
ROLE_NEEDED = {
    ScopeKind.PROJECT: "Maintainer on the project",
    ScopeKind.GROUP: "Owner on the group",
    # Where the instance enables admin mode, an administrator's API token acts as one only with the admin_mode
    # scope (lib/api/api_guard.rb); without it admin endpoints answer 403.
    ScopeKind.INSTANCE: "an administrator's token (with the admin_mode scope where admin mode is enabled)",
}


def connect(url: str, token: Secret, *, timeout: float = 30.0, ssl_verify: bool | str = True) -> gitlab.Gitlab:
    """A python-gitlab client that retries 429 (obeying Retry-After) and transient 5xx by itself.

    The token goes in the PRIVATE-TOKEN header, never in a URL.
    """
    return gitlab.Gitlab(
        url, private_token=token.reveal(), timeout=timeout, ssl_verify=ssl_verify,
        retry_transient_errors=True, keep_base_url=True, user_agent="rotator",
    )


def scope_path(kind: ScopeKind, path: str | None) -> str:
    if kind is ScopeKind.INSTANCE:
        return "/admin/ci/variables"
    if not path:
        raise ValueError(f"a {kind.value} target needs a path")
    return f"/{'projects' if kind is ScopeKind.PROJECT else 'groups'}/{quote(path, safe='')}/variables"


def _scope_label(kind: ScopeKind, path: str | None) -> str:
    return "instance" if kind is ScopeKind.INSTANCE else f"{kind.value} {path}"


def _message(exc: gitlab.exceptions.GitlabError) -> str:
    text = exc.error_message
    return text if isinstance(text, str) else str(text)


@contextmanager
def gitlab_call(label: str, kind: ScopeKind) -> Iterator[None]:
    """Translate python-gitlab / requests failures into typed errors naming the target."""
    try:
        yield
    except gitlab.exceptions.GitlabAuthenticationError as exc:
        raise GitLabPermanentError(f"{label}: GitLab rejected the token (401: {_message(exc)})", target=label,
                                   status=401, hint="check the token in [gitlab] token_env/token_file") from None
    except gitlab.exceptions.GitlabError as exc:
        status = exc.response_code
        text = f"{label}: GitLab answered {status}: {_message(exc)}"
        if status == 409:
            raise GitLabAmbiguousScope(text, target=label, status=409,
                                       hint="several variables share this key; set environment_scope on the target "
                                            "to the scope that should be rotated") from None
        if status == 403:
            raise GitLabForbidden(text, target=label, status=403,
                                  hint=f"the token needs the api scope and {ROLE_NEEDED[kind]}") from None
        if status == 404:
            raise GitLabNotFound(text, target=label, status=404,
                                 hint="check the path in the config and that the token can see it") from None
        if status is not None and (status == 429 or status >= 500):
            raise GitLabUnavailable(text, target=label, status=status,
                                    hint="GitLab is overloaded or failing; retry later") from None
        raise GitLabPermanentError(text, target=label, status=status) from None
    except requests.RequestException as exc:
        raise GitLabUnavailable(f"{label}: cannot reach GitLab: {type(exc).__name__}", target=label,
                                hint="check [gitlab] url and the network path to it") from None


def _variable(data: dict[str, Any]) -> CiVariable:
    return CiVariable(
        key=str(data["key"]),
        value=data.get("value"),
        environment_scope=str(data.get("environment_scope") or "*"),
        masked=bool(data.get("masked", False)),
        hidden=bool(data.get("hidden", False)),
        protected=bool(data.get("protected", False)),
        raw=bool(data.get("raw", False)),
        variable_type=str(data.get("variable_type") or "env_var"),
        description=data.get("description"),
    )


variable_from_api = _variable  # for sibling adapters that list variables themselves (gitlab_inventory)


def _reveal(value: str | Secret) -> str:
    return value.reveal() if isinstance(value, Secret) else value


class GitLabVariables:
    """ports.CiVariables over python-gitlab's HTTP layer (which carries the retry and rate-limit handling)."""

    def __init__(self, client: gitlab.Gitlab, *, capabilities: Callable[[], GitLabCapabilities],
                 throttle: Callable[[], None] | None = None) -> None:
        """``capabilities``: the shared probe's answer (rotator.adapters.gitlab_capabilities.CapabilityProbe)."""
        self._gl = client
        self._throttle = throttle or (lambda: None)
        self._capabilities = capabilities

    def capabilities(self) -> GitLabCapabilities:
        return self._capabilities()

    def _filter(self, ref: VarRef) -> dict[str, Any]:
        if ref.kind is ScopeKind.INSTANCE:
            return {}  # instance variables have no environment scope
        return {"filter[environment_scope]": ref.environment_scope}

    def get(self, ref: VarRef) -> CiVariable | None:
        self._throttle()
        path = f"{scope_path(ref.kind, ref.path)}/{quote(ref.key, safe='')}"
        try:
            with gitlab_call(ref.label, ref.kind):
                data = self._gl.http_get(path, query_data=self._filter(ref))
        except GitLabNotFound as exc:
            if any(marker in exc.message for marker in VARIABLE_NOT_FOUND):
                return None
            raise
        assert isinstance(data, dict)
        return _variable(data)

    def list(self, kind: ScopeKind, path: str | None) -> list[CiVariable]:
        self._throttle()
        with gitlab_call(_scope_label(kind, path), kind):
            rows = self._gl.http_list(scope_path(kind, path), get_all=True, per_page=100)
        return [_variable(row) for row in rows if isinstance(row, dict)]

    def update_value(self, ref: VarRef, value: str | Secret) -> CiVariable:
        """PUT the value alone: GitLab keeps every flag (masked, protected, hidden, raw, type, description)."""
        self._throttle()
        path = f"{scope_path(ref.kind, ref.path)}/{quote(ref.key, safe='')}"
        with gitlab_call(ref.label, ref.kind):
            data = self._gl.http_put(path, query_data=self._filter(ref), post_data={"value": _reveal(value)})
        assert isinstance(data, dict)
        return _variable(data)

    def create(self, ref: VarRef, value: str | Secret, *, masked: bool, hidden: bool,
               protected: bool) -> CiVariable:
        self._throttle()
        body: dict[str, Any] = {"key": ref.key, "value": _reveal(value), "protected": protected}
        if ref.kind is not ScopeKind.INSTANCE:
            body["environment_scope"] = ref.environment_scope
        if hidden and ref.kind is not ScopeKind.INSTANCE:
            body["masked_and_hidden"] = True  # GitLab sets masked + hidden together, only at creation
        body["masked"] = masked or hidden
        try:
            with gitlab_call(ref.label, ref.kind):
                data = self._gl.http_post(scope_path(ref.kind, ref.path), post_data=body)
        except GitLabPermanentError as exc:
            raise _limit_reached(exc, ref) or exc from None
        assert isinstance(data, dict)
        return _variable(data)

    def delete(self, ref: VarRef) -> bool:
        """DELETE one variable, with filter[environment_scope]. False when it was already gone."""
        self._throttle()
        path = f"{scope_path(ref.kind, ref.path)}/{quote(ref.key, safe='')}"
        try:
            with gitlab_call(ref.label, ref.kind):
                self._gl.http_delete(path, query_data=self._filter(ref))
        except GitLabNotFound as exc:
            if any(marker in exc.message for marker in VARIABLE_NOT_FOUND):
                return False
            raise
        return True


def _limit_reached(exc: GitLabPermanentError, ref: VarRef) -> GitLabPermanentError | None:
    """A create refused by a plan limit, with the way out. Limitable (app/models/concerns/limitable.rb) answers
    400 "Maximum number of <limit name> (<count>) exceeded"; instance variables are capped by the plan limit
    ci_instance_level_variables (app/models/ci/instance_variable.rb), 25 by default."""
    if exc.status != 400 or "Maximum number of" not in exc.message:
        return None
    if ref.kind is ScopeKind.INSTANCE:
        hint = ("delete unused instance variables, or raise the plan limit ci_instance_level_variables "
                "(PUT /application/plan_limits), or keep this pair in group variables instead")
    else:
        hint = f"delete unused variables of {ref.kind.value} {ref.path}, or raise the plan limit"
    return GitLabPermanentError(exc.message, target=exc.target, status=400, hint=hint)


class _PacedAdapter(requests.adapters.HTTPAdapter):
    """Every HTTP attempt (python-gitlab's own retries included) waits for the pacer; a 429 slows it down
    and its Retry-After holds every other caller too."""

    def __init__(self, pacer: Pacer, *, pool_maxsize: int) -> None:
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize)
        self._pacer = pacer

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self._pacer.acquire()
        response = super().send(request, *args, **kwargs)
        if response.status_code == 429:
            self._pacer.throttled(_retry_after(response.headers.get("Retry-After")))
        return response


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: python-gitlab waits it out; the halved rate is enough here


def pace(client: gitlab.Gitlab, pacer: Pacer, *, pool_maxsize: int = 32) -> gitlab.Gitlab:
    """Hold every request of ``client`` to ``pacer`` (its configured requests per second)."""
    parts = urlsplit(client.url)
    client.session.mount(f"{parts.scheme}://{parts.netloc}/", _PacedAdapter(pacer, pool_maxsize=pool_maxsize))
    return client


def current_user(client: gitlab.Gitlab) -> dict[str, Any]:
    """GET /user: the identity behind the token (a harmless probe)."""
    with gitlab_call("GET /user", ScopeKind.INSTANCE):
        data = client.http_get("/user")
    assert isinstance(data, dict)
    return data


__all__ = ["GitLabError", "GitLabVariables", "connect", "current_user", "pace", "scope_path", "variable_from_api"]
