"""Train a tabular classifier on the compute: resumable, distributed, reproducible.

    python training_jobs/train.py --data DATA --contract contract.json --output-dir OUT [options]
    torchrun --nproc-per-node 2 training_jobs/train.py ...            # same, on 2 processes

Read top to bottom: parse options, read and verify the data, fit preprocessing on the training
split, build the model, maybe resume from a checkpoint, train (gradient accumulation, AMP,
DDP), evaluate each epoch with early stopping, write the model folder. ``--batch-size`` is the
global batch of one optimiser step; each rank and micro-step takes an equal slice of it, so a
run's result does not depend on how many processes or accumulation steps produced it.

Exit codes: 0 done; 2 bad input or usage, or a run that diverged (a loss that is not finite: lower
``--lr``); 75 preempted (SIGTERM: a checkpoint was written, resubmit with ``--resume auto``); anything
else is a failure. Only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import math
import os
import signal
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any


def _make_package_importable() -> None:
    """Run as a script (or from Azure ML's copy of this folder, whatever its name): import siblings as a package."""
    if "training_jobs" in sys.modules:
        return
    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location(
        "training_jobs", here / "__init__.py", submodule_search_locations=[str(here)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load training_jobs from {here}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["training_jobs"] = module
    spec.loader.exec_module(module)


if not __package__:
    _make_package_importable()

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from training_jobs import distributed  # noqa: E402
from training_jobs.arguments import (  # noqa: E402
    HelpFormatter,
    add_contract_and_manifest,
    add_holdout_fraction,
    error_lines,
)
from training_jobs.batching import DataOrder, IndexBatcher, micro_slice  # noqa: E402
from training_jobs.bundle import CARD, CONFIG, METRICS, PREPROCESSING, WEIGHTS, write_bundle  # noqa: E402
from training_jobs.card import code_version, package_versions  # noqa: E402
from training_jobs.checkpoint import (  # noqa: E402
    capture_rng,
    checkpoint_step,
    list_checkpoints,
    load_checkpoint,
    newest_valid,
    restore_rng,
    save_checkpoint,
    supersede,
)
from training_jobs.contract import load_contract  # noqa: E402
from training_jobs.data import (  # noqa: E402
    FOLD_SALT,
    drop_unlabelled,
    encode_labels,
    infer_label_space,
    load_dataset,
    load_manifest,
    stratified_split,
)
from training_jobs.errors import (  # noqa: E402
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_PREEMPTED,
    DataError,
    TrainingDiverged,
    TrainingJobError,
)
from training_jobs.files import write_atomically  # noqa: E402
from training_jobs.holdout import HoldoutRule, in_holdout  # noqa: E402
from training_jobs.metrics import classification_metrics, f1_threshold, json_safe, metric_value  # noqa: E402
from training_jobs.model import ModelConfig, TabularMLP, probabilities  # noqa: E402
from training_jobs.preprocessing import Preprocessor  # noqa: E402
from training_jobs.tracking import Tracker  # noqa: E402

log = logging.getLogger("training_jobs.train")

PRIMARY_METRIC = "pr_auc"  # early stopping watches this on the validation split
#: What depends on the threshold, and so is cross-fitted with ``--threshold auto`` (see _cross_fit).
THRESHOLD_METRICS = ("accuracy", "precision", "recall", "f1", "per_class")
#: Which rows validate: a checkpoint written under another rule (before: by row position) must not be continued.
SPLIT_RULE = "identity"
SAMPLE_ROWS = 5
#: Test hook (fault injection): deliver a real SIGTERM to ourselves after this optimiser step.
SIGTERM_AT_STEP_ENV = "TRAINING_JOBS_SIGTERM_AT_STEP"


# --------------------------------------------------------------------------- options


def _number(kind: type, low: float | None = None, high: float | None = None, low_open: bool = False) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):  # nan passes every bound check, inf every lower one
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if kind is int:
            if not value.is_integer():
                raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
            value = int(value)
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if low_open else '>='} {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} must be <= {high}")
        return value

    return parse


def _threshold(text: str) -> str | float:
    """``auto`` or a probability strictly between 0 and 1."""
    if text.strip().lower() == "auto":
        return "auto"
    value = float(_number(float, 0, low_open=True)(text))
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text} must be < 1 (or auto)")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a tabular classifier (see training_jobs/README.md).",
        epilog="example:\n"
        "  perennial spec contract models/fraud.yaml -o contract.json\n"
        "  python training_jobs/train.py --data data/ --contract contract.json --output-dir out/",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument(
        "--data", type=Path, required=True, metavar="PATH", help="a folder of CSV/Parquet files, or one file"
    )
    add_contract_and_manifest(p)
    p.add_argument(
        "--output-dir", type=Path, required=True, metavar="DIR", help="where the model folder and checkpoints go"
    )
    p.add_argument("--lr", type=_number(float, 0, low_open=True), default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--width", type=_number(int, 1), default=128, help="hidden units per layer")
    p.add_argument("--depth", type=_number(int, 0), default=2, help="hidden layers")
    p.add_argument("--dropout", type=_number(float, 0, 0.9), default=0.1, help="dropout probability, 0 to 0.9")
    p.add_argument("--weight-decay", type=_number(float, 0), default=1e-4, help="AdamW weight decay (matrices only)")
    p.add_argument("--batch-size", type=_number(int, 1), default=512, help="global rows per optimiser step")
    p.add_argument("--epochs", type=_number(int, 1), default=10, help="passes over the training rows")
    p.add_argument("--max-steps", type=_number(int, 0), default=0, help="optimiser steps; >0 overrides --epochs")
    p.add_argument("--seed", type=_number(int, 0), default=0, help="initialisation, data order and dropout")
    p.add_argument("--grad-accum", type=_number(int, 1), default=1, help="micro-steps per optimiser step")
    p.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off", help="autocast precision")
    p.add_argument(
        "--imbalance",
        choices=("none", "class-weight", "resample"),
        default="none",
        help="rare classes: weight the loss, or draw balanced epochs",
    )
    p.add_argument(
        "--threshold",
        type=_threshold,
        default=0.5,
        help="binary models: the probability from which a row is predicted positive, in (0, 1); auto: the one "
        "that maximises the positive class's F1 on the validation split (rare positives rarely reach 0.5)",
    )
    p.add_argument("--early-stopping-patience", type=_number(int, 0), default=3, help="epochs; 0 = off")
    p.add_argument(
        "--val-fraction",
        type=_number(float, 0, 0.9, low_open=True),
        default=0.2,
        help="share of the training rows (the holdout already left out) in the validation split",
    )
    add_holdout_fraction(p)
    p.add_argument("--checkpoint-every-steps", type=_number(int, 0), default=1000, help="0 = off")
    p.add_argument("--checkpoint-every-minutes", type=_number(float, 0), default=10.0, help="0 = off")
    p.add_argument("--resume", default="auto", help="auto (newest valid checkpoint), never, or a checkpoint path")
    return p


# --------------------------------------------------------------------------- small pieces


@dataclass
class Preemption:
    """Set by the SIGTERM handler; the loop checks it between optimiser steps."""

    requested: bool = False

    def install(self) -> Any:
        """Install the handler; returns the previous one (restored when training ends)."""

        def handler(signum: int, frame: FrameType | None) -> None:
            self.requested = True

        return signal.signal(signal.SIGTERM, handler)


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(json_safe(data), indent=2, allow_nan=False)
    write_atomically(path, text.encode("utf-8"))


def _configure_determinism(seed: int, device: torch.device) -> None:
    # Identical inputs give identical weights on CPU; on CUDA this also needs a fixed cuBLAS workspace.
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN in case a kernel reads memory it did
    # not write (none of ours does): ~40 fills per step, a few percent of a CPU step. Off.
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _seed_step(seed: int, rank: int, step: int, device: torch.device) -> None:
    """Dropout's random draws for one optimiser step come from (seed, rank, step) alone: a resumed run
    draws what an uninterrupted one would, whatever the process count before, and no two ranks share
    masks; no per-rank generator state needs checkpointing. The generators are seeded directly (about
    6 µs): ``torch.manual_seed`` visits every backend and costs a few hundred µs, a tenth of a CPU step."""
    digest = hashlib.blake2b(f"{seed}:{rank}:{step}".encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "big") >> 1
    torch.default_generator.manual_seed(value)
    if device.type == "cuda":
        torch.cuda.manual_seed(value)  # the current device, which distributed.setup made this rank's


def _lr_lambda(total_steps: int) -> Any:
    warmup = max(1, min(100, total_steps // 20))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine down to 10% of the peak

    return factor


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Decay matrices (Linear weights, embeddings), not biases or LayerNorm gains — nanoGPT's split.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _autocast(device: torch.device, amp: str) -> AbstractContextManager[Any]:
    if amp == "off":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _json_value(value: Any) -> Any:
    """One value of sample_input.json as the scoring payload takes it: a JSON number, text, bool or null, whatever
    the reader handed over (a Parquet decimal is a Decimal, a timestamp a Timestamp)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- training


@dataclass
class Progress:
    """What the loop carries between steps; all of it goes into a checkpoint."""

    step: int = 0
    order: DataOrder = field(default_factory=DataOrder)
    best_metric: float = -math.inf
    best_step: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0


def run(args: argparse.Namespace) -> int:
    ctx = distributed.setup()
    preemption = Preemption()
    previous = preemption.install()
    try:
        return _train(args, ctx, preemption)
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        distributed.teardown(ctx)


def _train(args: argparse.Namespace, ctx: distributed.DistContext, preemption: Preemption) -> int:
    started = time.monotonic()
    _configure_determinism(args.seed, ctx.device)
    out: Path = args.output_dir
    ckpt_dir = out / "checkpoints"
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)

    # ---- data: verified, labelled, the holdout left out, split; preprocessing fitted on the training rows only
    contract = load_contract(args.contract)
    manifest = load_manifest(args.manifest) if args.manifest else None
    dataset = load_dataset(args.data, contract, manifest)
    frame, identities, holdout = _without_holdout(
        drop_unlabelled(dataset.frame, contract), HoldoutRule.for_contract(contract, args.holdout_fraction)
    )
    labels = infer_label_space(frame, contract)
    y_all = encode_labels(frame, contract, labels)
    # By row identity (the holdout's hash, salted): copies of a row never straddle training and validation.
    train_rows, val_rows = stratified_split(y_all, identities, args.val_fraction)
    if not len(val_rows):
        raise DataError(
            f"no row reaches the validation split: the {len(frame)} labelled row(s) have one identity per class "
            f"({HoldoutRule.for_contract(contract, args.holdout_fraction).describe()})",
            "check data.key: it must tell rows apart (a key shared by every row, or one that follows the label, "
            "is not a key); or add data",
        )
    preprocessor = Preprocessor.fit(frame.iloc[train_rows], contract, labels)
    numeric, categorical = preprocessor.transform(frame, len(frame))
    device = ctx.device
    x_num = torch.from_numpy(numeric[train_rows]).to(device)
    x_cat = torch.from_numpy(categorical[train_rows]).to(device)
    y = torch.from_numpy(y_all[train_rows]).to(device)
    v_num = torch.from_numpy(numeric[val_rows]).to(device)
    v_cat = torch.from_numpy(categorical[val_rows]).to(device)
    v_y = torch.from_numpy(y_all[val_rows]).to(device)
    v_fold = torch.from_numpy(_threshold_folds(y_all[val_rows], identities[val_rows])).to(device)
    n_train = len(train_rows)

    # ---- batch geometry: global batch = grad_accum × world_size × micro-batch, all equal
    parts = args.grad_accum * ctx.world_size
    if args.batch_size % parts:
        raise TrainingJobError(
            f"--batch-size {args.batch_size} does not split into --grad-accum {args.grad_accum} × {ctx.world_size} process(es)",
            f"use a multiple of {parts}",
        )
    batch_size = args.batch_size
    if batch_size > n_train:
        batch_size = max(parts, n_train // parts * parts)
        log.warning("--batch-size %d exceeds the %d training rows: using %d", args.batch_size, n_train, batch_size)
        if batch_size > n_train:
            raise TrainingJobError(f"only {n_train} training rows", "add data or lower --val-fraction")

    # ---- class imbalance
    counts = torch.bincount(y.cpu(), minlength=len(labels.classes)).double()
    class_weights = (counts.sum() / (len(counts) * counts.clamp(min=1))).float()
    sample_weights = class_weights[y.cpu()] if args.imbalance == "resample" else None
    loss_weights = class_weights.to(device) if args.imbalance == "class-weight" else None

    batcher = IndexBatcher(n_train, batch_size, args.seed, device, sample_weights)
    steps_per_epoch = batcher.steps_per_epoch
    total_steps = args.max_steps if args.max_steps > 0 else args.epochs * steps_per_epoch

    # ---- model, optimiser, schedule, scaler
    config = ModelConfig(
        n_numeric=len(preprocessor.feature_names),
        cardinalities=preprocessor.cardinalities,
        n_outputs=labels.n_outputs,
        width=args.width,
        depth=args.depth,
        dropout=args.dropout,
    )
    torch.manual_seed(args.seed)
    model = TabularMLP(config).to(device)
    # The fused kernel updates every parameter in one pass (about 15% of a CPU step at width 128).
    optimizer = torch.optim.AdamW(_param_groups(model, args.weight_decay), lr=args.lr, fused=args.amp != "fp16")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    if args.amp == "fp16" and device.type == "cpu":
        log.warning("--amp fp16 on CPU is slow and gains nothing; bf16 is the CPU choice")

    fingerprint = _fingerprint(args, dataset.data_hash, batch_size, preprocessor)
    progress = Progress()
    resumed_from = _maybe_resume(args.resume, ckpt_dir, fingerprint, model, optimizer, scheduler, scaler, progress)
    _ranks_agree_on_start(ctx, progress.step)
    continues_folder = resumed_from is not None and resumed_from.parent == ckpt_dir
    later = [p for p in list_checkpoints(ckpt_dir) if checkpoint_step(p) > progress.step]
    if ctx.is_main and (not continues_folder or later):
        # This run starts a new line of checkpoints (afresh, from elsewhere, or from an older one than the
        # folder's newest): what the folder holds is another line's, and pruning by step number would delete
        # this run's checkpoints in favour of that line's later ones, which --resume auto would then pick.
        supersede(ckpt_dir)
    if ctx.is_main:
        # A preempted.json from an earlier attempt speaks for that attempt only; if this one fails otherwise,
        # the orchestrator must not read it as a preemption and resubmit.
        (out / "preempted.json").unlink(missing_ok=True)
    distributed.barrier(ctx)
    # DDP after loading: it broadcasts rank 0's parameters, which now are the resumed ones.
    train_model: nn.Module = (
        DistributedDataParallel(model, device_ids=[ctx.local_rank] if device.type == "cuda" else None)
        if ctx.enabled
        else model
    )

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if labels.task == "binary":
            per_row = nn.functional.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
        else:
            per_row = nn.functional.cross_entropy(logits, target, reduction="none")
        if loss_weights is not None:
            per_row = per_row * loss_weights[target]
        # mean (not a weight-normalised mean): micro-batch means average exactly to the global batch mean
        return per_row.mean()

    def evaluate_val() -> dict[str, Any]:
        # In fp32 whatever --amp says: score.py and evaluate.py serve fp32, so the metrics (and early
        # stopping) judge the model that ships.
        model.eval()
        mine = torch.arange(ctx.rank, len(v_y), ctx.world_size, device=device)
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(mine), 8192):
                rows = mine[start : start + 8192]
                chunks.append(probabilities(model(v_num[rows], v_cat[rows]), config.n_outputs))
        empty = (0,) if config.n_outputs == 1 else (0, config.n_outputs)
        probs = torch.cat(chunks) if chunks else torch.zeros(empty, device=device)
        probs = distributed.gather_rows(ctx, probs.float())
        targets = distributed.gather_rows(ctx, v_y[mine])
        folds = distributed.gather_rows(ctx, v_fold[mine])
        model.train()
        return {"p": probs.cpu().double().numpy(), "y": targets.cpu().numpy(), "fold": folds.cpu().numpy()}

    tracker = Tracker(enabled=ctx.is_main)
    params = _params(args, batch_size, ctx.world_size)
    tracker.params(params)
    if ctx.is_main:
        print(
            f"start rows={len(frame)} train={n_train} val={len(val_rows)} holdout={holdout['rows']} task={labels.task} "
            f"features={config.n_numeric}+{len(config.cardinalities)}cat steps={total_steps} "
            f"steps_per_epoch={steps_per_epoch} world_size={ctx.world_size} device={device} "
            f"resumed_from={resumed_from.name if resumed_from else 'none'}",
            flush=True,
        )

    # ---- the loop
    fault_step = int(os.environ.get(SIGTERM_AT_STEP_ENV, "0") or 0)
    log_every = max(1, min(100, steps_per_epoch // 5))
    order = batcher.epoch_order(progress.order.epoch)
    last_checkpoint = time.monotonic()
    window_loss = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of step losses, steps)
    window_start = time.monotonic()
    window_steps = 0
    last_val = math.nan
    if progress.history:
        last_val = float(progress.history[-1].get(PRIMARY_METRIC) or math.nan)
    # The first step whose loss was not finite (inf: none yet). Kept on the device, read by _agree.
    first_bad = torch.full((), math.inf, dtype=torch.float64, device=device)
    train_model.train()
    while progress.step < total_steps and not progress.stopped_early:
        batch = batcher.batch(order, progress.order.position)
        _seed_step(args.seed, ctx.rank, progress.step, device)
        step_loss = torch.zeros((), device=device)
        for micro in range(args.grad_accum):
            rows = micro_slice(batch, micro, args.grad_accum, ctx.rank, ctx.world_size)
            last_micro = micro == args.grad_accum - 1
            no_sync = train_model.no_sync() if ctx.enabled and not last_micro else nullcontext()  # type: ignore[operator]
            with no_sync:
                with _autocast(device, args.amp):
                    # index_select: a third of advanced indexing's cost for a batch of rows
                    logits = train_model(x_num.index_select(0, rows), x_cat.index_select(0, rows))
                loss = loss_fn(logits.float(), y.index_select(0, rows)) / args.grad_accum
                scaler.scale(loss).backward()
            step_loss += loss.detach()
        # Divergence is a loss that is not finite (in fp32). fp16's overflowing gradients are not: the
        # scaler skips those steps and lowers its scale.
        first_bad = torch.where(torch.isfinite(step_loss), first_bad, first_bad.clamp(max=progress.step + 1))
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        progress.step += 1
        progress.order.position += 1
        window_loss += torch.stack([step_loss.double(), torch.ones((), dtype=torch.float64, device=device)])
        window_steps += 1

        epoch_done = progress.order.position >= steps_per_epoch
        last_step = progress.step >= total_steps
        due_by_steps = args.checkpoint_every_steps > 0 and progress.step % args.checkpoint_every_steps == 0
        if fault_step and progress.step == fault_step:
            os.kill(os.getpid(), signal.SIGTERM)
        # Before anything is evaluated or written: stop (preempted)? checkpoint by time? diverged?
        stop, due_by_time, diverged_at = _agree(
            ctx,
            progress.step,
            preemption.requested,
            first_bad,
            last_checkpoint,
            args,
            epoch_done or last_step or due_by_steps,
        )
        if diverged_at:
            raise TrainingDiverged(
                f"training diverged at step {diverged_at} (loss is nan/inf); no model was written",
                "lower --lr (e.g. by 10x) or try --amp off",
            )

        if epoch_done or last_step:
            scored = evaluate_val()
            last_val = _after_evaluation(scored, progress, model, preprocessor, args, total_steps)
            tracker.metrics({f"val_{PRIMARY_METRIC}": last_val}, step=progress.step)
        if epoch_done:
            progress.order = DataOrder(epoch=progress.order.epoch + 1, position=0)
            order = batcher.epoch_order(progress.order.epoch)

        if progress.step % log_every == 0 or epoch_done or last_step:
            totals = distributed.all_reduce_sum(ctx, window_loss) / ctx.world_size
            seconds = max(time.monotonic() - window_start, 1e-9)
            samples_per_s = window_steps * batch_size / seconds
            mean_loss = float(totals[0] / max(float(totals[1]), 1.0))
            if ctx.is_main:
                print(
                    f"progress step={progress.step}/{total_steps} epoch={progress.order.epoch} loss={mean_loss:.5f} "
                    f"val_{PRIMARY_METRIC}={last_val:.4f} samples_per_s={samples_per_s:.0f} "
                    f"lr={scheduler.get_last_lr()[0]:.3g}",
                    flush=True,
                )
            tracker.metrics({"train_loss": mean_loss, "samples_per_s": samples_per_s}, step=progress.step)
            window_loss.zero_()
            window_start, window_steps = time.monotonic(), 0

        if stop or due_by_steps or due_by_time:
            progress.elapsed_s += time.monotonic() - started
            started = time.monotonic()
            reason = "preempted" if stop else "periodic"
            if ctx.is_main:
                _checkpoint(ckpt_dir, fingerprint, model, optimizer, scheduler, scaler, progress, reason)
            last_checkpoint = time.monotonic()
        if stop:
            distributed.barrier(ctx)
            if ctx.is_main:
                _write_json(out / "preempted.json", {"step": progress.step, "resume": "--resume auto"})
                print(f"preempted step={progress.step}: checkpoint written, exiting {EXIT_PREEMPTED}", flush=True)
            tracker.finish()
            return EXIT_PREEMPTED

    # ---- finish: the weights that ship (the best epoch's with early stopping, else the last), final
    # metrics, the model folder
    weights_step = progress.step
    if args.early_stopping_patience > 0 and progress.best_state is not None:
        model.load_state_dict(progress.best_state)
        weights_step = progress.best_step
    if not all(bool(torch.isfinite(t).all()) for t in model.state_dict().values()):
        raise TrainingDiverged(
            f"training diverged by step {weights_step} (weights are nan/inf); no model was written",
            "lower --lr (e.g. by 10x) or try --amp off",
        )
    scored = evaluate_val()
    progress.elapsed_s += time.monotonic() - started
    started = time.monotonic()
    if ctx.is_main:
        cross_fit = _cross_fit(scored, labels.classes) if args.threshold == "auto" and labels.task == "binary" else None
        preprocessor = _with_threshold(preprocessor, args.threshold, scored, cross_fit)
        metrics = _final_metrics(scored, preprocessor, labels.classes, n_train, progress, weights_step, cross_fit)
        _checkpoint(ckpt_dir, fingerprint, model, optimizer, scheduler, scaler, progress, "final")
        write_bundle(out, model, config, preprocessor)
        _write_json(out / METRICS, metrics)
        _write_json(
            out / CARD,
            _model_card(
                args,
                params,
                metrics,
                dataset,
                manifest,
                labels.task,
                ctx,
                progress,
                weights_step,
                len(frame),
                n_train,
                holdout,
            ),
        )
        sample = frame.iloc[val_rows[:SAMPLE_ROWS]]
        sample_rows = [
            {c.name: _json_value(r[c.name]) for c in contract.feature_columns if c.name in r}
            for _, r in sample.iterrows()
        ]
        _write_json(out / "sample_input.json", {"data": sample_rows})
        (out / "preempted.json").unlink(missing_ok=True)
        tracker.metrics({k: v for k, v in metrics.items() if not isinstance(v, dict)})
        tracker.artifacts([out / n for n in (WEIGHTS, CONFIG, PREPROCESSING, METRICS, CARD, "sample_input.json")])
        print(
            f"done steps={progress.step} best_step={weights_step} val_{PRIMARY_METRIC}={metrics[PRIMARY_METRIC]} "
            f"stopped_early={progress.stopped_early} seconds={progress.elapsed_s:.1f} output={out}",
            flush=True,
        )
    distributed.barrier(ctx)
    tracker.finish()
    return EXIT_OK


def _ranks_agree_on_start(ctx: distributed.DistContext, step: int) -> None:
    """Every rank must resume at the same step, or they would run different step counts and hang."""
    steps = distributed.all_reduce_max(ctx, torch.tensor([step, -step], dtype=torch.int64, device=ctx.device))
    highest, lowest = int(steps[0].item()), -int(steps[1].item())
    if highest != lowest:
        raise TrainingJobError(
            f"the processes found different checkpoints to resume from (steps {lowest} to {highest})",
            "every node must see the same --output-dir (a shared mount); or pass --resume with one checkpoint path",
        )


def _agree(
    ctx: distributed.DistContext,
    step: int,
    requested: bool,
    first_bad: torch.Tensor,
    last_checkpoint: float,
    args: argparse.Namespace,
    boundary: bool,
) -> tuple[bool, bool, int]:
    """(stop now, checkpoint by time now, first step with a non-finite loss or 0), the same on every rank: a
    signal may reach one rank only, a loss may turn nan on one rank first.

    Reading ``first_bad`` waits for the GPU, and a collective every step would stall its pipeline, so the
    ranks compare every 10 steps (well inside SIGTERM's grace period) and at every ``boundary`` (epoch end,
    last step, checkpoint step); one process also whenever it is about to write a checkpoint. So nothing is
    evaluated or written from diverged weights."""
    due = args.checkpoint_every_minutes > 0 and time.monotonic() - last_checkpoint >= args.checkpoint_every_minutes * 60
    check = boundary or step % 10 == 0 or (not ctx.enabled and (requested or due))
    if not check:
        return False, False, 0
    flags = torch.tensor([float(requested), float(due), 0.0], dtype=torch.float64, device=ctx.device)
    flags[2] = -first_bad  # max over ranks of -first_bad: the earliest step any rank saw
    stop, by_time, minus_first_bad = distributed.all_reduce_max(ctx, flags).tolist()
    return bool(stop), bool(by_time), 0 if math.isinf(minus_first_bad) else int(-minus_first_bad)


def _after_evaluation(
    scored: dict[str, Any],
    progress: Progress,
    model: TabularMLP,
    preprocessor: Preprocessor,
    args: argparse.Namespace,
    total_steps: int,
) -> float:
    value = metric_value(PRIMARY_METRIC, scored["y"], scored["p"], preprocessor.threshold)
    first_undefined = all(_defined(h.get(PRIMARY_METRIC)) for h in progress.history)
    progress.history.append({"step": progress.step, "epoch": progress.order.epoch, PRIMARY_METRIC: value})
    if not _defined(value):
        # Not a bad epoch: there is nothing to compare. Until an epoch has a defined metric, the newest
        # weights are the ones kept.
        if first_undefined:
            log.warning(
                "%s: %s is undefined; early stopping is off for this run", _why_undefined(scored), PRIMARY_METRIC
            )
        if progress.best_metric == -math.inf:
            progress.best_step = progress.step
            progress.best_state = _clone_state(model)
    elif value > progress.best_metric:
        progress.best_metric = value
        progress.best_step = progress.step
        progress.best_state = _clone_state(model)
        progress.bad_epochs = 0
    else:
        progress.bad_epochs += 1
        if 0 < args.early_stopping_patience <= progress.bad_epochs and progress.step < total_steps:
            progress.stopped_early = True
    return value


def _defined(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _why_undefined(scored: dict[str, Any]) -> str:
    y, p = scored["y"], scored["p"]
    if len(y) == 0:
        return "the validation split is empty"
    if len(np.unique(y)) < 2:
        return "the validation split holds one class"
    if not np.isfinite(p).all():
        return "the validation probabilities are not finite"
    return "the validation split has too few rows of some class"


def _with_threshold(
    preprocessor: Preprocessor, wanted: str | float, scored: dict[str, Any], cross_fit: dict[str, Any] | None = None
) -> Preprocessor:
    """The preprocessor with the threshold the model ships with (score.py and evaluate.py use it): ``wanted``, or
    for ``auto`` the positive class's best-F1 threshold on the validation split (printed with its in-sample F1 and
    ``cross_fit``'s honest one). Says so when the threshold leaves the validation split without a single predicted
    positive: its precision, recall and F1 are then 0."""
    if preprocessor.labels.task != "binary":
        if wanted != 0.5:
            log.warning("--threshold applies to binary models only; a multiclass model predicts its likeliest class")
        return preprocessor
    y, p = scored["y"], scored["p"]
    threshold = f1_threshold(y, p) if wanted == "auto" else float(wanted)
    if threshold is None:
        log.warning("--threshold auto: the validation split has no positive row to choose by; 0.5 is kept")
        threshold = 0.5
    elif wanted == "auto":
        print(
            f"threshold={threshold:.6g} (the positive class's best F1 on the validation split: "
            f"{metric_value('f1', y, p, threshold):.4f} in-sample, {(cross_fit or {}).get('f1', math.nan):.4f} "
            f"cross-fitted, against {metric_value('f1', y, p, 0.5):.4f} at 0.5)",
            flush=True,
        )
    if (y == 1).any() and np.isfinite(p).all() and not (p >= threshold).any():
        log.warning(
            "no validation row reaches the threshold %.6g: the model never predicts the positive class, so its "
            "precision, recall and F1 are 0 (pass --threshold auto, or --imbalance class-weight)",
            threshold,
        )
    return replace(preprocessor, threshold=threshold)


def _threshold_folds(y: npt.NDArray[np.int64], identities: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Each validation row's fold (0 or 1) for cross-fitting ``--threshold auto``: by identity, stratified by
    class, as the validation split is (so copies of a row share a fold); a salt of its own orders the halves."""
    fold = np.zeros(len(y), dtype=np.int64)
    if len(y):
        _, second = stratified_split(y, identities, 0.5, salt=FOLD_SALT)
        fold[second] = 1
    return fold


def _cross_fit(scored: dict[str, Any], classes: tuple[str, ...]) -> dict[str, Any]:
    """``--threshold auto``'s honest precision/recall/F1. The shipped threshold is tuned on every validation row,
    so its metrics on those rows flatter it (on data without signal, precision above the base rate). Instead each
    fold is predicted at the threshold tuned on the other fold (0.5 when that one has no positive row), and the
    threshold-dependent metrics are computed from those out-of-fold predictions."""
    y, p, fold = scored["y"], scored["p"], scored["fold"]
    predicted = np.zeros(len(y), dtype=np.int64)
    thresholds: list[float] = []
    for k in (0, 1):
        tuned = f1_threshold(y[fold != k], p[fold != k])
        thresholds.append(0.5 if tuned is None else tuned)
        predicted[fold == k] = p[fold == k] >= thresholds[-1]
    metrics = classification_metrics(y, p, classes=list(classes), predictions=predicted)
    return {**{k: metrics[k] for k in THRESHOLD_METRICS}, "thresholds": thresholds}


def _final_metrics(
    scored: dict[str, Any],
    preprocessor: Preprocessor,
    classes: tuple[str, ...],
    n_train: int,
    progress: Progress,
    weights_step: int,
    cross_fit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    metrics = classification_metrics(scored["y"], scored["p"], preprocessor.threshold, list(classes))
    if cross_fit is not None:  # out-of-fold: not the shipped threshold's in-sample flattery (see _cross_fit)
        metrics.update({k: cross_fit[k] for k in THRESHOLD_METRICS})
        metrics["threshold_cross_fit"] = {"folds": 2, "thresholds": cross_fit["thresholds"]}
    metrics["n_val"] = metrics.pop("n")
    metrics["n_train"] = n_train
    metrics["primary_metric"] = PRIMARY_METRIC
    metrics["task"] = preprocessor.labels.task
    metrics["best_step"] = weights_step  # the step whose weights are the model (the name consumers read)
    metrics["weights_step"] = weights_step
    metrics["steps"] = progress.step
    metrics["history"] = progress.history
    return metrics


def _without_holdout(
    frame: pd.DataFrame, rule: HoldoutRule
) -> tuple[pd.DataFrame, npt.NDArray[np.uint64], dict[str, Any]]:
    """The rows train.py may use (holdout rows dropped), their identity hashes (the validation split reuses them)
    and the model card's record of the holdout."""
    hashes = rule.hashes(frame)
    held = in_holdout(hashes, rule.fraction)
    if held.all():
        raise DataError(
            f"all {len(frame)} labelled row(s) fall in the holdout ({rule.describe()})",
            "add data: about a share --holdout-fraction of the rows is held out for evaluation",
        )
    record = {**rule.to_json(), "rows": int(held.sum())}
    return frame.loc[~held].reset_index(drop=True), hashes[~held], record


def _fingerprint(
    args: argparse.Namespace, data_hash: str, batch_size: int, preprocessor: Preprocessor
) -> dict[str, Any]:
    """What must match for a checkpoint to continue this run (the process count may change). ``inputs``:
    the features, category counts and classes the model sees; a contract edit on the same data changes them."""
    keys = ("lr", "width", "depth", "dropout", "weight_decay", "epochs", "max_steps", "seed", "amp", "imbalance")
    fingerprint: dict[str, Any] = {k: getattr(args, k) for k in keys}
    inputs = [preprocessor.feature_names, preprocessor.cardinalities, list(preprocessor.labels.classes)]
    fingerprint.update(
        batch_size=batch_size,
        val_fraction=args.val_fraction,
        split=SPLIT_RULE,
        holdout_fraction=args.holdout_fraction,
        data_hash=data_hash,
        inputs=hashlib.sha256(json.dumps(inputs, default=str).encode()).hexdigest()[:16],
    )
    return fingerprint


def _params(args: argparse.Namespace, batch_size: int, world_size: int) -> dict[str, Any]:
    skip = {"data", "contract", "output_dir", "manifest", "resume"}
    params = {k: v for k, v in vars(args).items() if k not in skip}
    params.update(batch_size=batch_size, world_size=world_size)
    return params


def _checkpoint(
    directory: Path,
    fingerprint: dict[str, Any],
    model: TabularMLP,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    progress: Progress,
    reason: str,
) -> None:
    save_checkpoint(
        directory,
        progress.step,
        {
            "fingerprint": fingerprint,
            "reason": reason,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "data_order": progress.order.to_dict(),
            "rng": capture_rng(),
            "best": {
                "metric": progress.best_metric,
                "step": progress.best_step,
                "state": progress.best_state,
                "bad_epochs": progress.bad_epochs,
                "stopped_early": progress.stopped_early,
            },
            "history": progress.history,
            "elapsed_s": progress.elapsed_s,
        },
    )


def _maybe_resume(
    resume: str,
    directory: Path,
    fingerprint: dict[str, Any],
    model: TabularMLP,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    progress: Progress,
) -> Path | None:
    if resume == "never":
        return None
    if resume == "auto" or Path(resume).is_dir():
        found = newest_valid(directory if resume == "auto" else Path(resume), fingerprint)
        if found is None:
            return None
        path, state = found.path, found.state
    else:
        path = Path(resume)
        if not path.is_file():
            raise TrainingJobError(
                f"--resume {resume}: no such checkpoint", "pass auto, never or an existing ckpt-*.pt"
            )
        try:
            state = load_checkpoint(path)
        except ValueError as exc:
            raise TrainingJobError(
                f"--resume {resume} is unusable ({exc})", "pass auto to use the newest valid one"
            ) from None
    misfit = _misfit(model, optimizer, state)
    if misfit:
        # Checked before anything is loaded: load_state_dict copies what fits before it raises, and a
        # half-loaded model must not go on as "fresh".
        if resume == "auto" or Path(resume).is_dir():
            log.warning("checkpoint %s does not fit this model (%s): starting fresh", path, misfit)
            return None
        raise TrainingJobError(f"--resume {resume} does not fit this model ({misfit})", "use --resume never")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    progress.step = int(state["step"])
    progress.order = DataOrder(**{k: int(v) for k, v in state["data_order"].items()})
    best = state.get("best", {})
    progress.best_metric = float(best.get("metric", -math.inf))
    progress.best_step = int(best.get("step", 0))
    progress.best_state = best.get("state")
    progress.bad_epochs = int(best.get("bad_epochs", 0))
    progress.stopped_early = bool(best.get("stopped_early", False))
    progress.history = list(state.get("history", []))
    progress.elapsed_s = float(state.get("elapsed_s", 0.0))
    restore_rng(state["rng"])
    log.info("resumed from %s at step %d", path, progress.step)
    return path


def _misfit(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> str | None:
    """Why a checkpoint's model and optimiser state cannot be loaded into these, or None if they can."""
    saved, expected = state.get("model"), model.state_dict()
    if not isinstance(saved, dict) or saved.keys() != expected.keys():
        return "its model has different layers"
    for name, tensor in expected.items():
        other = saved[name]
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape:
            found = tuple(other.shape) if isinstance(other, torch.Tensor) else type(other).__name__
            return f"{name} is {found}, this model's is {tuple(tensor.shape)}"
    groups = state.get("optimizer", {}).get("param_groups") if isinstance(state.get("optimizer"), dict) else None
    if not isinstance(groups, list) or [len(g.get("params", ())) for g in groups] != [
        len(g["params"]) for g in optimizer.param_groups
    ]:
        return "its optimiser state is for other parameter groups"
    for key in ("scheduler", "scaler"):
        if not isinstance(state.get(key), dict):
            return f"it has no {key} state"
    return None


def _model_card(
    args: argparse.Namespace,
    params: dict[str, Any],
    metrics: dict[str, Any],
    dataset: Any,
    manifest: Any,
    task: str,
    ctx: distributed.DistContext,
    progress: Progress,
    weights_step: int,
    n_rows: int,
    n_train: int,
    holdout: dict[str, Any],
) -> dict[str, Any]:
    run_id = (
        (manifest.run_id if manifest else None) or os.environ.get("AZUREML_RUN_ID") or os.environ.get("MLFLOW_RUN_ID")
    )
    return {
        "model": manifest.model if manifest else None,
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": task,
        "params": params,
        "metrics": {k: v for k, v in metrics.items() if k != "history"},
        "data": {
            "manifest_hash": manifest.hash if manifest else None,
            "data_hash": dataset.data_hash,
            "files": dataset.files,
            "rows": n_rows,
            "n_train": n_train,
            "n_val": metrics["n_val"],
            # Left out before the split: never trained on, and the only rows evaluate.py scores. evaluate.py
            # reads this to score a champion trained with a smaller fraction only on rows it never saw.
            "holdout": holdout,
        },
        "code_version": code_version(),
        "packages": package_versions(),
        "seed": args.seed,
        "world_size": ctx.world_size,
        "device": str(ctx.device),
        "training": {
            "steps": progress.step,
            "best_step": weights_step,
            "weights_step": weights_step,
            "stopped_early": progress.stopped_early,
            "seconds": round(progress.elapsed_s, 3),
        },
        "files": [WEIGHTS, CONFIG, PREPROCESSING, METRICS, CARD, "sample_input.json"],
    }


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)  # unknown or bad options: usage message, exit 2
    try:
        return run(args)
    except TrainingJobError as exc:
        print(error_lines(exc), file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
