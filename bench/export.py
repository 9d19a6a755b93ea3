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

Target: all 10 000 records as CSV in <= 2 s.
"""

from __future__ import annotations

import argparse
import resource
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

from indexer.build import ensure_index  # noqa: E402
from indexer import export as ex  # noqa: E402
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
    # Without tracemalloc (it slows allocation-heavy code), for the time figure.
    started = time.perf_counter()
    for _ in ex.export_bytes(settings.index_dir, query, args.format, args.table):
        pass
    untraced = time.perf_counter() - started
    verdict = "OK" if untraced <= 2.0 else "OVER TARGET"
    print(
        f"{args.format} export of {total} records ({args.table}): {size / 1e6:.1f} MB in "
        f"{untraced:.2f} s ({seconds:.2f} s under tracemalloc); peak traced memory "
        f"{peak / 1e6:.1f} MB; max RSS {rss:.0f} MB; target <= 2 s: {verdict}"
    )


if __name__ == "__main__":
    main()
