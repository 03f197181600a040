"""`make bench`: run every benchmark module under benchmarks/ (each prints its peer ratio)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    wanted = sys.argv[1:]
    failed = 0
    for name in names:
        if wanted and name not in wanted:
            continue
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        failed += int(module.main() or 0)
    if not names:
        print("no benchmarks yet")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
