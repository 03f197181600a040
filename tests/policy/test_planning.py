"""plan_candidates: K distinct, diverse, reproducible candidates, the champion as baseline, a why for each."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from shared.planning import PlanningError, plan_candidates, seed_for_run
from shared.spec import SearchDimension, TrainingSpec

SPACE = {
    "lr": SearchDimension(min=1e-4, max=1e-1, log=True),
    "dropout": SearchDimension(min=0.0, max=0.5),
    "width": SearchDimension(values=[64, 128, 256]),
}
SPEC = TrainingSpec(max_candidates=6, params={"epochs": 8, "batch_size": 512}, search_space=SPACE)


def test_same_seed_same_plan_and_different_seed_different_plan() -> None:
    a, b = plan_candidates(SPEC, 7), plan_candidates(SPEC, 7)
    assert a == b
    assert [c.params for c in plan_candidates(SPEC, 8)] != [c.params for c in a]


def test_k_distinct_candidates_with_fixed_params_merged_in() -> None:
    plan = plan_candidates(SPEC, 1)
    assert [c.index for c in plan] == list(range(6))
    assert len({c.key for c in plan}) == 6
    for c in plan:
        assert c.params["epochs"] == 8
        assert c.params["batch_size"] == 512
        assert set(c.searched) == {"lr", "dropout", "width"}
        assert 1e-4 <= c.params["lr"] <= 1e-1  # type: ignore[operator]
        assert 0.0 <= c.params["dropout"] <= 0.5  # type: ignore[operator]


def test_ranges_are_stratified_one_candidate_per_stratum() -> None:
    """Latin hypercube: cut each range into K strata, every stratum is used exactly once."""
    plan = plan_candidates(SPEC, 3)
    k = len(plan)
    lrs = [float(c.params["lr"]) for c in plan]
    dropouts = [float(c.params["dropout"]) for c in plan]
    lr_strata = sorted(int((math.log(x) - math.log(1e-4)) / (math.log(1e-1) - math.log(1e-4)) * k) for x in lrs)
    dropout_strata = sorted(min(int(x / 0.5 * k), k - 1) for x in dropouts)
    assert lr_strata == list(range(k))
    assert dropout_strata == list(range(k))


def test_value_lists_are_used_evenly() -> None:
    widths = [c.params["width"] for c in plan_candidates(SPEC, 5)]
    assert sorted(widths) == [64, 64, 128, 128, 256, 256]


def test_log_ranges_are_sampled_log_uniformly() -> None:
    """With K = 30 on [1e-4, 1e-1], a third of the candidates fall in each decade."""
    spec = TrainingSpec(max_candidates=30, search_space={"lr": SearchDimension(min=1e-4, max=1e-1, log=True)})
    decades = [int(math.log10(c.params["lr"]) + 4) for c in plan_candidates(spec, 11)]  # type: ignore[arg-type]
    assert [decades.count(d) for d in range(3)] == [10, 10, 10]


def test_each_candidate_says_why() -> None:
    plan = plan_candidates(SPEC, 2)
    assert "Latin hypercube point 1/6 (seed 2)" in plan[0].why
    assert "log-uniform, stratum" in plan[0].why
    assert "width=" in plan[0].why
    assert "of [64, 128, 256]" in plan[0].why


def test_the_champion_is_candidate_zero_as_warm_start_baseline() -> None:
    champion = {"lr": 0.003, "dropout": 0.2, "width": 128, "epochs": 3}
    plan = plan_candidates(SPEC, 4, champion_params=champion)
    assert len(plan) == 6
    assert plan[0].searched == {"lr": 0.003, "dropout": 0.2, "width": 128}
    assert plan[0].params["epochs"] == 8, "today's fixed params win over the champion's old ones"
    assert "warm-start baseline" in plan[0].why
    assert "Latin hypercube point 1/5" in plan[1].why
    assert plan[0].key not in {c.key for c in plan[1:]}


def test_a_champion_outside_todays_space_is_kept_and_flagged() -> None:
    plan = plan_candidates(SPEC, 4, champion_params={"lr": 0.5, "width": 32})
    assert plan[0].searched["lr"] == 0.5
    assert "lr=0.5 is outside today's search space" in plan[0].why
    assert "dropout was not searched for the champion: 0.25" in plan[0].why


def test_a_small_value_grid_is_trained_whole() -> None:
    spec = TrainingSpec(
        max_candidates=8,
        search_space={"width": SearchDimension(values=[64, 128]), "depth": SearchDimension(values=[2, 3])},
    )
    plan = plan_candidates(spec, 0)
    assert len(plan) == 4
    assert {(c.params["width"], c.params["depth"]) for c in plan} == {(64, 2), (64, 3), (128, 2), (128, 3)}
    assert "grid point 1 of 4" in plan[0].why


def test_a_value_grid_larger_than_k_gets_k_distinct_points() -> None:
    spec = TrainingSpec(
        max_candidates=5,
        search_space={"width": SearchDimension(values=[32, 64, 128]), "depth": SearchDimension(values=[1, 2, 3])},
    )
    plan = plan_candidates(spec, 9)
    assert len({(c.params["width"], c.params["depth"]) for c in plan}) == 5


def test_no_search_space_gives_one_candidate() -> None:
    plan = plan_candidates(TrainingSpec(max_candidates=4, params={"epochs": 2}), 0)
    assert len(plan) == 1
    assert plan[0].params == {"epochs": 2}
    assert "no search space" in plan[0].why


def test_the_fraud_spec_plans_its_three_candidates() -> None:
    from pathlib import Path

    from shared.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[2] / "models" / "fraud.yaml")
    plan = plan_candidates(spec.training, seed_for_run("run-2025-06-01-0001"))
    assert len(plan) == spec.training.max_candidates
    assert len({c.key for c in plan}) == len(plan)


def test_seed_for_run_is_stable() -> None:
    assert seed_for_run("run-1") == seed_for_run("run-1")
    assert seed_for_run("run-1") != seed_for_run("run-2")
    assert 0 <= seed_for_run("x") < 2**32


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seeds_are_refused(seed: object) -> None:
    with pytest.raises(PlanningError, match="seed="):
        plan_candidates(SPEC, seed)  # type: ignore[arg-type]


def test_a_range_of_a_whole_number_option_is_drawn_as_whole_numbers_train_py_accepts() -> None:
    """`width: {min: 32, max: 512}` once planned 507.8, which train.py refuses: every such job failed, paid for."""
    from training_jobs.train import build_parser

    space = {
        "width": SearchDimension(min=32, max=512),
        "depth": SearchDimension(min=0.5, max=4.4),
        "batch_size": SearchDimension(min=64, max=4096, log=True),
        "lr": SearchDimension(min=1e-4, max=1e-1, log=True),
    }
    spec = TrainingSpec(max_candidates=8, search_space=space)
    plan = plan_candidates(spec, 5, champion_params={"lr": 1e-3})
    assert len(plan) == 8
    for candidate in plan:
        for name in ("width", "depth", "batch_size"):
            value = candidate.params[name]
            assert isinstance(value, int), (name, value)
        assert 1 <= candidate.params["depth"] <= 4  # type: ignore[operator]
        argv = [f"--{k.replace('_', '-')}={v}" for k, v in candidate.params.items()]
        build_parser().parse_args(["--data", "d", "--contract", "c.json", "--output-dir", "o", *argv])
    assert any(not float(c.params["lr"]).is_integer() for c in plan), "a float option keeps its fractions"
    custom = TrainingSpec(entry="jobs/my_train.py", max_candidates=3, search_space={"width": space["width"]})
    assert any(isinstance(c.params["width"], float) for c in plan_candidates(custom, 5)), "another script's own"


def test_a_whole_number_range_without_a_whole_number_is_refused() -> None:
    import yaml

    from shared.spec import SpecError, parse_spec

    root = Path(__file__).resolve().parents[2]
    document = yaml.safe_load((root / "models" / "fraud.yaml").read_text(encoding="utf-8"))
    document["training"]["search_space"] = {"width": {"min": 32.2, "max": 32.8}}
    with pytest.raises(SpecError, match=r"training.search_space.width='\[32.2, 32.8\]' holds no whole number"):
        parse_spec(document, "fraud.yaml")
