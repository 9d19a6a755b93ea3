"""The grading engine: table tests over every rule of the default rule set."""

from __future__ import annotations

from typing import Any

from dataclasses import replace
from pathlib import Path

import pytest

from indexer import grading
from indexer.models import Arm, Recommendation, Source, StatedClass, Study
from indexer.rulesets import load_rulesets

PROJECT = Path(__file__).parent.parent
RULESETS, _ = load_rulesets(PROJECT / "kb" / "rulesets", "kb/rulesets")
DEFAULT = next(r for r in RULESETS.values() if r.default)
CROSSOVER = frozenset({"crossover-rct"})

BASE = Study(
    id="s",
    path="kb/studies/s.yaml",
    line=1,
    reference="ref",
    condition=("neuropathic-pain",),
    design="parallel-rct",
    randomised=True,
    control="sham",
    sham_type=None,
    blinding="double",
    patients_total=60,
    patients_active=30,
    flaws=(),
    arms=(Arm(("m1",), (), ("hf-rtms",)),),
    outcome_measure=None,
    result="positive",
    summary="x",
    stated_class=None,
    source=Source("abstract"),
    verification="abstract",
)


def klass(**changes: Any) -> grading.ClassResult:
    return grading.effective_class(replace(BASE, **changes), DEFAULT, CROSSOVER)


def test_default_ruleset_is_the_unverified_lefaucheur_scheme() -> None:
    assert DEFAULT.id == "lefaucheur2014-as-cited"
    assert DEFAULT.verification == "as-cited"
    assert [r.cls for r in DEFAULT.class_rules] == ["I", "II", "III", "IV"]
    assert [r.level for r in DEFAULT.levels] == ["A", "B", "C"]


@pytest.mark.parametrize(
    ("changes", "expected", "certain"),
    [
        pytest.param({}, "I", True, id="class_I_25_or_more_active_no_flaw"),
        pytest.param({"patients_active": 25}, "I", True, id="class_I_at_threshold"),
        pytest.param({"patients_active": 24}, "II", True, id="class_II_10_to_24"),
        pytest.param({"patients_active": 10}, "II", True, id="class_II_at_10"),
        pytest.param({"flaws": ("40% drop-out",)}, "II", True, id="class_II_25_plus_with_flaw"),
        pytest.param({"patients_active": 9}, "III", True, id="class_III_fewer_than_10"),
        pytest.param({"randomised": False}, "III", True, id="class_III_not_randomised"),
        pytest.param({"blinding": "open"}, "III", True, id="class_III_open_assessment"),
        pytest.param({"control": "active"}, "III", True, id="class_III_active_control"),
        pytest.param({"control": "none", "design": "open-label"}, "IV", True, id="class_IV_uncontrolled"),
        pytest.param({"flaws": None}, "II", False, id="flaws_not_assessed_gives_II_at_least"),
        pytest.param(
            {"randomised": None, "blinding": None}, "III", False, id="unknown_design_gives_III_at_least"
        ),
        pytest.param(
            {"design": "crossover-rct", "patients_active": None, "patients_total": 30},
            "I",
            True,
            id="crossover_counts_all_patients_as_active",
        ),
        pytest.param({"patients_active": None}, "III", False, id="unknown_active_count_parallel"),
    ],
)
def test_class_rules(changes: dict, expected: str, certain: bool) -> None:
    result = klass(**changes)
    assert (result.cls, result.certain, result.basis) == (expected, certain, "computed")
    assert result.ruleset == DEFAULT.id


def test_uncertain_class_names_what_is_missing() -> None:
    result = klass(randomised=None, blinding=None)
    assert result.reason == "Class III at least; Class I not excluded (blinding, randomisation not reported)"


def test_stated_class_wins_over_computed() -> None:
    result = klass(stated_class=StatedClass("III", "guide", "Table 4"), patients_active=100)
    assert (result.cls, result.basis) == ("III", "stated")
    assert "Table 4" in result.reason


def rec(studies: list[str], direction: str = "efficacy", level: str | None = "A") -> Recommendation:
    return Recommendation(
        id="r",
        path="kb/r.yaml",
        line=1,
        guideline="g",
        indication="neuropathic-pain",
        outcome_domain=None,
        population=None,
        target=("m1",),
        side=(),
        protocol=("hf-rtms",),
        coil=(),
        level=level,
        level_bound=None,
        direction=direction,
        statement="x",
        supporting_studies=tuple(studies),
        source=Source("abstract"),
        verification="abstract",
    )


def level_of(
    spec: list[tuple[str, str]], direction: str = "efficacy", certain: bool = True
) -> grading.LevelResult:
    """spec: (class, result) per supporting study."""
    ids = [f"s{i}" for i in range(len(spec))]
    classes = {
        sid: grading.ClassResult(cls, "computed", certain, "", DEFAULT.id)
        for sid, (cls, _) in zip(ids, spec, strict=True)
    }
    results = {sid: result for sid, (_, result) in zip(ids, spec, strict=True)}
    return grading.compute_level(rec(ids, direction), results, classes, DEFAULT)


P, N, M = "positive", "negative", "mixed"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param([("I", P), ("I", P)], "A", id="two_class_I_give_A"),
        pytest.param([("I", P), ("II", P), ("II", P)], "A", id="one_I_two_II_give_A"),
        pytest.param([("I", P), ("II", P)], "B", id="one_I_one_II_give_B"),
        pytest.param([("II", P), ("II", P)], "B", id="two_class_II_give_B"),
        pytest.param([("II", P), ("III", P), ("III", P)], "B", id="one_II_two_III_give_B"),
        pytest.param([("III", P), ("III", P)], "C", id="two_class_III_give_C"),
        pytest.param([("I", P)], None, id="one_study_gives_no_level"),
        pytest.param([("IV", P), ("IV", P), ("IV", P)], None, id="class_IV_is_not_counted"),
        pytest.param([("I", M), ("I", M)], None, id="mixed_results_are_not_counted"),
        pytest.param([("I", P), ("I", P), ("I", N)], None, id="conflicting_class_I_prevents_every_level"),
        pytest.param([("I", P), ("I", P), ("III", N)], "A", id="lower_class_conflict_does_not_prevent_A"),
        pytest.param(
            [("II", P), ("II", P), ("III", P), ("III", P), ("III", N)],
            "B",
            id="class_III_conflict_blocks_C_route_not_B",
        ),
        pytest.param([("II", P), ("II", P), ("II", N)], None, id="conflicting_class_II_prevents_B_and_C"),
    ],
)
def test_level_rules(spec: list[tuple[str, str]], expected: str | None) -> None:
    result = level_of(spec)
    assert result.status == "computed"
    assert result.level == expected, result.reason


def test_inefficacy_counts_negative_studies() -> None:
    assert level_of([("I", N), ("I", N)], direction="inefficacy").level == "A"
    assert level_of([("I", P), ("I", P)], direction="inefficacy").level is None


def test_conflict_reason_names_the_conflicting_study() -> None:
    result = level_of([("I", P), ("I", P), ("I", N)])
    assert "conflicting s2" in result.reason


def test_downgrade_policy_lowers_by_one_level() -> None:
    ruleset = replace(DEFAULT, conflict="downgrade")
    ids = ["a", "b", "c"]
    classes = {i: grading.ClassResult("I", "computed", True, "") for i in ids}
    results = {"a": P, "b": P, "c": N}
    assert grading.compute_level(rec(ids), results, classes, ruleset).level == "B"


def test_no_supporting_studies_is_not_computable() -> None:
    result = grading.compute_level(rec([]), {}, {}, DEFAULT)
    assert result.status == "not-computable"
    comparison = grading.compare(rec([]), result)
    assert comparison.verdict == "n/a"


def test_comparison_agree_and_disagree() -> None:
    assert grading.compare(rec(["a"]), level_of([("I", P), ("I", P)])).verdict == "agree"
    disagree = grading.compare(rec(["a"], level="A"), level_of([("II", P), ("II", P)]))
    assert (disagree.verdict, disagree.published, disagree.computed) == ("disagree", "A", "B")
    assert disagree.ruleset == DEFAULT.id


def test_uncertain_classes_are_flagged_in_the_level() -> None:
    result = level_of([("II", P), ("II", P)], certain=False)
    assert not result.certain
    assert "lower bounds" in result.reason


def _within(vocabulary: str, narrow: str, broad: str) -> bool:
    return narrow == broad or (vocabulary, narrow, broad) == ("targets", "m1-hand", "m1")


@pytest.mark.parametrize(
    ("arms", "overall", "expected"),
    [
        pytest.param(
            [("hf-rtms", "m1", "positive"), ("lf-rtms", "m1", "negative")],
            "mixed",
            "positive",
            id="matching_arm_decides_when_another_arm_differs",
        ),
        pytest.param(
            [("hf-rtms", "m1-hand", "positive"), ("lf-rtms", "m1", "negative")],
            "mixed",
            "positive",
            id="narrower_target_matches",
        ),
        pytest.param(
            [("hf-rtms", "m1", "positive"), ("hf-rtms", "m1", "negative")],
            "positive",
            "positive",
            id="all_arms_match_overall_result_counts",
        ),
        pytest.param(
            [("hf-rtms", "m1", "positive"), ("hf-rtms", "m1", "negative"), ("lf-rtms", "m1", "negative")],
            "mixed",
            "mixed",
            id="matching_arms_disagree",
        ),
        pytest.param([("lf-rtms", "dlpfc", "positive")], "positive", "positive", id="no_matching_arm"),
    ],
)
def test_arm_result(arms: list[tuple[str, str, str]], overall: str, expected: str) -> None:
    study = replace(
        BASE,
        result=overall,
        arms=tuple(Arm((target,), (), (protocol,), result=result) for protocol, target, result in arms),
    )
    assert grading.arm_result(rec(["s"]), study, _within) == expected
