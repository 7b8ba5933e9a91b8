"""Gitlab::ApplicationRateLimiter on the listing endpoints: ``groups_api`` and ``projects_api``.

Unlike Rack::Attack's throttles (ratelimit.py, which answer ``Retry later`` with ``Retry-After``),
these run inside the endpoint: lib/api/groups.rb and lib/api/projects.rb call
``check_rate_limit_by_user_or_ip!(:groups_api)`` / ``(:projects_api)`` after authentication and
parameter validation, and lib/api/helpers/rate_limiter.rb answers with
``render_api_error!({ error: 'This endpoint has been requested too many times. Try again later.' }, 429)``:
a JSON body and no ``Retry-After`` header (MR 152733 shows the body:
``{"message":{"error":"This endpoint has been requested too many times. Try again later."}}``).

Limits and windows (lib/gitlab/application_rate_limiter.rb): ``groups_api`` counts per user (or IP
when anonymous) per 1 minute, ``projects_api`` per 10 minutes; a threshold of 0 turns the limit off.
Windows are fixed and aligned on the epoch, and throttled requests count too (``throttled?``
increments, then compares ``value > threshold``). The check exists from 17.1 (versions.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rotator.sandbox.gitlab.ratelimit import RateLimiter
from rotator.sandbox.gitlab.responses import ApiError
from rotator.sandbox.gitlab.state import GitLabState
from rotator.sandbox.gitlab.versions import Feature, has

THROTTLED_MESSAGE = "This endpoint has been requested too many times. Try again later."


@dataclass(frozen=True)
class LimitRule:
    key: str
    interval_seconds: float
    threshold: Callable[[GitLabState], int]


GROUPS_API = LimitRule("groups_api", 60.0, lambda state: state.groups_api_limit)
PROJECTS_API = LimitRule("projects_api", 600.0, lambda state: state.projects_api_limit)


class ApplicationRateLimiter:
    def __init__(self) -> None:
        self._counter = RateLimiter()

    def check(self, rule: LimitRule, state: GitLabState, scope: str) -> None:
        """Count one request of ``scope`` ("user:ID" or "ip:ADDR"); raise the 429 past the threshold."""
        threshold = rule.threshold(state)
        if threshold <= 0 or not has(state.version, Feature.LISTING_RATE_LIMITS):
            return
        decision = self._counter.hit(f"{rule.key}:{scope}", name=rule.key, limit=threshold,
                                     period=rule.interval_seconds, now=time.time())
        if not decision.allowed:
            raise ApiError(429, {"message": {"error": THROTTLED_MESSAGE}})

    def reset(self) -> None:
        self._counter.reset()
