"""The end-to-end SIGKILL test at scale: 500 trials (CI runs 50). Prints how the kills spread over the steps.

    python -m benchmarks kill_trials          # 500 trials
    python -m benchmarks.kill_trials 100      # another count
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> str:
    trials = int(argv[0]) if argv else 500
    env = {**os.environ, "ROTATOR_KILL_TRIALS": str(trials)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--timeout", "0",
                           "tests/e2e/test_kill_rotation.py"], cwd=ROOT, env=env, text=True, capture_output=True,
                          check=False)
    spread = next((line for line in done.stdout.splitlines() if line.startswith("kill points hit")), "")
    elapsed = time.monotonic() - started
    verdict = "every invariant held" if done.returncode == 0 else "FAILED (see output)"
    if done.returncode != 0:
        print(done.stdout[-5000:], done.stderr[-2000:])
    line = f"kill_trials: {trials} SIGKILL trials in {elapsed:.0f} s: {verdict}; {spread}"
    print(line)
    return line


if __name__ == "__main__":
    main(sys.argv[1:])
