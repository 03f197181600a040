"""evaluate.py: challenger vs champion on one holdout, comparison.json in the exact agreed shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from shared.policy import parse_comparison
from tests.training.conftest import EVALUATE, Problem, run_script
from training_jobs import evaluate
from training_jobs.contract import load_contract
from training_jobs.holdout import HoldoutRule

MODEL_KEYS = {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "ece"}
DIFFERENCE_KEYS = {"metric", "estimate", "ci_low", "ci_high", "confidence", "p_value", "bootstrap_samples"}


def compare(holdout: Problem, output: Path, challenger: Path, champion: Path | None, *extra: str) -> dict[str, object]:
    argv = ["--challenger", str(challenger), "--data", str(holdout.data), "--contract", str(holdout.contract)]
    argv += ["--output", str(output), *extra]
    if champion is not None:
        argv += ["--champion", str(champion)]
    assert evaluate.main(argv) == 0
    result: dict[str, object] = json.loads(output.read_text())
    return result


def test_a_better_challenger_wins_with_a_confidence_interval_above_zero(
    holdout: Problem, trained: Path, weak: Path, tmp_path: Path
) -> None:
    result = compare(holdout, tmp_path / "comparison.json", trained, weak)
    top = {"primary_metric", "n_holdout", "n_positive", "holdout", "challenger", "champion", "difference", "mcnemar"}
    assert set(result) == top | {"guardrail_differences", "class_guardrail_differences", "per_class"}
    assert result["guardrail_differences"] == {}, "none asked for"
    assert result["class_guardrail_differences"] == [], "none asked for"
    assert result["primary_metric"] == "pr_auc"
    # Only the holdout rows of --data are scored (training_jobs/holdout.py): 505 of these 5,000, 26 positive.
    assert (result["n_holdout"], result["n_positive"]) == (505, 26)
    assert result["holdout"] == {
        "fraction": 0.1,
        "rule": HoldoutRule.for_contract(load_contract(holdout.contract), 0.1).describe(),
    }
    challenger, champion = result["challenger"], result["champion"]
    assert isinstance(challenger, dict)
    assert isinstance(champion, dict)
    assert set(challenger) == MODEL_KEYS
    assert set(champion) == MODEL_KEYS
    difference = result["difference"]
    assert isinstance(difference, dict)
    assert set(difference) == DIFFERENCE_KEYS
    assert difference["metric"] == "pr_auc"
    assert difference["estimate"] == pytest.approx(challenger["pr_auc"] - champion["pr_auc"])
    assert difference["ci_low"] > 0
    assert difference["ci_low"] < difference["estimate"] < difference["ci_high"]
    assert difference["p_value"] < 0.01
    assert difference["confidence"] == 0.95
    assert difference["bootstrap_samples"] == 1000
    mcnemar = result["mcnemar"]
    assert isinstance(mcnemar, dict)
    assert set(mcnemar) == {"b", "c", "statistic", "p_value"}
    assert 0 <= mcnemar["p_value"] <= 1


def test_each_guardrail_metric_gets_the_same_paired_bootstrap(
    holdout: Problem, trained: Path, weak: Path, tmp_path: Path
) -> None:
    result = compare(
        holdout,
        tmp_path / "comparison.json",
        trained,
        weak,
        "--guardrail-metrics",
        "recall,ece",
        "--guardrail-confidence",
        "0.975",
    )
    differences = result["guardrail_differences"]
    assert isinstance(differences, dict)
    assert set(differences) == {"recall", "ece"}
    challenger, champion = result["challenger"], result["champion"]
    assert isinstance(challenger, dict)
    assert isinstance(champion, dict)
    for metric, difference in differences.items():
        assert set(difference) == DIFFERENCE_KEYS
        assert difference["metric"] == metric
        assert difference["estimate"] == pytest.approx(challenger[metric] - champion[metric])
        assert difference["ci_low"] <= difference["estimate"] <= difference["ci_high"]
        assert difference["bootstrap_samples"] > 900
        assert difference["confidence"] == 0.975, "the guardrails' own (corrected) confidence"
    parsed = parse_comparison(result)
    assert parsed.guardrail_differences["recall"].ci_high == differences["recall"]["ci_high"]
    # Without a champion there is nothing to compare: no bootstrap, and the file still parses.
    alone = compare(holdout, tmp_path / "alone.json", trained, None, "--guardrail-metrics", "recall")
    assert "guardrail_differences" not in alone
    argv = ["--challenger", "x", "--data", "d", "--output", "o", "--contract", "c", "--guardrail-metrics"]
    assert evaluate.build_parser().parse_args([*argv, "recall, ece"]).guardrail_metrics == ("recall", "ece")
    with pytest.raises(SystemExit) as refused:
        evaluate.build_parser().parse_args([*argv, "log_loss"])
    assert refused.value.code == 2


def test_swapping_the_models_flips_the_difference(holdout: Problem, trained: Path, weak: Path, tmp_path: Path) -> None:
    forward = compare(holdout, tmp_path / "a.json", trained, weak, "--bootstrap", "200")
    backward = compare(holdout, tmp_path / "b.json", weak, trained, "--bootstrap", "200")
    f, b = forward["difference"], backward["difference"]
    assert isinstance(f, dict)
    assert isinstance(b, dict)
    assert b["estimate"] == pytest.approx(-f["estimate"])
    assert b["ci_high"] < 0
    assert b["p_value"] > 0.99
    fm, bm = forward["mcnemar"], backward["mcnemar"]
    assert isinstance(fm, dict)
    assert isinstance(bm, dict)
    assert (fm["b"], fm["c"]) == (bm["c"], bm["b"])


def test_a_model_against_itself_is_no_improvement(holdout: Problem, trained: Path, tmp_path: Path) -> None:
    result = compare(
        holdout, tmp_path / "c.json", trained, trained, "--bootstrap", "100", "--primary-metric", "roc_auc"
    )
    difference = result["difference"]
    assert isinstance(difference, dict)
    assert difference["estimate"] == 0.0
    assert difference["ci_low"] == 0.0
    assert difference["ci_high"] == 0.0
    assert difference["p_value"] == 1.0  # every resample has difference <= 0
    assert result["mcnemar"] == {"b": 0, "c": 0, "statistic": 0.0, "p_value": 1.0}


def test_without_a_champion_only_the_challenger_is_scored(holdout: Problem, trained: Path, tmp_path: Path) -> None:
    result = compare(holdout, tmp_path / "first.json", trained, None)
    assert result["champion"] is None
    assert result["difference"] is None
    assert result["mcnemar"] is None
    assert isinstance(result["challenger"], dict)
    assert result["challenger"]["roc_auc"] > 0.8  # on the ~500 holdout rows of the 5,000


def test_the_same_seed_gives_the_same_interval(holdout: Problem, trained: Path, weak: Path, tmp_path: Path) -> None:
    one = compare(holdout, tmp_path / "1.json", trained, weak, "--bootstrap", "200", "--seed", "4")
    two = compare(holdout, tmp_path / "2.json", trained, weak, "--bootstrap", "200", "--seed", "4")
    assert one == two


def test_the_script_exits_2_on_a_missing_model_or_a_bad_manifest(
    holdout: Problem, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data", str(holdout.data), "--contract", str(holdout.contract), "--output", str(tmp_path / "x.json")]
    assert evaluate.main(["--challenger", str(tmp_path / "nothing"), *args]) == 2
    assert "no model.safetensors" in capsys.readouterr().err
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"files": [{"name": "batch-000.csv", "sha256": "f" * 64}]}))
    done = run_script(EVALUATE, ["--challenger", str(trained), "--manifest", str(manifest), *args])
    assert done.returncode == 2
    assert "batch-000.csv: sha256" in done.stderr
    assert "hint:" in done.stderr
    assert not (tmp_path / "x.json").exists()


# --------------------------------------------------------------------------- a champion that cannot be scored


def _broken_copy(model: Path, into: Path) -> Path:
    into.mkdir()
    for name in ("model.safetensors", "model_config.json", "preprocessing.json", "model_card.json"):
        (into / name).write_bytes((model / name).read_bytes())
    return into


def _one_nan_weight(model: Path) -> None:
    weights = load_file(str(model / "model.safetensors"))
    name = next(k for k, v in weights.items() if v.dtype.is_floating_point and v.ndim == 2)
    weights[name][0, 0] = float("nan")
    save_file(weights, str(model / "model.safetensors"))


def _judged_alone(result: dict[str, object], *phrases: str) -> None:
    assert result["champion"] is None
    assert result["difference"] is None
    assert result["mcnemar"] is None
    challenger = result["challenger"]
    assert isinstance(challenger, dict)
    assert set(challenger) == MODEL_KEYS
    assert all(isinstance(value, float) for value in challenger.values()), "the challenger is still scored"
    reason = result["champion_unscorable"]
    assert isinstance(reason, str)
    for phrase in phrases:
        assert phrase in reason


def test_a_champion_with_a_nan_weight_is_recorded_as_unscorable_not_as_nulls(
    holdout: Problem, trained: Path, weak: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    champion = _broken_copy(weak, tmp_path / "nan-champion")
    _one_nan_weight(champion)
    with caplog.at_level("WARNING", logger="training_jobs.evaluate"):
        result = compare(holdout, tmp_path / "comparison.json", trained, champion)
    _judged_alone(result, str(champion), "probabilities that are not finite", "505 of the 505 holdout rows")
    assert "is scored alone" in caplog.text
    parsed = parse_comparison(result)  # the policy reads it: no nulls where numbers belong
    assert parsed.champion_unscorable == result["champion_unscorable"]


def test_a_champion_whose_weights_file_is_truncated_is_recorded_as_unscorable(
    holdout: Problem, trained: Path, weak: Path, tmp_path: Path
) -> None:
    champion = _broken_copy(weak, tmp_path / "truncated-champion")
    weights = champion / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = compare(holdout, tmp_path / "comparison.json", trained, champion)
    _judged_alone(result, str(champion), "cannot be loaded", "model.safetensors")


def test_a_champion_folder_without_its_files_is_recorded_as_unscorable(
    holdout: Problem, trained: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-champion"
    empty.mkdir()
    result = compare(holdout, tmp_path / "comparison.json", trained, empty)
    _judged_alone(result, "cannot be loaded", "no model.safetensors")


def test_a_challenger_that_cannot_be_scored_is_still_an_error(
    holdout: Problem, trained: Path, weak: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    challenger = _broken_copy(weak, tmp_path / "nan-challenger")
    _one_nan_weight(challenger)
    argv = ["--challenger", str(challenger), "--champion", str(trained), "--data", str(holdout.data)]
    argv += ["--contract", str(holdout.contract), "--output", str(tmp_path / "x.json")]
    assert evaluate.main(argv) == 2
    assert "the challenger" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_a_blip_reading_the_champion_fails_the_job_to_be_retried_not_promoted_on_floors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An I/O error reading a mounted champion is not "unscorable" (which judges the challenger on its floors
    alone): it fails the job (exit 1, retried). A champion whose files are missing is unscorable."""
    import errno

    from training_jobs import evaluate
    from training_jobs.bundle import Predictor

    def blip(directory: Path) -> Predictor:
        raise OSError(errno.EIO, "Input/output error", str(directory))

    monkeypatch.setattr(Predictor, "load", staticmethod(blip))
    with pytest.raises(OSError, match="Input/output error"):
        evaluate._load_champion(tmp_path)

    def missing(directory: Path) -> Predictor:
        raise FileNotFoundError(errno.ENOENT, "No such file", str(directory / "model.safetensors"))

    monkeypatch.setattr(Predictor, "load", staticmethod(missing))
    with pytest.raises(evaluate.ChampionUnscorable, match="cannot be loaded: FileNotFoundError"):
        evaluate._load_champion(tmp_path)


def test_a_blip_reading_a_data_file_is_not_a_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 2 (bad input) is not retried, so a transient read error must not be reported as one."""
    import errno

    import pandas as pd

    from training_jobs import data
    from training_jobs.contract import Column, Contract
    from training_jobs.errors import DataError

    contract = Contract(columns=(Column("a", "int"), Column("b", "int")), label="b")

    path = tmp_path / "batch.csv"
    path.write_text("a,b\n1,2\n")

    def blip(*args: object, **kwargs: object) -> pd.DataFrame:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    monkeypatch.setattr(pd, "read_csv", blip)
    with pytest.raises(OSError, match="Transport endpoint"):
        data._read_one(path, contract)
    monkeypatch.undo()
    with pytest.raises(DataError, match="cannot read it"):
        data._read_one(tmp_path / "gone.csv", contract)


def test_a_bad_file_is_bad_input_and_only_an_io_blip_is_retried(tmp_path: Path) -> None:
    """pyarrow reports a truncated Parquet file as a plain OSError: that is a bad file (exit 2), not a blip."""
    import errno
    import gzip

    from training_jobs import data
    from training_jobs.contract import Column, Contract
    from training_jobs.errors import DataError, is_transient_io

    contract = Contract(columns=(Column("a", "int"), Column("b", "int")), label="b")
    truncated = tmp_path / "batch.parquet"
    truncated.write_bytes(b"PAR1" + b"\0" * 64 + b"PAR1")
    with pytest.raises(DataError, match="cannot read it"):
        data._read_one(truncated, contract)
    assert not is_transient_io(gzip.BadGzipFile("not a gzip file"))
    assert not is_transient_io(PermissionError(errno.EACCES, "denied"))
    assert is_transient_io(OSError(errno.ESTALE, "Stale file handle"))
    assert is_transient_io(TimeoutError())
