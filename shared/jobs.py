"""Turn a run's plan into platform jobs: stage the inputs, then build the training / evaluation JobSpecs.

Staging differs by platform and nothing else does: the local stand-in reads files, so the
manifest's blobs are downloaded into the state folder; Azure ML mounts blob storage, so the
inputs are the blobs' URLs. Either way a job sees a data folder, the manifest (names relative
to that folder, with sha256) and the data contract — train.py trains on exactly the
manifest's files and refuses a file whose hash changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.blobpaths import BlobNameError
from shared.events import MODEL_TAG
from shared.platform import JobInput, JobSpec, JobState, LogsRequest, MLPlatform, PlatformError, job_output_uri
from shared.registry import check_id
from shared.spec import ModelSpec
from shared.storage import LANDING, MANIFESTS, BlobStore, Manifest

#: Where the local platform's staged inputs live, under the state folder.
STAGING_DIR = "staging"


@dataclass(frozen=True)
class StagedInputs:
    """Job inputs for one run: a data folder, the manifest and the contract."""

    data: JobInput
    manifest: JobInput
    contract: JobInput

    def as_inputs(self) -> dict[str, JobInput]:
        return {"data": self.data, "manifest": self.manifest, "contract": self.contract}

    def dump(self) -> dict[str, Any]:
        return {name: {"path": i.path, "type": i.type} for name, i in self.as_inputs().items()}

    @classmethod
    def load(cls, raw: Mapping[str, Any]) -> StagedInputs:
        return cls(**{name: JobInput(path=v["path"], type=v["type"]) for name, v in raw.items()})


def _relative(model: str, blob_name: str) -> str:
    """A landing blob's name relative to the model's landing folder (``landing/<model>/x.csv`` → ``x.csv``)."""
    prefix = f"{model}/"
    return blob_name[len(prefix) :] if blob_name.startswith(prefix) else blob_name


def job_manifest(manifest: Manifest) -> dict[str, Any]:
    """The manifest as train.py reads it: file names relative to the data folder, with sha256 and size."""
    return {
        "model": manifest.model,
        "run_id": manifest.run_id,
        "files": [
            {"name": _relative(manifest.model, b.name), "sha256": b.sha256, "size": b.size} for b in manifest.blobs
        ],
    }


def job_contract(spec: ModelSpec) -> str:
    """contract.json, the data contract train.py and evaluate.py read (``--contract``): what both stagings write
    and ``perennial spec contract`` prints. The spec's ``data`` section plus its ``task``: train.py then knows a
    binary label holding a third value is a data error, and a multiclass one's classes are its declared categories,
    whatever labels a batch happens to hold."""
    return json.dumps({**spec.data.model_dump(mode="json"), "task": spec.task}, indent=2, ensure_ascii=False)


def stage_local(store: BlobStore, manifest: Manifest, spec: ModelSpec, state_dir: Path) -> StagedInputs:
    """Download the manifest's blobs into ``<state>/staging/<run>/data`` (idempotent: done files are kept).

    The manifest is read from storage: its model, run id and every name are checked before any becomes a local
    path, so none can reach outside the run's staging folder."""
    if manifest.model != spec.name:
        raise BlobNameError(f"the manifest is of model {manifest.model!r}, not {spec.name!r}", "rewrite it", "model")
    root = state_dir / STAGING_DIR / check_id(manifest.run_id, "run id")
    data = root / "data"
    for entry in manifest.blobs:
        store.path(LANDING, entry.name)  # a safe landing name (no '..', no empty segment) of a known model
        if not entry.name.startswith(f"{spec.name}/"):
            raise BlobNameError(f"manifest entry {entry.name!r} is not in landing/{spec.name}/", "rewrite it", "name")
        target = data / _relative(manifest.model, entry.name)
        if target.exists() and target.stat().st_size == entry.size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with partial.open("wb") as handle:
            for chunk in store.iter_chunks(store.ref(LANDING, entry.name)):
                handle.write(chunk)
        partial.replace(target)
    data.mkdir(parents=True, exist_ok=True)  # a manifest of no blobs made no data folder, which --data names
    (root / "manifest.json").write_text(json.dumps(job_manifest(manifest), indent=2), encoding="utf-8")
    (root / "contract.json").write_text(job_contract(spec), encoding="utf-8")
    return StagedInputs(
        data=JobInput(str(data.resolve()), "uri_folder"),
        manifest=JobInput(str((root / "manifest.json").resolve()), "uri_file"),
        contract=JobInput(str((root / "contract.json").resolve()), "uri_file"),
    )


def stage_azure(store: BlobStore, manifest: Manifest, spec: ModelSpec) -> StagedInputs:
    """Write the job manifest and contract beside the run's manifest; the data folder is the model's landing folder."""
    run_prefix = f"{manifest.model}/{manifest.run_id}"
    manifest_url = store.put_json(MANIFESTS, f"{run_prefix}.job-manifest.json", job_manifest(manifest))
    contract_url = store.put_json(MANIFESTS, f"{run_prefix}.contract.json", json.loads(job_contract(spec)))
    landing = store.container(LANDING).url.rstrip("/")
    return StagedInputs(
        data=JobInput(f"{landing}/{manifest.model}/", "uri_folder"),
        manifest=JobInput(manifest_url, "uri_file"),
        contract=JobInput(contract_url, "uri_file"),
    )


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def holdout_args(spec: ModelSpec) -> list[str]:
    """``--holdout-fraction``, the same for every training job and the evaluation: train.py leaves out exactly
    the rows evaluate.py scores (training_jobs/holdout.py), so neither model has trained on them."""
    return ["--holdout-fraction", str(spec.promotion.holdout_fraction)]


def training_job(
    spec: ModelSpec,
    name: str,
    inputs: StagedInputs,
    params: Mapping[str, Any],
    run_id: str,
    resume_from: str | None = None,
) -> JobSpec:
    """The command job that trains one candidate with ``params`` (train.py's options, e.g. lr, width).

    ``resume_from`` names an earlier attempt (preempted or failed): its checkpoints are mounted and
    train.py continues from the newest valid one instead of starting over.
    """
    args: list[str] = [
        "--data", "{inputs.data}",
        "--manifest", "{inputs.manifest}",
        "--contract", "{inputs.contract}",
        "--output-dir", "{outputs}",
    ]  # fmt: skip
    for key, value in sorted(params.items()):
        args += [_flag(key), str(value)]
    # After the params (the last one wins): the rows the evaluation scores are never trained on.
    args += holdout_args(spec)
    job_inputs = inputs.as_inputs()
    if resume_from is not None:
        job_inputs["previous"] = JobInput(job_output_uri(resume_from), "uri_folder")
        args += ["--resume", "{inputs.previous}/checkpoints"]
    training = spec.training
    return JobSpec(
        name=name,
        experiment_name=f"perennial-{spec.name}",
        compute=training.compute,
        script=Path(training.entry).name,
        code=str(Path(training.entry).parent),
        args=tuple(args),
        inputs=job_inputs,
        kind="training",
        instance_type=training.instance_type,
        instance_count=training.instance_count,
        distribution=training.distribution,
        processes_per_instance=training.processes_per_instance,
        timeout_seconds=int(training.timeout_minutes * 60),
        display_name=f"{spec.name} candidate {name}",
        tags={MODEL_TAG: spec.name, "perennial_run": run_id},
    )


def evaluation_job(
    spec: ModelSpec, name: str, inputs: StagedInputs, challenger: str, champion: str | None, run_id: str
) -> JobSpec:
    """The command job that scores challenger and champion on the same holdout and writes comparison.json.

    ``inputs`` are the run's, as every training job's: evaluate.py scores only the holdout rows of that data,
    the rows every training job left out (``holdout_args``)."""
    job_inputs: dict[str, JobInput] = {
        **inputs.as_inputs(),
        "challenger": JobInput(challenger, "uri_folder"),
    }
    args = [
        "--challenger", "{inputs.challenger}",
        "--data", "{inputs.data}",
        "--manifest", "{inputs.manifest}",
        "--contract", "{inputs.contract}",
        "--output", "{outputs}/comparison.json",
        "--primary-metric", spec.promotion.primary_metric,
        "--confidence", str(1 - spec.promotion.significance),
        *holdout_args(spec),
    ]  # fmt: skip
    if guardrails := spec.promotion.guardrails:
        # Bonferroni: every guardrail's interval at 1 - significance / k, so "settled" holds for all k together;
        # k counts the per-class guardrails too.
        confidence = 1 - spec.promotion.significance / len(guardrails)
        if metrics := [g.metric for g in guardrails if g.class_name is None]:
            args += ["--guardrail-metrics", ",".join(metrics)]
        # One option per class, the class after the first ':' as the spec spells it: a label value may hold commas
        # and colons, which a comma list could not carry.
        for guardrail in guardrails:
            if guardrail.class_name is not None:
                args += ["--class-guardrail", f"{guardrail.metric}:{guardrail.class_name}"]
        args += ["--guardrail-confidence", f"{confidence:.6g}"]
    if champion is not None:
        job_inputs["champion"] = JobInput(champion, "custom_model")
        args += ["--champion", "{inputs.champion}"]
    return JobSpec(
        name=name,
        experiment_name=f"perennial-{spec.name}",
        compute=spec.training.compute,
        script="evaluate.py",
        code=str(Path(spec.training.entry).parent),
        args=tuple(args),
        inputs=job_inputs,
        kind="evaluation",
        instance_type=spec.training.instance_type,
        timeout_seconds=int(spec.training.timeout_minutes * 60),
        display_name=f"{spec.name} evaluation {name}",
        tags={MODEL_TAG: spec.name, "perennial_run": run_id},
    )


#: How much of a failed job's log its error carries: enough for train.py's last words (a DataError and its hint, a
#: traceback's end), small enough for a run record and an orchestration history (a printed tensor is one long line).
FAILURE_LOG_LINES = 20
FAILURE_LOG_CHARS = 4000


def failure_with_log_tail(platform: MLPlatform, state: JobState, lines: int = FAILURE_LOG_LINES) -> str:
    """A failed job's error with the last lines of its log, so `perennial run` shows why (train.py's message and
    hint) without a trip to the studio. Azure ML's own error only says which process exited with which code; the
    local runner already puts the tail in its error, which is then left as it is. Best effort: a log that cannot be
    read leaves the error as the platform gave it."""
    error = state.error or f"job {state.name} ended {state.status}"
    try:
        tail = platform.job_logs(LogsRequest(state.name, tail_lines=lines)).strip()
    except PlatformError:
        return error
    last = tail.splitlines()[-1].strip() if tail else ""
    if not last or last in error:
        return error
    if len(tail) > FAILURE_LOG_CHARS:
        tail = f"…{tail[-FAILURE_LOG_CHARS:]}"
    return f"{error}\nlast lines of its log:\n{tail}"
