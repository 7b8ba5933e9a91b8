"""What a compromised key did, from its CloudTrail records: parsing, classification and the summary.

Pure: no I/O, no clock. The fan-out that fetches the records is rotator.incident.audit.run;
the Markdown/JSON rendering is rotator.incident.audit.report.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from rotator.incident.steps import parse_iso

# Calls whose response holds new session credentials (CloudTrail records them in
# responseElements.credentials.accessKeyId; the session's own calls then carry that key id).
MINTING_EVENTS = frozenset({"GetSessionToken", "AssumeRole", "GetFederationToken", "AssumeRoleWithSAML",
                            "AssumeRoleWithWebIdentity"})
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess",
                          "Client.UnauthorizedOperation"})
RECON_BURST = 10  # denied calls within RECON_WINDOW that count as probing
RECON_WINDOW = timedelta(minutes=5)


class Category(StrEnum):
    PERSISTENCE = "identity persistence"
    PERMISSION = "permission change"
    SESSION = "session minting"
    SPEND = "spend"
    ANTI_FORENSICS = "anti-forensics"
    RECON = "reconnaissance"


SEVERITY = {
    Category.ANTI_FORENSICS: "critical", Category.PERSISTENCE: "critical", Category.PERMISSION: "high",
    Category.SPEND: "high", Category.SESSION: "high", Category.RECON: "medium",
}

_BY_NAME: dict[str, Category] = {
    **dict.fromkeys((
        "CreateUser", "CreateAccessKey", "CreateLoginProfile", "UpdateLoginProfile", "UpdateAccessKey",
        "CreateServiceSpecificCredential", "UploadSSHPublicKey", "UploadSigningCertificate",
        "CreateVirtualMFADevice", "EnableMFADevice", "DeactivateMFADevice", "CreateRole",
        "CreateOpenIDConnectProvider", "CreateSAMLProvider", "UpdateSAMLProvider", "CreateInstanceProfile",
        "ImportKeyPair", "CreateKeyPair",
    ), Category.PERSISTENCE),
    **dict.fromkeys((
        "CreatePolicy", "CreatePolicyVersion", "SetDefaultPolicyVersion", "UpdateAssumeRolePolicy",
        "AddUserToGroup", "PassRole", "AddRoleToInstanceProfile", "AttachUserPolicy", "AttachRolePolicy",
        "AttachGroupPolicy", "PutUserPolicy", "PutRolePolicy", "PutGroupPolicy", "PutUserPermissionsBoundary",
        "DeleteUserPermissionsBoundary", "DeleteRolePermissionsBoundary", "CreateGrant",
        "PutKeyPolicy", "AuthorizeSecurityGroupIngress", "ModifySnapshotAttribute", "ModifyImageAttribute",
        "PutBucketAcl",
    ), Category.PERMISSION),
    **dict.fromkeys((*MINTING_EVENTS, "GetSigninToken"), Category.SESSION),
    **dict.fromkeys((
        "RunInstances", "StartInstances", "RequestSpotInstances", "RequestSpotFleet", "CreateFleet",
        "CreateAutoScalingGroup", "UpdateAutoScalingGroup", "CreateLaunchTemplate", "CreateFunction",
        "UpdateFunctionCode", "CreateCluster", "CreateNodegroup", "RunTask", "CreateService", "RunJobFlow",
        "CreateNotebookInstance", "CreateTrainingJob", "CreateEndpoint", "CreateComputeEnvironment",
        "PurchaseReservedInstancesOffering", "CreateDBInstance", "CreateCapacityReservation",
    ), Category.SPEND),
    **dict.fromkeys((
        "StopLogging", "DeleteTrail", "UpdateTrail", "PutEventSelectors", "DeleteEventDataStore",
        "DeleteDetector", "UpdateDetector", "DisassociateFromMasterAccount", "DeleteMembers",
        "DeleteFlowLogs", "DeleteLogGroup", "DeleteLogStream", "PutRetentionPolicy", "PutBucketPolicy",
        "PutBucketLifecycle", "PutBucketLogging", "DeleteBucket", "ScheduleKeyDeletion", "DisableKey",
        "StopConfigurationRecorder", "DeleteConfigurationRecorder", "DeleteDeliveryChannel", "DeleteConfigRule",
        "DisableSecurityHub", "DisableEbsEncryptionByDefault", "LeaveOrganization", "DeleteAlarms",
    ), Category.ANTI_FORENSICS),
}
_RECON_PREFIXES = ("List", "Describe", "Get", "Lookup", "Search")


@dataclass(frozen=True)
class TrailEvent:
    """One CloudTrail record, reduced to what the audit reasons about. Never holds a secret: CloudTrail
    hides credentials in records (HIDDEN_DUE_TO_SECURITY_REASONS) and only ids are kept here."""

    event_id: str
    name: str
    source: str
    region: str
    at: datetime
    key_id: str | None
    principal: str | None
    source_ip: str | None
    user_agent: str | None
    error_code: str | None
    read_only: bool
    minted_key_id: str | None = None
    minted_account: str | None = None
    role_arn: str | None = None  # requestParameters.roleArn of an AssumeRole* call
    assumed_arn: str | None = None  # responseElements.assumedRoleUser.arn
    identity_type: str | None = None  # userIdentity.type: IAMUser, AssumedRole, FederatedUser, AWSAccount, ...
    identity_arn: str | None = None
    issuer_arn: str | None = None  # userIdentity.sessionContext.sessionIssuer.arn: the role a session acts as
    account_id: str | None = None  # the account whose CloudTrail holds the record (recipientAccountId)
    identity_account: str | None = None  # userIdentity.accountId: the caller's account (a cross-account copy)

    @property
    def denied(self) -> bool:
        return self.error_code in DENIED_CODES


def _parse_time(value: Any) -> datetime | None:
    return parse_iso(value) if isinstance(value, str) else None


def _text(mapping: Any, *path: str) -> str | None:
    for name in path:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(name)
    return mapping if isinstance(mapping, str) and mapping else None


def event_from_record(record: Mapping[str, Any]) -> TrailEvent | None:
    """A CloudTrail record (the CloudTrailEvent JSON of LookupEvents) → TrailEvent; None if unusable."""
    at = _parse_time(record.get("eventTime"))
    name, event_id = record.get("eventName"), record.get("eventID")
    if at is None or not isinstance(name, str) or not isinstance(event_id, str):
        return None
    identity = record.get("userIdentity") if isinstance(record.get("userIdentity"), dict) else {}
    assert isinstance(identity, dict)
    principal = identity.get("userName") or identity.get("arn") or identity.get("principalId")
    minted_key = minted_account = role_arn = assumed_arn = None
    if name in MINTING_EVENTS:
        minted_key = _text(record, "responseElements", "credentials", "accessKeyId")
        assumed_arn = _text(record, "responseElements", "assumedRoleUser", "arn")
        role_arn = _text(record, "requestParameters", "roleArn")
        if assumed_arn and assumed_arn.count(":") >= 5:
            minted_account = assumed_arn.split(":")[4] or None
    read_only = record.get("readOnly")
    return TrailEvent(
        event_id=event_id, name=name, source=str(record.get("eventSource") or ""),
        region=str(record.get("awsRegion") or ""), at=at,
        key_id=identity.get("accessKeyId") if isinstance(identity.get("accessKeyId"), str) else None,
        principal=str(principal) if principal else None,
        source_ip=str(record["sourceIPAddress"]) if record.get("sourceIPAddress") else None,
        user_agent=str(record["userAgent"]) if record.get("userAgent") else None,
        error_code=str(record["errorCode"]) if record.get("errorCode") else None,
        read_only=read_only is True or str(read_only).lower() == "true",
        minted_key_id=minted_key, minted_account=minted_account, role_arn=role_arn, assumed_arn=assumed_arn,
        identity_type=_text(identity, "type"), identity_arn=_text(identity, "arn"),
        issuer_arn=_text(identity, "sessionContext", "sessionIssuer", "arn"),
        account_id=_text(record, "recipientAccountId") or _text(identity, "accountId"),
        identity_account=_text(identity, "accountId"),
    )


def classify(event: TrailEvent) -> Category | None:
    category = _BY_NAME.get(event.name)
    if category is not None:
        return category
    if event.name.startswith(("Attach", "Put")) and event.name.endswith("Policy"):
        return Category.PERMISSION
    if event.name.startswith(_RECON_PREFIXES) or event.denied:
        return Category.RECON
    return None


# --- findings and summary ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    category: Category
    severity: str
    title: str
    count: int
    regions: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    examples: tuple[str, ...] = ()  # event names, for the reader


@dataclass(frozen=True)
class Summary:
    total: int
    first_seen: datetime | None
    last_seen: datetime | None
    by_event: tuple[tuple[str, int], ...]
    by_region: tuple[tuple[str, int], ...]
    by_source_ip: tuple[tuple[str, int], ...]
    by_user_agent: tuple[tuple[str, int], ...]
    by_error: tuple[tuple[str, int], ...]
    by_key: tuple[tuple[str, int], ...]
    unknown_ips: tuple[str, ...]  # outside [aws] known_cidrs (empty when none are configured)
    findings: tuple[Finding, ...] = field(default_factory=tuple)


def _counted(values: Iterable[str | None]) -> tuple[tuple[str, int], ...]:
    counts = Counter(value or "(none)" for value in values)
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def ip_outside(address: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """True for an IP address in none of ``networks``; False for non-IP sources ("ec2.amazonaws.com")."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not any(ip.version == net.version and ip in net for net in networks)


def summarize(events: Sequence[TrailEvent], *, known_cidrs: Sequence[str] = (),
              usual_regions: Iterable[str] = ()) -> Summary:
    networks = [ipaddress.ip_network(cidr, strict=False) for cidr in known_cidrs]
    ips = sorted({e.source_ip for e in events if e.source_ip})
    unknown = tuple(ip for ip in ips if networks and ip_outside(ip, networks))
    return Summary(
        total=len(events),
        first_seen=min((e.at for e in events), default=None),
        last_seen=max((e.at for e in events), default=None),
        by_event=_counted(e.name for e in events),
        by_region=_counted(e.region for e in events),
        by_source_ip=_counted(e.source_ip for e in events),
        by_user_agent=_counted(e.user_agent for e in events),
        by_error=_counted(e.error_code for e in events if e.error_code),
        by_key=_counted(e.key_id for e in events),
        unknown_ips=unknown,
        findings=tuple(findings(events, usual_regions=set(usual_regions), unknown_ips=set(unknown))),
    )


def _finding(category: Category, title: str, events: Sequence[TrailEvent], severity: str | None = None) -> Finding:
    return Finding(category=category, severity=severity or SEVERITY[category], title=title, count=len(events),
                   regions=tuple(sorted({e.region for e in events})), first_seen=min(e.at for e in events),
                   last_seen=max(e.at for e in events),
                   examples=tuple(name for name, _ in _counted(e.name for e in events)[:5]))


def findings(events: Sequence[TrailEvent], *, usual_regions: set[str], unknown_ips: set[str]) -> list[Finding]:
    """Everything worth a responder's attention, most severe first."""
    by_category: dict[Category, list[TrailEvent]] = {}
    for event in events:
        category = classify(event)
        if category is not None:
            by_category.setdefault(category, []).append(event)
    found: list[Finding] = []
    for category in (Category.ANTI_FORENSICS, Category.PERSISTENCE, Category.PERMISSION, Category.SESSION):
        chosen = by_category.get(category, [])
        succeeded = [e for e in chosen if not e.error_code]
        if succeeded:
            found.append(_finding(category, f"{len(succeeded)} {category.value} call(s) succeeded", succeeded))
        failed = [e for e in chosen if e.error_code]
        if failed:
            found.append(_finding(category, f"{len(failed)} {category.value} call(s) attempted and refused",
                                  failed, severity="medium"))
    spend = by_category.get(Category.SPEND, [])
    unusual = [e for e in spend if usual_regions and e.region not in usual_regions]
    if unusual:
        found.append(_finding(Category.SPEND, f"{len(unusual)} spend call(s) in region(s) rotator's accounts do "
                              "not use", unusual, severity="critical"))
    unusual_ids = {e.event_id for e in unusual}
    usual = [e for e in spend if e.event_id not in unusual_ids]
    if usual:
        found.append(_finding(Category.SPEND, f"{len(usual)} spend call(s)", usual))
    found.extend(_recon_findings(by_category.get(Category.RECON, [])))
    from_unknown = [e for e in events if e.source_ip in unknown_ips]
    if from_unknown:
        found.append(_finding(Category.RECON, f"{len(from_unknown)} call(s) from {len(unknown_ips)} address(es) "
                              "outside [aws] known_cidrs", from_unknown, severity="high"))
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    return sorted(found, key=lambda f: (order.get(f.severity, 9), f.first_seen))


def _recon_findings(recon: Sequence[TrailEvent]) -> list[Finding]:
    found: list[Finding] = []
    denied = sorted((e for e in recon if e.denied), key=lambda e: e.at)
    burst = _densest_window(denied)
    if len(burst) >= RECON_BURST:
        found.append(_finding(Category.RECON, f"burst of {len(burst)} denied calls within "
                              f"{int(RECON_WINDOW.total_seconds() // 60)} minutes (probing permissions)", burst,
                              severity="high"))
    listing = [e for e in recon if not e.denied]
    if listing:
        found.append(_finding(Category.RECON, f"{len(listing)} read-only List/Describe/Get call(s)", listing,
                              severity="low"))
    return found


def _densest_window(events: Sequence[TrailEvent]) -> list[TrailEvent]:
    best: tuple[int, int] = (0, 0)
    start = 0
    for end in range(len(events)):
        while events[end].at - events[start].at > RECON_WINDOW:
            start += 1
        if end + 1 - start > best[1] - best[0]:
            best = (start, end + 1)
    return list(events[best[0]:best[1]])
