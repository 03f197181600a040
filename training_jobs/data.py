"""Reading the data: a folder of CSV/Parquet files (an Azure ML uri_folder mount) or one file.

A manifest pins the exact files and their sha256: a listed file that is missing or changed
stops the job (the model card would otherwise lie about its data). Files are read in name order
(a manifest's listing order plays no part). Labels are mapped to class indices here, and the
train/validation split is made here, once, the same way on every rank: by row identity (the hash
the holdout uses), so copies of a row never straddle training and validation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from training_jobs.contract import Column, Contract, canonical_label
from training_jobs.errors import DataError, ManifestError, is_transient_io

log = logging.getLogger("training_jobs.data")

DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
#: Text read as missing in a CSV number, bool or timestamp column (pandas' default ``na_values``, as the app's
#: validator reads them: shared.typecast.MISSING_TOKENS). In a string or category column only the empty field
#: is missing. Copied, not imported: training_jobs ships alone.
MISSING_TOKENS = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
)
_MISSING_TEXT = frozenset(MISSING_TOKENS)
PARQUET_MAGIC = b"PAR1"  # the first (and last) 4 bytes of every Parquet file
#: Salts mixed into the holdout's identity hashes to order identities for the validation split and for
#: train.py's two threshold folds: each its own order, independent of the holdout's (and of --seed: the
#: candidates of one sweep are judged on the same rows).
SPLIT_SALT = 0x5EED_0000_0000_0001
FOLD_SALT = 0x5EED_0000_0000_0002


@dataclass(frozen=True)
class ManifestFile:
    name: str
    sha256: str
    size: int | None = None


@dataclass(frozen=True)
class Manifest:
    model: str | None
    run_id: str | None
    files: tuple[ManifestFile, ...]
    #: sha256 of the canonical JSON of the file list: the data's identity in the model card.
    hash: str


@dataclass
class Dataset:
    frame: pd.DataFrame
    files: list[dict[str, Any]] = field(default_factory=list)
    manifest: Manifest | None = None
    #: sha256 over (name, sha256) of every file read: identifies the data even without a manifest.
    data_hash: str = ""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _canonical_hash(entries: list[dict[str, Any]]) -> str:
    text = json.dumps(sorted(entries, key=lambda e: str(e["name"])), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def load_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest", "pass --manifest with the run's manifest.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read it as JSON ({exc})", "write it with json.dump") from None
    raw_files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(raw_files, list) or not raw_files:
        raise ManifestError(f"{path}: 'files' is missing or empty", 'list {"name", "sha256", "size"} per file')
    files: list[ManifestFile] = []
    for i, entry in enumerate(raw_files):
        name = entry.get("name") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not isinstance(digest, str) or len(digest) != 64:
            raise ManifestError(f"{path}: files[{i}] needs a name and a 64-hex sha256", "regenerate the manifest")
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ManifestError(f"{path}: files[{i}].name={name!r} leaves the data folder", "use relative names")
        size = entry.get("size")
        files.append(ManifestFile(name=name, sha256=digest.lower(), size=int(size) if size is not None else None))
    canonical = [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in files]
    model = document.get("model")
    run_id = document.get("run_id")
    return Manifest(
        model=str(model) if model is not None else None,
        run_id=str(run_id) if run_id is not None else None,
        files=tuple(files),
        hash=_canonical_hash(canonical),
    )


def _is_data_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(DATA_SUFFIXES) and not path.name.startswith(".")


def _find_files(data: Path, manifest: Manifest | None) -> list[Path]:
    if manifest is not None:
        base = data if data.is_dir() else data.parent
        paths: list[Path] = []
        # In name order, as the data hash sorts them: the rows' order (and so the training order) must not
        # depend on how the manifest happens to list the files.
        for entry in sorted(manifest.files, key=lambda f: f.name):
            path = base / entry.name
            if not path.is_file():
                raise ManifestError(
                    f"manifest lists {entry.name!r} but {path} does not exist",
                    "pass the --data folder the manifest was written for",
                )
            if entry.size is not None and path.stat().st_size != entry.size:
                raise ManifestError(
                    f"{entry.name}: size {path.stat().st_size} != {entry.size} in the manifest",
                    "the file changed after the manifest was written; re-run validation to get a new manifest",
                )
            actual = sha256_file(path)
            if actual != entry.sha256:
                raise ManifestError(
                    f"{entry.name}: sha256 {actual} != {entry.sha256} in the manifest",
                    "the file changed after the manifest was written; re-run validation to get a new manifest",
                )
            paths.append(path)
        return paths
    if data.is_file():
        return [data]
    if not data.is_dir():
        raise DataError(f"{data}: no such file or folder", "pass --data with a folder of CSV/Parquet files or one file")
    paths = sorted(p for p in data.rglob("*") if _is_data_file(p))
    if not paths:
        raise DataError(f"{data} holds no .csv or .parquet files", "point --data at the folder the batches landed in")
    return paths


def file_format(name: str, head: bytes) -> str:
    """The reader a file needs, "parquet" or "csv": the app validator's rule (shared.tabular_io._detect_format).

    The validator passes a blob of any name whose first bytes are Parquet's magic (``PAR1``), such
    as ``export-2026-11-30`` or ``part-0000.snappy``; choosing by suffix alone would read it as CSV
    and fail the job on data that was accepted. Copied, not imported: training_jobs ships alone.
    (``.csv.gz`` falls through to "csv" and pandas decompresses it by its suffix; the validator
    rejects gzip as binary, so training only ever reads more than was validated, never less.)
    """
    lower = name.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith((".csv", ".txt")):
        return "csv"
    return "parquet" if head.startswith(PARQUET_MAGIC) else "csv"


def as_text(values: Sequence[Any] | pd.Series | npt.NDArray[Any]) -> list[str | None]:
    """Category/string values as text (None for missing), spelt as the validator's Arrow cast spells them.

    A float is written by Arrow's float-to-string cast, not by ``str``: 2.0 is "2" (Python says "2.0"), 2.5 is
    "2.5", so a category column that pandas wrote to Parquet as float64 (a nullable int column) matches the
    declared categories ["0", "1", "2"] as it did in validation. Booleans are "true"/"false" as in Arrow; ints
    and strings are as they are."""
    if isinstance(values, pd.Series | np.ndarray) and values.dtype.kind in "biuf":
        texts: list[str | None] = pa.array(values, from_pandas=True).cast(pa.string()).to_pylist()
        return texts
    items = values.tolist() if isinstance(values, pd.Series | np.ndarray) else list(values)
    out: list[str | None] = [None] * len(items)
    floats: list[int] = []  # positions of the floats, cast together by Arrow below
    for i, v in enumerate(items):
        if _is_missing(v):
            continue
        if isinstance(v, bool | np.bool_):
            out[i] = "true" if v else "false"
        elif isinstance(v, float | np.floating):
            floats.append(i)
        else:
            out[i] = str(v)
    if floats:
        spelt = pa.array([float(items[i]) for i in floats], pa.float64()).cast(pa.string()).to_pylist()
        for i, text in zip(floats, spelt, strict=True):
            out[i] = text
    return out


def _holds_numbers(series: pd.Series) -> bool:
    """Numbers or booleans, also as a pandas categorical (a Parquet dictionary column of them)."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    return dtype.kind in "biuf"


def _read_one(path: Path, contract: Contract) -> pd.DataFrame:
    # Category/string columns are read as text so "01" stays "01" and codes never become floats.
    text_columns = {c.name: "string" for c in contract.columns if c.is_categorical}
    try:
        with path.open("rb") as handle:
            head = handle.read(len(PARQUET_MAGIC))
        if file_format(path.name, head) == "parquet":
            frame = pd.read_parquet(path)
            _decimals_as_numbers(frame, path, contract)
            for name in text_columns:
                if name not in frame.columns:
                    continue
                if _holds_numbers(frame[name]):  # e.g. a float64 category column: as the validator spelt it
                    frame[name] = pd.Series(as_text(frame[name]), index=frame.index, dtype="string")
                else:
                    frame[name] = frame[name].astype("string")
            return frame
        return pd.read_csv(
            path,
            dtype=text_columns,
            keep_default_na=False,
            na_values=_csv_missing(path, text_columns),
            low_memory=False,
        )
    except Exception as exc:  # pandas/pyarrow raise many types; all but an I/O blip mean "this file is unreadable"
        if is_transient_io(exc):
            raise  # the job fails (exit 1) and is retried, unlike a bad file (exit 2, not retried)
        raise DataError(
            f"{path}: cannot read it ({type(exc).__name__}: {exc})", "check the file is CSV or Parquet"
        ) from exc


def _csv_missing(path: Path, text_columns: Mapping[str, str]) -> dict[str, list[str]]:
    """What ``read_csv`` reads as missing in each column, as the validator reads it (shared.tabular_io): in a string
    or category column only the empty field, so the region code "NA" is the value NA (as in Parquet and at scoring);
    in every other column the usual tokens (MISSING_TOKENS: pandas' defaults)."""
    header = pd.read_csv(path, nrows=0).columns
    return {str(name): [""] if name in text_columns else list(MISSING_TOKENS) for name in header}


def _decimals_as_numbers(frame: pd.DataFrame, path: Path, contract: Contract) -> None:
    """Parquet decimal columns of a float or int column as the validator casts them: float64 (Arrow's cast), and
    int64 when every value is whole. pandas would give Decimal objects, which no JSON writer takes."""
    numeric = {c.name: c.type for c in contract.columns if c.type in ("float", "int") and c.name in frame.columns}
    if not numeric or not any(frame[name].dtype == object for name in numeric):
        return
    schema = pq.read_schema(path)
    for name, kind in numeric.items():
        if name not in schema.names or not pa.types.is_decimal(schema.field(name).type):
            continue
        values = pa.array(frame[name].to_numpy(dtype=object), type=schema.field(name).type, from_pandas=True)
        try:
            cast = values.cast(pa.int64()) if kind == "int" else values.cast(pa.float64(), safe=False)
        except pa.ArrowInvalid:  # an int column holding a fraction: a float, as the validator reads the rest
            cast = values.cast(pa.float64(), safe=False)
        frame[name] = cast.to_numpy(zero_copy_only=False)  # int64, or float64 with NaN where one is missing


def load_dataset(data: str | Path, contract: Contract, manifest: Manifest | None = None) -> Dataset:
    """Read every data file (or exactly the manifest's files, verified) into one frame."""
    paths = _find_files(Path(data), manifest)
    frames: list[pd.DataFrame] = []
    files: list[dict[str, Any]] = []
    for path in paths:
        frame = _read_one(path, contract)
        frames.append(frame)
        name = path.name if Path(data).is_file() else str(path.relative_to(Path(data)))
        files.append({"name": name, "sha256": sha256_file(path), "rows": len(frame)})
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    needed = [c.name for c in contract.feature_columns if not c.nullable] + [contract.label]
    missing = [name for name in needed if name not in frame.columns]
    if missing:
        raise DataError(
            f"the data has no column(s) {', '.join(missing)} (found: {', '.join(map(str, frame.columns))})",
            "the files do not match the contract; fix the data or the spec's data.columns",
        )
    data_hash = _canonical_hash([{"name": f["name"], "sha256": f["sha256"]} for f in files])
    return Dataset(frame=frame, files=files, manifest=manifest, data_hash=data_hash)


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class LabelSpace:
    """Classes in model-output order. Binary: [negative, positive], the model predicts P(positive)."""

    task: str  # "binary" | "multiclass"
    classes: tuple[str, ...]

    @property
    def n_outputs(self) -> int:
        return 1 if self.task == "binary" else len(self.classes)

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "classes": list(self.classes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabelSpace:
        return cls(task=str(data["task"]), classes=tuple(str(c) for c in data["classes"]))


def _label_strings(frame: pd.DataFrame, contract: Contract) -> list[str | None]:
    """Each row's label as training spells classes; None for an unlabelled row. A label written ``NA``, ``null``
    (MISSING_TOKENS) or empty is unlabelled in any file, as validation reads it (a class named NA would be a trap)."""
    return [
        None if _is_missing(v) or (isinstance(v, str) and v in _MISSING_TEXT) else contract.label_key(v)
        for v in frame[contract.label].tolist()
    ]


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and value != value


def drop_unlabelled(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    labels = _label_strings(frame, contract)
    keep = np.array([v is not None for v in labels], dtype=bool)
    if not keep.all():
        log.warning("dropping %d row(s) with no %s label", int((~keep).sum()), contract.label)
        frame = frame.loc[keep].reset_index(drop=True)
    if frame.empty:
        raise DataError(f"no row has a {contract.label} label", "the label column must be filled for training data")
    return frame


def infer_label_space(frame: pd.DataFrame, contract: Contract) -> LabelSpace:
    """The classes in model-output order. The contract's ``task`` says binary or multiclass; a contract written
    before it carried one leaves that to the labels present (more than two values: multiclass)."""
    labels = _label_strings(frame, contract)
    values = sorted({v for v in labels if v is not None})
    if contract.task == "multiclass":
        return _multiclass_space(values, contract)
    if contract.task is None and len(values) > 2:
        return LabelSpace(task="multiclass", classes=tuple(values))
    positive = contract.label_key(contract.positive_class)
    _refuse_undeclared_values(values, contract)
    if len(values) > 2:
        _refuse_a_third_value(labels, values, positive, contract)
    if positive not in values:
        raise DataError(
            f"positive_class={contract.positive_class!r} never occurs in {contract.label} (values: {values})",
            "set data.positive_class to the label value that means positive",
        )
    if len(values) < 2:
        raise DataError(f"{contract.label} has one class only ({values})", "training needs rows of both classes")
    negative = next(v for v in values if v != positive)
    return LabelSpace(task="binary", classes=(negative, positive))


#: The most classes an integer label's declared min..max may name (more is not a class list but a number).
MAX_DECLARED_CLASSES = 1000


def _multiclass_space(values: list[str], contract: Contract) -> LabelSpace:
    """Multiclass: the label's declared classes when it has them (a batch without a rare class still trains a
    model with an output for it, so class indices mean the same from run to run): a category label's categories,
    an integer label's min..max; else the values present."""
    column = contract.column(contract.label)
    classes = values
    declared = _declared_classes(column)
    if declared is not None:
        classes = declared
        outside = [v for v in values if v not in classes]
        if outside:
            shown = classes if len(classes) <= 20 else [*classes[:20], "..."]
            raise DataError(
                f"{contract.label} holds value(s) outside its declared classes: {outside[:5]} (declared: {shown})",
                "fix the data, or declare the value(s) in the spec (the label column's categories, or its min/max)",
            )
    if len(values) < 2:
        raise DataError(
            f"{contract.label} has one class only ({values})", "training needs rows of at least two classes"
        )
    return LabelSpace(task="multiclass", classes=tuple(classes))


def _declared_classes(column: Column) -> list[str] | None:
    """The classes a multiclass label column declares, sorted as classes are: its categories, or the whole numbers
    from its min to its max (at most MAX_DECLARED_CLASSES); None when it declares none."""
    if column.is_categorical and column.categories is not None:
        return sorted({canonical_label(c) for c in column.categories})
    low, high = column.min, column.max
    if column.type == "int" and low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        first, last = math.ceil(low), math.floor(high)
        if 0 < last - first + 1 <= MAX_DECLARED_CLASSES:
            return sorted({canonical_label(v) for v in range(first, last + 1)})
    return None


def _refuse_undeclared_values(values: list[str], contract: Contract) -> None:
    """A binary label that declares its categories holds no other value (validation refuses it too): without this
    a batch of ``yes`` and ``maybe`` would train ``maybe`` as the negative class of a label declared ``[no, yes]``."""
    column = contract.column(contract.label)
    if not column.is_categorical or column.categories is None:
        return
    declared = {canonical_label(c) for c in column.categories}
    outside = [v for v in values if v not in declared]
    if outside:
        raise DataError(
            f"{contract.label} holds value(s) outside its declared categories: {outside[:5]} "
            f"(declared: {sorted(declared)})",
            "fix the data, or declare the value(s) among the label column's categories in the spec",
        )


def _refuse_a_third_value(labels: list[str | None], values: list[str], positive: str, contract: Contract) -> None:
    """A binary model's label holds more than two values: name the ones beyond the positive class and the negative
    (the label's other declared category, else its most frequent other value)."""
    column = contract.column(contract.label)
    declared = {canonical_label(c) for c in column.categories or ()} - {positive}
    counts = Counter(v for v in labels if v is not None and v != positive)
    negative = next(iter(declared)) if len(declared) == 1 else min(counts, key=lambda v: (-counts[v], v))
    extra = [v for v in values if v not in (positive, negative)]
    raise DataError(
        f"{contract.label} holds {len(values)} values but the task is binary: besides the positive class "
        f"{positive!r} and {negative!r} it holds {extra[:5]}"
        + (f" and {len(extra) - 5} more" if len(extra) > 5 else ""),
        f"fix the data (every label must be {negative!r} or {positive!r}), or set task: multiclass in the spec",
    )


def encode_labels(frame: pd.DataFrame, contract: Contract, space: LabelSpace) -> npt.NDArray[np.int64]:
    labels = _label_strings(frame, contract)
    # Binary classes are (negative, positive): 0 and 1. A value that is neither is an error, not a
    # negative: a dirty holdout must not quietly shift the comparison.
    index = {c: i for i, c in enumerate(space.classes)}
    unknown = sorted({v for v in labels if v not in index}, key=str)
    if unknown:
        raise DataError(
            f"{contract.label} holds classes the model never saw: {unknown[:5]}", "evaluate on data with known classes"
        )
    return np.array([index[v] for v in labels if v is not None], dtype=np.int64)


def stratified_split(
    y: npt.NDArray[np.int64], identities: npt.NDArray[np.uint64], val_fraction: float, salt: int = SPLIT_SALT
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(train, val) row indices, chosen by row identity: ``identities`` are the rows' holdout hashes
    (HoldoutRule.hashes), so every row of one identity (a key exported twice, a duplicated row) falls on the
    same side. Per class, the identities are ordered by their hash mixed with ``salt`` and the first
    ``round(val_fraction * n)`` go to validation: at least one and at most n - 1 when a class has two or
    more identities (a 1% class must reach val). The split depends on the rows' identities and labels only,
    not on their order. An identity whose rows carry different labels counts for its most frequent label (of
    equal counts, the lowest class index): it has to sit on one side, and that side is chosen with that class."""
    groups, group_of = np.unique(identities, return_inverse=True)  # groups sorted by hash: order-free
    group_of = group_of.reshape(-1)
    n_classes = int(y.max()) + 1 if len(y) else 1
    pairs, counts = np.unique(group_of * n_classes + y, return_counts=True)
    pair_group, pair_class = pairs // n_classes, pairs % n_classes
    first = np.lexsort((pair_class, -counts, pair_group))  # per group: most rows first, then lowest class
    is_first = np.r_[True, pair_group[first][1:] != pair_group[first][:-1]]
    group_class = np.empty(len(groups), dtype=np.int64)
    group_class[pair_group[first][is_first]] = pair_class[first][is_first]
    order = mix(groups, salt)
    in_val = np.zeros(len(groups), dtype=bool)
    for cls in np.unique(group_class):
        members = np.flatnonzero(group_class == cls)
        members = members[np.argsort(order[members], kind="stable")]
        n_val = round(len(members) * val_fraction)
        # Two or more identities: both sides get some. One: training does (a model must see the class; with
        # --val-fraction above 0.5 it went to validation and the model trained without it).
        n_val = min(max(n_val, 1), len(members) - 1) if len(members) >= 2 else 0
        in_val[members[:n_val]] = True
    val = in_val[group_of]
    return np.flatnonzero(~val).astype(np.int64), np.flatnonzero(val).astype(np.int64)


def mix(hashes: npt.NDArray[np.uint64], salt: int) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser of ``hashes + salt``: a bijection of 64-bit integers, so a salt gives identities
    an order of its own, unrelated to the holdout's ``hash < fraction * 2**64`` (no second pass over the rows'
    text). uint64 arithmetic wraps, as the finaliser wants."""
    z = hashes.astype(np.uint64) + np.uint64(salt)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(z ^ (z >> np.uint64(31)), dtype=np.uint64)
