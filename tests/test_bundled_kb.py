"""The bundled knowledge base: valid, traceable, and every link resolves."""

from __future__ import annotations

import pytest
from conftest import PROJECT

from indexer import pipeline
from indexer.cli import cli
from indexer.models import VERIFICATION_VALUES, Question, Recommendation, Study
from indexer.settings import Settings


@pytest.fixture(scope="module")
def kb() -> pipeline.KB:
    return pipeline.load(Settings.for_root(PROJECT))


def test_bundled_kb_checks_clean(runner) -> None:
    result = runner.invoke(cli, ["check", "--root", str(PROJECT)])
    assert result.exit_code == 0, result.output


def test_every_record_names_its_source_and_status(kb: pipeline.KB) -> None:
    assert kb.records
    for record in kb.records:
        assert record.verification in VERIFICATION_VALUES, record.id
        if isinstance(record, Question):  # written by curators: no source, and never claims one
            assert record.verification == "as-cited", record.id
            continue
        assert record.source.location.strip(), record.id


def test_every_reference_has_a_verification_status(kb: pipeline.KB) -> None:
    assert all(ref.verification in VERIFICATION_VALUES for ref in kb.references.values())


def test_every_link_resolves(kb: pipeline.KB) -> None:
    studies = kb.studies
    for record in kb.records:
        if isinstance(record, Recommendation):
            assert record.guideline in kb.references
            assert all(sid in studies for sid in record.linked_studies), record.id
        if isinstance(record, Study):
            assert record.reference in kb.references


def test_seed_references_are_present_and_unverified_ones_marked(kb: pipeline.KB) -> None:
    seeds = {
        "haanpaa2010diagnosis",
        "lefaucheur2014guidelines",
        "treede2008neuropathic",
        "nurmikko2016motor",
        "ahdab2011nbs",
        "mylius2012nbs",
        "nurmikko2012nbs",
        "nurmikko2014nbs",
    }
    assert seeds <= set(kb.references)
    unverified = {"nurmikko2016motor", "ahdab2011nbs", "mylius2012nbs", "nurmikko2012nbs", "nurmikko2014nbs"}
    assert {k for k in unverified if kb.references[k].verification == "as-cited"} == unverified


def test_computed_levels_are_labelled_with_the_default_rule_set(kb: pipeline.KB) -> None:
    assert kb.ruleset is not None and kb.ruleset.verification == "as-cited"
    assert all(level.ruleset == kb.ruleset.id for level in kb.levels.values())


@pytest.fixture(scope="module")
def bundled_index(tmp_path_factory: pytest.TempPathFactory):
    from conftest import build

    settings = Settings.for_root(PROJECT, tmp_path_factory.mktemp("bundled") / "index")
    build(settings)
    return settings.index_dir


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "neuropathic pain",
            {"lefaucheur2014-np-m1-hf", "lefaucheur2020-np-m1-hf", "hosomi2013pain"},
            id="neuropathic_pain",
        ),
        pytest.param("shingles", {"ma2015painmed"}, id="shingles"),
        pytest.param("生蛇", {"ma2015painmed"}, id="shingles_hong_kong"),
        pytest.param(
            "douleur neuropathique",
            {"lefaucheur2020-np-m1-hf", "ma2015painmed", "khedr2005jnnp"},
            id="douleur_neuropathique",
        ),
        pytest.param(
            "fibromyalgia",
            {"lefaucheur2020-fm-m1-hf-qol", "lefaucheur2020-fm-dlpfc-hf-pain", "mhalla2011pain"},
            id="fibromyalgia",
        ),
        pytest.param(
            "depression", {"lefaucheur2014-dep-dlpfc-hf", "lefaucheur2020-dep-dlpfc-hf"}, id="depression"
        ),
        pytest.param("M1 10 Hz", {"ma2015painmed", "lefaucheur2004jnnp"}, id="m1_10_hz"),
        pytest.param("CRPS", {"lefaucheur2020-crps-m1-hf"}, id="crps_below_level_b"),
    ],
)
def test_clinician_queries_find_the_expected_records(bundled_index, text: str, expected: set[str]) -> None:
    from indexer.search import Query, search

    results = search(bundled_index, Query.make(text, page_size=100))
    assert results.ok, results.error
    assert expected <= {h.id for h in results.hits}


def test_level_a_neuropathic_pain_ranks_first(bundled_index) -> None:
    from indexer.search import Query, search

    hits = search(bundled_index, Query.make("neuropathic pain")).hits
    assert hits[0].id == "np-hf-rtms-m1"  # the question gathering every source's verdict comes first
    recommendations = [h.id for h in hits if h.type == "recommendation"][:2]
    assert set(recommendations) == {"lefaucheur2014-np-m1-hf", "lefaucheur2020-np-m1-hf"}


def test_crps_shows_below_level_b_not_nothing(bundled_index) -> None:
    from indexer.search import Query, search

    hit = next(h for h in search(bundled_index, Query.make("CRPS")).hits if h.type == "recommendation")
    assert hit.fields["level"] == "below-B"
    assert hit.rank_reason.startswith("Below Level B (exact level not verified)")


def test_stats_counts(runner) -> None:
    import json

    result = runner.invoke(cli, ["stats", "--root", str(PROJECT), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["totals"]["studies"] >= 39
    by_level = data["recommendations by guideline and level"]
    verified = sum(n for table in by_level.values() for level, n in table.items() if level in "ABC")
    assert verified >= 17
    assert data["references by verification"]["as-cited"] >= 5
