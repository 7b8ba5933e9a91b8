"""The composition root: settings → every outside party → every use case, each built on first use.

The CLI and the service build one ``Root`` per process (the service: one per loaded config, sharing the
database) and ask its feature faces (``root.rotation``, ``root.incident``, ``root.inventory``, ``root.oidc``,
``root.checks``) for ready use cases. Unit tests build the same faces over fakes of the ports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from rotator.wiring.aws import AwsParty, RoleTable
from rotator.wiring.checks import Checks
from rotator.wiring.database import Database
from rotator.wiring.gitlab import GitLabParty
from rotator.wiring.incident import IncidentWiring
from rotator.wiring.inventory import InventoryWiring
from rotator.wiring.lazy import Lazy
from rotator.wiring.oidc import OidcWiring
from rotator.wiring.parties import AwsAccess, DatabaseAccess, GitLabAccess, SlackAccess
from rotator.wiring.rotation import RotationWiring
from rotator.wiring.slack import SlackParty
from rotator.wiring.system import SystemClock, default_actor

if TYPE_CHECKING:
    from rotator.adapters.aws import AwsSessions
    from rotator.config.settings import Settings
    from rotator.errors import SlackError
    from rotator.incident.ports import IncidentStore
    from rotator.ports import Clock, Notifier, SecretSealer
    from rotator.ratelimit import AdaptiveTokenBucket
    from rotator.service.outbox import OutboxNotifier


class Pacers:
    """One client-side token bucket per outside party ("gitlab", "slack", "iam:<account>"), at its configured
    rate; shared by every thread of the process, so 429 and Throttling slow everybody down."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._buckets: dict[str, AdaptiveTokenBucket] = {}

    def get(self, party: str) -> AdaptiveTokenBucket:
        from rotator.ratelimit import AdaptiveTokenBucket

        with self._lock:
            if party not in self._buckets:
                self._buckets[party] = AdaptiveTokenBucket(self._rate(party), name=party)
            return self._buckets[party]

    def all(self) -> dict[str, AdaptiveTokenBucket]:
        with self._lock:
            return dict(self._buckets)

    def _rate(self, party: str) -> float:
        if party == "gitlab":
            return self._settings.require_gitlab().requests_per_second
        if party == "slack":
            return self._settings.slack.messages_per_second if self._settings.slack else 1.0
        if party.startswith("iam:"):
            return self._settings.aws.iam_requests_per_second
        raise ValueError(f"no rate limit is configured for {party!r}")


class Root:
    def __init__(self, settings: Settings, *, actor: str | None = None, create_new_database: bool = True,
                 aws_sessions: AwsSessions | None = None, database: DatabaseAccess | None = None,
                 aws: AwsAccess | None = None, gitlab: GitLabAccess | None = None, slack: SlackAccess | None = None,
                 clock: Clock | None = None, sealer: SecretSealer | None = None,
                 on_notification_failed: Callable[[SlackError], None] | None = None,
                 on_notifications_delivered: Callable[[], None] | None = None) -> None:
        """``aws_sessions``: sessions `revoke` built for containment, reused so no role is assumed twice.
        ``database``: another root's database (a service reload), so a reload opens no second pool.
        ``aws``, ``gitlab``, ``slack``, ``clock``, ``sealer``: parties given instead of built from the settings
        (unit tests pass fakes). ``on_notification_failed`` / ``on_notifications_delivered``: told of each
        Slack message that failed, and when kept ones were delivered (the service counts and reports them)."""
        self.settings = settings
        self.actor = default_actor(actor or settings.service.actor)
        self.clock: Clock = clock or SystemClock()
        self.pacers = Pacers(settings)
        self.aws: AwsAccess = aws or AwsParty(
            settings.aws.region, self._roles, settings.account_ids(), pacer_for=self.pacers.get,
            cloudtrail_rate=settings.aws.cloudtrail_requests_per_second,
            account_regions={a.name: a.region for a in settings.aws.accounts}, sessions=aws_sessions)
        self.gitlab: GitLabAccess = gitlab or GitLabParty(settings.require_gitlab, settings.gitlab_token,
                                                          lambda: self.pacers.get("gitlab"))
        self.slack: SlackAccess = slack or SlackParty(settings.require_slack, settings.slack_token)
        self.database: DatabaseAccess = database or Database(settings.service.database_url,
                                                             create_new_database=create_new_database)
        self._sealer: Lazy[SecretSealer] = Lazy.of(sealer) if sealer is not None else Lazy(self._build_sealer)
        self._on_notification_failed = on_notification_failed
        self._on_notifications_delivered = on_notifications_delivered
        self._notifier: Lazy[OutboxNotifier | None] = Lazy(self._build_notifier)
        self.rotation = RotationWiring(self)
        self.incident = IncidentWiring(self)
        self.inventory = InventoryWiring(self)
        self.oidc = OidcWiring(self)
        self.checks = Checks(self)

    @property
    def store(self) -> IncidentStore:
        return self.database.store

    @property
    def notifier(self) -> Notifier | None:
        """Slack, through the outbox: what Slack does not answer for is kept and delivered later."""
        return self._notifier.get()

    @property
    def outbox_sender(self) -> OutboxNotifier | None:
        """The notifier's ``send_queued`` delivers kept messages (the service calls it every tick)."""
        return self._notifier.get()

    @property
    def sealer(self) -> SecretSealer:
        return self._sealer.get()

    def sharing_database(self, settings: Settings) -> Root:
        """A root for reloaded settings (same database_url) that keeps this one's database and actor; every
        other party is built afresh from ``settings``."""
        return Root(settings, actor=self.actor, database=self.database,
                    on_notification_failed=self._on_notification_failed,
                    on_notifications_delivered=self._on_notifications_delivered)

    def resolve_secrets(self, *, gitlab: bool = True, slack: bool = True, state_key: bool = True) -> None:
        """Read every secret a command needs before its first outside call, so a missing one is a config error
        (exit 2) and not a failure halfway through."""
        if gitlab:
            self.settings.gitlab_token()
        if slack and self.settings.require_slack() is not None:
            self.settings.slack_token()
        if state_key and not self.settings.service.state_kms_key_id:
            self.settings.state_key()

    def _roles(self) -> RoleTable:
        return {a.name: (a.role_arn, self.settings.external_id(a.name), a.session_name)
                for a in self.settings.aws.accounts}

    def _build_notifier(self) -> OutboxNotifier | None:
        inner = self.slack.notifier
        if inner is None:
            return None
        from rotator.leases import new_holder
        from rotator.service.outbox import OutboxNotifier

        return OutboxNotifier(inner, lambda: self.database.outbox, self.clock, holder=new_holder(self.actor),
                              on_failed=self._on_notification_failed,
                              on_delivered=self._on_notifications_delivered)

    def _build_sealer(self) -> SecretSealer:
        from rotator.adapters.sealing import FernetSealer, KmsSealer

        service = self.settings.service
        if service.state_kms_key_id:
            return KmsSealer(self.aws.client("kms"), service.state_kms_key_id)
        key = self.settings.state_key()
        assert key is not None  # state_key() raises ConfigError when neither source is set
        return FernetSealer(key, f"[service] state key ({service.state_key_env or service.state_key_file})")
