"""python-gitlab adapter for CI/CD variables at project, group and instance level.

python-gitlab owns the HTTP details: it obeys 429 + Retry-After and retries 5xx/connection errors
(``retry_transient_errors``). What survives its retries becomes a typed error naming the target.
Every single-variable request carries ``filter[environment_scope]`` (GitLab answers 409 without it when
several variables share a key). Values travel only in request bodies, never in URLs.

The two writes of a key pair are the exception (``write_pair``): GitLab cannot write two variables atomically
(no transaction, no compare-and-set: PUT is last-write-wins), so a pipeline starting between them reads half a
pair. They go out back to back: both rate-limit slots are reserved before the first, and python-gitlab's own
sleeping retries are off for them; a transient failure of the second is retried at once, and only when that
keeps failing does it wait as GitLab asks (Retry-After) before the last try.
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

from rotator.domain import CiVariable, ScopeKind, Secret, VariableWrite, VarRef
from rotator.errors import (
    GitLabAmbiguousScope,
    GitLabError,
    GitLabForbidden,
    GitLabNotFound,
    GitLabPairSplit,
    GitLabPermanentError,
    GitLabUnavailable,
)
from rotator.ratelimit import Pacer, Unlimited

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
    ScopeKind.INSTANCE: "an administrator token",
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

    def __init__(self, client: gitlab.Gitlab, *, throttle: Callable[[], None] | None = None,
                 pacer: Pacer | None = None) -> None:
        """``pacer``: the one that ``pace`` mounted on ``client``, so a pair can reserve its two slots."""
        self._gl = client
        self._throttle = throttle or (lambda: None)
        self._pacer: Pacer = pacer or Unlimited()

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

    def write_pair(self, first: VariableWrite, second: VariableWrite) -> tuple[CiVariable, CiVariable]:
        """``first`` then ``second``, back to back (see the module docstring)."""
        for attempt in range(1, PAIR_ATTEMPTS + 1):
            with self._pacer.reserved(2):
                try:
                    written = self._write(first, **_NO_LIBRARY_RETRIES)
                except GitLabUnavailable:
                    if attempt == PAIR_ATTEMPTS:
                        raise
                    continue  # nothing was written; the next reservation waits out any Retry-After
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
            with gitlab_call(ref.label, ref.kind):
                data = self._gl.http_post(scope_path(ref.kind, ref.path), post_data=body, **options)
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
