"""What `revoke` builds before anything slow: AWS for the configured accounts and the store's one cheap read,
from the few settings the early loader reads (rotator.config.early). After containment, ``root`` builds the
full composition root from the whole config, handing over the AWS sessions so no role is assumed twice.

Nothing here imports pydantic, SQLAlchemy, python-gitlab or slack_sdk (tests/unit/test_revoke.py checks it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from rotator.wiring.aws import AwsParty, RoleTable
from rotator.wiring.parties import AwsAccess
from rotator.wiring.system import SystemClock

if TYPE_CHECKING:
    from rotator.config.early import ContainmentSettings
    from rotator.config.settings import Settings
    from rotator.domain import KeyOwner
    from rotator.incident.containment import ContainmentPorts
    from rotator.ports import Clock
    from rotator.ratelimit import Pacer
    from rotator.wiring.root import Root


class ContainmentWiring:
    def __init__(self, settings: ContainmentSettings, environ: Mapping[str, str] = os.environ, *,
                 aws: AwsAccess | None = None, tracked_owner: Callable[[str], KeyOwner | None] | None = None,
                 clock: Clock | None = None) -> None:
        """``aws``, ``tracked_owner``, ``clock``: given instead of built from the settings (unit tests)."""
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._environ = environ
        self._tracked_owner = tracked_owner or self._store_owner
        # Containment is never paced: nothing may delay the deactivation of a leaked key.
        self.aws: AwsAccess = aws or AwsParty(settings.region, self._roles, settings.account_ids(),
                                              pacer_for=_unpaced)

    def containment_ports(self) -> ContainmentPorts:
        from rotator.incident.containment import ContainmentPorts

        return ContainmentPorts(iam_for=self.aws.incident_iam, locator=self.aws.locator(),
                                tracked_owner=self._tracked_owner, clock=self.clock)

    def root(self, settings: Settings) -> Root:
        """The full composition root, reusing this process's AWS sessions."""
        from rotator.wiring.root import Root

        sessions = self.aws.sessions if isinstance(self.aws, AwsParty) else None
        return Root(settings, aws_sessions=sessions)

    def _store_owner(self, key_id: str) -> KeyOwner | None:
        from rotator.adapters.db.key_index import tracked_key_owner

        return tracked_key_owner(self.settings.database_url, key_id)

    def _roles(self) -> RoleTable:
        return {a.name: (a.role_arn, self.settings.external_id(a, self._environ), a.session_name)
                for a in self.settings.accounts}


def _unpaced(party: str) -> Pacer:
    from rotator.ratelimit import Unlimited

    return Unlimited()
