"""The canary's error rates on seeded synthetic traffic: false alarms in A/A, and power against regressions.

The figures asserted here are the ones stated in docs/policy.md.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import stats

from shared.canary import analyse_canary
from tests.policy.synthetic import GATES, SIGMA, bake

SIZES = (50, 100, 200, 500)


@pytest.mark.parametrize("confidence", [0.99, 0.95])
def test_aa_false_failures_stay_within_the_stated_rate(confidence: float) -> None:
    """1,000 A/A comparisons (same distributions on both sides): at most 1 - confidence of them fail."""
    gates = GATES.model_copy(update={"confidence": confidence})
    verdicts: Counter[str] = Counter()
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        n = SIZES[seed % len(SIZES)]
        # A 10 % step: the champion serves nine times the challenger's traffic.
        verdict = analyse_canary(bake(rng, "challenger", n), bake(rng, "champion", 9 * n), gates)
        verdicts[verdict.verdict] += 1
    expected = round(1000 * (1 - confidence))
    assert verdicts["fail"] <= expected, verdicts
    # Marginal holds the rollout for another bake: they must stay rare too.
    assert verdicts["marginal"] <= expected, verdicts
    assert verdicts["pass"] >= 1000 - 2 * expected


def _caught(n: int, seeds: range, labelled_share: float = 0.5, **challenger: float) -> Counter[str]:
    verdicts: Counter[str] = Counter()
    for seed in seeds:
        rng = np.random.default_rng(seed)
        ch = bake(rng, "challenger", n, labelled_share=labelled_share, **challenger)
        cp = bake(rng, "champion", n, labelled_share=labelled_share)
        verdicts[analyse_canary(ch, cp, GATES).verdict] += 1
    return verdicts


def test_a_2x_slowdown_is_caught_at_min_samples() -> None:
    """Every request twice as slow (so p95 doubles), 50 requests a side: never passes, >= 90 % fail.

    The rest are marginal: held for another bake, which then sees more data.
    """
    verdicts = _caught(GATES.min_samples, range(200), scale=2.0)
    assert verdicts["pass"] == 0, verdicts
    assert verdicts["fail"] >= 180, verdicts


def test_a_2x_slowdown_fails_at_95_percent_from_100_samples() -> None:
    verdicts = _caught(100, range(200), scale=2.0)
    assert verdicts["pass"] == 0, verdicts
    assert verdicts["fail"] >= 190, verdicts


def _tail_share_for_2x_p95(factor: float) -> float:
    """The share of requests that must be ``factor`` slower for the p95 to double (median unchanged)."""
    base = stats.lognorm(s=SIGMA)
    p95 = base.ppf(0.95)
    from scipy.optimize import brentq

    return float(brentq(lambda q: (1 - q) * base.sf(2 * p95) + q * base.sf(2 * p95 / factor) - 0.05, 1e-6, 0.9))


def test_a_tail_only_2x_p95_regression_is_caught_at_300_samples() -> None:
    """12 % of requests 4x slower: the p95 doubles, the median barely moves. 300 a side: >= 95 % fail."""
    share = _tail_share_for_2x_p95(4.0)
    assert 0.1 < share < 0.15
    verdicts = _caught(300, range(200), slow_share=share, slow_factor=4.0)
    assert verdicts["fail"] >= 190, verdicts


def test_an_error_spike_is_caught_at_min_samples() -> None:
    """15 % of requests failing: 50 requests a side are enough (>= 95 % fail)."""
    verdicts = _caught(GATES.min_samples, range(200), error_rate=0.15)
    assert verdicts["fail"] >= 190, verdicts


def test_a_silently_worse_model_is_caught_once_labels_arrive() -> None:
    """Accuracy 95 % → 85 %, nothing else changes: >= 95 % fail from 400 labelled requests a side."""
    verdicts = _caught(400, range(200), accuracy=0.85, labelled_share=1.0)
    assert verdicts["fail"] >= 190, verdicts


def test_an_error_rate_five_times_the_gate_rarely_advances_on_little_traffic() -> None:
    """5 % errors against the 1 % gate, 50 requests on a 10 % step: before the excess is significant, a likely one
    holds the step (marginal, another bake) instead of passing it: 65 of 300 bakes pass, against 198 before."""
    verdicts: Counter[str] = Counter()
    for seed in range(300):
        rng = np.random.default_rng(seed)
        verdict = analyse_canary(bake(rng, "challenger", 50, error_rate=0.05), bake(rng, "champion", 450), GATES)
        verdicts[verdict.verdict] += 1
    assert verdicts["pass"] <= 90, verdicts
    assert verdicts["marginal"] >= 100, verdicts
