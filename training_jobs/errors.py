"""Typed errors for the training, evaluation and scoring scripts.

Each carries a remediation ``hint``; the command-line entry points print both and exit with
``EXIT_BAD_INPUT`` (2) so the orchestrator marks the job as a user error, not a crash.
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_BAD_INPUT = 2
#: SIGTERM arrived (low-priority preemption); a checkpoint was written: resubmit with --resume auto.
EXIT_PREEMPTED = 75


class TrainingJobError(Exception):
    """Bad input or usage: the message says what is wrong, ``hint`` what to do about it."""

    def __init__(self, message: str, hint: str) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})")


class ContractError(TrainingJobError):
    """contract.json is missing, unreadable or inconsistent."""


class DataError(TrainingJobError):
    """The training / holdout data cannot be read or does not fit the contract."""


class ManifestError(TrainingJobError):
    """manifest.json is malformed, or a listed file is missing or has a different hash."""


class ModelBundleError(TrainingJobError):
    """A model folder lacks a file or holds one that cannot be read safely."""


class TrainingDiverged(TrainingJobError):
    """The loss (or the weights) stopped being finite: these options do not train this data."""


#: errno values of a read that may succeed when tried again: a mount or network blip, not a bad file.
_TRANSIENT_ERRNOS = frozenset(
    {errno.EIO, errno.ESTALE, errno.ENOTCONN, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET, errno.EHOSTUNREACH}
)


def is_transient_io(exc: BaseException) -> bool:
    """Whether ``exc`` is an I/O failure a retried job may not meet (exit 1, retried), rather than a file that is
    missing, unreadable or not what it should be (exit 2, not retried). pyarrow reports a truncated Parquet file
    and gzip a bad archive as plain OSErrors without an errno: those are bad files."""
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS
