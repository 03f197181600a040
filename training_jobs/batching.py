"""Batches by index over tensors preloaded on the device — no per-row Dataset, no collate.

Tabular rows are tiny, so a ``DataLoader`` spends its time in Python calling ``__getitem__``
and stacking; one ``index_select`` per batch keeps the device busy instead
(``benchmarks/bench_training.py`` measures the difference).

The order of an epoch is a pure function of (seed, epoch), so the data-order state in a
checkpoint is just (epoch, position): a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DataOrder:
    epoch: int = 0
    position: int = 0  # optimiser steps already taken in this epoch

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}


class IndexBatcher:
    """Global batches of row indices; each rank and micro-step takes its own equal slice."""

    def __init__(
        self,
        n_rows: int,
        batch_size: int,
        seed: int,
        device: torch.device,
        sample_weights: torch.Tensor | None = None,
    ) -> None:
        if batch_size > n_rows:
            raise ValueError(f"batch size {batch_size} exceeds the {n_rows} training rows")
        self.n_rows = n_rows
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        # With weights (--imbalance resample), an epoch is n_rows draws with replacement.
        self.sample_weights = sample_weights.cpu() if sample_weights is not None else None

    @property
    def steps_per_epoch(self) -> int:
        return self.n_rows // self.batch_size  # drop the ragged tail: every step has the same batch size

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.sample_weights is not None:
            # Inverse-CDF sampling: unlike torch.multinomial it has no 2**24-row limit.
            cdf = torch.cumsum(self.sample_weights.double(), dim=0)
            draws = torch.rand(self.n_rows, generator=generator, dtype=torch.float64) * cdf[-1]
            order = torch.searchsorted(cdf, draws).clamp_(max=self.n_rows - 1)
        else:
            order = torch.randperm(self.n_rows, generator=generator)
        return order.to(self.device)

    def batch(self, order: torch.Tensor, position: int) -> torch.Tensor:
        start = position * self.batch_size
        return order[start : start + self.batch_size]


def micro_slice(batch: torch.Tensor, micro_step: int, grad_accum: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's rows for one micro-step: the global batch split into grad_accum × world_size equal parts."""
    parts = grad_accum * world_size
    size = batch.shape[0] // parts
    part = micro_step * world_size + rank
    return batch[part * size : (part + 1) * size]
