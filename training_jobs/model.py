"""The tabular model: an MLP over normalised numeric features and one embedding per categorical column."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


def embedding_dim(cardinality: int) -> int:
    """fast.ai's rule of thumb, capped: enough room for the column, no more."""
    return int(min(32, round(1.6 * cardinality**0.56)))


@dataclass(frozen=True)
class ModelConfig:
    n_numeric: int
    cardinalities: list[int] = field(default_factory=list)
    n_outputs: int = 1  # 1: binary (one logit), K: multiclass
    width: int = 128
    depth: int = 2
    dropout: float = 0.1

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(
            n_numeric=int(data["n_numeric"]),
            cardinalities=[int(c) for c in data["cardinalities"]],
            n_outputs=int(data["n_outputs"]),
            width=int(data["width"]),
            depth=int(data["depth"]),
            dropout=float(data["dropout"]),
        )


class Dropout(nn.Module):
    """Inverted dropout whose CPU mask costs 16 random bits per value instead of a Bernoulli draw.

    ``nn.Dropout`` on a CPU draws one Bernoulli sample per activation, about a third of a training
    step at width 128. Here the mask comes from random 64-bit words cut into 16-bit lanes (one RNG
    call per 4 values), so ``p`` is rounded to a multiple of 1/65536 (0.1 → 0.100006) and the kept
    values are scaled by 1 / (1 - that p), which keeps the expectation exact. It draws from torch's
    default generator, so seeding and checkpointed RNG states cover it as before. On CUDA (a fused
    Philox kernel there) and in eval mode it is ``nn.functional.dropout`` / the identity. No
    parameters or buffers: weights saved with ``nn.Dropout`` load unchanged.
    """

    LANES = 1 << 16

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability {p} is not in [0, 1)")
        self.p = p
        self.drop_lanes = round(p * self.LANES)
        self.scale = self.LANES / (self.LANES - self.drop_lanes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_lanes == 0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, training=True)
        n = x.numel()
        # from=-2**63, to=None: all 64 bits uniform (plain random_() leaves the sign bit at 0).
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        # Uniform 16-bit lanes read as int16 ([-32768, 32767]); a lane below the cut drops its value.
        lanes = words.view(torch.int16)[:n].view(x.shape)
        keep = lanes >= self.drop_lanes - self.LANES // 2
        return x * keep.to(x.dtype).mul_(self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class TabularMLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        embeddings = [nn.Embedding(c, embedding_dim(c)) for c in config.cardinalities]
        with torch.no_grad():
            # Row 0 is "other" (unknown or missing). When the declared categories cover the training data it
            # never receives a gradient, so it starts at zero: an unseen category adds nothing, rather than a
            # random N(0, 1) vector. (Adam leaves an untouched zero row at zero; weight decay too.)
            for embedding in embeddings:
                embedding.weight[0].zero_()
        self.embeddings = nn.ModuleList(embeddings)
        width_in = config.n_numeric + sum(embedding_dim(c) for c in config.cardinalities)
        layers: list[nn.Module] = []
        for _ in range(config.depth):
            # LayerNorm, not BatchNorm: the output of a row must not depend on the rest of its batch,
            # so gradient accumulation and multi-rank training match one big batch.
            layers += [nn.Linear(width_in, config.width), nn.LayerNorm(config.width), nn.GELU()]
            if config.dropout > 0:
                layers.append(Dropout(config.dropout))
            width_in = config.width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width_in, config.n_outputs)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        parts = [numeric] + [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        x = torch.cat(parts, dim=1) if len(parts) > 1 else numeric
        logits: torch.Tensor = self.head(self.body(x))
        return logits.squeeze(1) if self.config.n_outputs == 1 else logits


def probabilities(logits: torch.Tensor, n_outputs: int) -> torch.Tensor:
    """Binary: P(positive) per row; multiclass: a row of class probabilities."""
    logits = logits.float()
    return torch.sigmoid(logits) if n_outputs == 1 else torch.softmax(logits, dim=-1)
