"""Request parameters the way GitLab's Grape layer reads them.

Parameters may arrive in the query string, a form body or a JSON body (clients differ: python-gitlab
sends ``filter`` as ``filter[environment_scope]=`` in the query for get/update/delete, and a JSON
object when it is part of the update data). Bracket keys (``filter[x]``, ``scopes[]``) become nested
values as Rack builds them. Coercion and error messages follow Grape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request

from rotator.sandbox.gitlab.responses import bad_request_error

_BRACKET_KEY = re.compile(r"\A([^\[\]]+)\[([^\[\]]*)\]\Z")
_TRUE = frozenset({"true", "t", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "f", "0", "no", "n", "off"})
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def merged_params(request: Request) -> dict[str, Any]:
    """Query parameters, overlaid by the body's (form or JSON), as Rack merges them."""
    params: dict[str, Any] = {}
    _merge_pairs(params, request.args.items(multi=True))
    if request.mimetype in _FORM_TYPES:
        _merge_pairs(params, request.form.items(multi=True))
    elif request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            params.update(body)
    return params


def _merge_pairs(params: dict[str, Any], pairs: Iterable[tuple[str, str]]) -> None:
    for name, value in pairs:
        bracket = _BRACKET_KEY.match(name)
        if bracket is None:
            params[name] = value
            continue
        outer, inner = bracket.groups()
        if inner == "":
            existing = params.get(outer)
            params[outer] = [*existing, value] if isinstance(existing, list) else [value]
        else:
            nested = params.get(outer)
            if not isinstance(nested, dict):
                nested = params[outer] = {}
            nested[inner] = value


@dataclass(frozen=True)
class Param:
    """One declared parameter: ``kind`` is str, bool, int, dict or list (of str)."""

    name: str
    kind: type
    required: bool = False
    values: tuple[Any, ...] | None = None
    except_values: tuple[Any, ...] = ()
    default: Any = None


def declared(params: dict[str, Any], spec: Sequence[Param]) -> dict[str, Any]:
    """The declared parameters that were given (or have a default), coerced.

    Raises 400 ``{"error": "a is missing, b is invalid"}`` listing every problem, as Grape does.
    """
    problems: list[str] = []
    out: dict[str, Any] = {}
    for param in spec:
        raw = params.get(param.name)
        if raw is None:
            if param.required:
                problems.append(f"{param.name} is missing")
            elif param.default is not None:
                out[param.name] = param.default
            continue
        try:
            value = _coerce(raw, param.kind)
        except ValueError:
            problems.append(f"{param.name} is invalid")
            continue
        if param.values is not None and value not in param.values:
            problems.append(f"{param.name} does not have a valid value")
        elif value in param.except_values:
            problems.append(f"{param.name} has a value not allowed")
        else:
            out[param.name] = value
    if problems:
        raise bad_request_error(", ".join(problems))
    return out


def _coerce(raw: Any, kind: type) -> Any:
    if kind is bool:
        return _to_bool(raw)
    if kind is int:
        return _to_int(raw)
    if kind is str:
        if isinstance(raw, bool):
            return "true" if raw else "false"
        if isinstance(raw, str | int | float):
            return str(raw)
        raise ValueError(raw)
    if kind is dict:
        if not isinstance(raw, dict):
            raise ValueError(raw)
        return raw
    if kind is list:
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise ValueError(raw)
        return raw
    raise TypeError(kind)


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(raw)


def _to_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"\s*-?\d+\s*", raw):
        return int(raw)
    raise ValueError(raw)


def environment_scope_filter(params: dict[str, Any]) -> str | None:
    """``filter[environment_scope]`` from wherever it came; blank means no filter (Ci::VariablesFinder)."""
    raw_filter = params.get("filter")
    if not isinstance(raw_filter, dict):
        return None
    scope = raw_filter.get("environment_scope")
    if scope is None or str(scope) == "":
        return None
    return str(scope)


def require_hash_filter(params: dict[str, Any]) -> None:
    """Endpoints that declare ``filter`` as a Hash reject any other shape."""
    if "filter" in params and not isinstance(params["filter"], dict):
        raise bad_request_error("filter is invalid")

