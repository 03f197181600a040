"""Candidate planning: which K hyperparameter settings to train, and why each was chosen.

Pure and deterministic for a seed (the orchestration derives it from the run id with
:func:`seed_for_run`, so a replay plans the same candidates). Diversity comes from a Latin hypercube
over all searched options at once: every option's range is cut into K strata and each stratum is
used exactly once, ranges are sampled uniformly or log-uniformly (``log: true``) and value lists are
cycled through evenly. When a value-only space is small enough, the whole grid is trained instead.
The champion's own settings, when given, are candidate 0: a warm-start baseline retrained on the new
data, so the challenger always has to beat "the same recipe, fresher data".
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy.stats import qmc

from shared.spec import DEFAULT_ENTRY, TRAIN_PY_RULES, SearchDimension, TrainingSpec

ParamValue = float | int | str | bool

#: Latin hypercube rounds drawn to replace duplicates (value lists collide) before giving up.
_MAX_ROUNDS = 16


class PlanningError(ValueError):
    def __init__(self, message: str, hint: str) -> None:
        self.hint = hint
        super().__init__(f"{message} ({hint})")


@dataclass(frozen=True)
class Candidate:
    """One training job's settings: ``params`` = the spec's fixed params + the ``searched`` ones."""

    index: int
    params: Mapping[str, ParamValue]
    searched: Mapping[str, ParamValue]
    why: str
    #: A short stable hash of ``params``: the same settings always get the same key.
    key: str


def seed_for_run(run_id: str) -> int:
    """A planning seed derived from a run id (stable across processes, unlike ``hash()``)."""
    return int.from_bytes(hashlib.sha256(run_id.encode("utf-8")).digest()[:4], "big")


def _key(params: Mapping[str, ParamValue]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode("utf-8")).hexdigest()[:10]


def _round(value: float, low: float, high: float) -> float:
    """Four significant digits (readable, stable in job names), kept inside [low, high]."""
    return min(max(float(f"{value:.4g}"), low), high)


def _from_unit(dim: SearchDimension, u: float, whole: bool = False) -> ParamValue:
    """Map u in [0, 1) onto one option: a value of the list, or a point of the (log) range; ``whole``: the
    nearest whole number of the range (train.py refuses 507.8 for --width)."""
    if dim.values is not None:
        return dim.values[min(int(u * len(dim.values)), len(dim.values) - 1)]
    # The spec's invariants guarantee a full range here (and, for a whole-number option, a whole number in it).
    assert dim.min is not None
    assert dim.max is not None
    if dim.log:
        value = math.exp(math.log(dim.min) + u * (math.log(dim.max) - math.log(dim.min)))
    else:
        value = dim.min + u * (dim.max - dim.min)
    if whole:
        return min(max(round(value), math.ceil(dim.min)), math.floor(dim.max))
    return _round(value, dim.min, dim.max)


def _describe(name: str, dim: SearchDimension, u: float, strata: int, whole: bool = False) -> str:
    value = _from_unit(dim, u, whole)
    if dim.values is not None:
        return f"{name}={value!r} (value {dim.values.index(value) + 1} of {dim.values})"
    scale = "log-uniform" if dim.log else "uniform"
    stratum = min(int(u * strata), strata - 1) + 1
    return f"{name}={value!r} ({scale}, stratum {stratum}/{strata} of [{dim.min:g}, {dim.max:g}])"


def _centre(dim: SearchDimension, whole: bool = False) -> ParamValue:
    return _from_unit(dim, 0.5, whole) if dim.values is None else dim.values[0]


def _whole_options(training: TrainingSpec) -> frozenset[str]:
    """The searched options train.py takes as whole numbers (a range of them is drawn as whole numbers)."""
    if training.entry.replace("\\", "/").removeprefix("./") != DEFAULT_ENTRY:
        return frozenset()  # another script's options are its own: its ranges are drawn as the spec gives them
    rules = {name.replace("-", "_"): rule for name, rule in TRAIN_PY_RULES.items()}
    return frozenset(n for n in training.search_space if (r := rules.get(n.replace("-", "_"))) and r.kind == "int")


def _in_space(dim: SearchDimension, value: ParamValue) -> bool:
    if dim.values is not None:
        return value in dim.values
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    assert dim.min is not None
    assert dim.max is not None
    return dim.min <= value <= dim.max


def _merge(fixed: Mapping[str, ParamValue], searched: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
    # A searched option overrides a fixed param of the same name: the search space is the more specific.
    return dict(fixed) | dict(searched)


def _champion_candidate(
    training: TrainingSpec, dims: Sequence[tuple[str, SearchDimension]], champion_params: Mapping[str, ParamValue]
) -> Candidate:
    searched: dict[str, ParamValue] = {}
    notes: list[str] = []
    for name, dim in dims:
        if name in champion_params:
            searched[name] = champion_params[name]
            if not _in_space(dim, champion_params[name]):
                notes.append(f"{name}={champion_params[name]!r} is outside today's search space, kept as it was")
        else:
            searched[name] = _centre(dim, name in _whole_options(training))
            notes.append(f"{name} was not searched for the champion: {searched[name]!r} (the space's centre)")
    shown = ", ".join(f"{k}={v!r}" for k, v in searched.items()) or "the fixed params"
    why = f"the champion's settings ({shown}) retrained on the new data: the warm-start baseline to beat"
    if notes:
        why += "; " + "; ".join(notes)
    params = _merge(training.params, searched)
    return Candidate(0, params, searched, why, _key(params))


def _grid(dims: Sequence[tuple[str, SearchDimension]]) -> list[dict[str, ParamValue]] | None:
    """Every combination of a value-only space, or None when a range makes the space continuous."""
    if any(dim.values is None for _, dim in dims):
        return None
    lists = [dim.values or [] for _, dim in dims]
    return [dict(zip([name for name, _ in dims], combo, strict=True)) for combo in itertools.product(*lists)]


def plan_candidates(
    training: TrainingSpec, seed: int, champion_params: Mapping[str, ParamValue] | None = None
) -> tuple[Candidate, ...]:
    """Plan up to ``training.max_candidates`` distinct candidates from the spec's search space.

    Fewer come back only when the space has fewer distinct settings (an empty space gives one).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise PlanningError(f"seed={seed!r}", "pass a whole number >= 0, e.g. seed_for_run(run_id)")
    dims = sorted(training.search_space.items())
    k = training.max_candidates
    planned: list[Candidate] = []
    seen: set[str] = set()

    def add(searched: Mapping[str, ParamValue], why: str) -> None:
        params = _merge(training.params, searched)
        key = _key(params)
        if key not in seen and len(planned) < k:
            seen.add(key)
            planned.append(Candidate(len(planned), params, dict(searched), why, key))

    if champion_params is not None:
        champion = _champion_candidate(training, dims, champion_params)
        seen.add(champion.key)
        planned.append(champion)
    if not dims:
        add({}, "no search space: the fixed params only")
        return tuple(planned)

    needed = k - len(planned)
    grid = _grid(dims)
    if grid is not None and len(grid) <= needed + len(planned):
        for i, point in enumerate(grid):
            add(point, f"grid point {i + 1} of {len(grid)} (the whole value grid fits in max_candidates={k})")
        return tuple(planned)

    whole = _whole_options(training)
    sampler = qmc.LatinHypercube(d=len(dims), rng=seed)
    for round_no in range(_MAX_ROUNDS):
        if len(planned) >= k:
            break
        points = sampler.random(n=needed)
        for i, point in enumerate(points):
            pairs = list(zip(dims, point, strict=True))
            searched = {name: _from_unit(dim, float(u), name in whole) for (name, dim), u in pairs}
            parts = "; ".join(_describe(name, dim, float(u), needed, name in whole) for (name, dim), u in pairs)
            where = f"round {round_no + 1}, " if round_no else ""
            add(searched, f"Latin hypercube point {i + 1}/{needed} ({where}seed {seed}): {parts}")
    return tuple(planned)
