"""What train.py and evaluate.py share on their command lines: the help format, the input files both read,
and the error lines a bad input gets."""

from __future__ import annotations

import argparse
from pathlib import Path

from training_jobs.errors import ContractError, TrainingJobError

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


def error_lines(exc: TrainingJobError) -> str:
    """``error: …`` and ``hint: …`` for stderr; a contract problem also says how to write contract.json."""
    hint = exc.hint
    if isinstance(exc, ContractError):
        hint += f"; to write contract.json from the model's spec: {CONTRACT_COMMAND}"
    return f"error: {exc.message}\nhint: {hint}"
