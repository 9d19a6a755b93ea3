#!/usr/bin/env python3
"""Soak fuzzing: many random cases per target, with the strategies and checks of tests/test_fuzz.py.

Not a test. Run from the checkout (hypothesis must be installed in the venv):

    .venv/bin/python bench/fuzz.py                          # 10 000 cases per target
    .venv/bin/python bench/fuzz.py --cases 50000 --targets search,yaml --seed 7

Targets: search (indexer.search.search on an index of tests/data/kb), web (pages, API and
exports of the Flask app with arbitrary URL parameters), records (/records/<id> and
/api/records/<id> with arbitrary ids), bib (parse_bib_text), yaml (yamlio.load +
records.parse_located), pipeline (pipeline.load of a copy of tests/data/kb with a mutated study)
and import (importers.read_candidates in every format).

Every case runs (hypothesis generate phase only, no shrinking, so failures do not stop the run);
per target it prints cases run, time, failures and the first failing input. For `search` it also
counts "swallowed" cases: search() returned an error after logging an internal exception
(the query never crashed, but the engine did). Exit status 1 if any target failed.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import test_fuzz as fz  # noqa: E402

from indexer import pipeline  # noqa: E402
from indexer.settings import Settings  # noqa: E402


@dataclass
class Tally:
    cases: int = 0
    failures: int = 0
    swallowed: int = 0
    first: str = ""
    first_swallowed: str = ""


class _Swallowed(logging.Handler):
    """Counts exceptions that search() logged and turned into Results.error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.count += 1


def build_index(workdir: Path) -> Path:
    root = workdir / "index-kb"
    shutil.copytree(fz.KB, root)
    settings = Settings.for_root(root, root / "index")
    kb = pipeline.load(settings)
    assert kb.problems == [], kb.problems
    from indexer.build import ensure_index

    ensure_index(settings)
    return settings.index_dir


def targets(workdir: Path) -> dict[str, tuple[Any, Callable[..., Any]]]:
    """name -> (strategy of argument tuples, check taking those arguments)."""
    index_dir = build_index(workdir)
    from app import create_app

    client = create_app({"TESTING": True, "INDEX_DIR": str(index_dir)}).test_client()
    kb_copy = workdir / "pipeline-kb"
    shutil.copytree(fz.KB, kb_copy)
    return {
        "search": (st.tuples(fz.queries), lambda q: fz.check_search(index_dir, q)),
        "web": (
            st.tuples(st.sampled_from(fz.WEB_PATHS), fz.query_string),
            lambda path, qs: fz.check_web(client, path, qs),
        ),
        "records": (
            st.tuples(st.sampled_from(["/records/", "/api/records/"]), fz.record_id, st.booleans()),
            lambda prefix, doc_id, slashes: fz.check_web(client, fz.record_url(prefix, doc_id, slashes)),
        ),
        "bib": (st.tuples(fz.bib_text), fz.check_bib),
        "yaml": (st.tuples(fz.yaml_text), fz.check_yaml),
        "pipeline": (st.tuples(fz.mutated(fz.STUDY_TEXTS)), lambda text: fz.check_pipeline(kb_copy, text)),
        "import": (st.tuples(fz.import_text, fz.import_name, fz.import_format), fz.check_import),
    }


def soak(name: str, strategy: Any, check: Callable[..., Any], cases: int, at: int) -> Tally:
    tally = Tally()
    swallowed = _Swallowed()
    search_log = logging.getLogger("indexer.search")
    search_log.addHandler(swallowed)
    search_log.propagate = False  # keep the expected tracebacks of swallowed cases off the terminal
    logging.getLogger("app").disabled = True

    @seed(at)
    @settings(
        max_examples=cases,
        phases=[Phase.generate],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(args: tuple[Any, ...]) -> None:
        tally.cases += 1
        before = swallowed.count
        try:
            check(*args)
        except Exception:
            tally.failures += 1
            if not tally.first:
                tally.first = f"{args!r}\n      {traceback.format_exc().strip().splitlines()[-1]}"
        if swallowed.count > before:
            tally.swallowed += 1
            if not tally.first_swallowed:
                tally.first_swallowed = repr(args)

    try:
        run()
    finally:
        search_log.removeHandler(swallowed)
        search_log.propagate = True
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases per target (default 10000)")
    parser.add_argument("--targets", default="", help="comma-separated subset of targets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tmskb-fuzz-") as tmp:
        table = targets(Path(tmp))
        chosen = [t for t in args.targets.split(",") if t] or list(table)
        unknown = set(chosen) - set(table)
        if unknown:
            parser.error(f"unknown targets {sorted(unknown)} (choose from {', '.join(table)})")
        print(f"{'target':<9} {'cases':>7} {'seconds':>8} {'cases/s':>8} {'failures':>8} {'swallowed':>9}")
        failed = False
        for name in chosen:
            strategy, check = table[name]
            start = time.perf_counter()
            tally = soak(name, strategy, check, args.cases, args.seed)
            took = time.perf_counter() - start
            rate = tally.cases / took if took else 0.0
            counts = f"{tally.cases:>7} {took:>8.1f} {rate:>8.0f} {tally.failures:>8} {tally.swallowed:>9}"
            print(f"{name:<9} {counts}", flush=True)
            if tally.first:
                print(f"    first failing input: {tally.first[:2000]}")
            if tally.first_swallowed:
                print(f"    first swallowed engine error: {tally.first_swallowed[:2000]}")
            failed = failed or tally.failures > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
