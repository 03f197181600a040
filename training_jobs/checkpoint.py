"""Checkpoints: one plain dict per file, written atomically, read back without pickle's dangers.

A checkpoint holds everything the next step depends on — model, optimiser, scaler, scheduler,
data-order position, best-so-far weights and every RNG state — so a resumed run produces the
same weights as one that never stopped. Files are ``checkpoints/ckpt-<step>.pt``; writing goes
to a temporary file in the same folder, fsync, then ``os.replace`` (atomic on POSIX), so a
preemption mid-write leaves the previous checkpoint intact. The folder holds one run's line of
checkpoints (the newest ``KEEP``): a run that does not continue from it moves it aside first
(``supersede``), never deletes another run's files. Loading uses
``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary objects.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training_jobs.files import write_atomically

log = logging.getLogger("training_jobs.checkpoint")

FORMAT_VERSION = 1
KEEP = 2  # the newest two: if the newest turns out unreadable, the one before it still resumes
_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"ckpt-{step:09d}.pt"


def save_checkpoint(directory: Path, step: int, state: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = checkpoint_path(directory, step)
    payload = {"format_version": FORMAT_VERSION, "step": step, **state}
    write_atomically(target, lambda stream: torch.save(payload, stream), mode=0o600)
    _prune(directory)
    return target


def _prune(directory: Path) -> None:
    for old in list_checkpoints(directory)[KEEP:]:
        old.unlink(missing_ok=True)


def supersede(directory: Path) -> Path | None:
    """Move a folder of another run's checkpoints aside (``checkpoints.superseded-N``); the new path, or None."""
    if not list_checkpoints(directory):
        return None
    n = 1
    while (aside := directory.with_name(f"{directory.name}.superseded-{n}")).exists():
        n += 1
    directory.rename(aside)
    log.warning("this run starts afresh: the checkpoints already in %s were moved to %s", directory, aside)
    return aside


def checkpoint_step(path: Path) -> int:
    """The step in a checkpoint's file name (``ckpt-000000040.pt`` → 40)."""
    match = _NAME.match(path.name)
    if match is None:
        raise ValueError(f"{path.name} is not a checkpoint file name")
    return int(match.group(1))


def list_checkpoints(directory: Path) -> list[Path]:
    """Newest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: p.name, reverse=True)


@dataclass(frozen=True)
class Loaded:
    path: Path
    state: dict[str, Any]


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read one checkpoint; raise ValueError (with the reason) if it is not a usable one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated zip, random bytes, a non-allowed global: all mean "unusable"
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"not a format-{FORMAT_VERSION} checkpoint")
    for key in ("step", "model", "optimizer", "rng", "data_order"):
        if key not in state:
            raise ValueError(f"it has no {key!r}")
    return state


def newest_valid(directory: Path, fingerprint: dict[str, Any]) -> Loaded | None:
    """The newest checkpoint that loads and was written by the same configuration; warn about the rest."""
    candidates = list_checkpoints(directory)
    if not candidates:
        log.info("no checkpoint in %s: starting fresh", directory)
    for path in candidates:
        try:
            state = load_checkpoint(path)
        except ValueError as exc:
            log.warning("skipping unreadable checkpoint %s (%s); trying an older one", path, exc)
            continue
        differs = {k: (state.get("fingerprint", {}).get(k), v) for k, v in fingerprint.items()}
        differs = {k: pair for k, pair in differs.items() if pair[0] != pair[1]}
        if differs:
            detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(differs.items()))
            log.warning("skipping checkpoint %s: written by a different configuration (%s)", path, detail)
            continue
        return Loaded(path=path, state=state)
    if candidates:
        log.warning("no usable checkpoint in %s: starting fresh", directory)
    return None


# --------------------------------------------------------------------------- RNG states


def capture_rng() -> dict[str, Any]:
    """Every RNG a step may draw from, as tensors and plain Python values (weights_only-loadable)."""
    legacy: Any = np.random.get_state()  # the legacy tuple: (name, keys, pos, has_gauss, cached)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": _listify(random.getstate()),
        "numpy": [str(legacy[0]), legacy[1].tolist(), int(legacy[2]), int(legacy[3]), float(legacy[4])],
    }
    # No CUDA states: only rank 0 writes, so its devices' states would be restored on every rank (and on a
    # node with fewer GPUs, to devices that do not exist). train.py re-seeds every step instead.
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tupleify(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _listify(value: Any) -> Any:
    return [_listify(v) for v in value] if isinstance(value, tuple | list) else value


def _tupleify(value: Any) -> Any:
    return tuple(_tupleify(v) for v in value) if isinstance(value, list) else value
