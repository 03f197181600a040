"""The names that tie a run's candidates, their jobs and their registry records together."""

from __future__ import annotations

from shared.workflow import candidate_id, candidate_job_base, candidate_of_job, job_name


def test_a_candidate_is_found_again_from_its_job_base_name() -> None:
    run_id = "fraud-3f2a9c1e0b7d4a65"  # run ids hold a '-' themselves
    for index in (0, 1, 12):
        base = candidate_job_base(run_id, index)
        assert base.startswith(f"{run_id}-")
        assert candidate_of_job(base) == candidate_id(index)
    assert job_name(candidate_job_base(run_id, 2), 1) == f"{run_id}-c2-a1"
