"""A 2 GB CSV validates in bounded memory, at close to the speed of merely reading it.

Two fresh subprocesses on the same file (generated once into .perennial/bench/, gitignored):
pyarrow merely reading it (``pyarrow.csv.open_csv``, default options, iterate the batches) and
``shared.validation.validate`` against the benchmark contract (every check + the profile).
Peak RSS is the child's ``ru_maxrss`` (what ``/usr/bin/time -v`` reports as "Maximum resident
set size"). Targets: peak RSS < 400 MB, time ≤ 1.5× the plain read.
Run: ``python -m benchmarks bench_memory`` (the first run spends ~1-2 minutes writing the file).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_BYTES = 2_000_000_000
CHUNK_ROWS = 1_000_000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))

READ_ONLY = """
import sys, pyarrow.csv as c
rows = 0
for batch in c.open_csv(sys.argv[1]):
    rows += batch.num_rows
print(rows)
"""

VALIDATE = """
import sys
from benchmarks.bench_validation import CONTRACT
from shared.validation import validate
report = validate(sys.argv[1], CONTRACT)
print(report.rows)
print(report.summary(), file=sys.stderr)
"""


def ensure_big_csv() -> Path:
    import pyarrow.csv as pacsv

    from benchmarks.bench_validation import DATA, make_table

    path = DATA / "big_2gb.csv"
    if path.exists() and path.stat().st_size >= TARGET_BYTES:
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    print(f"writing {path} (once; reused by later runs)…", flush=True)
    with tmp.open("wb") as sink:
        writer: pacsv.CSVWriter | None = None
        chunk = 0
        while sink.tell() < TARGET_BYTES:
            table = make_table(CHUNK_ROWS, seed=100 + chunk, start=chunk * CHUNK_ROWS)
            if writer is None:
                writer = pacsv.CSVWriter(sink, table.schema)
            writer.write_table(table)
            chunk += 1
        if writer is not None:
            writer.close()
    tmp.rename(path)
    return path


# A fresh wrapper interpreter runs the script as its only child, so the child's ru_maxrss is
# exactly the script's peak RSS (the same number /usr/bin/time -v prints), in KB on Linux.
_WRAPPER = """
import resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], capture_output=True, text=True)
seconds = time.perf_counter() - started
print(done.stdout.strip())
print(done.stderr.strip(), file=sys.stderr)
print(f"@@ {seconds} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {done.returncode}")
"""


def measure(script: str, path: Path) -> tuple[float, float, str, str]:
    """(wall seconds, peak RSS in MB, stdout, stderr) of ``script`` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, script, str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    *out, tail = done.stdout.strip().splitlines()
    _, seconds, peak_kb, code = tail.split()
    if code != "0":
        raise RuntimeError(f"the benchmark child failed ({code}): {done.stderr[-2000:]}")
    return float(seconds), int(peak_kb) / 1024, "\n".join(out).strip(), done.stderr.strip()


def main() -> int:
    path = ensure_big_csv()
    size_gb = path.stat().st_size / 1e9
    # Warm the page cache so neither side pays for the first read from disk.
    measure(READ_ONLY, path)
    # Alternated (read, validate, read, validate, …): load from other processes hits both alike.
    reads: list[float] = []
    validations: list[float] = []
    peaks: list[float] = []
    read_mb = 0.0
    rows = our_rows = summary = ""
    for _ in range(ROUNDS):
        read_s, read_mb, rows, _ = measure(READ_ONLY, path)
        ours_s, ours_mb, our_rows, summary = measure(VALIDATE, path)
        reads.append(read_s)
        validations.append(ours_s)
        peaks.append(ours_mb)
    read_s, ours_s, ours_mb = min(reads), min(validations), max(peaks)
    ratio = ours_s / read_s
    median = statistics.median(v / r for v, r in zip(validations, reads, strict=True))
    one, five, _ = os.getloadavg()
    print(f"file: {size_gb:.2f} GB, {int(rows):,} rows × 20 columns; {ROUNDS} rounds, read and validate alternated")
    print(f"load average {one:.1f} / {five:.1f} (1 / 5 min) at the end: a shared machine, timings are noisy")
    print(
        f"pyarrow open_csv, read only : {read_s:6.1f} s best ({', '.join(f'{r:.1f}' for r in reads)}), peak RSS {read_mb:6.0f} MB"
    )
    print(
        f"perennial validate + profile: {ours_s:6.1f} s best ({', '.join(f'{v:.1f}' for v in validations)}), "
        f"peak RSS {ours_mb:6.0f} MB (largest of the runs; rows {int(our_rows):,})"
    )
    print(
        f"time ratio {ratio:.2f}× the plain read (best vs best; {median:.2f}× median of rounds; target ≤ 1.5×); "
        f"peak RSS {ours_mb:.0f} MB (target < 400 MB)"
    )
    print("report:", summary.splitlines()[0])
    for line in summary.splitlines()[1:]:
        print("  ", line.strip())
    print(json.dumps({"read_s": read_s, "validate_s": ours_s, "ratio": ratio, "peak_rss_mb": ours_mb}))
    return 0 if ratio <= 1.5 and ours_mb < 400 else 1
