"""Validation verdicts kept per blob version, so a batch's bytes are read once in its life, not once per run.

Every run validates every blob it trains on (the landing folder, or ``training.window_days`` of it). A blob version
(url, eTag) never changes, so its verdict against the same contract, histogram edges and validation rules never
changes either: ``validate_blob`` keeps a passing verdict (its summary, its sha256 and its profile) under
``verdicts/<model>/<key>.json`` and a later run reuses it instead of downloading the blob again. The key covers
everything the verdict depends on, so a changed contract, a new champion's edges or a change to the code that judges
(``RULES_VERSION``, a hash of its source) is simply a new key, and the blob is read again. Failing verdicts are not
kept: the blob is quarantined, out of landing, and a later run never lists it.

The verdicts have a container of their own so that one storage lifecycle rule can bound them (infra/modules/
storage.bicep deletes each ``verdictRetentionDays`` after it was written; Azure's rules match name prefixes only, and
``manifests`` holds the run manifests, which are lineage and never deleted). A deleted verdict is simply not found:
the next run that needs it reads and judges the blob once more. Verdicts kept under ``manifests/<model>/verdicts/``
by an older version of this app are not looked at (each blob is judged again once).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared import keyset, parquet_size, tabular_io, typecast, validation
from shared import profile as profiles
from shared.blobpaths import quoted_etag
from shared.profile import DatasetProfile, ProfileError
from shared.spec import DataContract, Task
from shared.storage import VERDICTS, BlobMissingError, BlobRef, BlobStore, StorageError
from shared.workflow import ValidationOutcome

logger = logging.getLogger("perennial.verdicts")


class VerdictError(ValueError):
    """A kept verdict that does not parse (written by an older format, or damaged): judge the blob again."""


#: The modules whose code decides a verdict or builds a profile.
JUDGES = (validation, profiles, tabular_io, parquet_size, typecast, keyset)


def _rules_version() -> str:
    """A hash of the judging code itself: any change to it, even one nobody thought could change a verdict, makes
    every kept verdict a stranger, so each blob is read and judged again once (no version to remember to bump)."""
    digest = hashlib.sha256()
    for module in JUDGES:
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:16]


RULES_VERSION = _rules_version()


def verdict_name(
    model: str,
    url: str,
    etag: str,
    contract: DataContract,
    edges: Mapping[str, Sequence[float]] | None,
    task: Task = "binary",
) -> str:
    """Where, in the ``verdicts`` container, the verdict on blob version (``url``, ``etag``) against ``contract``,
    ``edges`` and the model's ``task`` (which label classes must be present) is kept: ``<model>/<key>.json``."""
    what = {
        "rules": RULES_VERSION,
        "url": url,
        "etag": quoted_etag(etag),
        "contract": contract.model_dump(mode="json"),
        "task": task,
        "edges": {name: [float(e) for e in values] for name, values in (edges or {}).items()} if edges else None,
    }
    key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()
    return f"{model}/{key}.json"


@dataclass(frozen=True)
class KeptVerdict:
    """A passing verdict kept for a blob version: its outcome (with the sha256) and its profile."""

    outcome: ValidationOutcome
    profile: DatasetProfile


def read_verdict(store: BlobStore, name: str) -> KeptVerdict:
    """The verdict kept under ``name``; BlobMissingError if there is none, VerdictError if it does not parse."""
    document = store.get_json(VERDICTS, name)
    try:
        return KeptVerdict(ValidationOutcome.load(document["outcome"]), DatasetProfile.from_dict(document["profile"]))
    except (ProfileError, AttributeError, TypeError, KeyError, ValueError) as exc:  # (pydantic's is a ValueError)
        raise VerdictError(f"kept verdict {VERDICTS}/{name} does not parse: {exc}") from exc


def kept_verdict(store: BlobStore, name: str) -> KeptVerdict | None:
    """The verdict kept under ``name``, or None: never kept, or unusable (then the blob is simply judged again,
    and a bad verdict never gets as far as a run's manifest step)."""
    try:
        return read_verdict(store, name)
    except BlobMissingError:
        return None
    except (StorageError, VerdictError, ValueError) as exc:
        logger.warning("kept verdict %s/%s is not usable (%s): validating the blob again", VERDICTS, name, exc)
        return None


class VerdictChangedError(RuntimeError):
    """A blob this run passed fails when judged again: the judging code changed while the run ran."""


def verdict_profile(
    store: BlobStore,
    name: str,
    ref: BlobRef,
    contract: DataContract,
    edges: Mapping[str, Sequence[float]] | None,
    task: Task = "binary",
) -> DatasetProfile:
    """The profile kept with the verdict ``name`` on blob version ``ref``. Verdicts expire (a lifecycle rule on their
    container), so one may be gone by a run's manifest step: then, given the run's ``edges``, the version is read
    again and profiled on them (not kept: the next run that needs it judges it whole)."""
    try:
        return read_verdict(store, name).profile
    except (BlobMissingError, VerdictError) as exc:
        if edges is None:  # the payload of an orchestration recorded before it carried the run's edges
            raise
        logger.warning("the kept verdict of %s is gone (%s): profiling it again", ref.name, exc)
    with store.open(ref) as stream:
        report = validation.validate(
            stream, contract, reference=profiles.edges_reference(edges), name=ref.name, task=task
        )
    if not report.ok or report.profile is None:  # the same bytes and rules cannot fail
        raise VerdictChangedError(
            f"{ref.name} passed validation earlier in this run but fails now ({report.summary().splitlines()[0]}); "
            "the validation code changed while the run ran: start the run again"
        )
    return report.profile


def keep_verdict(store: BlobStore, name: str, outcome: ValidationOutcome, profile: DatasetProfile) -> None:
    """Keep a passing verdict for later runs (overwriting is harmless: the same key holds the same verdict)."""
    store.put_json(VERDICTS, name, {"outcome": outcome.dump(), "profile": profile.to_dict()})
