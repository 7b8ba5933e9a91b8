"""A fake GitLab for the tests and the demo: the CI/CD variables API (project, group, instance)
as reference/gitlab-variables-api.md describes it, plus the admin endpoints needed to seed it.

Start one with :func:`start_gitlab`; seed it over HTTP like a real GitLab, or in-process through
``sandbox.state`` (:class:`GitLabState`). Choose the instance it plays - GitLab release, admin mode,
plan and rate limits, see settings.py - with ``start_gitlab(settings={...})``,
``sandbox.configure(...)`` or ``PUT /_sandbox/settings``.
"""

from rotator.sandbox.gitlab.app import GitLabSandbox, start_gitlab
from rotator.sandbox.gitlab.model import AccessLevel, CiVariable
from rotator.sandbox.gitlab.settings import KNOBS
from rotator.sandbox.gitlab.state import GitLabState
from rotator.sandbox.gitlab.versions import GitLabVersion

__all__ = ["KNOBS", "AccessLevel", "CiVariable", "GitLabSandbox", "GitLabState", "GitLabVersion", "start_gitlab"]
