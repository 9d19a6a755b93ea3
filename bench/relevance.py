#!/usr/bin/env python3
"""Measured relevance: run the judged queries of bench/relevance_queries.yaml against an index of
the bundled KB and report how many of the records a clinician expects come out on top.

Not a test (tests/test_relevance.py runs the same evaluation and holds a floor). Run from the
checkout:

    .venv/bin/python bench/relevance.py                  # table per group and overall
    .venv/bin/python bench/relevance.py --json           # machine-readable
    .venv/bin/python bench/relevance.py --sort relevance --queries other.yaml

The index is built with indexer.build.ensure_index into a directory outside the checkout
(default: <tmp>/tmskb-relevance-index, reused when current; --index-dir to choose one), and each
query goes through indexer.api.KB.search, the same parameter reader as the web page, the JSON API
and the CLI. No network is used.

Each query lists `required` ids (records by their YAML id, references as "@" + BibTeX key). With
R the required ids and H the ids of the first hits (top 5 unless said otherwise):

    success@5    1 if every required id is in the top 5, else 0
    any@5        1 if at least one required id is in the top 5, else 0
    precision@5  |R ∩ top 5| / min(5, |R|): the share of the required ids (at most 5 can fit) that
                 the top 5 holds; 1.0 when all are there
    success@1    1 if the first hit is a required id, else 0
    MRR@10       1 / rank of the first required id within the top 10 (0 if none is there)

Each figure is the mean over the queries of a group, and over all queries.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parent.parent
if str(PROJECT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(PROJECT))

from indexer.api import KB  # noqa: E402
from indexer.build import ensure_index  # noqa: E402
from indexer.settings import Settings  # noqa: E402

QUERIES = Path(__file__).resolve().parent / "relevance_queries.yaml"
DEFAULT_INDEX_DIR = Path(tempfile.gettempdir()) / "tmskb-relevance-index"
GROUPS = (
    "condition-en",
    "condition-fr",
    "condition-zh",
    "protocol",
    "typo",
    "identifier",
    "author",
    "field-words",
    "question",
)
TOP = 5  # the cut-off of success@5, any@5, precision@5
DEPTH = 10  # hits fetched per query (MRR@10)
METRICS = ("success@5", "any@5", "precision@5", "success@1", "mrr@10")
DEFINITIONS = {
    "success@5": "all required ids in the top 5",
    "any@5": "at least one required id in the top 5",
    "precision@5": "required ids in the top 5 / min(5, number required)",
    "success@1": "first hit is a required id",
    "mrr@10": "1 / rank of the first required id in the top 10 (0 if none)",
}


@dataclass(frozen=True)
class Judged:
    """One judged query."""

    q: str
    group: str
    required: tuple[str, ...]
    why: str


@dataclass
class Outcome:
    """What one query returned and how it scored."""

    q: str
    group: str
    required: list[str]
    top: list[str]  # ids of the first DEPTH hits, best first
    error: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    read: str = ""  # how the query was read: its correction and readings ("How we read your query")

    @property
    def missing(self) -> list[str]:
        return [r for r in self.required if r not in self.top[:TOP]]

    @property
    def passed(self) -> bool:
        return self.scores.get("success@5", 0.0) == 1.0


def load_queries(path: Path = QUERIES) -> list[Judged]:
    """The judged queries of a YAML file (a `queries` list of q, group, required, why)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    items = data.get("queries", []) if isinstance(data, dict) else []
    return [
        Judged(str(item["q"]), str(item["group"]), tuple(str(r) for r in item["required"]), str(item["why"]))
        for item in items
    ]


def score(required: Sequence[str], top: Sequence[str]) -> dict[str, float]:
    """The metrics of one query (see the module docstring)."""
    wanted = set(required)
    first = list(top[:TOP])
    found = len(wanted & set(first))
    rank = next((i for i, doc_id in enumerate(top[:DEPTH], 1) if doc_id in wanted), None)
    return {
        "success@5": 1.0 if wanted and wanted <= set(first) else 0.0,
        "any@5": 1.0 if found else 0.0,
        "precision@5": found / min(TOP, len(wanted)) if wanted else 0.0,
        "success@1": 1.0 if first and first[0] in wanted else 0.0,
        "mrr@10": 1.0 / rank if rank else 0.0,
    }


def mean(outcomes: Iterable[Outcome]) -> dict[str, float]:
    """Mean of each metric over some outcomes, plus their number."""
    items = list(outcomes)
    out: dict[str, float] = {"queries": float(len(items))}
    for name in METRICS:
        out[name] = sum(o.scores[name] for o in items) / len(items) if items else 0.0
    return out


def prepare_index(index_dir: Path = DEFAULT_INDEX_DIR, root: Path = PROJECT) -> Settings:
    """Settings of the KB at `root` with an index in `index_dir`, built or refreshed if needed."""
    settings = Settings.for_root(root, index_dir)
    ensure_index(settings)
    return settings


def evaluate(
    settings: Settings,
    queries: Sequence[Judged],
    *,
    sort: str = "evidence",
) -> dict[str, Any]:
    """Run every query on the index of `settings`; figures per group and overall, and outcomes."""
    kb = KB(settings)
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    for judged in queries:
        results = kb.search(judged.q, sort=sort, page_size=DEPTH)
        top = [hit.id for hit in results.hits] if results.ok else []
        outcome = Outcome(
            judged.q, judged.group, list(judged.required), top, results.error, read=_read(results)
        )
        outcome.scores = score(judged.required, top)
        outcomes.append(outcome)
    elapsed = time.perf_counter() - started
    groups = [g for g in GROUPS if any(o.group == g for o in outcomes)]
    groups += sorted({o.group for o in outcomes} - set(groups))
    return {
        "sort": sort,
        "definitions": DEFINITIONS,
        "groups": {g: mean(o for o in outcomes if o.group == g) for g in groups},
        "overall": mean(outcomes),
        "failures": [
            {
                "q": o.q,
                "group": o.group,
                "required": o.required,
                "missing": o.missing,
                "top5": o.top[:TOP],
                "error": o.error,
                "read": o.read,
            }
            for o in outcomes
            if not o.passed
        ],
        "outcomes": [asdict(o) for o in outcomes],
        "seconds": round(elapsed, 3),
    }


def _read(results: Any) -> str:
    """'spelling: neuropathic pain; filter: Level A; indications: Neuropathic pain'."""
    return "; ".join(f"{e['vocabulary']}: {e['label']}" for e in results.expansions)


def render(report: dict[str, Any]) -> str:
    """The report as a text table, then the failing queries with their top 5."""
    lines = [f"Relevance of the judged queries (sort={report['sort']}, {report['seconds']} s)", ""]
    header = f"{'group':<14}{'n':>4}" + "".join(f"{m:>13}" for m in METRICS)
    lines += [header, "-" * len(header)]

    def row(name: str, figures: dict[str, float]) -> str:
        return f"{name:<14}{int(figures['queries']):>4}" + "".join(f"{figures[m]:>13.3f}" for m in METRICS)

    lines += [row(name, figures) for name, figures in report["groups"].items()]
    lines += ["-" * len(header), row("overall", report["overall"]), ""]
    lines += [f"  {name:<12} {text}" for name, text in report["definitions"].items()]
    failures = report["failures"]
    lines += ["", f"Failing queries (success@5 = 0): {len(failures)}"]
    for failure in failures:
        lines.append(f"- [{failure['group']}] {failure['q']!r}")
        lines.append(f"    missing: {', '.join(failure['missing'])}")
        top = ", ".join(failure["top5"]) or "(no hits)"
        lines.append(f"    top 5:   {top}")
        if failure["error"]:
            lines.append(f"    error:   {failure['error']}")
        if failure["read"]:
            lines.append(f"    read:    {failure['read']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=Path, default=QUERIES, help="judged queries (YAML)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--index-dir", type=Path, default=DEFAULT_INDEX_DIR, help="where the index lives")
    parser.add_argument("--sort", default="evidence", help="evidence (the default view), relevance or year")
    args = parser.parse_args(argv)
    settings = prepare_index(args.index_dir)
    report = evaluate(settings, load_queries(args.queries), sort=args.sort)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
