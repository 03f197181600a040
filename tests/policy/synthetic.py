"""Seeded synthetic bake windows: lognormal latencies, binomial errors, positives and labels."""

from __future__ import annotations

import numpy as np

from shared.canary import DeploymentSample

MEDIAN_MS = 40.0
SIGMA = 0.5


def bake(
    rng: np.random.Generator,
    name: str,
    n: int,
    *,
    error_rate: float = 0.003,
    positive_rate: float = 0.02,
    accuracy: float = 0.95,
    labelled_share: float = 0.5,
    scale: float = 1.0,
    slow_share: float = 0.0,
    slow_factor: float = 1.0,
) -> DeploymentSample:
    """One deployment's window. ``scale`` slows every request; ``slow_share`` of them ``slow_factor`` more."""
    errors = int(rng.binomial(n, error_rate))
    ok = n - errors
    latencies = rng.lognormal(np.log(MEDIAN_MS), SIGMA, n) * scale
    slow = rng.random(n) < slow_share
    latencies[slow] *= slow_factor
    labelled = int(ok * labelled_share)
    return DeploymentSample(
        name,
        n,
        errors,
        tuple(latencies),
        predicted_positive=int(rng.binomial(ok, positive_rate)),
        labelled=labelled,
        correct=int(rng.binomial(labelled, accuracy)),
    )
