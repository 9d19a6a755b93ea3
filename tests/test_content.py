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


_ABSENCE_CLAIM = re.compile(
    r"not (stated|named|given|described|reported|mentioned|in the)|does not say", re.I
)


def test_absence_of_randomisation_is_data_not_a_comment() -> None:
    """'Not stated in the abstract' was once false for 13 studies; the claim now lives in not_reported.

    A YAML comment never reaches the page, the API or an export, so it can neither be seen nor
    checked; `not_reported` is validated (the field must be empty, the source must have been read).
    """
    for path in sorted((PROJECT / "kb" / "studies").glob("*.yaml")):
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            field, _, comment = line.partition("#")
            if re.match(r"\s*randomised:\s*null\s*$", field):
                assert not _ABSENCE_CLAIM.search(comment), (
                    f"{path.name}:{number}: use not_reported: [randomised]"
                )


def test_a_study_whose_source_was_not_read_claims_nothing_absent(kb: pipeline.KB) -> None:
    for study in kb.studies.values():
        if study.randomised is None and "randomised" in study.not_reported:
            assert study.verification in ("abstract", "full-text", "secondary"), study.id
        if study.design.endswith("-rct"):  # the label claims randomisation: a source must state it
            assert study.randomised is True, (study.id, study.design)
        if study.design == "controlled-non-randomised":  # the label claims allocation was not random
            assert study.randomised is False, (study.id, study.design)


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
