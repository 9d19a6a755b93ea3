#!/usr/bin/env python3
"""Benchmark: add one reference to a synthetic 10k-record KB until it is searchable (not a test).

    .venv/bin/python bench/add.py [--size 10000] [--out DIR]

Prints the in-process time (add_references + first search that finds it), the same through
`tmskb add` in a new process (interpreter start-up included), and a full rebuild beside them.
Target: <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index_build import RECORDS_PER_EVIDENCE, REPO, generate  # noqa: E402

from indexer.adding import add_references  # noqa: E402
from indexer.build import ensure_index  # noqa: E402
from indexer.search import Query, search  # noqa: E402
from indexer.settings import Settings  # noqa: E402

RIS = "\n".join(
    [
        "TY  - JOUR",
        "AU  - Benchmark, Bea",
        "TI  - Zygomatic {n} stimulation benchmark reference",
        "T2  - Journal of Benchmarks",
        "PY  - 2025",
        "DO  - 10.9999/bench.{n}",
        "ER  - ",
        "",
    ]
)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="indexed records in the synthetic KB")
    parser.add_argument("--out", type=Path, help="working directory (default: temporary)")
    args = parser.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="tmskb-add-bench-"))
    root = base / f"kb-{args.size}"
    try:
        generate(
            root, round(args.size / RECORDS_PER_EVIDENCE), REPO / "kb" / "vocab", REPO / "kb" / "rulesets"
        )
        settings = Settings.for_root(root, base / "index")
        started = time.perf_counter()
        ensure_index(settings, force=True)
        full = time.perf_counter() - started

        started = time.perf_counter()
        report = add_references(settings, [("bench.ris", RIS.format(n=1))])
        hits = search(settings.index_dir, Query.make("zygomatic 1 benchmark")).total
        in_process = time.perf_counter() - started
        assert report.written and report.indexed and hits == 1, (report, hits)

        ris = base / "second.ris"
        ris.write_text(RIS.format(n=2))
        tmskb = str(Path(sys.executable).with_name("tmskb"))
        started = time.perf_counter()
        subprocess.run(
            [tmskb, "add", str(ris), "--root", str(root), "--index-dir", str(settings.index_dir)],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [tmskb, "search", "zygomatic 2 benchmark", "--index-dir", str(settings.index_dir)],
            check=True,
            capture_output=True,
        )
        cli = time.perf_counter() - started

        print(f"machine : nproc {os.cpu_count()}, {cpu_model()}, Python {platform.python_version()}")
        size = root.joinpath("references.bib").stat().st_size / 2**20
        print(f"KB      : {args.size} indexed records, references.bib {size:.1f} MiB")
        print(f"full rebuild (tmskb index --force, in-process)     {full:6.2f} s")
        print(f"add one reference until searchable, in-process      {in_process:6.3f} s")
        print(f"tmskb add + tmskb search, two new processes         {cli:6.3f} s")
        verdict = "PASS" if in_process <= 1.0 else "FAIL"
        print(f"target <= 1 s: {verdict} (ratio to full rebuild {in_process / full:.3f})")
    finally:
        if not args.out:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
