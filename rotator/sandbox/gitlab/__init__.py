"""A fake GitLab for the tests and the demo: the CI/CD variables API (project, group, instance)
as reference/gitlab-variables-api.md describes it, plus the admin endpoints needed to seed it.

Start one with :func:`start_gitlab`; seed it over HTTP like a real GitLab, or in-process through
``sandbox.state`` (:class:`GitLabState`).
"""

from rotator.sandbox.gitlab.app import GitLabSandbox, start_gitlab
from rotator.sandbox.gitlab.model import AccessLevel, CiVariable
from rotator.sandbox.gitlab.state import GitLabState

__all__ = ["AccessLevel", "CiVariable", "GitLabSandbox", "GitLabState", "start_gitlab"]
