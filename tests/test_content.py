"""The bundled content stays honest and traceable (the content issue's rules that a test can check)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from indexer import pipeline
from indexer.models import Study, Verdict
from indexer.settings import Settings
from indexer.stats import statistics

PROJECT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def kb() -> pipeline.KB:
    loaded = pipeline.load(Settings.for_root(PROJECT))
    assert loaded.problems == []
    return loaded


def test_every_study_and_verdict_names_its_source_address_and_location(kb: pipeline.KB) -> None:
    for record in kb.records:
        if isinstance(record, Study | Verdict):
            assert record.source.url and record.source.url.startswith("http"), record.id
            assert record.source.location.strip(), record.id


def test_every_reference_is_citable_or_says_what_is_missing(kb: pipeline.KB) -> None:
    for key, ref in kb.references.items():
        complete = bool(ref.title and ref.venue and ref.year)
        assert complete or ref.fields.get("missing", "").strip(), key


def test_a_result_is_never_positive_without_a_control(kb: pipeline.KB) -> None:
    """An improvement from baseline in an uncontrolled study is not a result between groups."""
    for study in kb.studies.values():
        if study.control == "none":
            assert study.result != "positive", study.id
            assert all(arm.result != "positive" for arm in study.arms), study.id


def test_the_readme_counts_are_current(kb: pipeline.KB) -> None:
    readme = (PROJECT / "README.md").read_text("utf-8")
    line = re.search(r"The bundled knowledge base holds (.+?)\.\n", readme)
    assert line, "README: add the 'The bundled knowledge base holds ...' line"
    stated = {name: int(n) for n, name in re.findall(r"(\d+) ([a-z]+)", line.group(1))}
    totals = statistics(kb)["totals"]
    actual = {
        "references": totals["references"],
        "studies": totals["studies"],
        "recommendations": totals["recommendations"],
        "questions": totals["questions"],
        "verdicts": totals["verdicts (other sources)"],
        "scales": totals["scales"],
    }
    assert stated == actual
