"""slack_sdk adapter: Block Kit messages with a plain-text fallback.

slack_sdk's RateLimitErrorRetryHandler obeys 429 + Retry-After. A Slack that does not answer (connection
refused, DNS, timeout, 500/502/503/504) is retried by :class:`BudgetedRetryHandler`, slack_sdk's retry hook
(``slack_sdk/http_retry/handler.py``), within ``[slack] timeout``, each retry logged. What survives is a
SlackUnavailable (may be sent again later) or a SlackError (Slack refused it); callers decide that Slack
never blocks a rotation or a containment.
"""

from __future__ import annotations

import http.client
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from rotator.domain import Secret
from rotator.errors import SlackError, SlackUnavailable
from rotator.ratelimit import RetryBudget

SEVERITY_EMOJI = {"info": ":information_source:", "ok": ":white_check_mark:", "warning": ":warning:",
                  "critical": ":rotating_light:"}
MAX_SECTION_TEXT = 2900  # Block Kit caps a section's text at 3000 characters


TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
# What urllib raises when Slack cannot be reached or stops answering mid-request.
UNREACHABLE_ERRORS = (URLError, ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException)


class BudgetedRetryHandler(RetryHandler):
    """Retries an unreachable or failing Slack within a RetryBudget, logging each retry.

    slack_sdk gives every request a fresh RetryState; the time of the first attempt is kept in its
    ``custom_values`` (an attempt that timed out started ``timeout`` seconds before it failed)."""

    def __init__(self, budget: RetryBudget, timeout: float) -> None:
        super().__init__(max_retry_count=budget.planned)
        self._budget = budget
        self._timeout = timeout

    def _can_retry(self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        if response is not None and response.status_code in TRANSIENT_STATUS:
            reason = f"answered {response.status_code}"
        elif response is None and isinstance(error, UNREACHABLE_ERRORS):
            reason = f"unreachable ({unreachable_reason(error)})"
        else:
            return False
        values = state.custom_values if state.custom_values is not None else {}
        state.custom_values = values
        timed_out = isinstance(error, TimeoutError | socket.timeout) or (
            isinstance(error, URLError) and isinstance(error.reason, TimeoutError | socket.timeout))
        started = values.setdefault("started", time.monotonic() - (self._timeout if timed_out else 0.0))
        wait = self._budget.next_wait(state.current_attempt, time.monotonic() - started)
        values["wait"], values["reason"] = wait, reason
        return wait is not None

    def prepare_for_next_attempt(self, *, state: RetryState, request: HttpRequest,
                                 response: HttpResponse | None = None, error: Exception | None = None) -> None:
        values = state.custom_values or {}
        wait = float(values.get("wait") or self._budget.first_wait)
        state.next_attempt_requested = True
        self._budget.announce(state.current_attempt + 1, wait, str(values.get("reason", "unreachable")),
                              method=request.url.rsplit("/", 1)[-1])
        time.sleep(wait)
        state.increment_current_attempt()


def unreachable_reason(error: BaseException) -> str:
    reason = error.reason if isinstance(error, URLError) else error
    if isinstance(reason, socket.gaierror):
        return "its host name does not resolve (DNS)"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "no answer within [slack] timeout"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return type(reason).__name__ if isinstance(reason, BaseException) else str(reason)


def connect(token: Secret, api_url: str = "https://slack.com/api/", *, timeout: float = 15.0,
            max_rate_limit_retries: int = 3) -> WebClient:
    """A WebClient that obeys 429 + Retry-After and retries an unreachable Slack within ``timeout``."""
    # slack_sdk logs every failed attempt at ERROR and every retry at INFO; the budget's one line per retry
    # and the SlackUnavailable at the end say the same once, so its own lines show only when debugging.
    sdk_log = logging.getLogger("rotator.slack_sdk")
    sdk_log.setLevel(logging.DEBUG if logging.getLogger().getEffectiveLevel() <= logging.DEBUG else logging.CRITICAL)
    return WebClient(token=token.reveal(), base_url=api_url, timeout=int(max(1, round(timeout))), logger=sdk_log,
                     retry_handlers=[
        RateLimitErrorRetryHandler(max_retry_count=max_rate_limit_retries),
        BudgetedRetryHandler(RetryBudget("Slack", timeout), timeout),
    ])


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
            raise _refused(exc, f"Slack refused the message to {channel}",
                           "check the bot token's chat:write scope and that the bot is in the channel") from None
        except UNREACHABLE_ERRORS as exc:
            raise _unreachable(exc, f"post to {channel}") from None
        except SlackClientError as exc:
            raise SlackError(f"cannot post to {channel}: {type(exc).__name__}: {exc}",
                             hint="check [slack] api_url") from None
        ts = answer.get("ts")
        return str(ts) if ts else None

    def auth_test(self) -> dict[str, Any]:
        try:
            answer = self._client.auth_test()
        except SlackApiError as exc:
            raise _refused(exc, "Slack auth.test failed", "check the Slack bot token") from None
        except UNREACHABLE_ERRORS as exc:
            raise _unreachable(exc, "call auth.test") from None
        except SlackClientError as exc:
            raise SlackError(f"cannot call auth.test: {type(exc).__name__}: {exc}",
                             hint="check [slack] api_url") from None
        return {"team": answer.get("team"), "user": answer.get("user"), "bot_id": answer.get("bot_id")}


def _refused(exc: SlackApiError, what: str, hint: str) -> SlackError:
    response = exc.response
    status = getattr(response, "status_code", None) if response is not None else None
    error = response.get("error", "unknown_error") if response is not None else "unknown_error"
    if isinstance(status, int) and (status in TRANSIENT_STATUS or status == 429):
        return SlackUnavailable(f"{what}: Slack answered {status} ({error})",
                                hint="Slack is failing: check status.slack.com, then try again")
    return SlackError(f"{what}: {error}", hint=hint)


def _unreachable(exc: BaseException, what: str) -> SlackUnavailable:
    return SlackUnavailable(f"cannot reach Slack to {what}: {unreachable_reason(exc)}",
                            hint="check that Slack (or [slack] api_url) is reachable from here; rotator retried "
                                 "for [slack] timeout")
