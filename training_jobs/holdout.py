"""The holdout: rows that no model ever trains on, the same rows in every run, job, process and machine.

A row is in the holdout when a stable hash of its identity falls below the holdout fraction::

    u = blake2b(identity, digest_size=8) read as a big-endian unsigned 64-bit integer
    holdout  <=>  u < floor(fraction * 2**64)

The identity is the row's value in the contract's key column (``data.key``) as canonical text; a
row whose key is missing, or every row of a contract without a key, is identified by its values
in every contract column instead (each as canonical text, length-prefixed, in contract order).

train.py drops holdout rows before anything else sees the data (the validation split, the
preprocessing statistics, early stopping, the threshold); evaluate.py scores only holdout rows. The
validation split reuses the same hashes (mixed with a salt of its own: data.stratified_split), so the
copies of a row sit on one side there too.
Every run trains on the whole landing folder, so a row stays on its side run after run: no
challenger and no champion has trained on a holdout row. The rule is nested in the fraction (the
holdout at 0.1 is part of the holdout at 0.2), which lets evaluate.py score a champion trained
with a smaller fraction on the rows it never saw.

Canonical text: missing (None, NaN, NA) is missing; booleans are ``1`` / ``0``; whole numbers
(``42``, ``42.0``) are written as integers, other floats as Python's shortest ``repr``; text is
taken as it is; anything else as ``str``. So a key or a value reads the same whether its column
came out of a CSV or a Parquet file, as int, float (a column with gaps) or bool.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from training_jobs.contract import Contract

#: The spec's default (``promotion.holdout_fraction`` in shared/spec.py), so a job run by hand holds out
#: what a job the platform submits does.
DEFAULT_FRACTION = 0.1
#: The range the spec allows (shared/spec.py keeps the same numbers; a test checks they agree).
MIN_FRACTION = 0.05
MAX_FRACTION = 0.5

_DIGEST_BYTES = 8
_MISSING = "~"  # a missing value; a present one is "<length>:<text>", so the two never meet


@dataclass(frozen=True)
class HoldoutRule:
    """Which rows are held out: ``fraction`` of them, chosen by the hash of ``key`` (else of ``columns``)."""

    fraction: float
    key: str | None
    columns: tuple[str, ...]

    @classmethod
    def for_contract(cls, contract: Contract, fraction: float) -> HoldoutRule:
        return cls(fraction=fraction, key=contract.key, columns=tuple(c.name for c in contract.columns))

    @property
    def identity(self) -> str:
        """What identifies a row: ``key:<column>`` or ``values:<col1>,<col2>,...``. Two rules with the same
        identity hold out nested sets of rows (the smaller fraction's inside the larger's)."""
        return f"key:{self.key}" if self.key is not None else "values:" + ",".join(self.columns)

    def describe(self) -> str:
        what = f"the key {self.key}" if self.key is not None else "the row's values in every contract column"
        fallback = " (the row's values where the key is missing)" if self.key is not None else ""
        return f"blake2b-64({what}{fallback}) / 2**64 < {self.fraction:g}"

    def to_json(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "rule": self.describe(), "identity": self.identity}

    def hashes(self, frame: pd.DataFrame) -> npt.NDArray[np.uint64]:
        """Each row's 64-bit hash (the fraction plays no part: compare with :func:`threshold`)."""
        identities: list[str | None]
        if self.key is not None and self.key in frame.columns:
            identities = canonical_texts(frame[self.key])
        else:
            identities = [None] * len(frame)
        if any(identity is None for identity in identities):
            rows = np.flatnonzero([identity is None for identity in identities])
            by_values = _value_identities(frame.iloc[rows], self.columns)
            for row, identity in zip(rows.tolist(), by_values, strict=True):
                identities[row] = identity
        return stable_hashes(identities)  # type: ignore[arg-type]  # every None was replaced above

    def mask(self, frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
        """True for the rows of ``frame`` in the holdout."""
        return in_holdout(self.hashes(frame), self.fraction)


def threshold(fraction: float) -> np.uint64:
    """A row is held out when its hash is below this: ``floor(fraction * 2**64)``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction {fraction} is outside (0, 1)")
    return np.uint64(math.floor(fraction * 2.0**64))


def in_holdout(hashes: npt.NDArray[np.uint64], fraction: float) -> npt.NDArray[np.bool_]:
    return np.asarray(hashes < threshold(fraction), dtype=np.bool_)


def stable_hashes(identities: list[str]) -> npt.NDArray[np.uint64]:
    """blake2b (8-byte digest) of each identity's UTF-8 bytes, as big-endian unsigned 64-bit integers."""
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(text.encode("utf-8"), digest_size=_DIGEST_BYTES).digest() for text in identities])
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)


def canonical_texts(values: pd.Series) -> list[str | None]:
    """Each value as canonical text (module docstring), ``None`` where it is missing. Vectorised per dtype."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "b":
        return np.where(values.to_numpy(), "1", "0").tolist()  # type: ignore[no-any-return]
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return values.to_numpy().astype(str).tolist()  # type: ignore[no-any-return]
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        return _float_texts(values.to_numpy(dtype=np.float64))
    if isinstance(dtype, pd.StringDtype):  # text as it is; only the missing entries need a look
        texts: list[str | None] = values.tolist()
        if values.hasnans:
            for row in np.flatnonzero(values.isna().to_numpy()).tolist():
                texts[row] = None
        return texts
    return [value if type(value) is str else _text(value) for value in values.tolist()]


def _float_texts(array: npt.NDArray[np.float64]) -> list[str | None]:
    finite = np.isfinite(array)
    whole = finite & (np.floor(array) == array) & (np.abs(array) < 2.0**63)
    texts: npt.NDArray[Any] = np.empty(len(array), dtype=object)
    texts[whole] = array[whole].astype(np.int64).astype(str)
    other = ~whole & ~np.isnan(array)
    texts[other] = [repr(v) for v in array[other].tolist()]
    texts[np.isnan(array)] = None
    return texts.tolist()  # type: ignore[no-any-return]


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if number != number:
            return None
        if math.isfinite(number) and number.is_integer() and abs(number) < 2.0**63:
            return str(int(number))
        return repr(number)
    return str(value)


def _value_identities(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[str]:
    """Each row's values in ``columns`` as ``<length>:<text>`` (``~`` where missing or the column is absent),
    joined with ``|``: e.g. ``5:r1-17|6:0.1234|~|1:1``. The joining is pyarrow's (vectorised)."""
    if not columns or frame.empty:
        return [""] * len(frame)
    parts: list[pa.Array] = []
    for name in columns:
        if name not in frame.columns:
            parts.append(pa.array([_MISSING] * len(frame), type=pa.string()))
            continue
        text = pa.array(canonical_texts(frame[name]), type=pa.string())
        length = pc.cast(pc.utf8_length(text), pa.string())
        parts.append(pc.fill_null(pc.binary_join_element_wise(length, text, ":"), _MISSING))
    joined = pc.binary_join_element_wise(*parts, "|")
    return joined.to_pylist()  # type: ignore[no-any-return]
