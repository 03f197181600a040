"""The tabular model: an MLP over normalised numeric features and one embedding per categorical column."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
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

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

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


class TabularMLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_dim(c)) for c in config.cardinalities)
        width_in = config.n_numeric + sum(embedding_dim(c) for c in config.cardinalities)
        layers: list[nn.Module] = []
        for _ in range(config.depth):
            # LayerNorm, not BatchNorm: the output of a row must not depend on the rest of its batch,
            # so gradient accumulation and multi-rank training match one big batch.
            layers += [nn.Linear(width_in, config.width), nn.LayerNorm(config.width), nn.GELU()]
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
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
