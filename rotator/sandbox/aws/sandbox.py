"""AwsSandbox: the running server, its control routes, and the in-process helpers tests use."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any, Literal

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.wrappers import Request, Response

from rotator.sandbox.aws import health
from rotator.sandbox.aws.cloudtrail import CloudTrailStore, parse_time
from rotator.sandbox.aws.front import AwsFront
from rotator.sandbox.aws.health import DeliveredEvent
from rotator.sandbox.aws.identities import MintedSession
from rotator.sandbox.aws.keys import KeyRegistry, default_account
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

    @property
    def cloudtrail_delay(self) -> float:
        """Seconds before a recorded call is visible to LookupEvents (0 by default; AWS: minutes)."""
        return self.trail.delivery_delay

    @cloudtrail_delay.setter
    def cloudtrail_delay(self, seconds: float) -> None:
        self.trail.delivery_delay = seconds

    def deliver_pending(self) -> int:
        """Make every CloudTrail record still inside its delivery delay visible now; returns how many."""
        return self.trail.deliver_pending()

    def stage_events(self, records: Iterable[dict[str, Any]], *,
                     deliver_at: float | dt.datetime | None = None) -> int:
        """Add CloudTrail records as if AWS had logged them; see :meth:`CloudTrailStore.stage`.

        ``deliver_at`` (epoch seconds or an aware datetime) keeps them out of LookupEvents until then: a record
        whose ``eventTime`` is before an incident but that CloudTrail delivers after it.
        """
        when = deliver_at.timestamp() if isinstance(deliver_at, dt.datetime) else deliver_at
        return self.trail.stage(records, deliver_at=when)

    def events(self, *, region: str | None = None, account_id: str | None = None,
               delivered_only: bool = False) -> list[dict[str, Any]]:
        """Every CloudTrail record so far, oldest first: data events and undelivered records included."""
        return self.trail.events(region=region, account_id=account_id, delivered_only=delivered_only)

    def session(self, access_key_id: str) -> MintedSession | None:
        """The session a temporary key belongs to, if it was minted through the front."""
        return self.keys.session(access_key_id)

    def sessions(self, *, minted_by: str | None = None) -> list[MintedSession]:
        """Sessions minted through the front (only those minted by ``minted_by``), oldest first."""
        return [s for s in self.keys.sessions() if minted_by is None or s.minted_by == minted_by]

    # --- what AWS does when a key is exposed -----------------------------------------------------

    @property
    def health_event_url(self) -> str:
        """``POST`` here ``{"queue_url": ..., "access_key_ids": [...]}`` to inject a Health event."""
        return f"{self.url}/_sandbox/health-event"

    @property
    def quarantine_url(self) -> str:
        """``POST`` here ``{"user_name": ..., "account_id": ..., "version": "V3"}`` to quarantine a user."""
        return f"{self.url}/_sandbox/aws/quarantine"

    def inject_health_event(self, queue_url: str, access_key_ids: str | list[str], *,
                            account_id: str | None = None, at: dt.datetime | None = None) -> DeliveredEvent:
        """Deliver an ``AWS_RISK_CREDENTIALS_EXPOSED`` Health event into an SQS queue as an EventBridge rule
        does. ``account_id`` defaults to the account that owns the first key (else the queue's account)."""
        keys = [access_key_ids] if isinstance(access_key_ids, str) else list(access_key_ids)
        if not keys:
            raise ValueError("a Health event names at least one access key id")
        account = account_id or self.keys.owner_account(keys[0]) or _queue_account(queue_url)
        return health.deliver(queue_url, health.exposed_key_event(keys, account, at))

    def quarantine_user(self, user_name: str, *, account_id: str | None = None, version: str = "V3") -> str:
        """Attach AWSCompromisedKeyQuarantineV3 (or V2) to a user as AWS does; returns the policy ARN."""
        return health.attach_quarantine_policy(account_id or default_account(), user_name, version)

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
        if route == "cloudtrail/deliver" and request.method == "POST":
            return json_response({"delivered": self.deliver_pending()})
        if route == "aws/settings" and request.method == "POST":
            return self._settings_route(request)
        if route.startswith("aws/keys/"):
            return json_response({"status": self.key_status(route.rsplit("/", 1)[-1])})
        if route == "aws/sessions":
            return json_response([_session_json(s) for s in self.sessions(minted_by=request.args.get("minted_by"))])
        if route == "health-event" and request.method == "POST":
            return self._health_event_route(request)
        if route == "aws/quarantine" and request.method == "POST":
            return self._quarantine_route(request)
        return json_response({"error": f"no control route {path}"}, 404)

    def _health_event_route(self, request: Request) -> Response:
        body = request.get_json(force=True, silent=True)
        keys = body.get("access_key_ids") or body.get("access_key_id") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(body.get("queue_url"), str) or not keys:
            return json_response({"error": "expected {\"queue_url\": ..., \"access_key_ids\": [\"AKIA...\"]}"}, 400)
        try:
            at = dt.datetime.fromtimestamp(parse_time(body["time"]), dt.UTC) if body.get("time") else None
            delivered = self.inject_health_event(body["queue_url"], keys, account_id=body.get("account_id"), at=at)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"message_id": delivered.message_id, "event": delivered.event}, 201)

    def _quarantine_route(self, request: Request) -> Response:
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("user_name"), str):
            return json_response({"error": "expected {\"user_name\": ..., \"account_id\": ..., \"version\": \"V2\"}"},
                                 400)
        try:
            arn = self.quarantine_user(body["user_name"], account_id=body.get("account_id"),
                                       version=str(body.get("version", "V3")))
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"policy_arn": arn}, 201)

    def _events_route(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.trail.clear()
            return Response(status=204)
        if request.method == "GET":
            return json_response(self.events(region=request.args.get("region"),
                                             account_id=request.args.get("account")))
        body = request.get_json(force=True, silent=True)
        deliver_at = None
        if isinstance(body, dict):  # {"records": [...], "deliver_at": <epoch seconds or ISO 8601>}
            deliver_at, body = body.get("deliver_at"), body.get("records")
        if not isinstance(body, list):
            return json_response({"error": "expected a JSON list of CloudTrail records, or "
                                           "{\"records\": [...], \"deliver_at\": ...}"}, 400)
        try:
            staged = self.stage_events(body, deliver_at=None if deliver_at is None else parse_time(deliver_at))
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"staged": staged}, 201)

    def _settings_route(self, request: Request) -> Response:
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict) or set(body) - {"propagation_delay", "lookup_rate", "cloudtrail_delay"}:
            return json_response({"error": "expected {\"propagation_delay\": ..., \"lookup_rate\": ..., "
                                           "\"cloudtrail_delay\": ...}"}, 400)
        try:
            if "propagation_delay" in body:
                delay = body["propagation_delay"]
                self.set_propagation_delay("forever" if delay == "forever" else float(delay))
            if "lookup_rate" in body:
                rate = body["lookup_rate"]
                self.lookup_rate = math.inf if rate in (None, "inf", "unlimited") else float(rate)
            if "cloudtrail_delay" in body:
                self.cloudtrail_delay = float(body["cloudtrail_delay"])
        except (TypeError, ValueError) as exc:
            return json_response({"error": str(exc)}, 400)
        delay, rate = self.keys.propagation_delay, self.lookup_rate
        return json_response({"propagation_delay": "forever" if math.isinf(delay) else delay,
                              "lookup_rate": "unlimited" if math.isinf(rate) else rate,
                              "cloudtrail_delay": self.cloudtrail_delay})


def _queue_account(queue_url: str) -> str:
    parts = [p for p in queue_url.split("?", 1)[0].split("/") if p]
    return parts[-2] if len(parts) >= 2 else default_account()


def _session_json(session: MintedSession) -> dict[str, Any]:
    """A session without its token: what minted it, whose policies govern it, when."""
    principal = session.principal
    return {"access_key_id": session.access_key_id, "action": session.action, "account_id": session.account_id,
            "principal": None if principal is None else {"kind": principal.kind, "name": principal.name,
                                                         "arn": principal.arn, "account_id": principal.account_id},
            "arn": session.identity.arn, "issued_at": session.issued_at.isoformat(),
            "minted_by": session.minted_by, "session_name": session.session_name}


def start_aws(host: str = "127.0.0.1", port: int = 0) -> AwsSandbox:
    """Start moto and its front on ``host:port`` (0: any free port) in a background thread."""
    return AwsSandbox(host, port).start()
