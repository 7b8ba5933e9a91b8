"""slack_sdk adapter: Block Kit messages with a plain-text fallback.

slack_sdk's own retry handlers cover 429 (RateLimitErrorRetryHandler obeys Retry-After), 5xx and
connection resets. What survives them is a SlackError; callers decide that Slack never blocks a rotation
or a containment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from rotator.domain import Secret
from rotator.errors import SlackError

SEVERITY_EMOJI = {"info": ":information_source:", "ok": ":white_check_mark:", "warning": ":warning:",
                  "critical": ":rotating_light:"}
MAX_SECTION_TEXT = 2900  # Block Kit caps a section's text at 3000 characters


def connect(token: Secret, api_url: str = "https://slack.com/api/", *, max_retries: int = 3) -> WebClient:
    client = WebClient(token=token.reveal(), base_url=api_url, timeout=15)
    client.retry_handlers.extend([
        RateLimitErrorRetryHandler(max_retry_count=max_retries),
        ServerErrorRetryHandler(max_retry_count=max_retries),
        ConnectionErrorRetryHandler(max_retry_count=max_retries),
    ])
    return client


def blocks_for(title: str, lines: Sequence[str], severity: str) -> list[dict[str, Any]]:
    emoji = SEVERITY_EMOJI.get(severity, "")
    body = "\n".join(f"• {line}" for line in lines) or " "
    return [
        {"type": "header", "text": {"type": "plain_text", "text": f"{title}"[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body[:MAX_SECTION_TEXT]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{emoji} rotator · severity {severity}"}]},
    ]


class SlackNotifier:
    """ports.Notifier."""

    def __init__(self, client: WebClient) -> None:
        self._client = client

    def post(self, channel: str, title: str, lines: Sequence[str], *, severity: str = "info",
             thread: str | None = None) -> str | None:
        fallback = f"{title}\n" + "\n".join(lines)
        try:
            answer = self._client.chat_postMessage(
                channel=channel, text=fallback, blocks=blocks_for(title, lines, severity), thread_ts=thread,
                unfurl_links=False,
            )
        except SlackApiError as exc:
            error = exc.response.get("error", "unknown_error") if exc.response is not None else "unknown_error"
            raise SlackError(f"Slack refused the message to {channel}: {error}",
                             hint="check the bot token's chat:write scope and that the bot is in the channel") from None
        except SlackClientError as exc:
            raise SlackError(f"cannot reach Slack to post to {channel}: {type(exc).__name__}",
                             hint="check [slack] api_url and the network path to it") from None
        ts = answer.get("ts")
        return str(ts) if ts else None

    def auth_test(self) -> dict[str, Any]:
        try:
            answer = self._client.auth_test()
        except SlackApiError as exc:
            error = exc.response.get("error", "unknown_error") if exc.response is not None else "unknown_error"
            raise SlackError(f"Slack auth.test failed: {error}", hint="check the Slack bot token") from None
        except SlackClientError as exc:
            raise SlackError(f"cannot reach Slack: {type(exc).__name__}",
                             hint="check [slack] api_url and the network path to it") from None
        return {"team": answer.get("team"), "user": answer.get("user"), "bot_id": answer.get("bot_id")}
