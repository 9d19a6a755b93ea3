#!/usr/bin/env python3
"""Benchmark: export every record of a synthetic 10k-record KB as CSV.

Not a test. Run from the checkout:

    .venv/bin/python bench/export.py                     # N = 10000, KB and index kept in /tmp
    .venv/bin/python bench/export.py --n 1000 --base /tmp/tmskb-bench --format json

The KB is written by bench/index_build.py's generate() (N indexed records, so
n_evidence = round(N / RECORDS_PER_EVIDENCE)) and indexed once; later runs reuse both when
the KB directory exists and the index is current. The export is the same call `tmskb export
--format csv` makes (indexer.export.export_bytes), written to /dev/null-like sink; the script
prints wall time and peak Python memory (tracemalloc) of the export, and the process's max RSS.

Target: all 10 000 records as CSV in <= 2 s, cold (a first export in a fresh process).
The cold figure is measured in a subprocess; the warm one is a second export in this process.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=SyntaxWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from index_build import RECORDS_PER_EVIDENCE, REPO, generate  # noqa: E402

from indexer import export as ex  # noqa: E402
from indexer.build import ensure_index  # noqa: E402
from indexer.search import Query, search  # noqa: E402
from indexer.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="indexed records (default 10000)")
    parser.add_argument("--base", type=Path, default=Path("/tmp/tmskb-bench-export"))
    parser.add_argument("--format", default="csv", choices=sorted(ex.FORMATS))
    parser.add_argument("--table", default="records", choices=ex.TABLES)
    parser.add_argument("--fresh", action="store_true", help="regenerate the KB even if it exists")
    args = parser.parse_args()

    root = args.base / f"kb-{args.n}"
    if args.fresh or not (root / "references.bib").is_file():
        evidence = round(args.n / RECORDS_PER_EVIDENCE)
        generated = generate(root, evidence, REPO / "kb" / "vocab", REPO / "kb" / "rulesets")
        print(f"generated {evidence} evidence records in {generated.seconds:.1f} s -> {root}", flush=True)
    settings = Settings.for_root(root, args.base / f"index-{args.n}")
    started = time.perf_counter()
    report = ensure_index(settings)
    if report is not None:
        print(f"indexed in {time.perf_counter() - started:.1f} s -> {settings.index_dir}", flush=True)

    query = Query.make()
    cold_in_process, cold_cli = _cold(settings.index_dir, args.format, args.table)
    total = search(settings.index_dir, Query.make(page_size=1)).total  # also opens the index
    tracemalloc.start()
    started = time.perf_counter()
    size = 0
    for chunk in ex.export_bytes(settings.index_dir, query, args.format, args.table):
        size += len(chunk)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Warm, without tracemalloc (it slows allocation-heavy code): the index is open, its
    # postings and facet arrays are read; exports never use the search result cache.
    started = time.perf_counter()
    for _ in ex.export_bytes(settings.index_dir, query, args.format, args.table):
        pass
    warm = time.perf_counter() - started
    verdict = "OK" if cold_in_process <= 2.0 else "OVER TARGET"
    print(f"machine: {_machine()}")
    print(
        f"{args.format} export of {total} records ({args.table}), {size / 1e6:.1f} MB:\n"
        f"  cold, first export in a fresh process: {cold_in_process:.2f} s (opening the index included); "
        f"whole `tmskb export` process {cold_cli:.2f} s (interpreter start-up included)\n"
        f"  warm, second export in the same process: {warm:.2f} s ({seconds:.2f} s under tracemalloc)\n"
        f"  peak traced memory {peak / 1e6:.1f} MB; max RSS {rss:.0f} MB; target <= 2 s cold: {verdict}"
    )


COLD = """
import sys, time
started = time.perf_counter()
from indexer import export as ex
from indexer.query import Query
for _ in ex.export_bytes(sys.argv[1], Query.make(), sys.argv[2], sys.argv[3]):
    pass
print(time.perf_counter() - started)
"""


def _cold(index_dir: Path, fmt: str, table: str) -> tuple[float, float]:
    """(first export in a fresh process, including imports and opening the index;
    wall time of a whole `tmskb export` process, its stdout discarded)."""
    out = subprocess.run(
        [sys.executable, "-c", COLD, str(index_dir), fmt, table], capture_output=True, text=True, check=True
    )
    in_process = float(out.stdout.strip().splitlines()[-1])
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "indexer", "export", "", "--format", fmt, "--table", table,
         "--index-dir", str(index_dir)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    return in_process, time.perf_counter() - started


def _machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown CPU",
    )  # fmt: skip
    return f"{os.cpu_count()} cores, {model}, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}"


if __name__ == "__main__":
    main()
