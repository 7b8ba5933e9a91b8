"""Reference §6 (rate limiting) and the emulator's fault injection and request log."""

from __future__ import annotations

import concurrent.futures
import json
import time
from email.utils import parsedate_to_datetime

import gitlab as python_gitlab
import pytest
import requests

from rotator.sandbox.gitlab import GitLabSandbox
from rotator.sandbox.server import Fault
from tests.integration.gitlab_support import OK_SECRET, Seeder, World, call

pytest_plugins = ["tests.integration.gitlab_fixtures"]

RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Name", "RateLimit-Observed", "RateLimit-Remaining", "RateLimit-Reset")


def test_s6_every_response_has_ratelimit_headers(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    responses = [
        call(gitlab_fake, "GET", f"/projects/{gitlab_world.project_id}/variables", gitlab_fake.admin_token),
        call(gitlab_fake, "POST", f"/projects/{gitlab_world.project_id}/variables", gitlab_fake.admin_token, json={}),
        call(gitlab_fake, "GET", "/projects/0/variables"),
        call(gitlab_fake, "GET", "/no/such/route", gitlab_fake.admin_token),
    ]
    for response in responses:
        assert all(name in response.headers for name in RATE_HEADERS), response.status_code
    first, second = responses[0].headers, responses[1].headers
    assert first["RateLimit-Name"] == "throttle_authenticated_api"
    assert first["RateLimit-Limit"] == "2000"
    assert int(second["RateLimit-Observed"]) == int(first["RateLimit-Observed"]) + 1
    assert int(first["RateLimit-Remaining"]) == 2000 - int(first["RateLimit-Observed"])
    assert int(first["RateLimit-Reset"]) > time.time() - 1


def test_s6_exceeding_the_limit_is_429_retry_later(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    gitlab_fake.state.rate_limit_per_period = 3
    path = f"/projects/{gitlab_world.project_id}/variables"
    statuses = [call(gitlab_fake, "GET", path, gitlab_fake.admin_token).status_code for _ in range(3)]
    throttled = call(gitlab_fake, "GET", path, gitlab_fake.admin_token)
    if throttled.status_code == 200:  # the minute window turned over between requests: count afresh
        statuses = [call(gitlab_fake, "GET", path, gitlab_fake.admin_token).status_code for _ in range(2)]
        throttled = call(gitlab_fake, "GET", path, gitlab_fake.admin_token)
    assert set(statuses) == {200}
    assert throttled.status_code == 429
    assert throttled.text == "Retry later\n"
    assert throttled.headers["Content-Type"].startswith("text/plain")
    retry_after = int(throttled.headers["Retry-After"])
    assert 0 < retry_after <= 60
    reset_time = parsedate_to_datetime(throttled.headers["RateLimit-ResetTime"]).timestamp()
    assert reset_time == int(throttled.headers["RateLimit-Reset"])
    assert throttled.headers["RateLimit-Remaining"] == "0"


def test_s6_limit_is_per_token(gitlab_fake: GitLabSandbox, gitlab_world: World, gitlab_seed: Seeder) -> None:
    other = gitlab_seed.token(gitlab_seed.user(admin=True)["id"])
    gitlab_fake.state.rate_limit_per_period = 1
    gitlab_fake.state.rate_limit_period_seconds = 3600.0
    path = f"/projects/{gitlab_world.project_id}/variables"
    call(gitlab_fake, "GET", path, gitlab_fake.admin_token)
    assert call(gitlab_fake, "GET", path, gitlab_fake.admin_token).status_code == 429
    assert call(gitlab_fake, "GET", path, other).status_code == 200


def test_s6_python_gitlab_waits_out_real_throttling(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    gitlab_fake.state.rate_limit_per_period = 2
    gitlab_fake.state.rate_limit_period_seconds = 1.0
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_token)
    project = gl.projects.get(gitlab_world.project_id)
    for index in range(4):
        project.variables.create({"key": f"THROTTLED_{index}", "value": "v"})
    assert len(gitlab_fake.state.variables("project", gitlab_world.project_path)) == 4
    assert any(e.status == 429 for e in gitlab_fake.log.entries())


def test_s6_fault_429_with_retry_after_is_retried_by_python_gitlab(gitlab_fake: GitLabSandbox,
                                                                   gitlab_world: World) -> None:
    gitlab_fake.faults.add(Fault(match=r"^POST /api/v4/projects/\d+/variables$", status=429, retry_after=0,
                                 count=2))
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_token)
    gl.projects.get(gitlab_world.project_id, lazy=True).variables.create({"key": "AFTER_429", "value": "v"})
    posts = [e.status for e in gitlab_fake.log.entries() if e.method == "POST"]
    assert posts == [429, 429, 201]


def test_s6_fault_429_answer_looks_like_gitlabs(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    gitlab_fake.faults.add(Fault(match="variables", status=429, retry_after=7, count=1))
    response = call(gitlab_fake, "GET", f"/projects/{gitlab_world.project_id}/variables", gitlab_fake.admin_token)
    assert (response.status_code, response.text, response.headers["Retry-After"]) == (429, "Retry later\n", "7")
    assert call(gitlab_fake, "GET", f"/projects/{gitlab_world.project_id}/variables",
                gitlab_fake.admin_token).status_code == 200


def test_s6_fault_status_for_next_n_requests_then_recovers(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    gitlab_fake.faults.add(Fault(match="^GET /api/v4/projects/", status=503, message="down for a bit", count=2))
    path = f"/projects/{gitlab_world.project_id}/variables"
    answers = [call(gitlab_fake, "GET", path, gitlab_fake.admin_token) for _ in range(3)]
    assert [(r.status_code, r.json() if r.status_code == 503 else None) for r in answers] == [
        (503, {"message": "down for a bit"}), (503, {"message": "down for a bit"}), (200, None)]


def test_s6_python_gitlab_retries_transient_faults(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    """python-gitlab sleeps until ``RateLimit-Reset`` before retrying a 5xx, and GitLab sends that header on
    every answer: against a 60 s window one 502 costs up to a minute. A 1 s window keeps the test short."""
    gitlab_fake.state.rate_limit_period_seconds = 1.0
    gitlab_fake.faults.add(Fault(match="PUT ", status=502, count=1))
    gitlab_fake.state.set_variable("project", gitlab_world.project_path, "RETRIED", "old")
    gl = python_gitlab.Gitlab(gitlab_fake.url, private_token=gitlab_fake.admin_token, retry_transient_errors=True)
    gl.projects.get(gitlab_world.project_id, lazy=True).variables.update("RETRIED", {"value": "new"})
    stored = gitlab_fake.state.get_variable("project", gitlab_world.project_path, "RETRIED")
    assert stored is not None and stored.value == "new"


def test_s6_faults_over_http_control_route(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    added = requests.post(f"{gitlab_fake.url}/_sandbox/faults", json={"match": "admin/ci", "status": 500,
                                                                       "count": 1}, timeout=5)
    assert added.status_code == 201
    assert call(gitlab_fake, "GET", "/admin/ci/variables", gitlab_fake.admin_token).status_code == 500
    assert call(gitlab_fake, "GET", "/admin/ci/variables", gitlab_fake.admin_token).status_code == 200


def test_s6_injected_latency_delays_only_matching_requests(gitlab_fake: GitLabSandbox, gitlab_world: World,
                                                           gitlab_seed: Seeder) -> None:
    """Latency is slept before any lock: a slow project never holds up another one."""
    other = gitlab_seed.project(gitlab_world.group_id)
    gitlab_fake.faults.add(Fault(match=f"/projects/{gitlab_world.project_id}/variables", latency=2.5))
    with concurrent.futures.ThreadPoolExecutor(max_workers=9) as pool:
        slow = [pool.submit(call, gitlab_fake, "GET", f"/projects/{gitlab_world.project_id}/variables",
                            gitlab_fake.admin_token) for _ in range(8)]
        time.sleep(0.2)
        fast = pool.submit(call, gitlab_fake, "GET", f"/projects/{other['id']}/variables", gitlab_fake.admin_token)
        assert fast.result().status_code == 200
        assert not any(f.done() for f in slow)
        assert all(f.result().status_code == 200 for f in slow)


def test_s6_request_log_has_keys_and_statuses_but_never_values(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    base = f"/projects/{gitlab_world.project_id}/variables"
    call(gitlab_fake, "POST", base, gitlab_fake.admin_token, json={"key": "CANARY", "value": OK_SECRET})
    call(gitlab_fake, "PUT", f"{base}/CANARY", gitlab_fake.admin_token, data={"value": OK_SECRET[::-1]})
    call(gitlab_fake, "GET", f"{base}/CANARY?private_token={gitlab_fake.admin_token}")
    entries = [(e.key, e.status) for e in gitlab_fake.log.entries()]
    assert entries == [(f"POST /api/v4{base}", 201), (f"PUT /api/v4{base}/CANARY", 200),
                       (f"GET /api/v4{base}/CANARY", 200)]
    over_http = requests.get(f"{gitlab_fake.url}/_sandbox/requests", timeout=5).text
    dumped = json.dumps([vars(e) for e in gitlab_fake.log.entries()]) + over_http
    for secret in (OK_SECRET, OK_SECRET[::-1], gitlab_fake.admin_token):
        assert secret not in dumped


@pytest.mark.parametrize("path", ["/_sandbox/health", "/_sandbox/requests"])
def test_s6_control_routes_need_no_token_and_are_not_logged(gitlab_fake: GitLabSandbox, path: str) -> None:
    assert requests.get(f"{gitlab_fake.url}{path}", timeout=5).status_code == 200
    assert gitlab_fake.log.entries() == []


def test_s6_settings_control_route_changes_the_limit(gitlab_fake: GitLabSandbox, gitlab_world: World) -> None:
    url = f"{gitlab_fake.url}/_sandbox/settings"
    changed = requests.put(url, json={"rate_limit_per_period": 1, "rate_limit_period_seconds": 3600}, timeout=5)
    assert changed.status_code == 200
    assert (changed.json()["rate_limit_per_period"], changed.json()["tier"]) == (1, "premium")
    path = f"/projects/{gitlab_world.project_id}/variables"
    assert call(gitlab_fake, "GET", path, gitlab_fake.admin_token).status_code == 200
    assert call(gitlab_fake, "GET", path, gitlab_fake.admin_token).status_code == 429
    refused = requests.put(url, json={"rate_limit_per_period": "lots"}, timeout=5)
    assert refused.status_code == 400
    assert requests.put(url, json={"unknown_knob": 1}, timeout=5).status_code == 400
