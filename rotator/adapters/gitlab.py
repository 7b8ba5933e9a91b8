"""python-gitlab adapter for CI/CD variables at project, group and instance level.

python-gitlab obeys 429 + Retry-After itself. A GitLab that does not answer (connection refused, DNS,
timeout, 500/502/503/504) is retried here instead, in the requests transport every attempt goes through:
python-gitlab's own retry loop (``retry_transient_errors``) sleeps 0.1 · 2^n s up to ``max_retries`` = 10
times, about 103 s in silence, and offers no hook to log or bound it (``gitlab/utils.py`` ``Retry``). The
transport retries within a :class:`rotator.ratelimit.RetryBudget` of ``[gitlab] timeout``, logging each
retry; what survives it becomes a typed error naming the target.
Every single-variable request carries ``filter[environment_scope]`` (GitLab answers 409 without it when
several variables share a key). Values travel only in request bodies, never in URLs.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import gitlab
import gitlab.exceptions
import requests
import requests.adapters

from rotator.domain import CiVariable, ScopeKind, Secret, VarRef
from rotator.errors import (
    GitLabAmbiguousScope,
    GitLabError,
    GitLabForbidden,
    GitLabNotFound,
    GitLabPermanentError,
    GitLabUnavailable,
)
from rotator.ratelimit import Pacer, RetryBudget, Unlimited

VARIABLE_NOT_FOUND = ("404 Variable Not Found", "404 GroupVariable Not Found", "404 InstanceVariable Not Found")
ROLE_NEEDED = {
    ScopeKind.PROJECT: "Maintainer on the project",
    ScopeKind.GROUP: "Owner on the group",
    ScopeKind.INSTANCE: "an administrator token",
}


# Answers that mean "GitLab (or the proxy before it) is failing right now", worth trying again.
TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
# Sending these twice does no harm; a POST (create a variable) is retried only if it never left.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def connect(url: str, token: Secret, *, timeout: float = 30.0, ssl_verify: bool | str = True,
            pacer: Pacer | None = None, pool_maxsize: int = 32) -> gitlab.Gitlab:
    """A python-gitlab client whose every request is held to ``pacer``, obeys 429 + Retry-After (python-gitlab)
    and retries an unreachable or failing GitLab within ``timeout`` (the transport, logged).

    The token goes in the PRIVATE-TOKEN header, never in a URL.
    """
    client = gitlab.Gitlab(
        url, private_token=token.reveal(), timeout=timeout, ssl_verify=ssl_verify,
        retry_transient_errors=False, keep_base_url=True, user_agent="rotator",
    )
    return pace(client, pacer or Unlimited(), pool_maxsize=pool_maxsize)


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
        request = getattr(exc, "request", None)
        where = urlsplit(request.url).netloc if request is not None and request.url else "GitLab"
        raise GitLabUnavailable(f"{label}: cannot reach GitLab at {where}: {unreachable_reason(exc)}",
                                target=label,
                                hint="check that GitLab is up and [gitlab] url and the network path to it; rotator "
                                     "retried for [gitlab] timeout and tries again later") from None


def _os_cause(exc: BaseException) -> OSError | None:
    """The operating system's error under a requests/urllib3 failure (refused, DNS, reset), if any."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and not isinstance(current, requests.RequestException) and (
                isinstance(current, socket.gaierror) or current.errno is not None):
            return current
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None),
                 *(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))]
    return None


def unreachable_reason(exc: BaseException) -> str:
    """What went wrong on the way to GitLab, in a few words (never the URL's query or a header)."""
    if isinstance(exc, requests.Timeout):
        return "no answer within [gitlab] timeout"
    cause = _os_cause(exc)
    if isinstance(cause, socket.gaierror):
        return "its host name does not resolve (DNS)"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if cause is not None:
        return cause.strerror or type(cause).__name__
    return type(exc).__name__


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

    def __init__(self, client: gitlab.Gitlab, *, throttle: Callable[[], None] | None = None) -> None:
        self._gl = client
        self._throttle = throttle or (lambda: None)

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
        with gitlab_call(ref.label, ref.kind):
            data = self._gl.http_post(scope_path(ref.kind, ref.path), post_data=body)
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


class _Transport(requests.adapters.HTTPAdapter):
    """Every HTTP attempt waits for the pacer; a 429 slows it down and its Retry-After holds every other
    caller too (python-gitlab then waits and retries). An unreachable or failing GitLab is retried here,
    within ``budget``, each retry logged."""

    def __init__(self, pacer: Pacer, budget: RetryBudget, *, pool_maxsize: int,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize)
        self._pacer = pacer
        self._budget = budget
        self._sleep = sleep

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        started = time.monotonic()
        retries = 0
        while True:
            self._pacer.acquire()
            failure: requests.RequestException | None = None
            response: requests.Response | None = None
            try:
                response = super().send(request, *args, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if not _may_retry(request, exc):
                    raise
                failure, reason = exc, f"unreachable ({unreachable_reason(exc)})"
            else:
                if response.status_code == 429:
                    self._pacer.throttled(_retry_after(response.headers.get("Retry-After")))
                    return response
                if response.status_code not in TRANSIENT_STATUS or request.method not in IDEMPOTENT_METHODS:
                    return response
                reason = f"answered {response.status_code}"
            wait = self._budget.next_wait(retries, time.monotonic() - started)
            if wait is None:
                if failure is not None:
                    raise failure
                assert response is not None
                return response
            retries += 1
            self._budget.announce(retries, wait, reason, method=request.method,
                                  path=urlsplit(request.url or "").path)
            if response is not None:
                response.close()
            self._sleep(wait)


def _may_retry(request: requests.PreparedRequest, exc: requests.RequestException) -> bool:
    if request.method in IDEMPOTENT_METHODS or isinstance(exc, requests.ConnectTimeout):
        return True
    cause = _os_cause(exc)  # a POST is sent again only when it provably never reached GitLab
    return isinstance(cause, socket.gaierror | ConnectionRefusedError)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: python-gitlab waits it out; the halved rate is enough here


def pace(client: gitlab.Gitlab, pacer: Pacer, *, pool_maxsize: int = 32) -> gitlab.Gitlab:
    """Hold every request of ``client`` to ``pacer`` (its configured requests per second), and retry an
    unreachable GitLab within the client's timeout."""
    parts = urlsplit(client.url)
    budget = RetryBudget("GitLab", float(client.timeout or 30.0))
    client.session.mount(f"{parts.scheme}://{parts.netloc}/", _Transport(pacer, budget, pool_maxsize=pool_maxsize))
    return client


def current_user(client: gitlab.Gitlab) -> dict[str, Any]:
    """GET /user: the identity behind the token (a harmless probe)."""
    with gitlab_call("GET /user", ScopeKind.INSTANCE):
        data = client.http_get("/user")
    assert isinstance(data, dict)
    return data


__all__ = ["GitLabError", "GitLabVariables", "connect", "current_user", "pace", "scope_path", "variable_from_api"]
