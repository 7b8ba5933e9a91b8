"""`revoke` when AWS cannot be asked at all, through the real CLI: no credentials anywhere, or an endpoint that
refuses connections. It says what is wrong, never "grant sts:GetAccessKeyInfo", exits 1, and shows no
traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.outage_support import free_port
from tests.sandbox_support import ROTATOR


@pytest.mark.parametrize(("extra", "said"), [
    ({}, "no AWS credentials found"),
    ({"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret"},
     "the AWS endpoint is unreachable"),
])
def test_revoke_says_what_is_wrong_with_aws(tmp_path: Path, extra: dict[str, str], said: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", **extra}
    done = subprocess.run([ROTATOR, "revoke", "--key", "AKIAIOSFODNN7EXAMPLE"], env=env, cwd=tmp_path, text=True,
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOT CONTAINED" in done.stderr and said in done.stderr
    assert "grant sts:GetAccessKeyInfo" not in done.stderr + done.stdout and "Traceback" not in done.stderr
