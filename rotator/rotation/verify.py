"""The STS check of a new key pair, before it is published anywhere."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from rotator.domain import IamUser, NewAccessKey
from rotator.errors import AwsThrottled, AwsUnavailable
from rotator.rotation.results import RotationPorts


def verify_new_key(ports: RotationPorts, new_key: NewAccessKey, user: IamUser, timeout: timedelta,
                   guard: Callable[[], None]) -> tuple[bool, str]:
    """GetCallerIdentity with the new pair about once a second until it answers with the user's ARN.

    IAM is eventually consistent (typically 3-15 s). Throttling or an unreachable endpoint means
    "ask again later", never "key invalid".
    """
    deadline = ports.clock.now() + timeout
    attempts = 0
    throttled = 0
    while True:
        attempts += 1
        try:
            arn = ports.sts.caller_arn(new_key)
        except (AwsThrottled, AwsUnavailable):
            throttled += 1
            arn = None
        if arn == user.arn:
            return True, f"STS accepted {new_key.key_id} as {arn} after {attempts} attempt(s)"
        if arn is not None:
            return False, f"STS says {new_key.key_id} belongs to {arn}, not {user.arn}"
        if ports.clock.now() >= deadline:
            why = f" ({throttled} attempt(s) throttled or unreachable)" if throttled else ""
            return False, (f"STS did not accept {new_key.key_id} within {int(timeout.total_seconds())}s "
                           f"after {attempts} attempt(s){why}")
        guard()
        ports.clock.sleep(min(1.0 * (2 ** min(throttled, 3)), 8.0) if throttled else 1.0)
