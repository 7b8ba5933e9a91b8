"""Sealing of the one secret the journal may hold: Fernet, or envelope encryption under AWS KMS.

A sealed blob is self-describing (``fernet:`` or ``kms:`` prefix) so a store written with one method is
never opened with the other by mistake.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from rotator.adapters.aws import aws_call
from rotator.domain import Secret
from rotator.errors import StateKeyError

FERNET_PREFIX = b"fernet:"
KMS_PREFIX = b"kms:"
GENERATE_HINT = (
    "generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


def _fernet(key: Secret, source: str) -> Fernet:
    try:
        return Fernet(key.reveal().strip().encode())
    except (ValueError, TypeError):
        raise StateKeyError(f"{source} is not a Fernet key (32 url-safe base64-encoded bytes)",
                            hint=GENERATE_HINT) from None


class FernetSealer:
    """ports.SecretSealer with a Fernet key from [service] state_key_env / state_key_file."""

    def __init__(self, key: Secret, source: str = "the state key") -> None:
        self._fernet = _fernet(key, source)

    def seal(self, secret: Secret) -> bytes:
        return FERNET_PREFIX + self._fernet.encrypt(secret.reveal().encode())

    def open(self, sealed: bytes) -> Secret:
        if not sealed.startswith(FERNET_PREFIX):
            raise StateKeyError("the journal secret was not sealed with a Fernet state key",
                                hint="configure the same [service] state_kms_key_id that sealed it")
        try:
            return Secret(self._fernet.decrypt(sealed[len(FERNET_PREFIX):]).decode())
        except InvalidToken:
            raise StateKeyError("the state key does not open the in-flight secret in the journal",
                                hint="restore the state key that was in use when the rotation started") from None


class KmsSealer:
    """Envelope encryption: a fresh KMS data key per secret, the secret sealed locally with it."""

    def __init__(self, kms_client: Any, key_id: str) -> None:
        self._kms = kms_client
        self._key_id = key_id

    def seal(self, secret: Secret) -> bytes:
        with aws_call("kms:GenerateDataKey", self._key_id):
            data_key = self._kms.generate_data_key(KeyId=self._key_id, KeySpec="AES_256")
        fernet = Fernet(base64.urlsafe_b64encode(data_key["Plaintext"]))
        envelope = {
            "key": base64.b64encode(data_key["CiphertextBlob"]).decode(),
            "token": fernet.encrypt(secret.reveal().encode()).decode(),
        }
        return KMS_PREFIX + json.dumps(envelope).encode()

    def open(self, sealed: bytes) -> Secret:
        if not sealed.startswith(KMS_PREFIX):
            raise StateKeyError("the journal secret was not sealed with KMS",
                                hint="configure the Fernet state key (state_key_env) that sealed it")
        envelope = json.loads(sealed[len(KMS_PREFIX):])
        with aws_call("kms:Decrypt", self._key_id):
            plain = self._kms.decrypt(CiphertextBlob=base64.b64decode(envelope["key"]))["Plaintext"]
        try:
            return Secret(Fernet(base64.urlsafe_b64encode(plain)).decrypt(envelope["token"].encode()).decode())
        except InvalidToken:
            raise StateKeyError("the KMS data key does not open the in-flight secret",
                                hint="the journal entry is corrupt; roll the rotation back") from None
