"""Seeded synthetic bake windows: lognormal latencies, binomial errors, positives and labels; and latencies
that are mostly queueing (autocorrelated), for the latency comparison."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from scipy import signal

from shared.canary import DeploymentSample, WindowP95
from shared.spec import Gates

MEDIAN_MS = 40.0
SIGMA = 0.5
#: The fraud spec's gates, as the statistical tests of the canary use them.
GATES = Gates(
    max_error_rate=0.01,
    max_p95_latency_ms=300,
    max_latency_ratio=1.5,
    max_positive_rate_shift=0.05,
    max_accuracy_drop=0.02,
    min_samples=50,
    confidence=0.99,
)


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


# --------------------------------------------------------------------------- queueing: autocorrelated latencies


@dataclass(frozen=True)
class Queueing:
    """Latencies that are mostly queueing: ``MEDIAN_MS × exp(load + queue + noise)`` per request, where

    * ``load`` is the traffic both deployments see, per minute: AR(1) with ``load_rho`` from one minute to the next;
    * ``queue`` is each deployment's own backlog, per second: AR(1) with ``queue_rho`` from one second to the next
      (0.98: a slow spell lasts about 50 s), independent between the two deployments;
    * ``noise`` is each request's own service time.

    The ``*_sd`` are the stationary standard deviations (log scale).
    """

    load_rho: float = 0.9
    load_sd: float = 0.4
    queue_rho: float = 0.98
    queue_sd: float = 0.4
    noise_sd: float = 0.3


def _ar1(rng: np.random.Generator, shape: tuple[int, int], rho: float, sd: float) -> np.ndarray:
    """Stationary AR(1) series along the last axis (rows are independent)."""
    shocks = rng.normal(0.0, sd * np.sqrt(1 - rho**2), shape)
    shocks[:, 0] = rng.normal(0.0, sd, shape[0])
    return np.asarray(signal.lfilter([1.0], [1.0, -rho], shocks, axis=-1))


def queueing_latencies(
    rng: np.random.Generator,
    bakes: int,
    *,
    minutes: int = 30,
    per_minute: int = 200,
    share: float = 0.5,
    slowdown: float = 1.0,
    model: Queueing = Queueing(),
) -> tuple[np.ndarray, np.ndarray]:
    """``bakes`` independent bake windows of ``minutes``: the challenger's and the champion's latencies (ms), each
    shaped (bakes, minutes, requests per minute). ``share`` of ``per_minute`` requests go to the challenger, every
    one ``slowdown`` times slower; requests are spread evenly over each minute."""
    load = _ar1(rng, (bakes, minutes), model.load_rho, model.load_sd)
    sides = []
    for count, factor in ((round(per_minute * share), slowdown), (round(per_minute * (1 - share)), 1.0)):
        queue = _ar1(rng, (bakes, minutes * 60), model.queue_rho, model.queue_sd)
        second = (np.arange(minutes)[:, None] * 60 + np.arange(count)[None, :] * 60 // count).ravel()
        log_latency = (
            load[:, :, None]
            + queue[:, second].reshape(bakes, minutes, count)
            + rng.normal(0.0, model.noise_sd, (bakes, minutes, count))
        )
        sides.append(MEDIAN_MS * factor * np.exp(log_latency))
    return sides[0], sides[1]


def window_p95s(latencies: np.ndarray) -> np.ndarray:
    """Each minute's p95, nearest rank (as the local platform computes it), along the last axis."""
    count = latencies.shape[-1]
    rank = max(1, math.ceil(0.95 * count)) - 1
    return np.partition(latencies, rank, axis=-1)[..., rank]


def windowed(name: str, latencies: np.ndarray, start: datetime) -> DeploymentSample:
    """One bake (minutes, requests) as the Azure adapter sees it: per-minute p95s and request counts, and their
    request-weighted mean as the bake's p95 (every minute has as many requests here: the plain mean)."""
    p95s = window_p95s(latencies)
    count = latencies.shape[-1]
    windows = tuple(WindowP95(start + timedelta(minutes=i), float(p), count) for i, p in enumerate(p95s))
    return DeploymentSample(name, latencies.size, 0, p95_ms=float(np.mean(p95s)), p95_windows=windows)


def per_request(name: str, latencies: np.ndarray) -> DeploymentSample:
    """One bake (minutes, requests) as the per-request tests see it: the raw latencies, no windows."""
    return DeploymentSample(name, latencies.size, 0, tuple(latencies.ravel().tolist()))
