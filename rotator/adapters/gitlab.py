"""python-gitlab adapter for CI/CD variables at project, group and instance level.

python-gitlab obeys 429 + Retry-After itself. A GitLab that does not answer (connection refused, DNS,
timeout, 500/502/503/504) is retried here instead, in the requests transport every attempt goes through:
python-gitlab's own retry loop (``retry_transient_errors``) sleeps 0.1 · 2^n s up to ``max_retries`` = 10
times, about 103 s in silence, and offers no hook to log or bound it (``gitlab/utils.py`` ``Retry``). The
transport retries within a :class:`rotator.ratelimit.RetryBudget` of ``[gitlab] timeout``, logging each
retry; what survives it becomes a typed error naming the target.
Every single-variable request carries ``filter[environment_scope]`` (GitLab answers 409 without it when
several variables share a key). Values travel only in request bodies, never in URLs.

Every answer is returned as GitLab gave it, for the caller to check against what it asked: GitLab before 16.9
ignores the filter on group variable updates (docs: api/group_level_variables), and a group PUT whose filter matches
nothing updates the key in another scope (Ci::ChangeVariableService falls back to find_by!(key),
app/services/ci/change_variable_service.rb; MR 140874 kept that for compatibility).

The two writes of a key pair are the exception (``write_pair``): GitLab cannot write two variables atomically
(no transaction, no compare-and-set: PUT is last-write-wins), so a pipeline starting between them reads half a
pair. They go out back to back: both rate-limit slots are reserved before the first, and python-gitlab's own
sleeping retries are off for them; a transient failure of the second is retried at once, and only when that
keeps failing does it wait as GitLab asks (Retry-After) before the last try.
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

from rotator.domain import CiVariable, GitLabCapabilities, ScopeKind, Secret, VariableWrite, VarRef
from rotator.errors import (
    GitLabAmbiguousScope,
    GitLabError,
    GitLabForbidden,
    GitLabNotFound,
    GitLabPairSplit,
    GitLabPermanentError,
    GitLabUnavailable,
)
from rotator.ratelimit import Pacer, RetryBudget, Unlimited

VARIABLE_NOT_FOUND = ("404 Variable Not Found", "404 GroupVariable Not Found", "404 InstanceVariable Not Found")
# A pair whose first write meets a transient failure is tried again this many times in all, each after a new
# reservation (which waits out a Retry-After); the second write, once the first is in, this many times at once.
PAIR_ATTEMPTS = 3
SECOND_WRITE_ATTEMPTS = 3
# python-gitlab's own retries sleep (backoff, Retry-After): never between the two writes of a pair.
_NO_LIBRARY_RETRIES: dict[str, Any] = {"obey_rate_limit": False, "retry_transient_errors": False}

ROLE_NEEDED = {
    ScopeKind.PROJECT: "Maintainer on the project",
    ScopeKind.GROUP: "Owner on the group",
    # Where the instance enables admin mode, an administrator's API token acts as one only with the admin_mode
    # scope (lib/api/api_guard.rb); without it admin endpoints answer 403.
    ScopeKind.INSTANCE: "an administrator's token (with the admin_mode scope where admin mode is enabled)",
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

    def __init__(self, client: gitlab.Gitlab, *, capabilities: Callable[[], GitLabCapabilities],
                 throttle: Callable[[], None] | None = None, pacer: Pacer | None = None) -> None:
        """``capabilities``: the shared probe's answer (rotator.adapters.gitlab_capabilities.CapabilityProbe).
        ``pacer``: the one that ``pace`` mounted on ``client``, so a pair can reserve its two slots."""
        self._gl = client
        self._throttle = throttle or (lambda: None)
        self._capabilities = capabilities
        self._pacer: Pacer = pacer or Unlimited()

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
        return self._write(VariableWrite(ref, value))

    def create(self, ref: VarRef, value: str | Secret, *, masked: bool, hidden: bool,
               protected: bool) -> CiVariable:
        return self._write(VariableWrite(ref, value, create=True, masked=masked, hidden=hidden, protected=protected))

    def write_pair(self, first: VariableWrite, second: VariableWrite, *,
                   accept_first: Callable[[CiVariable], None] | None = None) -> tuple[CiVariable, CiVariable]:
        """``first`` then ``second``, back to back (see the module docstring); ``accept_first`` may stop the
        pair after the first write (the caller's check of GitLab's answer)."""
        for attempt in range(1, PAIR_ATTEMPTS + 1):
            with self._pacer.reserved(2):
                try:
                    written = self._write(first, **_NO_LIBRARY_RETRIES)
                except GitLabUnavailable:
                    if attempt == PAIR_ATTEMPTS:
                        raise
                    continue  # nothing was written; the next reservation waits out any Retry-After
                if accept_first is not None:
                    accept_first(written)
                return written, self._write_second(first, second)
        raise AssertionError("unreachable")

    def _write_second(self, first: VariableWrite, second: VariableWrite) -> CiVariable:
        failure: GitLabError | None = None
        for attempt in range(SECOND_WRITE_ATTEMPTS):
            try:
                if attempt == 0:
                    return self._write(second, **_NO_LIBRARY_RETRIES)  # the pair's second reserved slot
                # Half a pair is in GitLab now: completing it outranks pacing (the slot is still counted).
                with self._pacer.reserved(1, wait=False):
                    return self._write(second, **_NO_LIBRARY_RETRIES)
            except GitLabUnavailable as exc:
                failure = exc
            except GitLabError as exc:
                failure = exc
                break
        if failure is not None and failure.transient:
            # Still refused for load (a 429 window, a 5xx spell): wait as GitLab says (python-gitlab obeys
            # Retry-After), which is the quickest way left to complete the pair.
            try:
                return self._write(second)
            except GitLabError as exc:
                failure = exc
        assert failure is not None
        raise GitLabPairSplit(f"{second.ref.label}: not written after {first.ref.key} was ({failure.message})",
                              written=first.ref.label, failure=failure)

    def _write(self, write: VariableWrite, **options: Any) -> CiVariable:
        """One PUT of the value alone (GitLab keeps every flag), or one POST creating the variable."""
        self._throttle()
        ref = write.ref
        if write.create:
            body: dict[str, Any] = {"key": ref.key, "value": _reveal(write.value), "protected": write.protected}
            if ref.kind is not ScopeKind.INSTANCE:
                body["environment_scope"] = ref.environment_scope
            if write.hidden and ref.kind is not ScopeKind.INSTANCE:
                body["masked_and_hidden"] = True  # GitLab sets masked + hidden together, only at creation
            body["masked"] = write.masked or write.hidden
            try:
                with gitlab_call(ref.label, ref.kind):
                    data = self._gl.http_post(scope_path(ref.kind, ref.path), post_data=body, **options)
            except GitLabPermanentError as exc:
                raise _limit_reached(exc, ref) or exc from None
        else:
            path = f"{scope_path(ref.kind, ref.path)}/{quote(ref.key, safe='')}"
            with gitlab_call(ref.label, ref.kind):
                data = self._gl.http_put(path, query_data=self._filter(ref), post_data={"value": _reveal(write.value)},
                                         **options)
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
