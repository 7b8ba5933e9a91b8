"""Reference §9 "Application rate limits on listings": ``groups_api`` and ``projects_api``
(Gitlab::ApplicationRateLimiter, rotator/sandbox/gitlab/application_limits.py).

A 429 with a JSON body and no ``Retry-After`` - unlike Rack::Attack's ``Retry later`` throttle
(test_gitlab_conformance_ratelimit.py) - per user, from 17.1, off when the threshold is 0.
"""

from __future__ import annotations

from collections.abc import Callable

import gitlab as python_gitlab
import pytest
import requests

from rotator.sandbox.gitlab import GitLabSandbox
from tests.integration.gitlab_support import Seeder, World, call

pytest_plugins = ["tests.integration.gitlab_fixtures"]

THROTTLED = {"message": {"error": "This endpoint has been requested too many times. Try again later."}}
LIMITS = [("/groups", "groups_api_limit"), ("/projects", "projects_api_limit")]


def _over_the_limit(first_allowed: Callable[[], list[requests.Response]],
                    one_more: Callable[[], requests.Response]) -> tuple[list[requests.Response], requests.Response]:
    """Run the allowed requests then one more; when a window boundary fell between them (the 429 does
    not come), the counters restarted: run them once again."""
    allowed, extra = first_allowed(), one_more()
    if extra.status_code != 429:
        allowed, extra = first_allowed(), one_more()
    return allowed, extra


@pytest.mark.parametrize("path, setting", LIMITS)
def test_listing_limit_is_a_json_429_without_retry_after(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                                         path: str, setting: str) -> None:
    gitlab_fake.configure(**{setting: 2})
    token = gitlab_fake.admin_token
    allowed, throttled = _over_the_limit(lambda: [call(gitlab_fake, "GET", path, token) for _ in range(2)],
                                         lambda: call(gitlab_fake, "GET", path, token))
    assert [r.status_code for r in allowed] == [200, 200]
    assert (throttled.status_code, throttled.json()) == (429, THROTTLED)
    assert throttled.headers["Content-Type"].startswith("application/json")
    assert "Retry-After" not in throttled.headers
    assert throttled.headers["RateLimit-Name"] == "throttle_authenticated_api"  # Rack::Attack still counts
    # Other endpoints are not under this limit.
    assert call(gitlab_fake, "GET", f"/groups/{gitlab_world.group_id}/variables", token).status_code == 200


@pytest.mark.parametrize("path, setting", LIMITS)
def test_listing_limit_counts_per_user(gitlab_fake: GitLabSandbox, gitlab_seed: Seeder, path: str,
                                       setting: str) -> None:
    other = gitlab_seed.token(gitlab_seed.user()["id"])
    gitlab_fake.configure(**{setting: 1})
    token = gitlab_fake.admin_token
    _, throttled = _over_the_limit(lambda: [call(gitlab_fake, "GET", path, token)],
                                   lambda: call(gitlab_fake, "GET", path, token))
    assert throttled.status_code == 429
    assert call(gitlab_fake, "GET", path, other).status_code == 200


def test_anonymous_group_listings_count_per_ip_and_anonymous_project_listings_are_not_under_projects_api(
        gitlab_fake: GitLabSandbox) -> None:
    """lib/api/groups.rb: ``check_rate_limit_by_user_or_ip!(:groups_api)``, so an anonymous caller is counted by
    IP address; lib/api/projects.rb checks ``projects_api`` only for a signed-in user (anonymous callers meet
    ``projects_api_rate_limit_unauthenticated``, another limit)."""
    gitlab_fake.configure(groups_api_limit=1, projects_api_limit=1)
    _, throttled = _over_the_limit(lambda: [call(gitlab_fake, "GET", "/groups")],
                                   lambda: call(gitlab_fake, "GET", "/groups"))
    assert (throttled.status_code, throttled.json()) == (429, THROTTLED)
    # Same IP, signed in: the user's own count, not the IP's.
    assert call(gitlab_fake, "GET", "/groups", gitlab_fake.admin_token).status_code == 200
    assert [call(gitlab_fake, "GET", "/projects").status_code for _ in range(3)] == [200, 200, 200]


def test_listing_limit_python_gitlab_sees_a_429(gitlab_fake: GitLabSandbox) -> None:
    """With no Retry-After, python-gitlab would back off and retry; without obey_rate_limit it raises."""
    gitlab_fake.configure(groups_api_limit=1)
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_token)
    raised = None
    for _ in range(2):  # the second list of the same window is over the limit
        try:
            gl.groups.list(obey_rate_limit=False)
        except python_gitlab.GitlabListError as error:
            raised = error
            break
    if raised is None:  # a window boundary fell between the two lists
        gl.groups.list(obey_rate_limit=False)
        with pytest.raises(python_gitlab.GitlabListError) as again:
            gl.groups.list(obey_rate_limit=False)
        raised = again.value
    assert (raised.response_code, raised.error_message) == (429, THROTTLED["message"])


@pytest.mark.parametrize("version, limited", [("17.0", False), ("17.1", True)])
def test_listing_limit_exists_from_17_1(gitlab_fake: GitLabSandbox, version: str, limited: bool) -> None:
    gitlab_fake.configure(version=version, groups_api_limit=1)
    token = gitlab_fake.admin_token
    statuses = {call(gitlab_fake, "GET", "/groups", token).status_code for _ in range(3)}
    assert (429 in statuses) is limited


def test_listing_limit_zero_is_off_and_is_the_default(gitlab_fake: GitLabSandbox) -> None:
    assert (gitlab_fake.settings()["groups_api_limit"], gitlab_fake.settings()["projects_api_limit"]) == (0, 0)
    statuses = {call(gitlab_fake, "GET", "/groups", gitlab_fake.admin_token).status_code for _ in range(5)}
    assert statuses == {200}


def test_listing_limit_counts_after_parameter_validation(gitlab_fake: GitLabSandbox) -> None:
    """Grape validates parameters before the endpoint runs check_rate_limit: a 400 is not counted."""
    gitlab_fake.configure(groups_api_limit=1)
    token = gitlab_fake.admin_token
    for _ in range(3):
        assert call(gitlab_fake, "GET", "/groups", token, params={"per_page": 0}).status_code == 400
    _, throttled = _over_the_limit(lambda: [call(gitlab_fake, "GET", "/groups", token)],
                                   lambda: call(gitlab_fake, "GET", "/groups", token))
    assert throttled.status_code == 429
