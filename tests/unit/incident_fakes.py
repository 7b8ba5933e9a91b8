"""Fakes of the incident ports (IncidentIam, KeyDirectory, IncidentStore, CloudTrail), built on tests/unit/fakes.py.

They behave like the real parties where the playbook depends on it: GetAccessKeyLastUsed answers only for keys
of the account, an unknown key is NoSuchEntity, STS knows which account each key id belongs to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from rotator.domain import KeyLastUsed, KeyStatus
from rotator.errors import AwsError, AwsNotFound
from rotator.incident.ports import TrailPage
from tests.unit.fakes import FakeClock, FakeIam, FakeStore

ACCOUNT = "123456789012"


class FakeIncidentIam(FakeIam):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.user_policies: dict[tuple[str, str], str] = {}
        self.role_policies: dict[tuple[str, str], str] = {}
        self.login_profiles: dict[str, datetime] = {}
        self.managed_policies: dict[str, set[str]] = {}  # policy ARN → users it is attached to
        self.ignore_deactivate = False  # an UpdateAccessKey that AWS accepts but that never takes effect

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
        return self.role_policies.get((role_name, policy_name))

    def put_role_policy(self, role_name: str, policy_name: str, document: str) -> None:
        self._call("PutRolePolicy")
        self.role_policies[(role_name, policy_name)] = document

    def login_profile_created(self, user_name: str) -> datetime | None:
        self._call("GetLoginProfile")
        return self.login_profiles.get(user_name)

    def delete_login_profile(self, user_name: str) -> None:
        self._call("DeleteLoginProfile")
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

    def account_of_key(self, key_id: str) -> str:
        self.calls.append("GetAccessKeyInfo")
        if self.fail is not None:
            self.fail()
        for account_id, iam in self.accounts.items():
            if iam.owner_of(key_id) is not None:
                return account_id
        return self.ambient

    def ambient_account(self) -> str:
        self.calls.append("GetCallerIdentity")
        return self.ambient


class FakeIncidentStore(FakeStore):
    pass


def record(name: str, *, key_id: str, region: str = "us-east-1", at: str = "2026-01-01T11:00:00Z",
           error: str | None = None, ip: str = "203.0.113.9", minted: str | None = None,
           minted_arn: str | None = None, event_id: str | None = None, user: str = "ci-payments") -> dict[str, Any]:
    """A CloudTrail record as LookupEvents' CloudTrailEvent holds it."""
    data: dict[str, Any] = {
        "eventVersion": "1.08", "eventTime": at, "eventName": name, "eventSource": "iam.amazonaws.com",
        "awsRegion": region, "sourceIPAddress": ip, "userAgent": "aws-cli/2.15",
        "eventID": event_id or f"{name}-{key_id}-{region}-{at}", "readOnly": name.startswith(("Get", "List")),
        "userIdentity": {"type": "IAMUser", "userName": user, "accessKeyId": key_id,
                         "arn": f"arn:aws:iam::{ACCOUNT}:user/{user}"},
    }
    if error:
        data["errorCode"] = error
    if minted:
        data["responseElements"] = {"credentials": {"accessKeyId": minted, "sessionToken": "HIDDEN"}}
        if minted_arn:
            data["responseElements"]["assumedRoleUser"] = {"arn": minted_arn}
    return data


class FakeCloudTrail:
    """Records per (key id, region); a region may fail, or throttle a few times per page."""

    def __init__(self, regions: list[str], *, page_size: int = 2) -> None:
        self.regions = regions
        self.page_size = page_size
        self.records: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.failing: dict[str, AwsError] = {}
        self.throttles_per_page = 0
        self.lookups: list[tuple[str, str, datetime]] = []
        self.list_error: AwsError | None = None

    def add(self, data: dict[str, Any]) -> None:
        key = (data["userIdentity"]["accessKeyId"], data["awsRegion"])
        self.records.setdefault(key, []).append(data)

    def enabled_regions(self) -> list[str]:
        if self.list_error is not None:
            raise self.list_error
        return list(self.regions)

    def lookup_by_key(self, region: str, key_id: str, start: datetime, end: datetime) -> Iterator[TrailPage]:
        self.lookups.append((key_id, region, start))
        found = self.records.get((key_id, region), [])
        pages = [found[i:i + self.page_size] for i in range(0, len(found), self.page_size)] or [[]]
        for index, page in enumerate(pages):
            if region in self.failing and index == len(pages) - 1:
                raise self.failing[region]  # after the earlier pages: partial coverage
            yield TrailPage(records=tuple(page), throttled=self.throttles_per_page)
