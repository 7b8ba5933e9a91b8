"""Authentication as GitLab's API guard does it: personal access tokens from a header or the query.

Order of checks on a presented token (AccessTokenValidationService): unknown → 401
``{"message":"401 Unauthorized"}``; expired → 401 invalid_token; revoked → 401 invalid_token;
then the scope: ``api`` allows everything, ``read_api`` only GET/HEAD, else 403 insufficient_scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from werkzeug.wrappers import Request

from rotator.sandbox.gitlab.admin_mode import has_admin_powers
from rotator.sandbox.gitlab.model import PersonalAccessToken, User
from rotator.sandbox.gitlab.responses import ApiError, oauth_insufficient_scope, oauth_invalid_token, unauthorized
from rotator.sandbox.gitlab.state import GitLabState

EXPIRED_DESCRIPTION = "Token is expired. You can either do re-authorization or token refresh."
REVOKED_DESCRIPTION = "Token was revoked. You have to re-authorize from the user."
# The scopes GitLab registers for its API endpoints, named in the insufficient_scope answer.
API_SCOPES = "api read_api"
READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Identity:
    """Who is calling: nobody (no token), a user, or a presented token that failed (``failure``).

    ``admin`` is whether this request acts with administrator powers (see admin_mode.py); the
    account's own flag is ``user.is_admin``.
    """

    user: User | None = None
    token: PersonalAccessToken | None = None
    failure: ApiError | None = None
    admin: bool = False


def presented_token(request: Request) -> str | None:
    header = request.headers.get("PRIVATE-TOKEN")
    if header:
        return header.strip()
    authorization = request.headers.get("Authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    for name in ("private_token", "access_token"):
        value = request.args.get(name)
        if value:
            return value
    return None


def identify(state: GitLabState, request: Request, today: date) -> Identity:
    token = presented_token(request)
    if token is None:
        return Identity()
    record = state.token_record(token)
    user = state.users.get(record.user_id) if record is not None else None
    if record is None or user is None:
        return Identity(failure=unauthorized())
    if record.is_expired(today):
        return Identity(failure=oauth_invalid_token(EXPIRED_DESCRIPTION))
    if record.revoked:
        return Identity(failure=oauth_invalid_token(REVOKED_DESCRIPTION))
    admin = has_admin_powers(user, record.scopes, admin_mode_enabled=state.admin_mode)
    return Identity(user=user, token=record, admin=admin)


def check_scope(token: PersonalAccessToken, method: str, *, read_user_allowed: bool = False,
                any_scope: bool = False) -> None:
    scopes = set(token.scopes)
    if "api" in scopes or any_scope:
        return
    if method in READ_METHODS and ("read_api" in scopes or (read_user_allowed and "read_user" in scopes)):
        return
    raise oauth_insufficient_scope(API_SCOPES)
