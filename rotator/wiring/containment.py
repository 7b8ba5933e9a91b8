"""What `revoke` builds before anything slow: AWS for the configured accounts and the store's one cheap read,
from the few settings the early loader reads (rotator.config.early). After containment, ``root`` builds the
full composition root from the whole config, handing over the AWS sessions so no role is assumed twice.

Nothing here imports pydantic, SQLAlchemy, python-gitlab or slack_sdk (tests/unit/test_revoke.py checks it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from rotator.wiring.aws import AwsParty, RoleTable
from rotator.wiring.parties import AwsAccess
from rotator.wiring.system import SystemClock

if TYPE_CHECKING:
    from rotator.config.early import ContainmentSettings
    from rotator.config.settings import Settings
    from rotator.domain import KeyOwner
    from rotator.incident.audit.origin import SessionOrigin
    from rotator.incident.containment import ContainmentPorts
    from rotator.incident.ports import CloudTrail
    from rotator.ports import Clock
    from rotator.ratelimit import Pacer
    from rotator.wiring.root import Root


class ContainmentWiring:
    def __init__(self, settings: ContainmentSettings, environ: Mapping[str, str] = os.environ, *,
                 aws: AwsAccess | None = None, tracked_owner: Callable[[str], KeyOwner | None] | None = None,
                 earlier_t0: Callable[[str], datetime | None] | None = None, clock: Clock | None = None) -> None:
        """``aws``, ``tracked_owner``, ``earlier_t0``, ``clock``: given instead of built from the settings (unit
        tests)."""
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._environ = environ
        self._tracked_owner = tracked_owner or self._store_owner
        self._earlier_t0 = earlier_t0 or self._store_earlier_t0
        # Containment is never paced: nothing may delay the deactivation of a leaked key.
        self.aws: AwsAccess = aws or AwsParty(settings.region, self._roles, settings.account_ids(),
                                              pacer_for=_unpaced)

    def containment_ports(self) -> ContainmentPorts:
        from rotator.incident.containment import ContainmentPorts

        return ContainmentPorts(iam_for=self.aws.incident_iam, locator=self.aws.locator(),
                                tracked_owner=self._tracked_owner, clock=self.clock,
                                deny_sessions=self.settings.deny_sessions,
                                consistency_margin=self.settings.consistency_margin, earlier_t0=self._earlier_t0,
                                session_origin=self._session_origin)

    def _session_origin(self, key_id: str, account: str, account_id: str | None) -> SessionOrigin:
        """A temporary key's principal and upstream credential, from the CloudTrail of the account owning it,
        over the longest life a session can have."""
        from datetime import timedelta

        from rotator.errors import AwsError
        from rotator.incident.audit.origin import find_origin
        from rotator.incident.audit.run import GLOBAL_EVENTS_REGION, TEMPORARY_KEY_LIFETIME

        regions = tuple(dict.fromkeys([GLOBAL_EVENTS_REGION, self.settings.region, *self.settings.audit_regions]))
        now = self.clock.now()
        ids = self.settings.account_ids()

        def caller_trail(account_id: str) -> CloudTrail | None:
            named = next((name for name, known in ids.items() if known == account_id), None)
            if named is None:
                try:
                    named = "default" if self.aws.account_id("default") == account_id else None
                except AwsError:
                    named = None
            return self.aws.cloudtrail(named) if named is not None else None

        return find_origin(self.aws.cloudtrail(account), key_id, regions, now - TEMPORARY_KEY_LIFETIME
                           - timedelta(minutes=5), now, caller_trail=caller_trail)

    def warm_up(self) -> None:
        """On a thread, while the whole config loads: build the STS, CloudTrail and IAM clients of every configured
        account from the sessions the root will reuse, so the audit's first lookups and role cuts do not wait for
        botocore to load those service models. Nothing is called."""
        if not isinstance(self.aws, AwsParty):
            return
        accounts = ["default", *(a.name for a in self.settings.accounts)]
        threading.Thread(target=self.aws.sessions.warm_up, args=(("sts", "cloudtrail", "iam"), accounts),
                         name="warm-up", daemon=True).start()

    def root(self, settings: Settings) -> Root:
        """The full composition root, reusing this process's AWS sessions."""
        from rotator.wiring.root import Root

        sessions = self.aws.sessions if isinstance(self.aws, AwsParty) else None
        return Root(settings, aws_sessions=sessions)

    def _store_owner(self, key_id: str) -> KeyOwner | None:
        from rotator.adapters.db.key_index import tracked_key_owner

        return tracked_key_owner(self.settings.database_url, key_id)

    def _store_earlier_t0(self, key_id: str) -> datetime | None:
        from rotator.adapters.db.key_index import earliest_incident_t0

        return earliest_incident_t0(self.settings.database_url, key_id)

    def _roles(self) -> RoleTable:
        return {a.name: (a.role_arn, self.settings.external_id(a, self._environ), a.session_name)
                for a in self.settings.accounts}


def _unpaced(party: str) -> Pacer:
    from rotator.ratelimit import Unlimited

    return Unlimited()
