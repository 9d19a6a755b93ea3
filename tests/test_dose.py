"""Dose as data: parameters with units, why an empty one is empty, and what is computed from them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from indexer import dose, pictures, pipeline, questions
from indexer.models import Arm, Source, Study
from indexer.settings import Settings

PROJECT = Path(__file__).parent.parent


def _study(*arms: Arm, not_reported: tuple[str, ...] = (), not_applicable: tuple[str, ...] = ()) -> Study:
    return Study(
        id="x2020test",
        path="kb/studies/x2020test.yaml",
        line=1,
        reference="x2020test",
        condition=("neuropathic-pain",),
        design="parallel-rct",
        randomised=True,
        control="sham",
        sham_type=None,
        blinding="double",
        patients_total=40,
        patients_active=20,
        flaws=None,
        arms=arms,
        outcome_measure="VAS",
        result="positive",
        summary="",
        stated_class=None,
        source=Source(location="abstract", url="https://example.org"),
        verification="abstract",
        not_reported=not_reported,
        not_applicable=not_applicable,
    )


FULL = Arm(
    target=("m1",),
    side=("contralateral-to-pain",),
    protocol=("hf-rtms",),
    frequency_hz=10.0,
    intensity="80% RMT",
    pulses_per_session=2000,
    sessions=10,
    coil=("figure-of-8",),
    targeting="robotic",
    result="positive",
)


def test_an_empty_parameter_says_why() -> None:
    arm = replace(FULL, intensity=None, coil=(), targeting=None, pulses_per_session=None)
    study = _study(arm, not_reported=("intensity",), not_applicable=("coil",))
    assert dose.state(study, arm, "intensity") == dose.NOT_REPORTED
    assert dose.state(study, arm, "coil") == dose.NOT_APPLICABLE
    assert dose.state(study, arm, "pulses_per_session") == dose.NOT_RECORDED
    assert dose.state(study, arm, "sessions") == dose.REPORTED
    labels = dose.arm_dose(study, arm)["state_labels"]
    assert labels["intensity"] == "not reported in the source"
    assert labels["coil"] == "not applicable"
    assert labels["pulses_per_session"] == "not recorded"


def test_completeness_counts_reported_core_parameters_of_every_arm() -> None:
    assert dose.completeness(_study(FULL)).share == 1.0
    assert dose.completeness(_study(FULL)).bin == "all"
    partial = replace(FULL, intensity=None, coil=())
    done = dose.completeness(_study(FULL, partial))
    assert (done.reported, done.applicable, done.missing) == (6, 8, ("intensity", "coil"))
    assert done.bin == "75-99%"
    # A parameter that does not apply is left out of the denominator, not counted as missing.
    not_applicable = dose.completeness(_study(replace(FULL, coil=()), not_applicable=("coil",)))
    assert (not_applicable.reported, not_applicable.applicable) == (7, 7)


def test_computed_parts_need_their_inputs() -> None:
    assert dose.total_pulses(FULL) == 20000
    assert dose.total_pulses(replace(FULL, sessions=None)) is None
    assert dose.intensity_parts("110% of the resting motor threshold") == (110.0, "RMT")
    assert dose.intensity_parts("80% AMT") == (80.0, "AMT")
    assert dose.intensity_parts("80%") == (80.0, None)
    assert dose.intensity_parts("subthreshold") == (None, None)
    assert [dose.sessions_bin(n) for n in (1, 2, 5, 6, 10, 11, None)] == [
        "1",
        "2-5",
        "2-5",
        "6-10",
        "6-10",
        ">10",
        None,
    ]
    assert dose.navigated(FULL) is True
    assert dose.navigated(replace(FULL, targeting="hotspot")) is False
    assert dose.navigated(replace(FULL, targeting=None, neuronavigation=True)) is True
    assert dose.navigated(replace(FULL, targeting=None)) is None


@pytest.fixture(scope="module")
def kb() -> pipeline.KB:
    return pipeline.load(Settings.for_root(PROJECT))


def test_question_view_has_dose_per_study_and_a_plot_that_hides_nothing(kb: pipeline.KB) -> None:
    view = questions.question_view(kb, kb.questions["np-hf-rtms-m1"])
    arms = [arm for s in view["studies"] for arm in s["dose"]]
    plot = view["dose_plot"]
    assert len(plot["points"]) + len(plot["missing"]) == len(arms)
    assert plot["points"], "the HF M1 question has studies with sessions and pulses recorded"
    for point in plot["points"]:
        assert plot["left"] <= point["x"] <= plot["right"] and plot["top"] <= point["y"] <= plot["bottom"]
    for missing in plot["missing"]:
        assert "not recorded" in missing["why"] or "not reported" in missing["why"]


def test_comparison_sorts_by_a_column_with_unknown_values_last(kb: pipeline.KB) -> None:
    studies = questions.question_view(kb, kb.questions["np-hf-rtms-m1"])["studies"]
    by_sessions = questions.sort_comparison(studies, "sessions", descending=True)
    values = [s["dose"][0]["sessions"] for s in by_sessions]
    known = [v for v in values if v is not None]
    assert known == sorted(known, reverse=True)
    assert values[len(known) :] == [None] * (len(values) - len(known))
    assert questions.sort_comparison(studies, "no-such-column") == studies


def test_evidence_map_links_every_question_once(kb: pipeline.KB) -> None:
    grid = pictures.evidence_map(questions.evidence_map_view(kb))
    shown = [q["question"] for cell in grid["cells"] for q in cell["questions"]]
    assert sorted(shown) == sorted(kb.questions)
    for cell in grid["cells"]:  # inside the picture, under its row and column headings
        assert grid["head_w"] <= cell["x"] < grid["width"] and grid["head_h"] <= cell["y"] < grid["height"]
