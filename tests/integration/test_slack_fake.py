"""The Slack fake, driven with slack_sdk's WebClient over real HTTP."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from rotator.sandbox.server import Fault
from rotator.sandbox.slack import SlackSandbox, start_slack


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackSandbox]:
    sandbox = start_slack()
    yield sandbox
    sandbox.stop()


@pytest.fixture(autouse=True)
def _no_faults(slack: SlackSandbox) -> Iterator[None]:
    yield
    slack.faults.clear()


def web(slack: SlackSandbox, token: str | None = None) -> WebClient:
    return WebClient(token=token or slack.token, base_url=slack.api_url)


def test_auth_test_and_bad_tokens(slack: SlackSandbox) -> None:
    assert slack.api_url.endswith("/api/")
    assert slack.token.startswith("xoxb-")
    assert web(slack).auth_test()["user_id"]
    with pytest.raises(SlackApiError) as refused:
        web(slack, "xoxb-not-the-token").auth_test()
    assert refused.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as missing:
        WebClient(base_url=slack.api_url).chat_postMessage(channel="#x", text="hi")
    assert missing.value.response["error"] == "not_authed"


def test_post_message_and_thread_reply_are_recorded(slack: SlackSandbox) -> None:
    client = web(slack)
    first = client.chat_postMessage(channel="#security-incidents", text="key AKIA... contained",
                                    blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*contained*"}}])
    assert first["ok"] is True
    assert first["channel"].startswith("C")
    reply = client.chat_postMessage(channel=first["channel"], text="audit done", thread_ts=first["ts"])
    assert reply["ts"] != first["ts"]
    recorded = [m for m in slack.messages() if m["ts"] in (first["ts"], reply["ts"])]
    assert [m["text"] for m in recorded] == ["key AKIA... contained", "audit done"]
    assert recorded[0]["channel"] == "#security-incidents"
    assert recorded[0]["blocks"][0]["type"] == "section"
    assert recorded[1]["thread_ts"] == first["ts"]
    assert recorded[1]["channel_id"] == first["channel"]


def test_form_encoded_posts_and_direct_messages(slack: SlackSandbox) -> None:
    form = urllib.parse.urlencode({"token": slack.token, "channel": "#team-payments", "text": "form body",
                                   "blocks": json.dumps([{"type": "divider"}])}).encode()
    with urllib.request.urlopen(slack.api_url + "chat.postMessage", data=form) as response:
        answer = json.loads(response.read())
    assert answer["ok"] is True
    assert slack.messages()[-1]["blocks"] == [{"type": "divider"}]
    dm = web(slack).conversations_open(users="U123ABC")
    assert dm["channel"]["id"].startswith("D")
    assert web(slack).chat_postMessage(channel=dm["channel"]["id"], text="your key rotated")["ok"]


def test_unknown_channels_and_empty_messages_are_refused(slack: SlackSandbox) -> None:
    slack.reject_channel("#archived")
    for channel in ("#archived", "not a channel"):
        with pytest.raises(SlackApiError) as refused:
            web(slack).chat_postMessage(channel=channel, text="hello")
        assert refused.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as empty, pytest.warns(UserWarning):  # slack_sdk warns too
        web(slack).chat_postMessage(channel="#ok")
    assert empty.value.response["error"] == "no_text"
    assert not any(m["channel"] in ("#archived", "#ok") for m in slack.messages())


def test_rate_limit_is_survived_by_the_retry_handler(slack: SlackSandbox) -> None:
    slack.faults.add(Fault(match=r"^chat\.postMessage$", status=429, retry_after=1, count=1))
    client = web(slack)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
    assert client.chat_postMessage(channel="#security-incidents", text="after the wait")["ok"]
    statuses = [e.status for e in slack.log.entries() if e.key == "chat.postMessage"][-2:]
    assert statuses == [429, 200]

    slack.faults.add(Fault(match=r"^chat\.postMessage$", status=429, retry_after=7, count=1))
    with pytest.raises(SlackApiError) as limited:
        web(slack).chat_postMessage(channel="#x", text="no retry handler")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["retry-after"] == "7"


def test_error_faults_in_slack_style(slack: SlackSandbox) -> None:
    slack.faults.add(Fault(match="chat.postMessage", status=200, error_code="is_archived", count=1))
    with pytest.raises(SlackApiError) as archived:
        web(slack).chat_postMessage(channel="#x", text="hi")
    assert archived.value.response["error"] == "is_archived"


def test_token_never_in_the_request_log(slack: SlackSandbox) -> None:
    web(slack).chat_postMessage(channel="#x", text="canary check")
    with urllib.request.urlopen(slack.url + "/_sandbox/requests") as response:
        log = response.read().decode()
    with urllib.request.urlopen(slack.url + "/_sandbox/messages") as response:
        messages = response.read().decode()
    assert "canary check" in messages
    assert "chat.postMessage" in log
    assert slack.token not in log
    assert slack.token not in messages
