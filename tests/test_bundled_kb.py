"""The bundled knowledge base: valid, traceable, and every link resolves."""

from __future__ import annotations

import pytest
from conftest import PROJECT

from indexer import pipeline
from indexer.cli import cli
from indexer.models import VERIFICATION_VALUES, Recommendation, Study
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
        assert record.source.location.strip(), record.id
        assert record.verification in VERIFICATION_VALUES, record.id


def test_every_reference_has_a_verification_status(kb: pipeline.KB) -> None:
    assert all(ref.verification in VERIFICATION_VALUES for ref in kb.references.values())


def test_every_link_resolves(kb: pipeline.KB) -> None:
    studies = kb.studies
    for record in kb.records:
        if isinstance(record, Recommendation):
            assert record.guideline in kb.references
            assert all(sid in studies for sid in record.supporting_studies), record.id
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
