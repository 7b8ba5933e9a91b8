"""A fake Slack Web API: enough of it for a bot that posts notifications.

Methods: ``api.test``, ``auth.test``, ``chat.postMessage`` (with ``thread_ts`` replies), ``chat.update``,
``conversations.open`` and ``users.lookupByEmail``. Arguments are read from the query string, a
form-encoded body or a JSON body, as Slack does; the token from ``Authorization: Bearer`` or ``token=``.

Channels are accepted permissively: a name starting with ``#`` or a Slack id (``C``/``D``/``G``/``U``...);
anything else, or a channel given to :meth:`SlackSandbox.reject_channel`, is ``channel_not_found``.

Faults use the method name as key (``"chat.postMessage"``). Status 429 answers ``ratelimited`` with
``Retry-After``; status 200 with ``error_code`` answers ``{"ok": false, "error": code}`` the way Slack
reports most errors; any other status answers that status.

Control routes (besides the shared ones): ``GET /_sandbox/messages`` lists recorded messages.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from rotator.sandbox.server import (
    CONTROL_PREFIX,
    BackgroundServer,
    FaultPlan,
    LoggedRequest,
    RequestLog,
    control_response,
    json_response,
    sleep_for_latency,
)

API_PREFIX = "/api/"
TEAM_ID = "T0SANDBOX"
BOT_USER_ID = "U0SANDBOXBOT"
BOT_ID = "B0SANDBOXBOT"
_CHANNEL_ID = re.compile(r"^[CDGU][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class SlackMessage:
    """One message the fake accepted: ``channel`` as the caller named it, ``channel_id`` as Slack resolves it."""

    channel: str
    channel_id: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    ts: str
    method: str = "chat.postMessage"


def _stable_id(prefix: str, name: str) -> str:
    return prefix + hashlib.sha256(name.encode()).hexdigest()[:10].upper()


class SlackSandbox:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = "xoxb-sandbox-" + secrets.token_hex(12)
        self.faults = FaultPlan()
        self.log = RequestLog()
        self._lock = threading.Lock()
        self._messages: list[SlackMessage] = []
        self._rejected: set[str] = set()
        self._ts_counter = itertools.count(1)
        self._server = BackgroundServer(self._app, host=host, port=port)

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def api_url(self) -> str:
        """The ``base_url`` for slack_sdk's WebClient (ends in ``/api/``)."""
        return self._server.url + API_PREFIX

    def start(self) -> SlackSandbox:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def messages(self) -> list[dict[str, Any]]:
        """Every message accepted so far, oldest first."""
        with self._lock:
            return [asdict(m) for m in self._messages]

    def reject_channel(self, channel: str) -> None:
        """Answer ``channel_not_found`` for this channel name or id from now on."""
        with self._lock:
            self._rejected.add(channel)

    # --- WSGI -----------------------------------------------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._dispatch(request)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        if request.path.startswith(CONTROL_PREFIX):
            if request.path.rstrip("/") == CONTROL_PREFIX + "messages":
                return json_response(self.messages())
            return control_response(request, self.log, self.faults) or json_response({"error": "no route"}, 404)
        if not request.path.startswith(API_PREFIX):
            return json_response({"ok": False, "error": "unknown_method"}, 404)
        method = request.path[len(API_PREFIX):].strip("/")
        args = _arguments(request)
        status, body, headers = self._answer(method, args, request)
        self.log.record(LoggedRequest(at=time.time(), method=request.method, path=request.path, key=method,
                                      status=status, detail={"error": body.get("error"),
                                                             "channel": args.get("channel")}))
        return json_response(body, status, headers)

    def _answer(self, method: str, args: dict[str, Any],
                request: Request) -> tuple[int, dict[str, Any], dict[str, str] | None]:
        sleep_for_latency(self.faults, method)
        fault = self.faults.take(method)
        if fault is not None and fault.status is not None:
            if fault.status == 429:
                retry_after = str(fault.retry_after if fault.retry_after is not None else 1)
                return 429, {"ok": False, "error": fault.error_code or "ratelimited"}, {"Retry-After": retry_after}
            return fault.status, {"ok": False, "error": fault.error_code or "internal_error"}, None

        if method == "api.test":
            return 200, {"ok": True, "args": {k: v for k, v in args.items() if k != "token"}}, None
        token = _token(request, args)
        if token is None:
            return 200, {"ok": False, "error": "not_authed"}, None
        if not secrets.compare_digest(token, self.token):
            return 200, {"ok": False, "error": "invalid_auth"}, None

        if method == "auth.test":
            return 200, {"ok": True, "url": "https://sandbox.slack.com/", "team": "sandbox", "user": "rotator",
                         "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID}, None
        if method in ("chat.postMessage", "chat.update"):
            return self._post(method, args)
        if method == "conversations.open":
            users = str(args.get("users") or "")
            if not users:
                return 200, {"ok": False, "error": "users_list_not_supplied"}, None
            return 200, {"ok": True, "channel": {"id": _stable_id("D", users)}}, None
        if method == "users.lookupByEmail":
            email = str(args.get("email") or "")
            if "@" not in email:
                return 200, {"ok": False, "error": "users_not_found"}, None
            return 200, {"ok": True, "user": {"id": _stable_id("U", email), "profile": {"email": email}}}, None
        return 200, {"ok": False, "error": "unknown_method"}, None

    def _post(self, method: str, args: dict[str, Any]) -> tuple[int, dict[str, Any], None]:
        channel = str(args.get("channel") or "")
        with self._lock:
            rejected = channel in self._rejected
        if not channel or rejected or not (channel.startswith("#") or _CHANNEL_ID.match(channel)):
            return 200, {"ok": False, "error": "channel_not_found"}, None
        text = args.get("text")
        blocks = _blocks(args.get("blocks"))
        if not text and not blocks:
            return 200, {"ok": False, "error": "no_text"}, None
        channel_id = channel if _CHANNEL_ID.match(channel) else _stable_id("C", channel.lstrip("#"))
        ts = str(args["ts"]) if method == "chat.update" and args.get("ts") else self._next_ts()
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
        message = SlackMessage(channel=channel, channel_id=channel_id, text=str(text) if text else None,
                               blocks=blocks, thread_ts=thread_ts, ts=ts, method=method)
        with self._lock:
            self._messages.append(message)
        body: dict[str, Any] = {"ok": True, "channel": channel_id, "ts": ts,
                                "message": {"type": "message", "text": message.text or "", "user": BOT_USER_ID,
                                            "bot_id": BOT_ID, "ts": ts}}
        if thread_ts:
            body["message"]["thread_ts"] = thread_ts
        return 200, body, None

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts_counter):06d}"


def _arguments(request: Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.args.items())
    if request.mimetype == "application/json":
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            args.update(body)
    else:
        args.update(request.form.items())
    return args


def _token(request: Request, args: dict[str, Any]) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer "):].strip()
    token = args.get("token")
    return str(token) if token else None


def _blocks(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, list):
        return [b for b in value if isinstance(b, dict)]
    return None


def start_slack(host: str = "127.0.0.1", port: int = 0) -> SlackSandbox:
    """Start the fake Slack on ``host:port`` (0: any free port) in a background thread."""
    return SlackSandbox(host, port).start()
