"""Admin mode: when the instance enables it, being an administrator is not enough to act as one.

lib/api/api_guard.rb (``find_current_user!`` → ``bypass_session_for_admin_mode?``): with the
``admin_mode`` application setting on, an API request gets admin mode only when its token carries
the ``admin_mode`` scope (``valid_access_token?(scopes: [:admin_mode])``); sessions do not exist for
API calls. BasePolicy's ``admin`` condition (and so ``can_admin_all_resources?``,
``can_read_all_resources?``) is ``CurrentUserMode#admin_mode?`` when the setting is on, and the
account's admin flag when it is off.

What keeps reading the account flag regardless: ``GET /user`` (lib/api/users.rb presents
``Entities::UserWithAdmin`` when ``current_user.admin?``, so ``is_admin`` stays true).
"""

from __future__ import annotations

from collections.abc import Iterable

from rotator.sandbox.gitlab.model import User

ADMIN_MODE_SCOPE = "admin_mode"


def has_admin_powers(user: User, token_scopes: Iterable[str], *, admin_mode_enabled: bool) -> bool:
    """Whether this request may do what an administrator may do."""
    if not user.is_admin:
        return False
    if not admin_mode_enabled:
        return True
    return ADMIN_MODE_SCOPE in set(token_scopes)
