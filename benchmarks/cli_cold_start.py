"""Cold start of `rotator --help`: the goal is ≤ 0.3 s, and no SDK import at all.

Prints the median wall time of `rotator --help` and of a bare `python -c pass` measured in the same run,
their ratio, and the ratio to the 0.3 s goal.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from benchmarks._common import ROTATOR

GOAL_SECONDS = 0.3


def _median_seconds(command: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> str:
    runs = int(argv[0]) if argv else 15
    bare = _median_seconds([sys.executable, "-c", "pass"], runs)
    help_time = _median_seconds([ROTATOR, "--help"], runs)
    line = (f"cli_cold_start: rotator --help {help_time * 1000:.0f} ms (median of {runs}), bare python "
            f"{bare * 1000:.0f} ms, ratio {help_time / bare:.2f}x; vs goal {GOAL_SECONDS * 1000:.0f} ms: "
            f"{help_time / GOAL_SECONDS:.2f}x ({'ok' if help_time <= GOAL_SECONDS else 'OVER'})")
    print(line)
    return line


if __name__ == "__main__":
    main(sys.argv[1:])
