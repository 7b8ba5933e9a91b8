"""The one key locator: access key id → AWS account → configured account → IAM user.

`revoke`, `audit` and `discover` all ask the same questions in the same order:

1. sts:GetAccessKeyInfo (with the ambient credentials) names the account that owns the key; it works for
   AKIA and ASIA ids of any account;
2. the configured accounts whose role lives in that account reach it; so does "default" (the ambient
   credentials) when sts:GetCallerIdentity says it is that account (not asked when "default" is the only
   account configured: there is nothing to choose between);
3. iam:GetAccessKeyLastUsed in each such account, until one names the user.

``user_first`` (containment): with the ambient credentials as the only account there is nothing to choose
between, and the fastest answer goes first: iam:GetAccessKeyLastUsed there names the user of any key of that
account (NoSuchEntity for a key it does not hold), so steps 1 and 2 are skipped unless it names none. That
saves `revoke` an STS round trip before UpdateAccessKey (benchmarks/containment_latency.py); the account id is
then unknown until someone asks sts:GetCallerIdentity.

Each call and its answer is noted, so the caller can say how the key was identified. Standard library and
the ports only: `revoke` runs this before containment, where nothing slow may be imported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from rotator.domain import KeyLastUsed
from rotator.errors import AwsError

if TYPE_CHECKING:  # types only: the containment path imports no protocol module before UpdateAccessKey
    from rotator.ports import Iam, KeyDirectory


class Unlocated(StrEnum):
    """Where locating a key stopped."""

    ACCOUNT_UNKNOWN = "account unknown"  # sts:GetAccessKeyInfo failed
    NOT_CONFIGURED = "account not configured"  # no configured account reaches the owning account
    NO_USER = "no user"  # no reachable account named the key's user


@dataclass(frozen=True)
class KeyLocation:
    key_id: str
    account_id: str | None = None
    accounts: tuple[str, ...] = ()  # configured accounts that reach account_id
    account: str | None = None  # the one that named the user
    last_used: KeyLastUsed | None = None
    failure: Unlocated | None = None
    problem: str | None = None  # what stopped it, as one line
    cause: AwsError | None = None  # the typed error that stopped it, when AWS (or the way to it) failed
    notes: tuple[str, ...] = ()  # every call made and its answer

    @property
    def user_name(self) -> str | None:
        return self.last_used.user_name if self.last_used is not None else None


@dataclass
class KeyLocator:
    directory: KeyDirectory
    account_ids: Mapping[str, str | None]  # configured account name → account id; "default" → None (ambient)
    iam_for: Callable[[str], Iam]
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _ambient: str | None = field(default=None, repr=False)
    _ambient_problem: str | None = field(default=None, repr=False)
    _ambient_asked: bool = field(default=False, repr=False)

    @property
    def ambient_problem(self) -> str | None:
        """Why the ambient account could not be told, if it was asked and failed."""
        return self._ambient_problem

    def account_of(self, key_id: str, notes: list[str]) -> tuple[str | None, AwsError | None]:
        """(owning account id, None) or (None, the typed error). Step 1 of the module docstring."""
        try:
            account_id = self.directory.account_of_key(key_id)
        except AwsError as exc:
            notes.append(f"sts:GetAccessKeyInfo: {exc.message}")
            return None, exc
        notes.append(f"sts:GetAccessKeyInfo: account {account_id}")
        return account_id, None

    def accounts_reaching(self, account_id: str, notes: list[str]) -> list[str]:
        """Step 2: the configured accounts that reach ``account_id``."""
        names = [name for name, known in self.account_ids.items() if known == account_id]
        if names or "default" not in self.account_ids:
            return names
        if set(self.account_ids) == {"default"}:
            return ["default"]  # the ambient credentials are all there is: no need to ask which account
        ambient = self._ambient_account()
        if ambient is None and self._ambient_problem:
            notes.append(self._ambient_problem)
        return ["default"] if ambient == account_id else []

    def _ambient_account(self) -> str | None:
        with self._lock:
            if not self._ambient_asked:
                self._ambient_asked = True
                try:
                    self._ambient = self.directory.ambient_account()
                except AwsError as exc:
                    self._ambient_problem = f"sts:GetCallerIdentity: {exc.message}"
            return self._ambient

    def user_in(self, key_id: str, accounts: list[str], notes: list[str]) -> tuple[str, KeyLastUsed] | None:
        """Step 3: iam:GetAccessKeyLastUsed in each account until one names the user."""
        for name in accounts:
            try:
                used = self.iam_for(name).get_access_key_last_used(key_id)
            except AwsError as exc:
                notes.append(f"iam:GetAccessKeyLastUsed in account {name!r}: {exc.message}")
                continue
            if used.user_name:
                notes.append(f"iam:GetAccessKeyLastUsed in account {name!r}: user {used.user_name}")
                return name, used
            notes.append(f"iam:GetAccessKeyLastUsed in account {name!r}: no user name")
        return None

    def locate(self, key_id: str, *, find_user: bool = True, user_first: bool = False) -> KeyLocation:
        """Every step; ``find_user`` False stops after the account (a temporary key has no IAM user);
        ``user_first``: see the module docstring."""
        notes: list[str] = []
        asked: list[str] = []
        if user_first and find_user and set(self.account_ids) == {"default"}:
            asked = ["default"]
            found = self.user_in(key_id, asked, notes)
            if found is not None:
                account, used = found
                return KeyLocation(key_id, None, (account,), account, used, notes=tuple(notes))
        if "default" in self.account_ids and len(self.account_ids) > 1 and not self._ambient_asked:
            # Step 2 may need the ambient account: ask STS for it while GetAccessKeyInfo is in flight.
            threading.Thread(target=self._ambient_account, name="ambient-account", daemon=True).start()
        account_id, error = self.account_of(key_id, notes)
        if account_id is None:
            return KeyLocation(key_id, failure=Unlocated.ACCOUNT_UNKNOWN, notes=tuple(notes), cause=error,
                               problem=f"sts:GetAccessKeyInfo: {error.message}" if error else None)
        accounts = self.accounts_reaching(account_id, notes)
        if not accounts:
            return KeyLocation(key_id, account_id, failure=Unlocated.NOT_CONFIGURED, notes=tuple(notes),
                               problem=f"account {account_id} is not configured (add an [[aws.accounts]] entry "
                                       "with a role in it)")
        if not find_user:
            return KeyLocation(key_id, account_id, tuple(accounts), accounts[0], notes=tuple(notes))
        found = self.user_in(key_id, [name for name in accounts if name not in asked], notes)
        if found is None:
            return KeyLocation(key_id, account_id, tuple(accounts), failure=Unlocated.NO_USER, notes=tuple(notes),
                               problem=notes[-1] if notes else "no configured account named the key's user")
        account, used = found
        return KeyLocation(key_id, account_id, tuple(accounts), account, used, notes=tuple(notes))
