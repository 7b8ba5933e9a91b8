"""AWS, per configured account: sessions (assumed roles), paced IAM, STS, CloudTrail, KMS. Each client is built
on first use, so a command pays only for the accounts and services it talks to.

Used both by the full composition root and, before the whole config is read, by `revoke`'s containment
(``rotator.wiring.containment``): this module imports no SDK until a client is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from rotator.wiring.lazy import Lazy, PerKey

if TYPE_CHECKING:
    from rotator.adapters.aws import AwsSessions, BotoIam, BotoSts
    from rotator.adapters.aws_incident import BotoIncidentIam, StsKeyDirectory
    from rotator.adapters.aws_least_privilege import BotoPrivilegeReads
    from rotator.adapters.aws_oidc import BotoOidcIam
    from rotator.adapters.cloudtrail import Backoff, BotoCloudTrail
    from rotator.adapters.sqs import SqsQueue
    from rotator.inventory.locate import KeyLocator
    from rotator.ratelimit import Pacer

# account name → (role ARN, external id, session name); "default" (the ambient credentials) is not listed.
RoleTable = dict[str, tuple[str, str | None, str]]


class AwsParty:
    def __init__(self, region: str, roles: Callable[[], RoleTable], account_ids: Mapping[str, str | None], *,
                 pacer_for: Callable[[str], Pacer], cloudtrail_rate: float = 2.0,
                 account_regions: Mapping[str, str | None] | None = None,
                 sessions: AwsSessions | None = None) -> None:
        """``account_ids``: configured account name → account id ("default" → None: asked of STS when needed).
        ``sessions``: sessions built earlier in this process (containment), reused so no role is assumed twice."""
        self.region = region
        self.account_ids = dict(account_ids)
        self._account_regions = dict(account_regions or {})
        self._pacer_for = pacer_for
        self._cloudtrail_rate = cloudtrail_rate
        self._sessions: Lazy[AwsSessions] = Lazy.of(sessions) if sessions is not None else Lazy(
            lambda: _sessions(region, roles()))
        self._iams: PerKey[BotoIam] = PerKey(self._build_iam)
        self._incident_iams: PerKey[BotoIncidentIam] = PerKey(self._build_incident_iam)
        self._stss: PerKey[BotoSts] = PerKey(self._build_sts)
        self._directory: Lazy[StsKeyDirectory] = Lazy(self._build_directory)

    @property
    def sessions(self) -> AwsSessions:
        return self._sessions.get()

    def client(self, service: str, account: str = "default") -> Any:
        return self.sessions.client(service, account)

    def iam(self, account: str = "default") -> BotoIam:
        """IAM of one account, held to [aws] iam_requests_per_second (AWS throttles IAM per account)."""
        return self._iams.get(account)

    def incident_iam(self, account: str = "default") -> BotoIncidentIam:
        """IAM for containment: unpaced (nothing may delay the deactivation of a leaked key)."""
        return self._incident_iams.get(account)

    def sts_for(self, account: str = "default") -> BotoSts:
        """STS for checking a new key of ``account``: signed by the new pair itself, so only the region differs
        between accounts (the account's own ``region``, else [aws] region)."""
        return self._stss.get(self._account_regions.get(account) or self.region)

    @property
    def directory(self) -> StsKeyDirectory:
        return self._directory.get()

    def locator(self, *, paced: bool = False) -> KeyLocator:
        """The key locator over these accounts. ``paced``: its IAM reads share the accounts' IAM rate limit
        (discovery resolves many keys); containment's never wait."""
        from rotator.inventory.locate import KeyLocator

        return KeyLocator(_DeferredDirectory(self._directory), self.account_ids,
                          self.iam if paced else self.incident_iam)

    def account_id(self, account: str = "default") -> str:
        """The 12-digit id of a configured account: from its role ARN, or asked of STS for the ambient one."""
        from rotator.adapters.aws import caller_identity

        known = self.account_ids.get(account)
        return known if known else caller_identity(self.client("sts", account))["account"]

    def caller_account_id(self, account: str = "default") -> str:
        from rotator.adapters.aws import caller_identity

        return caller_identity(self.client("sts", account))["account"]

    def cloudtrail(self, account: str = "default", *, backoff: Backoff | None = None) -> BotoCloudTrail:
        from rotator.adapters.cloudtrail import cloudtrail_for_session

        return cloudtrail_for_session(self.sessions.session(account), self.region, rate=self._cloudtrail_rate,
                                      backoff=backoff, lock=self.sessions.client_lock)

    def queue(self, queue_url: str, account: str = "default") -> SqsQueue:
        """The SQS queue at ``queue_url``, read with ``account``'s credentials in the queue's own region."""
        from rotator.adapters.sqs import SqsQueue

        return SqsQueue.for_session(self.sessions.session(account), queue_url, self.region)

    def oidc_iam(self, account: str = "default") -> BotoOidcIam:
        from rotator.adapters.aws_oidc import BotoOidcIam

        return BotoOidcIam(self.client("iam", account), self.account_id(account))

    def privilege_reads(self, account: str = "default") -> BotoPrivilegeReads:
        """IAM (paced) and STS of one account, read-only, for `rotator check`'s least-privilege probes."""
        from rotator.adapters.aws import pace
        from rotator.adapters.aws_least_privilege import BotoPrivilegeReads

        return BotoPrivilegeReads(pace(self.client("iam", account), self._pacer_for(f"iam:{account}")),
                                  self.client("sts", account))

    def _build_iam(self, account: str) -> BotoIam:
        from rotator.adapters.aws import BotoIam, pace

        return BotoIam(pace(self.client("iam", account), self._pacer_for(f"iam:{account}")))

    def _build_incident_iam(self, account: str) -> BotoIncidentIam:
        from rotator.adapters.aws_incident import BotoIncidentIam

        return BotoIncidentIam(self.client("iam", account))

    def _build_sts(self, region: str) -> BotoSts:
        from rotator.adapters.aws import VERIFY_CONFIG, BotoSts

        # Unsigned: the ambient session only lends its loaded service models, never its credentials.
        return BotoSts(region, self.sessions.client("sts", region=region, config=VERIFY_CONFIG))

    def _build_directory(self) -> StsKeyDirectory:
        from rotator.adapters.aws_incident import StsKeyDirectory

        return StsKeyDirectory(self.client("sts"))


class _DeferredDirectory:
    """The STS key directory, built when first asked: with one account configured, `revoke` never asks STS
    before UpdateAccessKey, so it must not pay for building an STS client either."""

    def __init__(self, directory: Lazy[StsKeyDirectory]) -> None:
        self._directory = directory

    def account_of_key(self, key_id: str) -> str:
        return self._directory.get().account_of_key(key_id)

    def ambient_account(self) -> str:
        return self._directory.get().ambient_account()


def _sessions(region: str, roles: RoleTable) -> AwsSessions:
    from rotator.adapters.aws import AwsSessions

    return AwsSessions(region, roles)
