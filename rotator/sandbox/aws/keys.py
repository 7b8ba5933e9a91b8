"""Who an access key id belongs to, and whether AWS would accept it right now.

moto keeps the keys (IAM users' keys and the temporary ``ASIA`` keys STS mints) but never refuses one.
The registry adds what AWS does: an Inactive key, a key that IAM once issued and has since deleted, and a
key too new to have propagated are all refused. It also remembers every session key minted through the
front (:class:`MintedSession`), so CloudTrail attributes its calls to the principal behind it and the
front can evaluate that principal's policies.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Literal

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.iam.models import AccessKey, IAMBackend, iam_backends
from moto.utilities.utils import get_partition

from rotator.sandbox.aws.identities import Identity, MintedSession, root_identity, user_identity_of

KeyState = Literal["unknown", "active", "inactive", "deleted", "propagating"]


@dataclass(frozen=True)
class KeyLookup:
    state: KeyState
    identity: Identity
    secret: str | None = None
    session: MintedSession | None = None


def default_account() -> str:
    return os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)


def _find_in_moto(access_key_id: str) -> tuple[str, IAMBackend, AccessKey] | None:
    # list() copies under the GIL: other request threads may add accounts or keys meanwhile.
    for account_id, per_partition in list(iam_backends.items()):
        for backend in list(per_partition.values()):
            key = backend.access_keys.get(access_key_id)
            if key is not None:
                return account_id, backend, key
    return None


class KeyRegistry:
    """Thread-safe; every method is quick (no sleeping, no I/O) so request threads never queue on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._issued: dict[str, Identity] = {}
        self._usable_from: dict[str, float] = {}
        self._minted: dict[str, MintedSession] = {}
        self._propagation_delay = 0.0

    # --- configuration --------------------------------------------------------------------------

    def set_propagation_delay(self, seconds: float | Literal["forever"]) -> None:
        """Keys created from now on are refused for ``seconds`` (``"forever"``: never accepted)."""
        delay = math.inf if seconds == "forever" else float(seconds)
        if delay < 0:
            raise ValueError("propagation delay must be >= 0 seconds or 'forever'")
        with self._lock:
            self._propagation_delay = delay

    @property
    def propagation_delay(self) -> float:
        with self._lock:
            return self._propagation_delay

    # --- facts learned from traffic -------------------------------------------------------------

    def note_created(self, access_key_id: str) -> None:
        """CreateAccessKey returned this key: start its propagation clock and remember it was issued."""
        found = _find_in_moto(access_key_id)
        with self._lock:
            if self._propagation_delay > 0:
                self._usable_from[access_key_id] = time.monotonic() + self._propagation_delay
            if found is not None:
                self._issued[access_key_id] = _identity_from_moto(*found)

    def note_before_delete(self, account_id: str, access_key_id: str | None, user_name: str | None) -> None:
        """Remember keys about to be deleted (DeleteAccessKey, DeleteUser) so they are refused afterwards."""
        candidates: list[tuple[str, IAMBackend, AccessKey]] = []
        if access_key_id:
            found = _find_in_moto(access_key_id)
            if found is not None:
                candidates.append(found)
        if user_name:
            for backend in list(iam_backends[account_id].values()):
                user = backend.users.get(user_name)
                if user is not None:
                    candidates += [(account_id, backend, key) for key in list(user.access_keys)]
        with self._lock:
            for found in candidates:
                self._issued[found[2].access_key_id] = _identity_from_moto(*found)

    def note_minted(self, session: MintedSession) -> None:
        with self._lock:
            self._minted[session.access_key_id] = session

    def session(self, access_key_id: str) -> MintedSession | None:
        with self._lock:
            return self._minted.get(access_key_id)

    def sessions(self) -> list[MintedSession]:
        """Every session minted through the front, oldest first."""
        with self._lock:
            return sorted(self._minted.values(), key=lambda s: s.issued_at)

    def owner_account(self, access_key_id: str) -> str | None:
        """The account that owns a key: a minted session's account, else the IAM user's (also after deletion)."""
        with self._lock:
            minted = self._minted.get(access_key_id)
            issued = self._issued.get(access_key_id)
        if minted is not None:
            return minted.account_id
        found = _find_in_moto(access_key_id)
        if found is not None:
            return found[0]
        return issued.account_id if issued is not None else None

    def create_session_key(self, account_id: str, region: str) -> tuple[str, str]:
        """A fresh temporary (ASIA) key pair held by moto, so later calls signed with it can be verified."""
        key = iam_backends[account_id][get_partition(region)].create_temp_access_key()
        return key.access_key_id, key.secret_access_key

    # --- the question every request asks ---------------------------------------------------------

    def lookup(self, access_key_id: str, account_hint: str | None = None) -> KeyLookup:
        found = _find_in_moto(access_key_id)
        with self._lock:
            minted = self._minted.get(access_key_id)
            issued = self._issued.get(access_key_id)
            usable_from = self._usable_from.get(access_key_id)
        if found is None:
            if issued is not None:
                return KeyLookup("deleted", issued)
            return KeyLookup("unknown", root_identity(account_hint or default_account()))
        identity = minted.identity if minted is not None else _identity_from_moto(*found)
        if issued is None:
            with self._lock:
                self._issued.setdefault(access_key_id, identity)
        key = found[2]
        if key.status != "Active":
            return KeyLookup("inactive", identity, key.secret_access_key)
        if usable_from is not None and time.monotonic() < usable_from:
            return KeyLookup("propagating", identity, key.secret_access_key)
        return KeyLookup("active", identity, key.secret_access_key, minted)

    def status(self, access_key_id: str) -> str:
        """``Active`` / ``Inactive`` as IAM reports it, ``deleted`` if IAM issued it once, else ``unknown``."""
        found = _find_in_moto(access_key_id)
        if found is not None:
            return str(found[2].status)
        with self._lock:
            return "deleted" if access_key_id in self._issued else "unknown"


def _identity_from_moto(account_id: str, backend: IAMBackend, key: AccessKey) -> Identity:
    if key.user_name:
        user = backend.users.get(key.user_name)
        if user is not None:
            return user_identity_of(account_id, user.name, user.id, user.path)
        return user_identity_of(account_id, key.user_name)
    if key.role_arn:
        role_name = key.role_arn.rsplit("/", 1)[-1]
        return Identity(type="AssumedRole", principal_id=f"{role_name}:session",
                        arn=f"arn:aws:sts::{account_id}:assumed-role/{role_name}/session", account_id=account_id)
    return root_identity(account_id)
