"""Training throughput: our index-batched, preloaded-tensor loop vs a plain DataLoader(TensorDataset) loop.

Same generated data (200,000 rows: 12 numeric features + 2 categorical columns, 1% positives),
same model (training_jobs.model.TabularMLP, depth 2), and the same optimiser step on both sides:
train.py's (loss, backward, clip at 1.0, fused AdamW with its weight-decay groups, LambdaLR
warm-up + cosine, deterministic algorithms on) with batch size 512. One epoch each, ours and the
peer alternated, five rounds (BENCH_ROUNDS); reported: the medians, and the median of the
per-round ratios. Ours feeds the step the way train.py does (``IndexBatcher`` + ``index_select``
on preloaded tensors); the peer is the textbook loop:
``DataLoader(TensorDataset(x_num, x_cat, y), batch_size=512, shuffle=True)`` (num_workers=0:
worker processes only add IPC for tensors already in memory).

Also measured: the cost of one checkpoint (training_jobs.checkpoint.save_checkpoint with the
model, AdamW state, RNG states and a best-weights copy, as train.py writes it) as a share of
training time at the default interval (every 1,000 steps or 10 minutes, whichever first).

With a GPU (torch.cuda.is_available()): throughput and peak memory for fp32 / bf16 / fp16
autocast, and the largest micro-batch that fits for fp32 vs bf16.

Run: ``python -m benchmarks bench_training`` (BENCH_TRAINING_ROWS=20000 for a quick run).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from training_jobs.batching import IndexBatcher
from training_jobs.checkpoint import capture_rng, save_checkpoint
from training_jobs.model import ModelConfig, TabularMLP
from training_jobs.train import _lr_lambda, _param_groups, _seed_step

ROWS = int(os.environ.get("BENCH_TRAINING_ROWS", "200000"))
BATCH = 512
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
TARGET_RATIO = 3.0
CHECKPOINT_EVERY_STEPS = 1000  # train.py's defaults
CHECKPOINT_EVERY_MINUTES = 10.0
CARDINALITIES = [9, 5]
#: (width, dropout): the fraud spec's search space spans width 64-128 and dropout 0-0.1.
CONFIGS = ((64, 0.0), (128, 0.0), (128, 0.1))
DEFAULT_CONFIG = (128, 0.1)

Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]


def generate(rows: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x_num = torch.randn(rows, 12, generator=generator)
    x_cat = torch.stack([torch.randint(0, c, (rows,), generator=generator) for c in CARDINALITIES], dim=1)
    logit = 1.5 * x_num[:, 0] - x_num[:, 1] + 0.5 * (x_cat[:, 0] == 3).float() - 5.0
    y = (torch.rand(rows, generator=generator) < torch.sigmoid(logit)).long()
    return x_num.to(device), x_cat.to(device), y.to(device)


def make_model(
    device: torch.device, width: int = 128, dropout: float = 0.1
) -> tuple[TabularMLP, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = TabularMLP(ModelConfig(n_numeric=12, cardinalities=CARDINALITIES, width=width, depth=2, dropout=dropout))
    model.to(device).train()
    # As train.py: fused AdamW, weight decay 1e-4 on matrices only.
    return model, torch.optim.AdamW(_param_groups(model, 1e-4), lr=1e-3, fused=True)


def autocast(device: torch.device, amp: str) -> AbstractContextManager[Any]:
    if amp == "off":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def run_epoch(
    batches: Batches, model: TabularMLP, optimizer: torch.optim.Optimizer, device: torch.device, amp: str = "off"
) -> tuple[int, float]:
    """(samples, seconds) for one pass; the same step for both loops: train.py's optimiser step
    (per-step dropout seed, loss, backward, unscale, clip at 1.0, AdamW, scaler, zero_grad, LambdaLR warm-up + cosine,
    the detached step loss kept for the progress line, the on-device divergence check), with its
    deterministic-algorithms setting."""
    torch.use_deterministic_algorithms(True, warn_only=True)  # as train.py's _configure_determinism
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(ROWS // BATCH))
    window_loss = torch.zeros((), dtype=torch.float64, device=device)
    first_bad = torch.full((), float("inf"), dtype=torch.float64, device=device)  # train.py's divergence check
    samples = 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for step, (num, cat, y) in enumerate(batches()):
        _seed_step(0, 0, step, device)  # as train.py: dropout's draws seeded per step
        num, cat, y = num.to(device, non_blocking=True), cat.to(device, non_blocking=True), y.to(device)
        with autocast(device, amp):
            logits = model(num, cat)
        loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), y.float())
        scaler.scale(loss).backward()
        window_loss += loss.detach()
        first_bad = torch.where(torch.isfinite(loss), first_bad, first_bad.clamp(max=step + 1))
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        samples += y.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return samples, time.perf_counter() - started


def ours(x_num: torch.Tensor, x_cat: torch.Tensor, y: torch.Tensor, batch: int, epoch: list[int]) -> Batches:
    batcher = IndexBatcher(len(y), batch, seed=0, device=x_num.device)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = batcher.epoch_order(epoch[0])
        epoch[0] += 1
        for position in range(batcher.steps_per_epoch):
            rows = batcher.batch(order, position)
            yield x_num.index_select(0, rows), x_cat.index_select(0, rows), y.index_select(0, rows)  # as train.py

    return batches


def peer(x_num: torch.Tensor, x_cat: torch.Tensor, y: torch.Tensor, batch: int) -> Batches:
    loader = DataLoader(TensorDataset(x_num, x_cat, y), batch_size=batch, shuffle=True, drop_last=True)
    return lambda: iter(loader)


def throughput_cpu(width: int, dropout: float) -> tuple[float, float, float]:
    """(ours, peer) samples/s, medians of ROUNDS alternated epochs, and the median of the
    per-round ratios (each round's two epochs run back to back, so they share the machine's load)."""
    device = torch.device("cpu")
    x_num, x_cat, y = generate(ROWS, device)
    ours_rates: list[float] = []
    peer_rates: list[float] = []
    epoch = [0]
    for _ in range(ROUNDS):
        for name, batches in (("ours", ours(x_num, x_cat, y, BATCH, epoch)), ("peer", peer(x_num, x_cat, y, BATCH))):
            model, optimizer = make_model(device, width, dropout)
            samples, seconds = run_epoch(batches, model, optimizer, device)
            (ours_rates if name == "ours" else peer_rates).append(samples / seconds)
    paired = statistics.median(o / p for o, p in zip(ours_rates, peer_rates, strict=True))
    return statistics.median(ours_rates), statistics.median(peer_rates), paired


def data_path_only() -> tuple[float, float]:
    """Where the difference comes from: producing the batches of one epoch, no model involved."""
    x_num, x_cat, y = generate(ROWS, torch.device("cpu"))
    rates: list[float] = []
    for batches in (ours(x_num, x_cat, y, BATCH, [0]), peer(x_num, x_cat, y, BATCH)):
        best = 0.0
        for _ in range(ROUNDS):
            started = time.perf_counter()
            samples = sum(batch[2].shape[0] for batch in batches())
            best = max(best, samples / (time.perf_counter() - started))
        rates.append(best)
    return rates[0], rates[1]


def checkpoint_cost(step_seconds: float) -> tuple[float, float]:
    """(seconds per checkpoint, share of training time at the default interval)."""
    device = torch.device("cpu")
    model, optimizer = make_model(device)
    x_num, x_cat, y = generate(4096, device)
    run_epoch(ours(x_num, x_cat, y, BATCH, [0]), model, optimizer, device)  # AdamW state exists
    state = {
        "fingerprint": {"lr": 1e-3},
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": {},
        "scaler": {},
        "data_order": {"epoch": 0, "position": 0},
        "rng": capture_rng(),
        "best": {"state": {k: v.clone() for k, v in model.state_dict().items()}},
    }
    times: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for step in range(1, 8):
            started = time.perf_counter()
            save_checkpoint(Path(folder), step, state)
            times.append(time.perf_counter() - started)
    save_seconds = statistics.median(times)
    interval = min(CHECKPOINT_EVERY_STEPS * step_seconds, CHECKPOINT_EVERY_MINUTES * 60)
    return save_seconds, save_seconds / (interval + save_seconds)


def gpu_figures(device: torch.device) -> None:
    x_num, x_cat, y = generate(max(ROWS, 1_000_000), device)
    print(f"GPU: {torch.cuda.get_device_name(device)}")
    for amp in ("off", "bf16", "fp16"):
        model, optimizer = make_model(device)
        run_epoch(ours(x_num, x_cat, y, 4096, [0]), model, optimizer, device, amp)  # warm-up
        torch.cuda.reset_peak_memory_stats(device)
        samples, seconds = run_epoch(ours(x_num, x_cat, y, 4096, [1]), model, optimizer, device, amp)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        print(f"  amp={amp:4s} batch=4096 samples/s={samples / seconds:,.0f} peak_MiB={peak:,.0f}")
    for amp in ("off", "bf16"):
        print(f"  amp={amp:4s} largest micro-batch that fits (width 512, depth 4): {largest_batch(device, amp):,}")


def largest_batch(device: torch.device, amp: str) -> int:
    """Double the batch until CUDA runs out of memory. Width 512: activations (∝ batch × width)
    dominate memory while each try stays fast (compute ∝ batch × width²)."""
    torch.manual_seed(0)
    model = TabularMLP(ModelConfig(n_numeric=12, cardinalities=CARDINALITIES, width=512, depth=4, dropout=0.1))
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters())
    fits, batch = 0, 1024
    while batch <= 1 << 24:
        try:
            num = torch.randn(batch, 12, device=device)
            cat = torch.zeros(batch, len(CARDINALITIES), dtype=torch.long, device=device)
            with autocast(device, amp):
                logits = model(num, cat)
            logits.float().sum().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            fits, batch = batch, batch * 2
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
    return fits


def main() -> int:
    torch.set_num_threads(int(os.environ.get("BENCH_TRAINING_THREADS", "1")))
    one, five, _ = os.getloadavg()
    print(
        f"training throughput, CPU, {ROWS:,} rows, batch {BATCH}, {torch.get_num_threads()} thread(s), "
        f"median of {ROUNDS} alternated rounds; load average {one:.1f} / {five:.1f} at the start"
    )
    print(
        "  model (depth 2)          ours samples/s   DataLoader samples/s   ratio of medians   median of round ratios"
    )
    ratios: dict[tuple[int, float], float] = {}
    step_seconds = 0.0
    for width, dropout in CONFIGS:
        ours_rate, peer_rate, paired = throughput_cpu(width, dropout)
        ratios[(width, dropout)] = paired
        if (width, dropout) == DEFAULT_CONFIG:
            step_seconds = BATCH / ours_rate
        print(
            f"  width {width:3d} dropout {dropout:.1f}  {ours_rate:14,.0f}   {peer_rate:20,.0f}   "
            f"{ours_rate / peer_rate:16.1f}x   {paired:22.1f}x"
        )
    ratio = ratios[DEFAULT_CONFIG]
    ours_data, peer_data = data_path_only()
    print(
        f"  data path alone (batches of one epoch, no model): ours {ours_data:,.0f} samples/s, "
        f"DataLoader {peer_data:,.0f} samples/s, {ours_data / peer_data:.0f}x"
    )
    print(
        f"  train.py defaults (width 128, dropout 0.1): {ratio:.1f}x, median of round ratios (target >= {TARGET_RATIO:.0f}x)"
    )
    save_seconds, share = checkpoint_cost(step_seconds)
    print(
        f"checkpoint: {save_seconds * 1000:.1f} ms per save, step {step_seconds * 1000:.2f} ms; at the default interval "
        f"(every {CHECKPOINT_EVERY_STEPS} steps or {CHECKPOINT_EVERY_MINUTES:g} min) {share:.3%} of training time (target < 2%)"
    )
    if torch.cuda.is_available():
        gpu_figures(torch.device("cuda"))
    else:
        print("GPU figures: not measured (no GPU on this machine)")
    return 0 if ratio >= TARGET_RATIO and share < 0.02 else 1


if __name__ == "__main__":
    raise SystemExit(main())
