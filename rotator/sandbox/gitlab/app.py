"""The fake GitLab as a WSGI app, and :func:`start_gitlab` that serves it in a background thread.

Every request under ``/api/v4`` goes through the same pipeline: injected latency (slept before any
lock is taken) → identify the caller (and whether admin mode lets it act as an administrator) →
Rack::Attack rate limit → injected error → route → refuse a bad token (401) → check the token's scope
(403) → handler (which may meet an application rate limit). Each answer carries the ``RateLimit-*``
headers and lands in the request log as ``"METHOD /api/v4/raw/path"`` with its status; bodies are
never logged (variable values are secrets).

The instance settings (version, admin mode, limits...) are listed in settings.py; choose them with
``start_gitlab(settings={...})``, :meth:`GitLabSandbox.configure`, or ``PUT /_sandbox/settings``
from another process (e.g. against ``rotator sandbox``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from werkzeug.wrappers import Request, Response

from rotator.sandbox.gitlab import admin, groups, projects, protected_refs, tokens, variables
from rotator.sandbox.gitlab.application_limits import ApplicationRateLimiter
from rotator.sandbox.gitlab.auth import Identity, check_scope, identify
from rotator.sandbox.gitlab.params import merged_params
from rotator.sandbox.gitlab.ratelimit import RateDecision, RateLimiter
from rotator.sandbox.gitlab.responses import ApiError, api_json
from rotator.sandbox.gitlab.routing import Call, Router
from rotator.sandbox.gitlab.settings import apply_settings, current_settings
from rotator.sandbox.gitlab.state import GitLabState, seed_admin
from rotator.sandbox.server import (
    CONTROL_PREFIX,
    BackgroundServer,
    Fault,
    FaultPlan,
    LoggedRequest,
    RequestLog,
    control_response,
    sleep_for_latency,
)


def build_router() -> Router:
    router = Router()
    for module in (variables, projects, groups, tokens, admin, protected_refs):
        module.register(router)
    return router


class GitLabApp:
    def __init__(self, state: GitLabState, faults: FaultPlan, log: RequestLog) -> None:
        self.state = state
        self.faults = faults
        self.log = log
        self.limiter = RateLimiter()
        self.application_limits = ApplicationRateLimiter()
        self.router = build_router()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        control = settings_response(request, self.state) or control_response(request, self.log, self.faults)
        response = control if control is not None else self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        raw_path = raw_request_path(request.environ)
        key = f"{request.method} {raw_path}"
        sleep_for_latency(self.faults, key)
        identity = identify(self.state, request, datetime.now(UTC).date())
        decision = self._count(request, identity)
        fault = self.faults.take(key)
        if fault is not None:
            response = fault_response(fault)
        elif not decision.allowed:
            response = Response("Retry later\n", status=429, content_type="text/plain")
        else:
            response = self._dispatch(request, raw_path, identity)
        response.headers.update(decision.headers())
        detail = {"user": identity.user.username} if identity.user is not None else {}
        if fault is not None:
            detail["fault"] = "injected"
        self.log.record(LoggedRequest(at=time.time(), method=request.method, path=raw_path, key=key,
                                      status=response.status_code, detail=detail))
        return response

    def _count(self, request: Request, identity: Identity) -> RateDecision:
        if identity.token is not None:
            caller, name = f"token:{identity.token.id}", "throttle_authenticated_api"
        else:
            caller, name = f"ip:{request.remote_addr}", "throttle_unauthenticated_api"
        return self.limiter.hit(caller, name=name, limit=self.state.rate_limit_per_period,
                                period=self.state.rate_limit_period_seconds, now=time.time())

    def _dispatch(self, request: Request, raw_path: str, identity: Identity) -> Response:
        try:
            route, path_params = self.router.match(request.method, raw_path)
            if identity.failure is not None:
                raise identity.failure
            if identity.token is not None:
                check_scope(identity.token, request.method, read_user_allowed=route.read_user_scope,
                            any_scope=route.any_scope)
            elif not route.public:
                raise ApiError(401, {"message": "401 Unauthorized"})
            call = Call(request=request, state=self.state, identity=identity, raw_path=raw_path,
                        path_params=path_params, limits=self.application_limits, params=merged_params(request))
            return route.handler(call)
        except ApiError as error:
            return error.response()


def settings_response(request: Request, state: GitLabState) -> Response | None:
    """``GET|PUT /_sandbox/settings``: the instance settings (settings.py) for tests, benchmarks and
    ``rotator sandbox`` users in another process; a PUT changes some, all-or-nothing."""
    if request.path.rstrip("/") != f"{CONTROL_PREFIX}settings":
        return None
    if request.method == "PUT":
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return api_json({"error": "send a JSON object of settings, e.g. {\"version\": \"16.8\"}"}, 400)
        try:
            apply_settings(state, body)
        except ValueError as problem:
            return api_json({"error": str(problem)}, 400)
    return api_json(current_settings(state))


def raw_request_path(environ: dict[str, Any]) -> str:
    """The path as the client sent it, percent-encoding intact, without the query string."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        path = urlsplit(raw).path if "://" in raw else raw.split("?", 1)[0]
        return path or "/"
    return quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))


def fault_response(fault: Fault) -> Response:
    status = fault.status or 500
    if status == 429 and fault.message is None:
        headers = {"Retry-After": str(fault.retry_after if fault.retry_after is not None else 1)}
        return Response("Retry later\n", status=429, headers=headers, content_type="text/plain")
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    return api_json({"message": fault.message or f"{status} injected fault"}, status, headers)


@dataclass
class GitLabSandbox:
    """A running fake GitLab. ``url`` has no ``/api/v4`` (what python-gitlab wants).

    ``admin_token`` belongs to the administrator ``root`` and has the ``api`` scope only: with admin
    mode enabled it acts as a regular member. ``admin_mode_token`` adds the ``admin_mode`` scope.
    """

    url: str
    admin_token: str
    admin_mode_token: str
    state: GitLabState
    faults: FaultPlan
    log: RequestLog
    server: BackgroundServer
    app: GitLabApp

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v4"

    def configure(self, **settings: object) -> None:
        """Change instance settings (names and values as in settings.py), e.g.
        ``configure(version="16.8", admin_mode=True)``; ValueError leaves everything unchanged."""
        apply_settings(self.state, settings)

    def settings(self) -> dict[str, object]:
        return current_settings(self.state)

    def reset_rate_limits(self) -> None:
        """Forget every caller's request count, Rack::Attack's and the application limits'."""
        self.app.limiter.reset()
        self.app.application_limits.reset()

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> GitLabSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_gitlab(host: str = "127.0.0.1", port: int = 0,
                 settings: Mapping[str, object] | None = None) -> GitLabSandbox:
    """Start the fake GitLab, seeded with the admin ``root`` and its tokens.

    ``settings`` chooses the instance (settings.py), e.g. ``{"version": "17.3", "admin_mode": True}``;
    the default is the newest behaviour played (17.6, admin mode off). ValueError on a bad setting,
    before anything listens.
    """
    state = GitLabState()
    apply_settings(state, settings or {})
    admin = seed_admin(state)
    faults, log = FaultPlan(), RequestLog()
    app = GitLabApp(state, faults, log)
    server = BackgroundServer(app, host=host, port=port).start()
    return GitLabSandbox(url=server.url, admin_token=admin.token, admin_mode_token=admin.admin_mode_token,
                         state=state, faults=faults, log=log, server=server, app=app)
