"""Settings → real adapters. The only place that builds them; each is built on first use, so a command
pays only for the parties it talks to (revoke's containment never waits for GitLab or Slack)."""

from __future__ import annotations

import getpass
import socket
import threading
import time
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from rotator.domain import CredentialSpec

if TYPE_CHECKING:
    from rotator.adapters.aws import AwsSessions, BotoIam, BotoSts
    from rotator.adapters.aws_incident import BotoIncidentIam
    from rotator.adapters.aws_oidc import BotoOidcIam
    from rotator.adapters.cloudtrail import Backoff, BotoCloudTrail
    from rotator.adapters.db.store import SqlStore
    from rotator.adapters.gitlab import GitLabVariables
    from rotator.adapters.gitlab_inventory import GitLabInventory
    from rotator.adapters.slack import SlackNotifier
    from rotator.config.settings import Settings
    from rotator.inventory.discover import DiscoveryPorts
    from rotator.ports import SecretSealer
    from rotator.ratelimit import AdaptiveTokenBucket
    from rotator.rotation.engine import RotationPorts
    from rotator.service.ports import ServiceQueries


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def default_actor(settings: Settings) -> str:
    if settings.service.actor:
        return settings.service.actor
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class Wiring:
    """Lazily built adapters for one process. Thread-safe where the pool of ``rotate --concurrency`` needs it."""

    def __init__(self, settings: Settings, *, actor: str | None = None, create_new_database: bool = True) -> None:
        """``create_new_database`` False (the service) refuses an empty SQLite file like any database not
        at head, instead of creating the schema: a long-running process never migrates on its own."""
        self.settings = settings
        self.actor = actor or default_actor(settings)
        self._create_new_database = create_new_database
        self.clock = SystemClock()
        self._lock = threading.Lock()
        self._iams: dict[str, BotoIam] = {}
        self._stss: dict[str, BotoSts] = {}
        self._pacers: dict[str, AdaptiveTokenBucket] = {}

    # --- client-side rate limits: one bucket per outside party (IAM: per account) -----------------------
    def pacer(self, party: str) -> AdaptiveTokenBucket:
        """The token bucket of "gitlab", "slack" or "iam:<account>", at its configured rate."""
        from rotator.ratelimit import AdaptiveTokenBucket

        with self._lock:
            if party not in self._pacers:
                if party == "gitlab":
                    rate = self.settings.require_gitlab().requests_per_second
                elif party == "slack":
                    rate = self.settings.slack.messages_per_second if self.settings.slack else 1.0
                elif party.startswith("iam:"):
                    rate = self.settings.aws.iam_requests_per_second
                else:
                    raise ValueError(f"no rate limit is configured for {party!r}")
                self._pacers[party] = AdaptiveTokenBucket(rate, name=party)
            return self._pacers[party]

    def pacers(self) -> dict[str, AdaptiveTokenBucket]:
        with self._lock:
            return dict(self._pacers)

    # --- AWS ------------------------------------------------------------------------------------------
    @cached_property
    def aws(self) -> AwsSessions:
        from rotator.adapters.aws import AwsSessions

        roles: dict[str, tuple[str, str | None, str]] = {}
        for account in self.settings.aws.accounts:
            roles[account.name] = (account.role_arn, self.settings.external_id(account.name), account.session_name)
        return AwsSessions(self.settings.aws.region, roles)

    def iam(self, account: str = "default") -> BotoIam:
        """IAM of one account, held to [aws] iam_requests_per_second (AWS throttles IAM per account)."""
        from rotator.adapters.aws import BotoIam, pace

        pacer = self.pacer(f"iam:{account}")
        with self._lock:
            if account not in self._iams:
                self._iams[account] = BotoIam(pace(self.aws.client("iam", account), pacer))
            return self._iams[account]

    def use_aws_sessions(self, sessions: AwsSessions) -> None:
        """Reuse sessions built before the full config was read: `revoke` contains a key first, with the
        [aws] settings alone (rotator.wiring.incident), and keeps its assumed-role credentials."""
        self.__dict__["aws"] = sessions  # what cached_property would have built

    def incident_iam(self, account: str = "default") -> BotoIncidentIam:
        from rotator.adapters.aws_incident import BotoIncidentIam

        return BotoIncidentIam(self.aws.client("iam", account))

    def cloudtrail(self, account: str = "default", *, backoff: Backoff | None = None) -> BotoCloudTrail:
        from rotator.adapters.cloudtrail import cloudtrail_for_session

        return cloudtrail_for_session(self.aws.session(account), self.settings.aws.region,
                                      rate=self.settings.aws.cloudtrail_requests_per_second, backoff=backoff)

    def account_id(self, account: str = "default") -> str:
        """The 12-digit id of a configured account: from its role ARN, or asked of STS for the ambient one."""
        from rotator.adapters.aws import caller_identity
        from rotator.wiring.incident import account_ids_of

        known = account_ids_of(self.settings).get(account)
        return known if known else caller_identity(self.aws.client("sts", account))["account"]

    def oidc_iam(self, account: str = "default") -> BotoOidcIam:
        from rotator.adapters.aws_oidc import BotoOidcIam

        return BotoOidcIam(self.aws.client("iam", account), self.account_id(account))

    @cached_property
    def sts(self) -> BotoSts:
        from rotator.adapters.aws import BotoSts

        return BotoSts(self.settings.aws.region)

    def sts_for(self, account: str = "default") -> BotoSts:
        """STS for checking a new key of ``account``: signed by the new pair itself, so only the region
        differs between accounts (the account's own ``region``, else [aws] region)."""
        from rotator.adapters.aws import BotoSts

        settings = self.settings.account(account)
        region = settings.region if settings is not None and settings.region else self.settings.aws.region
        if region == self.settings.aws.region:
            return self.sts
        with self._lock:
            if region not in self._stss:
                self._stss[region] = BotoSts(region)
            return self._stss[region]

    @cached_property
    def sealer(self) -> SecretSealer:
        from rotator.adapters.sealing import FernetSealer, KmsSealer

        kms_key = self.settings.service.state_kms_key_id
        if kms_key:
            return KmsSealer(self.aws.client("kms"), kms_key)
        key = self.settings.state_key()
        assert key is not None  # state_key() raises ConfigError when neither source is set
        source = self.settings.service.state_key_env or self.settings.service.state_key_file or "state key"
        return FernetSealer(key, f"[service] state key ({source})")

    # --- GitLab, Slack ---------------------------------------------------------------------------------
    @cached_property
    def variables(self) -> GitLabVariables:
        from rotator.adapters.gitlab import GitLabVariables

        return GitLabVariables(self.gitlab_client)

    @cached_property
    def gitlab_client(self):  # type: ignore[no-untyped-def]  # gitlab.Gitlab, imported lazily
        from rotator.adapters.gitlab import connect, pace

        section = self.settings.require_gitlab()
        client = connect(section.url, self.settings.gitlab_token(), timeout=section.timeout.total_seconds(),
                         ssl_verify=section.ca_file or True)
        return pace(client, self.pacer("gitlab"))

    @cached_property
    def inventory(self) -> GitLabInventory:
        from rotator.adapters.gitlab_inventory import GitLabInventory

        return GitLabInventory(self.gitlab_client)

    @cached_property
    def notifier(self) -> SlackNotifier | None:
        section = self.settings.require_slack()
        if section is None:
            return None
        from rotator.adapters.slack import SlackNotifier, connect

        return SlackNotifier(connect(self.settings.slack_token(), section.api_url))

    # --- database ----------------------------------------------------------------------------------------
    @cached_property
    def store(self) -> SqlStore:
        from rotator.adapters.db.store import SqlStore, current_revision, ensure_at_head, make_engine, upgrade_to_head

        url = self.settings.service.database_url
        engine = make_engine(url)
        if self._create_new_database and url.startswith("sqlite") and current_revision(engine) is None:
            upgrade_to_head(url)  # a brand-new local SQLite file holds nothing to lose: create it
        ensure_at_head(engine)
        return SqlStore(engine)

    @cached_property
    def service_queries(self) -> ServiceQueries:
        from rotator.adapters.db.service_queries import SqlServiceQueries

        return SqlServiceQueries(self.store.engine)

    def sharing_database(self, settings: Settings) -> Wiring:
        """A Wiring for reloaded settings (same database_url) that keeps this one's store, so a reload
        does not open a second connection pool; every other adapter is built afresh from ``settings``."""
        other = Wiring(settings, actor=self.actor, create_new_database=self._create_new_database)
        for built in ("store", "service_queries"):
            if built in self.__dict__:  # what cached_property has built so far
                other.__dict__[built] = self.__dict__[built]
        return other

    # --- use cases ---------------------------------------------------------------------------------------
    def rotation_ports(self, spec: CredentialSpec) -> RotationPorts:
        from rotator.rotation.engine import RotationPorts

        return RotationPorts(
            iam=self.iam(spec.account), sts=self.sts_for(spec.account), variables=self.variables, store=self.store,
            sealer=self.sealer, clock=self.clock, notifier=self.notifier, actor=self.actor,
        )

    def discovery_ports(self) -> DiscoveryPorts:
        """Read-only ports: GitLab listings, sts:GetAccessKeyInfo, and each account's IAM reads."""
        from rotator.adapters.aws_incident import StsKeyDirectory
        from rotator.inventory.discover import DiscoveryPorts
        from rotator.wiring.incident import account_ids_of

        return DiscoveryPorts(inventory=self.inventory, directory=StsKeyDirectory(self.aws.client("sts")),
                              iam_for=self.iam, account_ids=account_ids_of(self.settings), clock=self.clock)

    def resolve_secrets(self, *, gitlab: bool = True, slack: bool = True, state_key: bool = True) -> None:
        """Read every secret a command needs before its first outside call, so a missing one is a
        config error (exit 2) and not a failure halfway through."""
        if gitlab:
            self.settings.gitlab_token()
        if slack and self.settings.require_slack() is not None:
            self.settings.slack_token()
        if state_key and not self.settings.service.state_kms_key_id:
            self.settings.state_key()
