"""AwsSandbox: the running server, its control routes, and the in-process helpers tests use."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.wrappers import Request, Response

from rotator.sandbox.aws.cloudtrail import CloudTrailStore
from rotator.sandbox.aws.front import AwsFront
from rotator.sandbox.aws.keys import KeyRegistry
from rotator.sandbox.aws.lookup import DEFAULT_LOOKUP_RATE, RateLimiter
from rotator.sandbox.server import (
    CONTROL_PREFIX,
    BackgroundServer,
    FaultPlan,
    RequestLog,
    control_response,
    json_response,
)


class AwsSandbox:
    """moto + front, served in a background thread. ``url`` is the ``endpoint_url`` for boto3."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.faults = FaultPlan()
        self.log = RequestLog()
        self.trail = CloudTrailStore()
        self.keys = KeyRegistry()
        self._limiter = RateLimiter(DEFAULT_LOOKUP_RATE)
        moto_app = DomainDispatcherApplication(create_backend_app)
        self._front = AwsFront(moto_app, faults=self.faults, log=self.log, trail=self.trail, keys=self.keys,
                               limiter=self._limiter, control=self._control_app)
        self._server = BackgroundServer(self._front, host=host, port=port)

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> AwsSandbox:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    # --- in-process helpers ---------------------------------------------------------------------

    def key_status(self, access_key_id: str) -> str:
        """``Active`` / ``Inactive`` as IAM has it, ``deleted`` if IAM issued it once, else ``unknown``."""
        return self.keys.status(access_key_id)

    def set_propagation_delay(self, seconds: float | Literal["forever"]) -> None:
        """Keys created from now on are refused (InvalidClientTokenId) for ``seconds``, or never."""
        self.keys.set_propagation_delay(seconds)

    @property
    def lookup_rate(self) -> float:
        """LookupEvents requests per second per account and region (AWS: 2); ``math.inf`` for no limit."""
        return self._limiter.rate

    @lookup_rate.setter
    def lookup_rate(self, rate: float) -> None:
        self._limiter.rate = rate

    def stage_events(self, records: Iterable[dict[str, Any]]) -> int:
        """Add CloudTrail records as if AWS had logged them; see :meth:`CloudTrailStore.stage`."""
        return self.trail.stage(records)

    def events(self, *, region: str | None = None, account_id: str | None = None) -> list[dict[str, Any]]:
        """Every CloudTrail record so far, oldest first."""
        return self.trail.events(region=region, account_id=account_id)

    # --- control routes -------------------------------------------------------------------------

    def _control_app(self, environ: dict[str, Any]) -> Response | None:
        path = str(environ.get("PATH_INFO", ""))
        if not path.startswith(CONTROL_PREFIX):
            return None
        request = Request(environ)
        shared = control_response(request, self.log, self.faults)
        if shared is not None:
            return shared
        route = path[len(CONTROL_PREFIX):].strip("/")
        if route == "cloudtrail/events":
            return self._events_route(request)
        if route == "aws/settings" and request.method == "POST":
            return self._settings_route(request)
        if route.startswith("aws/keys/"):
            return json_response({"status": self.key_status(route.rsplit("/", 1)[-1])})
        return json_response({"error": f"no control route {path}"}, 404)

    def _events_route(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.trail.clear()
            return Response(status=204)
        if request.method == "GET":
            return json_response(self.events(region=request.args.get("region"),
                                             account_id=request.args.get("account")))
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, list):
            return json_response({"error": "expected a JSON list of CloudTrail records"}, 400)
        try:
            staged = self.stage_events(body)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"staged": staged}, 201)

    def _settings_route(self, request: Request) -> Response:
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict) or set(body) - {"propagation_delay", "lookup_rate"}:
            return json_response({"error": "expected {\"propagation_delay\": ..., \"lookup_rate\": ...}"}, 400)
        try:
            if "propagation_delay" in body:
                delay = body["propagation_delay"]
                self.set_propagation_delay("forever" if delay == "forever" else float(delay))
            if "lookup_rate" in body:
                rate = body["lookup_rate"]
                self.lookup_rate = math.inf if rate in (None, "inf", "unlimited") else float(rate)
        except (TypeError, ValueError) as exc:
            return json_response({"error": str(exc)}, 400)
        delay, rate = self.keys.propagation_delay, self.lookup_rate
        return json_response({"propagation_delay": "forever" if math.isinf(delay) else delay,
                              "lookup_rate": "unlimited" if math.isinf(rate) else rate})


def start_aws(host: str = "127.0.0.1", port: int = 0) -> AwsSandbox:
    """Start moto and its front on ``host:port`` (0: any free port) in a background thread."""
    return AwsSandbox(host, port).start()
