"""Routing on the *raw* request path, as Grape does: ``:id`` may be ``group%2Fsub%2Fproject``, and
decoding before splitting (what werkzeug's router does) would break it into several segments."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from rotator.sandbox.gitlab.application_limits import ApplicationRateLimiter, LimitRule
from rotator.sandbox.gitlab.auth import Identity
from rotator.sandbox.gitlab.model import User
from rotator.sandbox.gitlab.pagination import PageRequest, link_builder, offset_page, page_request
from rotator.sandbox.gitlab.responses import ApiError, unauthorized
from rotator.sandbox.gitlab.state import GitLabState

API_PREFIX = "/api/v4"
T = TypeVar("T")


@dataclass
class Call:
    """Everything a handler needs about one request."""

    request: Request
    state: GitLabState
    identity: Identity
    raw_path: str
    path_params: dict[str, str]
    limits: ApplicationRateLimiter
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return "GET" if self.request.method == "HEAD" else self.request.method

    @property
    def base_url(self) -> str:
        return self.request.host_url.rstrip("/")

    def current_user(self) -> User:
        """The authenticated user, or 401 (the ``authenticate!`` of GitLab's endpoints)."""
        if self.identity.user is None:
            raise unauthorized()
        return self.identity.user

    def check_rate_limit(self, rule: LimitRule) -> None:
        """``check_rate_limit_by_user_or_ip!``: counted per user, or per IP address when anonymous."""
        user = self.identity.user
        scope = f"user:{user.id}" if user is not None else f"ip:{self.request.remote_addr}"
        self.limits.check(rule, self.state, scope)

    def link_for(self, overrides: dict[str, str]) -> str:
        return link_builder(f"{self.base_url}{self.raw_path}", list(self.request.args.items(multi=True)))(overrides)

    def offset_page(self, items: Sequence[T], request: PageRequest | None = None) -> tuple[list[T], dict[str, str]]:
        """One offset page of ``items`` (``request`` defaults to this call's page/per_page), counted as this
        instance counts (its api_kaminari_count_with_limit flag)."""
        return offset_page(items, page_request(self.params) if request is None else request, self.link_for,
                           count_with_limit=self.state.api_kaminari_count_with_limit)


Handler = Callable[[Call], Response]


@dataclass(frozen=True)
class Route:
    method: str
    segments: tuple[str, ...]
    handler: Handler
    public: bool  # answers anonymous callers (public projects and groups); others need a token
    read_user_scope: bool = False  # a read_user token may GET it
    any_scope: bool = False  # any token may call it, whatever its scopes


class Router:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, *, public: bool = False,
            read_user_scope: bool = False, any_scope: bool = False) -> None:
        segments = tuple(s for s in template.strip("/").split("/") if s)
        self._routes.append(Route(method, segments, handler, public, read_user_scope, any_scope))

    def match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]]:
        if not raw_path.startswith(API_PREFIX + "/"):
            raise ApiError(404, {"error": "404 Not Found"})
        raw_segments = [s for s in raw_path[len(API_PREFIX):].split("/") if s]
        lookup_method = "GET" if method == "HEAD" else method
        for route in self._routes:
            if route.method != lookup_method or len(route.segments) != len(raw_segments):
                continue
            bound = _bind(route.segments, raw_segments)
            if bound is not None:
                return route, bound
        raise ApiError(404, {"error": "404 Not Found"})


def _bind(template: tuple[str, ...], raw_segments: list[str]) -> dict[str, str] | None:
    bound: dict[str, str] = {}
    for expected, actual in zip(template, raw_segments, strict=True):
        if expected.startswith(":"):
            bound[expected[1:]] = unquote(actual)
        elif expected != actual:
            return None
    return bound
