"""The fake GitLab's instance settings: what an administrator (or a plan, or the release) decides.

One table names every knob with its parser, so ``start_gitlab(settings=...)``,
:meth:`GitLabSandbox.configure`, ``PUT /_sandbox/settings`` and the test fixtures all accept and
refuse the same things. Changes are validated as a whole before any is applied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rotator.sandbox.gitlab.state import GitLabState
from rotator.sandbox.gitlab.versions import GitLabVersion

TIERS = ("free", "premium", "ultimate")


@dataclass(frozen=True)
class Knob:
    name: str
    parse: Callable[[Any], Any]
    show: Callable[[Any], Any]
    meaning: str


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be an integer >= 0")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError("must be a number of seconds > 0")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _tier(value: Any) -> str:
    if value not in TIERS:
        raise ValueError(f"must be one of {list(TIERS)}")
    return str(value)


def _version(value: Any) -> GitLabVersion:
    if isinstance(value, GitLabVersion):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string such as \"17.6\"")
    return GitLabVersion.parse(value)


def _same(value: Any) -> Any:
    return value


KNOBS: dict[str, Knob] = {knob.name: knob for knob in (
    Knob("version", _version, str, "GitLab release played, e.g. \"16.8\", \"17.3\", \"17.6\" (default 17.6)"),
    Knob("admin_mode", _bool, _same, "instance setting: admin powers need a token with the admin_mode scope"),
    Knob("tier", _tier, _same, "free | premium | ultimate; on free, group environment scopes are dropped"),
    Knob("max_project_variables", _int, _same, "plan limit project_ci_variables (0: none)"),
    Knob("max_group_variables", _int, _same, "plan limit group_ci_variables (0: none)"),
    Knob("max_instance_variables", _int, _same, "plan limit ci_instance_level_variables (0: none)"),
    Knob("rate_limit_per_period", _int, _same, "Rack::Attack authenticated API throttle: requests per period"),
    Knob("rate_limit_period_seconds", _seconds, _same, "Rack::Attack throttle period"),
    Knob("offset_pagination_limit", _int, _same, "plan limit offset_pagination_limit (0: none)"),
    Knob("groups_api_limit", _int, _same, "application limit groups_api: GET /groups per user per minute (0: off)"),
    Knob("projects_api_limit", _int, _same,
         "application limit projects_api: GET /projects per user per 10 minutes (0: off)"),
    Knob("api_kaminari_count_with_limit", _bool, _same,
         "ops feature flag (off by default; on at GitLab.com): offset pages above 10,000 rows carry no totals"),
)}


def apply_settings(state: GitLabState, changes: Mapping[str, Any]) -> None:
    """Validate every change, then apply them all; ValueError names the first bad one."""
    parsed: dict[str, Any] = {}
    for name, value in changes.items():
        knob = KNOBS.get(name)
        if knob is None:
            raise ValueError(f"unknown setting {name!r}; known: {sorted(KNOBS)}")
        try:
            parsed[name] = knob.parse(value)
        except ValueError as problem:
            raise ValueError(f"{name} {problem}") from None
    for name, value in parsed.items():
        setattr(state, name, value)


def current_settings(state: GitLabState) -> dict[str, Any]:
    """Every knob's value, JSON-ready (and accepted back by :func:`apply_settings`)."""
    return {name: knob.show(getattr(state, name)) for name, knob in KNOBS.items()}
