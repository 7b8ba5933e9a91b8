"""The two benchmarks of rotation at fleet scale still run end to end, with tiny numbers (their real runs are
`./dev bench emergency_rotation` and `./dev bench pipeline_fleet`, kept out of the test suite)."""

from __future__ import annotations

import pytest

from benchmarks import emergency_rotation, pipeline_fleet


def test_pipeline_fleet_runs_and_accounts_for_every_refused_job() -> None:
    line = pipeline_fleet.main(["--credentials", "6", "--jobs", "4", "--grace", "1"])
    normal, emergency = line.splitlines()
    assert normal.startswith("pipeline_fleet [normal]:") and emergency.startswith("pipeline_fleet [emergency]:")
    for mode in (normal, emergency):
        assert " 0 unexplained" in mode, mode


@pytest.mark.postgres
def test_emergency_rotation_runs_on_both_databases(pg_url: str) -> None:
    line = emergency_rotation.main(["--credentials", "6", "--sequential", "2", "--latency", "0.01"])
    postgresql, sqlite = line.splitlines()
    for kind, text in (("postgresql", postgresql), ("sqlite", sqlite)):
        assert text.startswith(f"emergency_rotation [{kind}]:") and "6/6 working pairs, 6/6 old keys Inactive" in text
