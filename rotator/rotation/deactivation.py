"""Reading back a deactivated access key: the one check behind every "X is Inactive" rotator says.

UpdateAccessKey answering 200 proves nothing by itself (an accepted update may not have taken effect yet, or at
all), and IAM is eventually consistent: ListAccessKeys may show the old status for a few seconds. Rotation
(retire, emergency) and containment (`revoke`) both read back through ``read_back_inactive``.
"""

from __future__ import annotations

from rotator.domain import AccessKey, KeyStatus
from rotator.ports import Clock, Iam

READ_BACK_ATTEMPTS = 5  # ListAccessKeys reads, about a second apart


def read_back_inactive(iam: Iam, user_name: str, key_id: str, clock: Clock, *,
                       attempts: int = READ_BACK_ATTEMPTS) -> AccessKey | None:
    """ListAccessKeys until it shows ``key_id`` Inactive or gone, at most ``attempts`` times, about a second
    apart. Returns the key as IAM last listed it (its status may still be Active), or None when the user has no
    such key. An error of the listing is raised as is."""
    attempt = 1
    while True:  # at least one read, whatever ``attempts`` says: None must mean "IAM lists no such key"
        key = next((k for k in iam.list_access_keys(user_name) if k.key_id == key_id), None)
        if key is None or key.status is KeyStatus.INACTIVE or attempt >= attempts:
            return key
        clock.sleep(1.0)
        attempt += 1
