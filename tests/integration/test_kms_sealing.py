"""Envelope encryption of the journal secret under an AWS KMS key (state_kms_key_id), through boto3 and the
sandbox front over moto's KMS."""

from __future__ import annotations

import boto3
import pytest

from rotator.adapters.sealing import FernetSealer, KmsSealer
from rotator.domain import Secret
from rotator.errors import StateKeyError
from rotator.sandbox.aws import AwsSandbox


def test_kms_envelope_round_trip_never_stores_the_plaintext(aws: AwsSandbox) -> None:
    kms = boto3.client("kms", endpoint_url=aws.url, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    key_id = kms.create_key(Description="rotator state")["KeyMetadata"]["KeyId"]
    sealer = KmsSealer(kms, key_id)
    sealed = sealer.seal(Secret("canary-secret-0123456789abcdefghij"))
    assert sealed.startswith(b"kms:") and b"canary-secret" not in sealed
    assert sealer.open(sealed).reveal() == "canary-secret-0123456789abcdefghij"
    actions = [entry.key for entry in aws.log.entries()]
    assert "kms:GenerateDataKey" in actions and "kms:Decrypt" in actions
    # a blob sealed one way is refused by the other, with a next step
    with pytest.raises(StateKeyError, match="not sealed with a Fernet"):
        _fernet().open(sealed)


def _fernet() -> FernetSealer:
    from cryptography.fernet import Fernet

    return FernetSealer(Secret(Fernet.generate_key().decode()))
