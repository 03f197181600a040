"""Score the challenger (and the champion, if any) on the same holdout; write comparison.json.

    python training_jobs/evaluate.py --challenger DIR --data PATH --contract contract.json \\
        --output comparison.json [--champion DIR] [--primary-metric pr_auc] [--bootstrap 1000] \\
        [--confidence 0.95] [--seed 0] [--manifest manifest.json] [--holdout-fraction 0.1] \\
        [--guardrail-metrics precision,recall] [--class-guardrail recall:urgent ...] [--guardrail-confidence 0.975]

The holdout is the rows of --data whose key hashes below --holdout-fraction (training_jobs/holdout.py):
train.py left exactly these rows out, so neither model trained on them. Only they are scored. Each
model predicts with its own threshold (from its preprocessing.json). comparison.json is what the promotion policy reads; its shape is fixed
(see training_jobs/README.md). A champion that cannot be loaded or scored (a broken artefact, probabilities that are not
finite) is not an error: the challenger is scored alone and ``champion_unscorable`` says why, so the policy can judge
it on the spec's floors instead of every run stopping at the same broken champion. ``per_class`` holds each model's
one-vs-rest precision, recall, F1 and support per class; each ``--class-guardrail METRIC:CLASS`` gets the paired
bootstrap of that class's metric in ``class_guardrail_differences``. Exit codes: 0 written, 2 bad input (a challenger
that cannot be scored included).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd


def _make_package_importable() -> None:
    """Run as a script (or from Azure ML's copy of this folder, whatever its name): import siblings as a package."""
    if "training_jobs" in sys.modules:
        return
    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location(
        "training_jobs", here / "__init__.py", submodule_search_locations=[str(here)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load training_jobs from {here}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["training_jobs"] = module
    spec.loader.exec_module(module)


if not __package__:
    _make_package_importable()

from training_jobs.arguments import (  # noqa: E402
    HelpFormatter,
    add_contract_and_manifest,
    add_holdout_fraction,
    error_lines,
)
from training_jobs.bundle import Predictor  # noqa: E402
from training_jobs.comparison import mcnemar, paired_bootstrap, paired_class_bootstrap  # noqa: E402
from training_jobs.contract import Contract, load_contract  # noqa: E402
from training_jobs.data import LabelSpace, drop_unlabelled, encode_labels, load_dataset, load_manifest  # noqa: E402
from training_jobs.errors import (  # noqa: E402
    EXIT_BAD_INPUT,
    EXIT_OK,
    DataError,
    ModelBundleError,
    TrainingJobError,
    is_transient_io,
)
from training_jobs.files import write_atomically  # noqa: E402
from training_jobs.holdout import HoldoutRule, in_holdout  # noqa: E402
from training_jobs.metrics import (  # noqa: E402
    CLASS_METRICS,
    class_metrics,
    classification_metrics,
    json_safe,
    non_finite_rows,
    predict_classes,
)

log = logging.getLogger("training_jobs.evaluate")

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "ece")
#: A reason in comparison.json is for people and the run record: bounded (shared/policy.py refuses longer ones).
REASON_MAX_CHARS = 1000
#: What a model folder's JSON may hold that its loader does not expect: wrong types, missing keys, bad values.
_CONTENT_ERRORS = (KeyError, TypeError, ValueError, IndexError, RuntimeError, OSError)


class ChampionUnscorable(Exception):
    """The champion cannot be loaded or scored on the holdout; the message says which champion and what failed."""


def _metric_list(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown metric {unknown[0]!r}; use any of {', '.join(METRICS)}")
    return names


def _class_guardrail(text: str) -> tuple[str, str]:
    """``METRIC:CLASS``: the class is everything after the first ':' (a label value may hold commas and colons)."""
    metric, separator, name = text.partition(":")
    metric = metric.strip()
    if not separator or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not METRIC:CLASS, e.g. recall:urgent")
    if metric not in CLASS_METRICS:
        raise argparse.ArgumentTypeError(
            f"{metric!r} is not a per-class metric; use one of {', '.join(CLASS_METRICS)}, e.g. recall:{name}"
        )
    return metric, name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Challenger vs champion on one holdout; writes comparison.json (see training_jobs/README.md).",
        epilog="example:\n"
        "  perennial spec contract models/fraud.yaml -o contract.json\n"
        "  python training_jobs/evaluate.py --challenger out/ --data holdout/ --contract contract.json \\\n"
        "      --output comparison.json",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("--challenger", type=Path, required=True, metavar="DIR", help="the challenger's model folder")
    p.add_argument("--champion", type=Path, metavar="DIR", help="the champion's model folder (omit for a first model)")
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="PATH",
        help="the run's data (a folder of CSV/Parquet files or one file); only its holdout rows are scored",
    )
    add_contract_and_manifest(p)
    add_holdout_fraction(p)
    p.add_argument(
        "--output", type=Path, required=True, metavar="comparison.json", help="the file the comparison is written to"
    )
    p.add_argument(
        "--primary-metric",
        choices=("pr_auc", "roc_auc", "f1", "accuracy", "precision", "recall"),
        default="pr_auc",
        help="the metric whose difference is bootstrapped",
    )
    p.add_argument(
        "--guardrail-metrics",
        type=_metric_list,
        default=(),
        metavar="M[,M...]",
        help=f"metrics whose challenger-minus-champion difference is bootstrapped too, for the promotion policy's "
        f"guardrails (any of {', '.join(METRICS)}), e.g. precision,recall",
    )
    p.add_argument(
        "--class-guardrail",
        dest="class_guardrails",
        type=_class_guardrail,
        action="append",
        metavar="METRIC:CLASS",
        help=f"one class's one-vs-rest METRIC ({', '.join(CLASS_METRICS)}, from each model's predicted class) whose "
        "difference is bootstrapped the same way, for a per-class guardrail, e.g. recall:urgent; repeat it for more. "
        "CLASS is everything after the first ':', spelt as the label's values (commas and colons are part of it)",
    )
    p.add_argument(
        "--guardrail-confidence",
        type=float,
        metavar="C",
        help="confidence of each guardrail's interval, in (0.5, 1); default --confidence (the platform passes "
        "1 - significance / number of guardrails, per-class ones included, so all of them hold together at "
        "1 - significance)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (>= 100)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the interval, in (0.5, 1)")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's resampling")
    return p


def compare(args: argparse.Namespace) -> dict[str, Any]:
    if args.bootstrap < 100:
        raise TrainingJobError(f"--bootstrap {args.bootstrap} is too few", "use at least 100 (1000 is typical)")
    if not 0.5 < args.confidence < 1.0:
        raise TrainingJobError(f"--confidence {args.confidence} is outside (0.5, 1)", "e.g. 0.95")
    guardrail_confidence = args.confidence if args.guardrail_confidence is None else args.guardrail_confidence
    if not 0.5 < guardrail_confidence < 1.0:
        raise TrainingJobError(f"--guardrail-confidence {guardrail_confidence} is outside (0.5, 1)", "e.g. 0.975")
    contract = load_contract(args.contract)
    manifest = load_manifest(args.manifest) if args.manifest else None
    challenger = Predictor.load(args.challenger)
    space = challenger.preprocessor.labels
    class_guardrails = _class_indexes(args.class_guardrails or [], space, contract)
    champion, unscorable = None, None
    if args.champion is not None:
        try:
            champion = _load_champion(args.champion)
        except ChampionUnscorable as exc:
            unscorable = str(exc)
    if champion is not None and champion.preprocessor.labels != space:
        raise TrainingJobError(
            f"challenger classes {space.classes} differ from champion classes {champion.preprocessor.labels.classes}",
            "models predicting different classes cannot be compared on one holdout",
        )
    rule = HoldoutRule.for_contract(contract, args.holdout_fraction)
    fraction = _scored_fraction(rule, challenger, champion)
    everything = drop_unlabelled(load_dataset(args.data, contract, manifest).frame, contract)
    frame = everything.loc[in_holdout(rule.hashes(everything), fraction)].reset_index(drop=True)
    scored = HoldoutRule(fraction, rule.key, rule.columns)
    if frame.empty:
        raise DataError(
            f"none of the {len(everything)} labelled row(s) of --data falls in the holdout ({scored.describe()})",
            "add data (about that share of the rows is held out), or raise promotion.holdout_fraction in the spec "
            "(--holdout-fraction, the same for train.py and evaluate.py)",
        )
    y = encode_labels(frame, contract, space)
    counts = np.bincount(y, minlength=len(space.classes))
    if np.count_nonzero(counts) < 2:
        raise DataError(
            f"the holdout's {len(frame)} row(s) hold one class only ({_class_counts(space, counts)}; {scored.describe()})",
            "add data holding every class, or raise promotion.holdout_fraction in the spec "
            "(--holdout-fraction, the same for train.py and evaluate.py)",
        )
    p_new = challenger.predict_proba(frame, len(frame))
    classes = list(space.classes)
    result: dict[str, Any] = {
        "primary_metric": args.primary_metric,
        "n_holdout": len(frame),
        # The rarest class, whichever it is (the policy's minimum is on it); of the classes present: a declared
        # class with no rows is not averaged into the metrics either.
        "n_positive": int(counts[counts > 0].min()),
        "holdout": {"fraction": fraction, "rule": scored.describe()},
        "challenger": _challenger_summary(args.challenger, y, p_new, challenger.threshold, classes),
        "champion": None,
        "difference": None,
        "mcnemar": None,
    }
    new_classes = predict_classes(p_new, challenger.threshold)
    if champion is not None:
        try:
            p_old, result["champion"] = _score_champion(args.champion, champion, frame, y, classes)
        except ChampionUnscorable as exc:
            champion, unscorable = None, str(exc)
    old_classes = None if champion is None else predict_classes(p_old, champion.threshold)
    # Each class's one-vs-rest point values, as the per-class guardrails compare them.
    result["per_class"] = {
        "challenger": class_metrics(y, new_classes, classes),
        "champion": None if old_classes is None else class_metrics(y, old_classes, classes),
    }
    if unscorable is not None:
        log.warning(
            "%s; the challenger is scored alone (comparison.json records champion_unscorable, and the promotion "
            "policy judges the challenger on promotion.first_run_floor)",
            unscorable,
        )
        result["champion_unscorable"] = _bounded(unscorable)
    if champion is not None and old_classes is not None:

        def bootstrap(metric: str, confidence: float, seed: int) -> dict[str, object]:
            return paired_bootstrap(
                metric, y, p_new, p_old, challenger.threshold, champion.threshold, args.bootstrap, confidence, seed
            ).to_json()

        result["difference"] = bootstrap(args.primary_metric, args.confidence, args.seed)
        result["mcnemar"] = mcnemar(y, p_new, p_old, challenger.threshold, champion.threshold).to_json()
        # The same paired bootstrap for each guardrail metric: the policy tells a regression the holdout settles
        # from one it cannot (the interval straddles the guardrail's max_regression).
        result["guardrail_differences"] = {
            metric: bootstrap(metric, guardrail_confidence, args.seed + 1 + index)
            for index, metric in enumerate(args.guardrail_metrics)
        }
        # And for each per-class guardrail, on that class's one-vs-rest metric; its seeds follow the metrics'.
        first_seed = args.seed + 1 + len(args.guardrail_metrics)
        result["class_guardrail_differences"] = []
        for index, (metric, cls) in enumerate(class_guardrails):
            difference = paired_class_bootstrap(
                metric, cls, y, new_classes, old_classes, args.bootstrap, guardrail_confidence, first_seed + index
            )
            if difference.bootstrap_samples == 0:  # no holdout row of the class: nothing to compare
                log.warning(
                    "the holdout has no row of class %r: its %s guardrail cannot be compared (per_class says so)",
                    classes[cls],
                    metric,
                )
                continue
            result["class_guardrail_differences"].append({**difference.to_json(), "class": classes[cls]})
    return result


def _class_indexes(guardrails: list[tuple[str, str]], space: LabelSpace, contract: Contract) -> list[tuple[str, int]]:
    """Each ``--class-guardrail`` as (metric, the class's index among the model's classes), once each; a class
    the model does not predict is an error (a class is matched as training spells labels: "01" is 1)."""
    resolved: list[tuple[str, int]] = []
    for metric, name in guardrails:
        key = contract.label_key(name)
        if key not in space.classes:
            shown = list(space.classes) if len(space.classes) <= 20 else [*space.classes[:20], "..."]
            raise TrainingJobError(
                f"--class-guardrail {metric}:{name} names class {name!r}, which the challenger does not predict "
                f"(its classes: {shown})",
                "name one of the label's declared classes (promotion.guardrails[].class in the spec)",
            )
        if (metric, space.classes.index(key)) not in resolved:
            resolved.append((metric, space.classes.index(key)))
    return resolved


def _scored_fraction(rule: HoldoutRule, challenger: Predictor, champion: Predictor | None) -> float:
    """The share of rows to score: --holdout-fraction, or less where a model held out less.

    The holdout is nested in the fraction, so the rows below the smallest fraction any model held out
    are rows neither trained on. A model whose card records another identity (the contract's key
    changed) or none (trained before train.py held rows out) may have trained on some holdout rows:
    that is said, and its scores are as optimistic as they were before.
    """
    fraction = rule.fraction
    for role, model in (("challenger", challenger), ("champion", champion)):
        if model is None:
            continue
        data = model.card.get("data")
        held = data.get("holdout") if isinstance(data, dict) else None
        if not isinstance(held, dict) or held.get("identity") != rule.identity:
            log.warning(
                "the %s's model card does not record a holdout chosen by %s (it records %r): it may have "
                "trained on some holdout rows, which flatters it",
                role,
                rule.identity,
                held.get("identity") if isinstance(held, dict) else None,
            )
            continue
        recorded = held.get("fraction")
        if isinstance(recorded, int | float) and 0.0 < recorded < fraction:
            log.warning(
                "the %s held out %g of the rows, less than --holdout-fraction %g: scoring the %g it never trained on",
                role,
                recorded,
                fraction,
                recorded,
            )
            fraction = float(recorded)
    return fraction


def _champion_name(directory: Path) -> str:
    """The champion as a person would look it up: its folder, and its version or run when its card says."""
    try:
        card = json.loads((directory / "model_card.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        card = None
    if isinstance(card, dict):
        for key in ("model_version", "run_id"):
            if isinstance(card.get(key), str | int) and str(card[key]):
                return f"the champion {directory} ({key.replace('_', ' ')} {card[key]})"
    return f"the champion {directory}"


def _load_champion(directory: Path) -> Predictor:
    try:
        return Predictor.load(directory)
    except TrainingJobError as exc:
        raise ChampionUnscorable(f"{_champion_name(directory)} cannot be loaded: {exc.message}") from exc
    except _CONTENT_ERRORS as exc:
        if is_transient_io(exc):  # a blip reading it: fail and be retried, not promote on floors alone
            raise
        raise ChampionUnscorable(f"{_champion_name(directory)} cannot be loaded: {type(exc).__name__}: {exc}") from exc


def _score_champion(
    directory: Path, champion: Predictor, frame: pd.DataFrame, y: npt.NDArray[np.int64], classes: list[str]
) -> tuple[npt.NDArray[np.float64], dict[str, Any]]:
    """The champion's probabilities and metrics on the holdout, or :class:`ChampionUnscorable` saying why not."""
    try:
        p = champion.predict_proba(frame, len(frame))
    except TrainingJobError as exc:
        raise ChampionUnscorable(f"{_champion_name(directory)} cannot score the holdout: {exc.message}") from exc
    except _CONTENT_ERRORS as exc:
        if is_transient_io(exc):  # a blip reading it: fail and be retried, not promote on floors alone
            raise
        raise ChampionUnscorable(
            f"{_champion_name(directory)} cannot score the holdout: {type(exc).__name__}: {exc}"
        ) from exc
    bad = non_finite_rows(p)
    if bad:
        raise ChampionUnscorable(
            f"{_champion_name(directory)} gives probabilities that are not finite (NaN or inf) for {bad} of the "
            f"{len(frame)} holdout rows: its weights are broken"
        )
    metrics = _summary(classification_metrics(y, p, champion.threshold, classes))
    undefined = _not_finite(metrics)
    if undefined:
        raise ChampionUnscorable(
            f"{_champion_name(directory)}'s holdout metrics are not finite numbers: {', '.join(undefined)}"
        )
    return p, metrics


def _challenger_summary(
    directory: Path, y: npt.NDArray[np.int64], p: npt.NDArray[np.float64], threshold: float, classes: list[str]
) -> dict[str, Any]:
    """The challenger's metrics; a challenger that cannot be scored is an error, never a row of nulls."""
    bad = non_finite_rows(p)
    if bad:
        raise ModelBundleError(
            f"the challenger {directory} gives probabilities that are not finite (NaN or inf) for {bad} of the "
            f"{len(y)} holdout rows",
            "its weights are broken: train it again (train.py never writes non-finite weights; was the folder changed?)",
        )
    metrics = _summary(classification_metrics(y, p, threshold, classes))
    undefined = _not_finite(metrics)
    if undefined:
        raise DataError(
            f"the challenger's holdout metrics are not finite numbers: {', '.join(undefined)}",
            "the holdout must hold every class; add data, or raise promotion.holdout_fraction in the spec",
        )
    return metrics


def _not_finite(metrics: dict[str, Any]) -> list[str]:
    return [name for name, value in metrics.items() if value is None or not math.isfinite(value)]


def _bounded(reason: str) -> str:
    return reason if len(reason) <= REASON_MAX_CHARS else reason[: REASON_MAX_CHARS - 1] + "…"


def _class_counts(space: LabelSpace, counts: npt.NDArray[np.int64]) -> str:
    return ", ".join(f"{name}: {int(n)}" for name, n in zip(space.classes, counts, strict=True))


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {name: metrics[name] for name in METRICS}


def write_comparison(path: Path, comparison: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(comparison), indent=2, allow_nan=False)
    write_atomically(path, text.encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        comparison = compare(args)
    except TrainingJobError as exc:
        print(error_lines(exc), file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    write_comparison(args.output, comparison)
    difference = comparison["difference"]
    summary = f"n_holdout={comparison['n_holdout']} n_positive={comparison['n_positive']} challenger_{args.primary_metric}={comparison['challenger'][args.primary_metric]}"
    if difference is not None:
        summary += f" difference={difference['estimate']:.4f} ci=[{difference['ci_low']:.4f}, {difference['ci_high']:.4f}] p={difference['p_value']:.3f}"
    if "champion_unscorable" in comparison:
        summary += " champion=unscorable"
    print(f"done {summary} output={args.output}", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
