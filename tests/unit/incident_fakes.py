"""Fakes of the incident ports (IncidentIam, KeyDirectory, IncidentStore, CloudTrail), built on tests/unit/fakes.py.

They behave like the real parties where the playbook depends on it: GetAccessKeyLastUsed answers only for keys
of the account, an unknown key is NoSuchEntity, STS knows which account each key id belongs to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from rotator.domain import Incident, KeyLastUsed, KeyStatus
from rotator.errors import AwsAccessDenied, AwsError, AwsNotFound
from rotator.incident.ports import TrailPage
from tests.unit.fakes import FakeClock, FakeIam, FakeStore

ACCOUNT = "123456789012"


class FakeIncidentIam(FakeIam):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.user_policies: dict[tuple[str, str], str] = {}
        self.role_policies: dict[tuple[str, str], str] = {}
        self.login_profiles: dict[str, datetime] = {}
        self.login_profiles_that_stay: set[str] = set()  # DeleteLoginProfile answers, yet the profile remains
        self.managed_policies: dict[str, set[str]] = {}  # policy ARN → users it is attached to
        self.ignore_deactivate = False  # an UpdateAccessKey that AWS accepts but that never takes effect
        self.roles: dict[str, str] = {}  # role name → path
        self.denied_roles: set[str] = set()  # rotator's principal may not write these roles' policies
        self.lost_writes: set[str] = set()  # PutRolePolicy accepted, but never shows when read back

    def add_role(self, name: str, path: str = "/") -> str:
        self.roles[name] = path
        return name

    def owner_of(self, key_id: str) -> str | None:
        return next((user for user, keys in self.keys.items() if any(k.key_id == key_id for k in keys)), None)

    def list_access_keys(self, user_name: str) -> Any:
        if user_name not in self.keys:
            self._call("ListAccessKeys")
            raise AwsNotFound(f"no user {user_name}", code="NoSuchEntity")
        return super().list_access_keys(user_name)

    def set_access_key_status(self, user_name: str, key_id: str, *, active: bool) -> None:
        self._call("UpdateAccessKey")
        if self.owner_of(key_id) != user_name:
            raise AwsNotFound(f"user {user_name} has no key {key_id}", code="NoSuchEntity")
        if not self.ignore_deactivate:
            self.key(key_id).status = KeyStatus.ACTIVE if active else KeyStatus.INACTIVE

    def get_access_key_last_used(self, key_id: str) -> KeyLastUsed:
        self._call("GetAccessKeyLastUsed")
        owner = self.owner_of(key_id)
        if owner is None:
            raise AwsNotFound(f"The Access Key with id {key_id} cannot be found", code="NoSuchEntity")
        used = self.key(key_id).last_used
        if used is None:
            return KeyLastUsed(key_id, owner, None, None, None)
        return KeyLastUsed(key_id, owner, used.last_used_at, used.service, used.region)

    def user_policy(self, user_name: str, policy_name: str) -> str | None:
        self._call("GetUserPolicy")
        return self.user_policies.get((user_name, policy_name))

    def put_user_policy(self, user_name: str, policy_name: str, document: str) -> None:
        self._call("PutUserPolicy")
        self.user_policies[(user_name, policy_name)] = document

    def role_policy(self, role_name: str, policy_name: str) -> str | None:
        self._call("GetRolePolicy")
        return self.role_policies.get((role_name, policy_name))  # an unknown role: NoSuchEntity, read as None

    def put_role_policy(self, role_name: str, policy_name: str, document: str) -> None:
        self._call("PutRolePolicy")
        if role_name in self.denied_roles:
            raise AwsAccessDenied(f"User: arn:aws:iam::{ACCOUNT}:user/rotator is not authorized to perform: "
                                  f"iam:PutRolePolicy on resource: role {role_name}", code="AccessDenied")
        if role_name not in self.roles:
            raise AwsNotFound(f"The role with name {role_name} cannot be found.", code="NoSuchEntity")
        if role_name not in self.lost_writes:
            self.role_policies[(role_name, policy_name)] = document

    def login_profile_created(self, user_name: str) -> datetime | None:
        self._call("GetLoginProfile")
        return self.login_profiles.get(user_name)

    def delete_login_profile(self, user_name: str) -> None:
        self._call("DeleteLoginProfile")
        if user_name not in self.login_profiles_that_stay:
            self.login_profiles.pop(user_name, None)

    def users_with_policy(self, policy_arn: str) -> list[str]:
        self._call("ListEntitiesForPolicy")
        return sorted(self.managed_policies.get(policy_arn, set()))

    @property
    def writes(self) -> list[str]:
        return [c for c in self.calls if c.startswith(("Update", "Put", "Delete", "Create"))]


class FakeDirectory:
    """sts:GetAccessKeyInfo over one or more fake IAMs; an unknown key is the caller's account, as in AWS."""

    def __init__(self, accounts: Mapping[str, FakeIncidentIam], *, ambient: str = ACCOUNT) -> None:
        self.accounts = dict(accounts)
        self.ambient = ambient
        self.calls: list[str] = []
        self.fail: Callable[[], None] | None = None
        self.sessions: dict[str, str] = {}  # a session key → the account of the principal it acts as

    def account_of_key(self, key_id: str) -> str:
        self.calls.append("GetAccessKeyInfo")
        if self.fail is not None:
            self.fail()
        if key_id in self.sessions:
            return self.sessions[key_id]
        for account_id, iam in self.accounts.items():
            if iam.owner_of(key_id) is not None:
                return account_id
        return self.ambient

    def ambient_account(self) -> str:
        self.calls.append("GetCallerIdentity")
        return self.ambient


class FakeIncidentStore(FakeStore):
    pass

    def incident(self, incident_id: str) -> Incident | None:
        return self.incident_rows.get(incident_id)

    def open_incidents(self) -> list[Incident]:
        return sorted((i for i in self.incident_rows.values() if i.closed_at is None), key=lambda i: i.t0)


def record(name: str, *, key_id: str, region: str = "us-east-1", at: str = "2026-01-01T11:00:00Z",
           error: str | None = None, ip: str = "203.0.113.9", minted: str | None = None,
           minted_arn: str | None = None, event_id: str | None = None, user: str = "ci-payments",
           role_arn: str | None = None, as_role: str | None = None, account: str = ACCOUNT) -> dict[str, Any]:
    """A CloudTrail record as LookupEvents' CloudTrailEvent holds it (CloudTrail User Guide, "CloudTrail record
    contents" and "userIdentity element"). ``role_arn``: the role an AssumeRole* call names; ``as_role``: the
    call was made with a session of that role ARN (userIdentity type AssumedRole, with its sessionContext)."""
    identity: dict[str, Any] = {"type": "IAMUser", "userName": user, "accessKeyId": key_id, "accountId": account,
                                "arn": f"arn:aws:iam::{account}:user/{user}"}
    if as_role:
        role_account, role_name = as_role.split(":")[4], as_role.rsplit("/", 1)[-1]
        identity = {"type": "AssumedRole", "principalId": f"AROA{role_name.upper()[:12]}:session",
                    "arn": f"arn:aws:sts::{role_account}:assumed-role/{role_name}/session",
                    "accountId": role_account, "accessKeyId": key_id,
                    "sessionContext": {"sessionIssuer": {"type": "Role", "arn": as_role, "accountId": role_account,
                                                         "userName": role_name},
                                       "attributes": {"creationDate": at, "mfaAuthenticated": "false"}}}
    data: dict[str, Any] = {
        "eventVersion": "1.08", "eventTime": at, "eventName": name,
        "eventSource": "sts.amazonaws.com" if name.startswith(("Assume", "GetSession", "GetFederation")) else
        "iam.amazonaws.com",
        "awsRegion": region, "sourceIPAddress": ip, "userAgent": "aws-cli/2.15",
        "eventID": event_id or f"{name}-{key_id}-{region}-{at}", "readOnly": name.startswith(("Get", "List")),
        "userIdentity": identity, "recipientAccountId": identity["accountId"],
    }
    if error:
        data["errorCode"] = error
    if role_arn:
        data["requestParameters"] = {"roleArn": role_arn, "roleSessionName": "session"}
    if minted:
        data["responseElements"] = {"credentials": {"accessKeyId": minted, "sessionToken": "HIDDEN"}}
        if role_arn and not minted_arn:
            minted_arn = (f"arn:aws:sts::{role_arn.split(':')[4]}:assumed-role/{role_arn.rsplit('/', 1)[-1]}"
                          "/session")
        if minted_arn:
            data["responseElements"]["assumedRoleUser"] = {"arn": minted_arn}
    return data


def role_account_copy(caller_copy: dict[str, Any]) -> dict[str, Any]:
    """The copy of a cross-account AssumeRole that CloudTrail delivers to the role's account: the caller is an
    AWSAccount there, named by account, without its access key (CloudTrail User Guide, "userIdentity element")."""
    caller = caller_copy["userIdentity"]
    role_account = caller_copy["requestParameters"]["roleArn"].split(":")[4]
    return {**caller_copy, "eventID": caller_copy["eventID"] + "-role-account", "recipientAccountId": role_account,
            "userIdentity": {"type": "AWSAccount", "principalId": "AIDACALLER", "accountId": caller["accountId"]}}


class FakeCloudTrail:
    """Records per (key id, region) of one account; a region may fail, or throttle a few times per page. A record
    added with ``visible_at`` stays out of every answer until the clock reaches it (CloudTrail's delivery delay)."""

    def __init__(self, regions: list[str], *, page_size: int = 2, clock: FakeClock | None = None) -> None:
        self.regions = regions
        self.page_size = page_size
        self.clock = clock
        self.records: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.visible_at: dict[str, datetime] = {}  # eventID → when CloudTrail delivers it
        self.failing: dict[str, AwsError] = {}
        self.throttles_per_page = 0
        self.lookups: list[tuple[str, str, datetime]] = []
        self.event_lookups: list[tuple[str, str]] = []
        self.list_error: AwsError | None = None

    def add(self, data: dict[str, Any], *, visible_at: datetime | None = None) -> None:
        key = (data["userIdentity"].get("accessKeyId", ""), data["awsRegion"])
        self.records.setdefault(key, []).append(data)
        if visible_at is not None:
            self.visible_at[data["eventID"]] = visible_at

    def _delivered(self, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        now = self.clock.now() if self.clock is not None else None
        return [r for r in found if now is None or self.visible_at.get(r["eventID"], now) <= now]

    def lookup_by_event(self, region: str, event_name: str, start: datetime, end: datetime) -> Iterator[TrailPage]:
        self.event_lookups.append((event_name, region))
        found = self._delivered([r for (_, where), records in self.records.items() if where == region
                                 for r in records if r["eventName"] == event_name])
        pages = [found[i:i + self.page_size] for i in range(0, len(found), self.page_size)] or [[]]
        for page in pages:
            if region in self.failing:
                raise self.failing[region]
            yield TrailPage(records=tuple(page))

    def enabled_regions(self) -> list[str]:
        if self.list_error is not None:
            raise self.list_error
        return list(self.regions)

    def lookup_by_key(self, region: str, key_id: str, start: datetime, end: datetime) -> Iterator[TrailPage]:
        self.lookups.append((key_id, region, start))
        found = self._delivered(self.records.get((key_id, region), []))
        pages = [found[i:i + self.page_size] for i in range(0, len(found), self.page_size)] or [[]]
        for index, page in enumerate(pages):
            if region in self.failing and index == len(pages) - 1:
                raise self.failing[region]  # after the earlier pages: partial coverage
            yield TrailPage(records=tuple(page), throttled=self.throttles_per_page)
