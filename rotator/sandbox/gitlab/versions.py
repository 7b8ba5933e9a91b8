"""Which GitLab release the fake plays, and which behaviours that release has.

A behaviour that arrived in a given release is written once here, with the source that dates it;
handlers ask :func:`has` instead of comparing version numbers themselves.

The fake plays 16.0 to 17.11. Older releases lack much of what it serves; 18.x changed defaults it
does not follow (the listing rate limits are set to 0 on upgrade to 18.0, and the application rate
limiter's 429 later gained a ``Retry-After`` header with gitlab-org/gitlab MR 206603), so it refuses
to claim them.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

DEFAULT_VERSION = "17.6"
_VERSION_PATTERN = re.compile(r"\A(\d+)\.(\d+)(?:\.(\d+))?(?:-ee)?\Z")


@dataclass(frozen=True, order=True)
class GitLabVersion:
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> GitLabVersion:
        """``"17.6"``, ``"17.6.2"`` or ``"17.6.2-ee"``; ValueError for anything else or outside 16.0-17.11."""
        match = _VERSION_PATTERN.match(text.strip())
        if match is None:
            raise ValueError(f"version must look like 17.6 or 17.6.2, not {text!r}")
        version = cls(int(match[1]), int(match[2]), int(match[3] or 0))
        if not OLDEST <= version <= NEWEST:
            raise ValueError(f"the fake GitLab plays versions {OLDEST.short} to {NEWEST.short}, not {text!r}")
        return version

    @property
    def short(self) -> str:
        return f"{self.major}.{self.minor}"

    def __str__(self) -> str:
        # What GET /version reports for an Enterprise Edition install (lib/api/version.rb: Gitlab::VERSION).
        return f"{self.major}.{self.minor}.{self.patch}-ee"


OLDEST = GitLabVersion(16, 0)
NEWEST = GitLabVersion(17, 11)


class Feature(enum.Enum):
    """Behaviours that depend on the release, each with the release that brought it."""

    # lib/api/group_variables.rb: PUT honours `filter[environment_scope]` (and falls back to any
    # same-key variable when the filter matches nothing) since gitlab-org/gitlab MR 136475, released
    # in 16.9 (doc/api/group_level_variables.md, "The filter parameter ... introduced in GitLab 16.9").
    # Before it, PUT always ran Ci::ChangeVariableService#find_variable = `find_by!(key:)`.
    # GET and DELETE already went through API::Helpers::VariablesHelpers#find_variable, which honours
    # the filter and answers 409, in every release the fake plays. Project variables have had the
    # filter on GET, PUT and DELETE since 13.2 (MR 34490, on by default from 13.3, MR 39209).
    GROUP_VARIABLE_PUT_FILTER = GitLabVersion(16, 9)
    # `masked_and_hidden` on create and the `hidden` attribute in Entities::Ci::Variable arrived in
    # 17.4 (doc/api/project_level_variables.md and group_level_variables.md history, issue 29674).
    HIDDEN_VARIABLES = GitLabVersion(17, 4)
    # `check_rate_limit_by_user_or_ip!(:groups_api)` in lib/api/groups.rb and `:projects_api` in
    # lib/api/projects.rb, introduced in 17.1 behind `rate_limit_groups_and_projects_api`
    # (doc/administration/settings/rate_limit_on_groups_api.md, MR 152733).
    LISTING_RATE_LIMITS = GitLabVersion(17, 1)

    @property
    def since(self) -> GitLabVersion:
        value: GitLabVersion = self.value
        return value


def has(version: GitLabVersion, feature: Feature) -> bool:
    return version >= feature.since
