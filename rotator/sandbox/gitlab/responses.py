"""GitLab's response shapes: compact JSON bodies and the error answers of its API layer.

Two error styles coexist in GitLab and clients see both: ``{"message": ...}`` from the API's own
helpers (``not_found!``, ``forbidden!``, validation errors) and ``{"error": ...}`` from Grape
(parameter validation, unknown routes) and from the OAuth layer.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response


def api_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # GitLab emits compact JSON; byte-level comparisons in tests rely on it.
    return Response(json.dumps(body, separators=(",", ":")), status=status, headers=headers,
                    content_type="application/json")


def no_content() -> Response:
    return Response(status=204)


class ApiError(Exception):
    """An error answer; raised anywhere in a handler, turned into the response by the app."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None,
                 *, plain_text: str | None = None) -> None:
        super().__init__(f"{status}")
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.plain_text = plain_text

    def response(self) -> Response:
        if self.plain_text is not None:
            return Response(self.plain_text, status=self.status, headers=self.headers, content_type="text/plain")
        return api_json(self.body, self.status, self.headers)


def message_error(status: int, message: Any) -> ApiError:
    return ApiError(status, {"message": message})


def bad_request_error(error: str) -> ApiError:
    return ApiError(400, {"error": error})


def not_found(what: str) -> ApiError:
    return message_error(404, f"404 {what} Not Found")


def unknown_route() -> ApiError:
    return ApiError(404, {"error": "404 Not Found"})


def forbidden() -> ApiError:
    return message_error(403, "403 Forbidden")


def unauthorized() -> ApiError:
    return message_error(401, "401 Unauthorized")


def validation_error(errors: dict[str, list[str]]) -> ApiError:
    return message_error(400, errors)


def conflict(message: str) -> ApiError:
    return message_error(409, message)


def oauth_invalid_token(description: str) -> ApiError:
    header = f'Bearer realm="The API", error="invalid_token", error_description="{description}"'
    return ApiError(401, {"error": "invalid_token", "error_description": description},
                    {"WWW-Authenticate": header})


def oauth_insufficient_scope(required: str) -> ApiError:
    return ApiError(403, {"error": "insufficient_scope",
                          "error_description": "The request requires higher privileges than provided by "
                                               "the access token.",
                          "scope": required})
