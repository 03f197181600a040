"""Synthetic card-fraud batches for the demo and the tests (models/fraud.yaml's contract).

Fraud depends on the features through a fixed logistic rule, so a model can learn it;
``drift`` shifts the world (bigger amounts, more online retail, more foreign cards)
the way a new season does. ``fraud_ring`` changes the concept as well: that share of the
transactions becomes a card-testing ring (small card-not-present payments at grocery, fuel
and utility merchants from accounts a few weeks old, most of them fraudulent), a pattern the
reference world's rule calls low-risk, so a model trained before the ring misses it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

CATEGORIES = ["grocery", "fuel", "travel", "electronics", "restaurants", "online_retail", "gambling", "utilities"]
_CATEGORY_RISK = {"grocery": -0.8, "fuel": -0.3, "travel": 0.6, "electronics": 0.9, "restaurants": -0.6,
                  "online_retail": 1.0, "gambling": 1.4, "utilities": -1.2}  # fmt: skip


def fraud_batch(
    rows: int,
    seed: int,
    drift: float = 0.0,
    start_id: int = 0,
    fraud_ring: float = 0.0,
    signal: float = 1.0,
) -> pd.DataFrame:
    """``rows`` transactions; ``drift`` in [0, 1] moves the feature distributions (0 = reference world).

    ``fraud_ring`` in [0, 1] is the share of rows from a new card-testing ring. ``signal`` scales how
    strongly the features drive fraud (the base rate stays near 1.5 %): at 1 the best possible PR-AUC is
    about 0.2, at 2 about 0.5 (a world where a good model clears a realistic first-run floor). With the
    defaults (no ring, signal 1) the output is exactly what it was before these options existed."""
    rng = np.random.default_rng(seed)
    weights = np.array([0.22, 0.12, 0.06, 0.08, 0.18, 0.22, 0.02, 0.10])
    if drift:
        weights = weights + drift * np.array([-0.1, -0.05, 0.0, 0.05, -0.05, 0.2, 0.03, -0.05])
        weights = np.clip(weights, 0.005, None)
    weights = weights / weights.sum()
    category = rng.choice(CATEGORIES, size=rows, p=weights)
    amount = np.round(rng.lognormal(mean=3.6 + 0.8 * drift, sigma=1.0, size=rows), 2).clip(0.5, 49_999)
    hour = rng.integers(0, 24, size=rows)
    card_present = rng.random(rows) < (0.55 - 0.25 * drift)
    country_mismatch = rng.random(rows) < (0.05 + 0.10 * drift)
    distance = np.round(rng.gamma(1.5, 20 + 60 * drift, size=rows), 1).clip(0, 19_999)
    txn_count = rng.poisson(3 + 2 * drift, size=rows).clip(0, 500)
    avg_amount = np.round(rng.lognormal(3.5, 0.6, size=rows), 2).clip(0.5, 49_999)
    account_age = rng.integers(1, 5000, size=rows)

    # Multiplying by signal = 1.0 and adding terms in this order keep the default output bit for bit.
    logit = (
        (-5.0 - 2.0 * (signal - 1.0))
        + signal * (0.9 * np.log(amount / avg_amount).clip(-3, 5))
        + signal * np.vectorize(_CATEGORY_RISK.__getitem__)(category)
        + signal * (1.6 * country_mismatch)
        - signal * (1.1 * card_present)
        + signal * (0.5 * ((hour < 5) | (hour > 22)))
        + signal * (0.01 * distance.clip(0, 300))
        + signal * (0.15 * txn_count.clip(0, 20))
        - signal * (0.0004 * account_age)
    )
    is_fraud = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)

    frame = pd.DataFrame(
        {
            "transaction_id": [f"t{start_id + i:09d}" for i in range(rows)],
            "amount": amount,
            "hour": hour,
            "merchant_category": category,
            "card_present": card_present,
            "country_mismatch": country_mismatch,
            "distance_from_home_km": distance,
            "txn_count_24h": txn_count,
            "avg_amount_30d": avg_amount,
            "account_age_days": account_age,
            "is_fraud": is_fraud,
        }
    )
    # Realistic gaps: a few missing distances / averages (nullable in the contract).
    for column in ("distance_from_home_km", "avg_amount_30d"):
        frame.loc[rng.random(rows) < 0.005, column] = np.nan
    if fraud_ring > 0:
        _add_fraud_ring(frame, rng, fraud_ring)
    return frame


def _add_fraud_ring(frame: pd.DataFrame, rng: np.random.Generator, share: float) -> None:
    """Turn ``share`` of the rows into the ring's transactions (drawn after everything else, so the
    rest of the batch is the same as without a ring)."""
    ring = np.flatnonzero(rng.random(len(frame)) < share)
    n = len(ring)
    if n == 0:
        return
    frame.loc[ring, "merchant_category"] = rng.choice(["grocery", "fuel", "utilities"], size=n)
    frame.loc[ring, "amount"] = np.round(rng.lognormal(mean=1.2, sigma=0.4, size=n), 2).clip(0.5, 49_999)
    frame.loc[ring, "card_present"] = False
    frame.loc[ring, "country_mismatch"] = False
    frame.loc[ring, "txn_count_24h"] = rng.poisson(6, size=n).clip(0, 500)
    frame.loc[ring, "account_age_days"] = rng.integers(1, 30, size=n)
    frame.loc[ring, "is_fraud"] = (rng.random(n) < 0.85).astype(int)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
