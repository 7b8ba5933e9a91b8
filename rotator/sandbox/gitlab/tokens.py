"""A personal access token asking about itself: ``GET /personal_access_tokens/self`` (since 15.5)
and ``DELETE /personal_access_tokens/self`` (any token since 15.4).

lib/api/personal_access_tokens/self_information.rb: ``allow_access_with_scope(all_available_scopes)``
- any token may call these, whatever its scopes (a ``read_user`` or ``admin_mode``-only token too) -
and the answer is the token's record without its secret (Entities::PersonalAccessToken: id, name,
revoked, created_at, description, scopes, user_id, last_used_at, active, expires_at). This is how a
client learns its token's scopes, e.g. whether it carries ``admin_mode``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from werkzeug.wrappers import Response

from rotator.sandbox.gitlab.entities import token_entity
from rotator.sandbox.gitlab.model import PersonalAccessToken
from rotator.sandbox.gitlab.responses import api_json, no_content, unauthorized
from rotator.sandbox.gitlab.routing import Call, Router


def _own_token(call: Call) -> PersonalAccessToken:
    call.current_user()
    if call.identity.token is None:
        raise unauthorized()
    return call.identity.token


def show_self(call: Call) -> Response:
    token = _own_token(call)
    return api_json(token_entity(token, reveal=False, today=datetime.now(UTC).date()))


def revoke_self(call: Call) -> Response:
    call.state.revoke_token(_own_token(call).id)
    return no_content()


def register(router: Router) -> None:
    # Before admin.py's DELETE /personal_access_tokens/:token_id, so that "self" is not taken for an id.
    router.add("GET", "/personal_access_tokens/self", show_self, any_scope=True)
    router.add("DELETE", "/personal_access_tokens/self", revoke_self, any_scope=True)
