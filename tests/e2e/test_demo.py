"""The README's demo command must keep working: run it end to end (the service part shortened)."""

from __future__ import annotations

import subprocess

import pytest

from tests.sandbox_support import ROTATOR

pytestmark = pytest.mark.slow


def test_demo_runs_every_part_and_exits_0() -> None:
    done = subprocess.run([ROTATOR, "demo", "--service-seconds", "8"], text=True, capture_output=True,
                          timeout=600, check=False, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "✘" not in output.split("rotate a credential live")[0]  # every check probe passed
    assert "✔ AWS accepts the pair" in output and "✘ AWS rejects" not in output
    assert "#team-payments: rotator: payments-deploy rotated" in output
    assert "is contained (Inactive)" in output and "identity persistence" in output
    assert "rotator_last_tick_timestamp_seconds" in output
    # An AWS Health event, no command typed: the running service contained the key and repaired the pipeline.
    exposure = output.split("AWS Health reports a key exposed")[1]
    assert "is Inactive; the pipeline holds a new key" in exposure and "✔ AWS accepts the pair" in exposure
    assert "rotator_exposure_events_acted_on_total" in output
    assert "Traceback" not in output
