"""What train.py and evaluate.py share on their command lines: the help format, the input files both read,
the holdout both must agree on, and the error lines a bad input gets."""

from __future__ import annotations

import argparse
from pathlib import Path

from training_jobs.errors import ContractError, TrainingJobError
from training_jobs.holdout import DEFAULT_FRACTION, MAX_FRACTION, MIN_FRACTION

#: How to get contract.json; --help and the error hint for a missing or bad one both say it.
CONTRACT_COMMAND = "perennial spec contract models/<name>.yaml -o contract.json"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` shows each option's default (options without one show none) and the example as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def add_contract_and_manifest(parser: argparse.ArgumentParser) -> None:
    """``--contract`` (required) and ``--manifest``: what the data must look like, and which files to read."""
    parser.add_argument(
        "--contract",
        type=Path,
        required=True,
        metavar="contract.json",
        help=f"the model's data contract, written from its spec by: {CONTRACT_COMMAND}",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        metavar="manifest.json",
        help="the files to read (relative to --data) and their sha256; without it, every file under --data",
    )


def holdout_fraction(text: str) -> float:
    """``--holdout-fraction``: a number in [MIN_FRACTION, MAX_FRACTION], the range the spec allows."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not MIN_FRACTION <= value <= MAX_FRACTION:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is outside [{MIN_FRACTION}, {MAX_FRACTION}]")
    return value


def add_holdout_fraction(parser: argparse.ArgumentParser) -> None:
    """``--holdout-fraction``: train.py leaves these rows out, evaluate.py scores only them (training_jobs/holdout.py).
    The platform passes the spec's ``promotion.holdout_fraction`` to both; the default is the spec's default."""
    parser.add_argument(
        "--holdout-fraction",
        type=holdout_fraction,
        default=DEFAULT_FRACTION,
        metavar="F",
        help="share of rows held out by a stable hash of the row's key (or values): never trained on, "
        "the only rows evaluate.py scores; give train.py and evaluate.py the same value",
    )


def error_lines(exc: TrainingJobError) -> str:
    """``error: …`` and ``hint: …`` for stderr; a contract problem also says how to write contract.json."""
    hint = exc.hint
    if isinstance(exc, ContractError):
        hint += f"; to write contract.json from the model's spec: {CONTRACT_COMMAND}"
    return f"error: {exc.message}\nhint: {hint}"
