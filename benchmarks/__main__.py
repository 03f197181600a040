"""``python -m benchmarks [NAME ...]``: run benchmarks against their named peers (``make bench`` runs them all).

``--list`` (or ``--help``) names each ``benchmarks/bench_*.py`` with the first paragraph of its
docstring, read from the source so that listing imports nothing heavy.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import shutil
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).parent

WHAT_ALL_DOES = """\
With no NAME, every benchmark runs in turn, as `make bench` does. That takes tens of minutes on
a 2-core machine, needs the peers in benchmarks/requirements.txt (`make bench` installs them)
and leaves data under .perennial/ for later runs: bench_drift creates a venv for Evidently
(.perennial/venv-evidently, pip needs the network the first time) and bench_memory a 2 GB CSV
(.perennial/bench/; delete the folder to reclaim the space). Name benchmarks to run only those."""


def available() -> dict[str, str]:
    """Each ``bench_*`` module's name → the first paragraph of its docstring, on one line."""
    found: dict[str, str] = {}
    for path in sorted(HERE.glob("bench_*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        found[path.stem] = " ".join(docstring.split("\n\n")[0].split())
    return found


def listing(benchmarks: dict[str, str]) -> str:
    """The benchmarks, one entry each: the name, then its description wrapped under it."""
    if not benchmarks:
        return "no benchmarks yet\n"
    width = max(40, min(shutil.get_terminal_size().columns, 100) - 2)
    entries = [
        f"  {name}\n"
        + textwrap.fill(text or "(no docstring)", width, initial_indent=" " * 6, subsequent_indent=" " * 6)
        for name, text in benchmarks.items()
    ]
    return "\n".join(entries) + "\n"


def build_parser(benchmarks: dict[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run Perennial's benchmarks side by side with their named peers; each prints its ratio.",
        epilog=f"{WHAT_ALL_DOES}\n\nbenchmarks:\n{listing(benchmarks)}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run, e.g. bench_events (default: all)")
    parser.add_argument("--list", action="store_true", help="name every benchmark with a line on what it measures")
    return parser


def main(argv: list[str] | None = None) -> int:
    benchmarks = available()
    parser = build_parser(benchmarks)
    args = parser.parse_args(argv)
    if args.list:
        print(listing(benchmarks), end="")
        return 0
    unknown = [name for name in args.names if name not in benchmarks]
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; choose from {', '.join(benchmarks)} (see --list)")
    failed = 0
    for name in args.names or list(benchmarks):
        print(f"== {name}", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            print(
                f"{name}: cannot import {exc.name} (are the peers in benchmarks/requirements.txt installed? make bench installs them)"
            )
            failed += 1
            continue
        failed += int(module.main() or 0)
    if not benchmarks:
        print("no benchmarks yet")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
