"""Plumbing shared by the emulators: a threaded WSGI server in the background, a request log, and
fault injection that tests (in-process or over HTTP) can drive.

Every emulator answers the same control routes under ``/_sandbox/``:

- ``GET  /_sandbox/requests``  the request log as JSON (method, path, action, status, time); ``DELETE`` clears it
- ``POST /_sandbox/faults``    add a fault (JSON body of :class:`Fault` fields); ``DELETE`` clears them
- ``GET  /_sandbox/health``    200 once serving

Control routes are not recorded in the request log and do not need a token.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

CONTROL_PREFIX = "/_sandbox/"


@dataclass
class Fault:
    """Something to do to requests whose key matches ``match`` (a regular expression, searched).

    The key is emulator-specific: ``"PUT /api/v4/projects/1/variables/X"`` for GitLab, the action name
    (``"iam:CreateAccessKey"``) for AWS, the method (``"chat.postMessage"``) for Slack.
    ``count`` None means every matching request until the faults are cleared.
    """

    match: str = ".*"
    latency: float = 0.0
    status: int | None = None
    error_code: str | None = None
    message: str | None = None
    retry_after: int | None = None
    count: int | None = None

    def matches(self, key: str) -> bool:
        return re.search(self.match, key) is not None


@dataclass
class LoggedRequest:
    at: float
    method: str
    path: str
    key: str
    status: int
    detail: dict[str, Any] = field(default_factory=dict)


class FaultPlan:
    """Thread-safe list of faults; ``take`` consumes one use of the first matching error fault."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def latency_for(self, key: str) -> float:
        with self._lock:
            return sum(f.latency for f in self._faults if f.status is None and f.matches(key))

    def take(self, key: str) -> Fault | None:
        """The first matching fault that returns an error, with one use consumed."""
        with self._lock:
            for fault in self._faults:
                if fault.status is None or not fault.matches(key):
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                return Fault(**asdict(fault))
        return None


class RequestLog:
    def __init__(self) -> None:
        self._entries: list[LoggedRequest] = []
        self._lock = threading.Lock()

    def record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def control_response(request: Request, log: RequestLog, faults: FaultPlan) -> Response | None:
    """Answer a ``/_sandbox/`` control route, or None when the request is not one."""
    if not request.path.startswith(CONTROL_PREFIX):
        return None
    route = request.path[len(CONTROL_PREFIX):].strip("/")
    if route == "health":
        return json_response({"ok": True})
    if route == "requests":
        if request.method == "DELETE":
            log.clear()
            return Response(status=204)
        return json_response([asdict(e) for e in log.entries()])
    if route == "faults":
        if request.method == "DELETE":
            faults.clear()
            return Response(status=204)
        body = request.get_json(force=True, silent=True) or {}
        allowed = set(Fault.__dataclass_fields__)
        unknown = set(body) - allowed
        if unknown:
            return json_response({"error": f"unknown fault fields {sorted(unknown)}"}, 400)
        faults.add(Fault(**body))
        return json_response({"ok": True}, 201)
    return None


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class BackgroundServer:
    """A threaded werkzeug server on 127.0.0.1 running ``app`` in a daemon thread."""

    def __init__(self, app: WsgiApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True,
                                                   request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"sandbox:{self._server.server_port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def start(self) -> BackgroundServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def sleep_for_latency(faults: FaultPlan, key: str) -> None:
    delay = faults.latency_for(key)
    if delay > 0:
        time.sleep(delay)
