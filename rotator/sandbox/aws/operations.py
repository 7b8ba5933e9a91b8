"""What botocore's service models say about a request: the service's wire protocol and, for REST
protocols (S3, Lambda, ...), which operation a method + path + query names.

REST services carry no action name on the wire: ``PUT /bucket/key`` is PutObject, ``PUT /bucket/key`` with an
``x-amz-copy-source`` header is CopyObject, ``GET /bucket?list-type=2`` is ListObjectsV2. The operation is
found the way the service model defines it (``http.method`` + ``http.requestUri``, whose ``?name`` or
``?name=value`` suffix names query parameters the request must carry, and the input members bound to a
``uri``, ``querystring`` or ``header`` location that the operation requires), so CloudTrail records and fault
keys name ``PutObject``, never ``PUT``. Only path-style addressing (``/bucket/key``) is matched; virtual-hosted
buckets (``bucket.host``) are not.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from botocore.exceptions import UnknownServiceError
from botocore.model import OperationModel, ServiceModel
from botocore.session import Session

REST_PROTOCOLS = frozenset({"rest-xml", "rest-json"})


class ServiceModels:
    """botocore service models, loaded once per service (loading one takes tens of milliseconds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: Session | None = None
        self._models: dict[str, ServiceModel | None] = {}
        self._routes: dict[str, tuple[_Route, ...]] = {}

    def get(self, service: str) -> ServiceModel | None:
        with self._lock:
            if service not in self._models:
                if self._session is None:
                    self._session = Session()
                try:
                    self._models[service] = self._session.get_service_model(service)
                except UnknownServiceError:  # such calls get a guessed protocol and no responseElements
                    self._models[service] = None
            return self._models[service]

    def protocol(self, service: str) -> str | None:
        """The model's ``metadata.protocol`` (``query``, ``json``, ``rest-xml``...), None for unknown services."""
        model = self.get(service)
        return str(model.metadata["protocol"]) if model is not None else None

    def rest_operation(self, service: str, method: str, path: str, query: Mapping[str, str],
                       headers: Mapping[str, str]) -> RestOperation | None:
        model = self.get(service)
        if model is None or model.metadata.get("protocol") not in REST_PROTOCOLS:
            return None
        with self._lock:
            routes = self._routes.get(service)
            if routes is None:
                routes = tuple(_route(model.operation_model(name)) for name in model.operation_names)
                self._routes[service] = routes
        return match_route(routes, method, path, query, headers)


@dataclass(frozen=True)
class RestOperation:
    """A REST request resolved to its operation, with the values of its URI labels (``Bucket``, ``Key``)."""

    name: str
    labels: dict[str, str]


@dataclass(frozen=True)
class _Route:
    name: str
    method: str
    segments: tuple[str, ...]  # literal text, "{Label}" or "{Label+}"
    query: tuple[tuple[str, str | None], ...]  # from the requestUri suffix: (name, required value or None)
    required_query: tuple[str, ...]  # required input members in the querystring
    required_headers: tuple[str, ...]  # required input members in a header (lower case)


def _route(operation: OperationModel) -> _Route:
    http = operation.http
    uri = str(http.get("requestUri", "/"))
    path, _, suffix = uri.partition("?")
    query: list[tuple[str, str | None]] = []
    for part in filter(None, suffix.split("&")):
        name, equals, value = part.partition("=")
        query.append((name, value if equals else None))
    required_query: list[str] = []
    required_headers: list[str] = []
    shape = operation.input_shape
    if shape is not None:
        for member in shape.required_members:
            serialization = shape.members[member].serialization
            location, wire_name = serialization.get("location"), serialization.get("name", member)
            if location == "querystring":
                required_query.append(str(wire_name))
            elif location == "header" and not serialization.get("hostLabel"):
                required_headers.append(str(wire_name).lower())
    return _Route(name=operation.name, method=str(http.get("method", "POST")).upper(),
                  segments=tuple(path.strip("/").split("/")) if path.strip("/") else (),
                  query=tuple(query), required_query=tuple(required_query),
                  required_headers=tuple(required_headers))


def _match_path(segments: tuple[str, ...], parts: list[str]) -> dict[str, str] | None:
    labels: dict[str, str] = {}
    for position, segment in enumerate(segments):
        if segment.startswith("{") and segment.endswith("+}"):
            rest = "/".join(parts[position:])
            if not rest:
                return None
            labels[segment[1:-2]] = unquote(rest)
            return labels
        if position >= len(parts):
            return None
        if segment.startswith("{") and segment.endswith("}"):
            if not parts[position]:
                return None
            labels[segment[1:-1]] = unquote(parts[position])
        elif segment != parts[position]:
            return None
    return labels if len(parts) == len(segments) else None


def match_route(routes: tuple[_Route, ...], method: str, path: str, query: Mapping[str, str],
                headers: Mapping[str, str]) -> RestOperation | None:
    """The most specific operation whose method, path template, query suffix and required members all match."""
    parts = path.strip("/").split("/") if path.strip("/") else []
    lowered = {name.lower() for name in headers}
    best: tuple[tuple[int, int, int], RestOperation] | None = None
    for route in routes:
        if route.method != method.upper():
            continue
        labels = _match_path(route.segments, parts)
        if labels is None:
            continue
        if any(name not in query or (value is not None and query[name] != value) for name, value in route.query):
            continue
        if any(name not in query for name in route.required_query):
            continue
        if any(name not in lowered for name in route.required_headers):
            continue
        literal = sum(1 for segment in route.segments if not segment.startswith("{"))
        score = (len(route.query), len(route.required_query) + len(route.required_headers), literal)
        if best is None or score > best[0]:
            best = (score, RestOperation(route.name, labels))
    return best[1] if best is not None else None
