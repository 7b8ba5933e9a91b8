"""GitLab's pagination styles: offset (page/per_page with X-* headers and Link), keyset by id
(``pagination=keyset`` on /projects: ``id_after`` links), cursor keyset (anonymous /groups), and the
offset ceiling of keyset-capable lists.

Which list uses which is the endpoint's business (listing.py); this module only builds pages.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

from rotator.sandbox.gitlab.params import Param, declared
from rotator.sandbox.gitlab.responses import ApiError, bad_request_error

T = TypeVar("T")
MAX_PER_PAGE = 100
# config/initializers/kaminari_active_record_relation_methods_with_limit.rb: MAX_COUNT_LIMIT. Above it,
# and only while the ops feature flag api_kaminari_count_with_limit is on (default_enabled: false, so a
# fresh self-managed instance always counts; GitLab.com turns it on),
# Gitlab::Pagination::OffsetPagination#paginate_with_limit_optimization paginates `without_count`, and
# OffsetHeaderBuilder sends neither X-Total nor X-Total-Pages nor the rel="last" link.
COUNT_LIMIT = 10_000
PAGINATION_PARAMS = (Param("page", int, default=1), Param("per_page", int, default=20, except_values=(0,)))

LinkFor = Callable[[dict[str, str]], str]


@dataclass(frozen=True)
class PageRequest:
    page: int
    per_page: int


def page_request(params: dict[str, Any]) -> PageRequest:
    values = declared(params, PAGINATION_PARAMS)
    if values["page"] < 1:
        raise bad_request_error("page does not have a valid value")
    if values["per_page"] < 1:
        raise bad_request_error("per_page does not have a valid value")
    return PageRequest(values["page"], min(values["per_page"], MAX_PER_PAGE))


def link_builder(base_url: str, query: Sequence[tuple[str, str]]) -> LinkFor:
    """URLs of other pages: the request's own URL with some query parameters replaced."""

    def link_for(overrides: dict[str, str]) -> str:
        kept = [(k, v) for k, v in query if k not in overrides]
        return f"{base_url}?{urlencode([*kept, *overrides.items()])}"

    return link_for


def enforce_offset_ceiling(request: PageRequest, limit: int, type_name: str) -> None:
    """Offset pagination of projects and groups stops at ``limit`` rows; keyset goes further."""
    if limit > 0 and request.page * request.per_page > limit:
        raise ApiError(405, {"error": f"Offset pagination has a maximum allowed offset of {limit} for requests "
                                      f"that return objects of type {type_name}. Remaining records can be "
                                      "retrieved using keyset pagination."})


def offset_page(items: Sequence[T], request: PageRequest, link_for: LinkFor, *,
                count_with_limit: bool) -> tuple[list[T], dict[str, str]]:
    """lib/gitlab/pagination/offset_pagination.rb and offset_header_builder.rb; ``count_with_limit`` is the
    feature flag api_kaminari_count_with_limit."""
    page, per_page = request.page, request.per_page
    total = len(items)
    counted = not count_with_limit or total <= COUNT_LIMIT
    total_pages = max(1, math.ceil(total / per_page))
    chunk = list(items[(page - 1) * per_page: page * per_page])
    if counted:
        next_page = page + 1 if page < total_pages else None
        prev_page = page - 1 if 1 < page <= total_pages else None
    else:
        # Kaminari without count: a next page when rows remain after this one.
        next_page = page + 1 if total > page * per_page else None
        prev_page = page - 1 if page > 1 and chunk else None

    def url(target: int) -> str:
        return link_for({"page": str(target), "per_page": str(per_page)})

    links = []
    if prev_page is not None:
        links.append(f'<{url(prev_page)}>; rel="prev"')
    if next_page is not None:
        links.append(f'<{url(next_page)}>; rel="next"')
    links.append(f'<{url(1)}>; rel="first"')
    if counted:
        links.append(f'<{url(total_pages)}>; rel="last"')
    headers = {
        "X-Per-Page": str(per_page),
        "X-Page": str(page),
        "X-Next-Page": str(next_page) if next_page is not None else "",
        "X-Prev-Page": str(prev_page) if prev_page is not None else "",
        "Link": ", ".join(links),
    }
    if counted:
        headers["X-Total"] = str(total)
        headers["X-Total-Pages"] = str(total_pages)
    return chunk, headers


def keyset_page(ordered: Sequence[T], per_page: int, cursor_of: Callable[[T], dict[str, str]],
                link_for: LinkFor) -> tuple[list[T], dict[str, str]]:
    """Gitlab::Pagination::Keyset::Pager (lib/gitlab/pagination/keyset/pager.rb): ``ordered`` already
    starts after the client's cursor; the page is at most ``per_page`` rows, and *any* non-empty page
    links to the next one from its last row (``apply_headers`` returns only when the page is empty).
    So a keyset walk always ends with a request that answers ``[]`` and no Link header."""
    chunk = list(ordered[:per_page])
    headers: dict[str, str] = {}
    if chunk:
        headers["Link"] = f'<{link_for(cursor_of(chunk[-1]))}>; rel="next"'
    return chunk, headers


def encode_cursor(values: dict[str, Any]) -> str:
    """An opaque ``cursor=`` value, as Gitlab::Pagination::Keyset::Paginator hands out (base64 JSON)."""
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad_request_error("cursor is invalid") from None
    if not isinstance(values, dict):
        raise bad_request_error("cursor is invalid")
    return values


def cursor_page(ordered: Sequence[T], per_page: int, cursor_of: Callable[[T], dict[str, Any]],
                link_for: LinkFor) -> tuple[list[T], dict[str, str]]:
    """Gitlab::Pagination::Keyset::CursorPager (cursor_pager.rb): the Paginator reads one row more than
    the page, and the next link (``cursor=``) is sent only when that row exists (``has_next_page?``)."""
    chunk = list(ordered[:per_page])
    headers: dict[str, str] = {}
    if len(ordered) > per_page and chunk:
        headers["Link"] = f'<{link_for({"cursor": encode_cursor(cursor_of(chunk[-1]))})}>; rel="next"'
    return chunk, headers
