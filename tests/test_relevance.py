"""Measured relevance (issue 14): the judged queries of bench/relevance_queries.yaml, run on a real
index of the bundled KB, must not score below the floor measured when they were written.

The evaluation itself lives in bench/relevance.py (loaded here with importlib; bench/ is not a
package). Raise SUCCESS_AT_5_FLOOR when the search gets better, never lower it to make a change
pass.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from indexer import pipeline
from indexer.settings import Settings

PROJECT = Path(__file__).resolve().parent.parent
BENCH = PROJECT / "bench" / "relevance.py"

# Overall success@5 (every required id in the top 5) on the 94 queries with the default sort
# (evidence): 0.372 (35 queries) when the judged set was written; 0.989 (93) after issue 14
# items 2-6 (typos, field words, identifiers, authors, vocabulary, questions). The floor leaves
# two queries of margin. Every group must keep the done-when figure.
SUCCESS_AT_5_FLOOR = 0.96
GROUP_FLOOR = 0.9
MIN_QUERIES = 60


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_relevance", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


relevance = _load_bench()


@pytest.fixture(scope="module")
def queries() -> list:
    return relevance.load_queries()


def test_queries_file_is_well_formed(queries: list) -> None:
    kb = pipeline.load(Settings.for_root(PROJECT))
    assert kb.problems == []
    known = {record.id for record in kb.records} | {f"@{key}" for key in kb.references}
    assert len(queries) >= MIN_QUERIES
    assert {q.group for q in queries} == set(relevance.GROUPS)
    texts = [q.q.strip().casefold() for q in queries]
    assert len(texts) == len(set(texts)), "a query is listed twice"
    for judged in queries:
        assert judged.q.strip(), judged
        assert judged.group in relevance.GROUPS, judged
        assert judged.why.strip(), f"{judged.q!r}: no `why`"
        assert judged.required, f"{judged.q!r}: no required ids"
        assert len(set(judged.required)) == len(judged.required), f"{judged.q!r}: repeated id"
        unknown = [r for r in judged.required if r not in known]
        assert not unknown, f"{judged.q!r}: required ids not in the KB: {unknown}"


def test_scores_follow_their_definitions() -> None:
    score = relevance.score
    top = ["a", "b", "c", "d", "e", "f", "g"]
    assert score(["a", "c"], top) == {
        "success@5": 1.0,
        "any@5": 1.0,
        "precision@5": 1.0,
        "success@1": 1.0,
        "mrr@10": 1.0,
    }
    partial = score(["c", "z"], top)
    assert partial["success@5"] == 0.0 and partial["any@5"] == 1.0
    assert partial["precision@5"] == 0.5 and partial["success@1"] == 0.0
    assert partial["mrr@10"] == pytest.approx(1 / 3)
    deep = score(["g"], top)  # rank 7: outside the top 5, inside the top 10
    assert deep["any@5"] == 0.0 and deep["mrr@10"] == pytest.approx(1 / 7)
    assert score(["x"], [])["mrr@10"] == 0.0
    many = score(list("abcdefg"), top)  # more required than fit: precision over the 5 that can
    assert many["precision@5"] == 1.0 and many["success@5"] == 0.0


def test_relevance_does_not_fall(tmp_path: Path, queries: list) -> None:
    settings = relevance.prepare_index(tmp_path / "index")
    report = relevance.evaluate(settings, queries)
    print()
    print(relevance.render(report))
    overall = report["overall"]
    assert overall["queries"] == len(queries)
    assert report["seconds"] < 30, "the judged queries must run well under a minute"
    assert overall["success@5"] >= SUCCESS_AT_5_FLOOR, (
        f"success@5 fell to {overall['success@5']:.3f} (floor {SUCCESS_AT_5_FLOOR}); "
        "see the failing queries printed above"
    )
    low = {g: round(f["success@5"], 3) for g, f in report["groups"].items() if f["success@5"] < GROUP_FLOOR}
    assert not low, f"groups below success@5 {GROUP_FLOOR}: {low}; see the failing queries printed above"
