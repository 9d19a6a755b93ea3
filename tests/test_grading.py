"""The grading engine: table tests over every rule of the default rule set."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from indexer import grading
from indexer.models import Arm, Recommendation, Source, StatedClass, Study
from indexer.rulesets import ClassRule, load_rulesets

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


# Every `blinding` value of the study schema and what it says of `assessor_blinded`.
BLINDING = [("double", True), ("assessor", True), ("single", False), ("open", False), (None, None)]


def test_blinding_table_covers_the_schema_and_the_docs() -> None:
    schema = json.loads((PROJECT / "indexer" / "schemas" / "study.schema.json").read_text())
    assert [value for value, _ in BLINDING] == schema["properties"]["blinding"]["enum"]
    assert grading.BLINDED == {value: fact for value, fact in BLINDING if value is not None}
    docs = (PROJECT / "docs" / "kb-format.md").read_text(encoding="utf-8")
    words = {True: "true", False: "false", None: "unknown"}
    rows = dict(re.findall(r"^ *\| `(\w+)` \| (true|false|unknown) \|", docs, re.MULTILINE))
    assert rows == {str(value).lower() if value else "null": words[fact] for value, fact in BLINDING}


@pytest.mark.parametrize(
    ("blinding", "fact", "expected", "certain"),
    [
        pytest.param(value, fact, cls, certain, id=f"blinding_{value}")
        for (value, fact), (cls, certain) in zip(
            BLINDING, [("I", True), ("I", True), ("III", True), ("III", True), ("III", False)], strict=True
        )
    ],
)
def test_blinding_gives_assessor_blinded(
    blinding: str | None, fact: bool | None, expected: str, certain: bool
) -> None:
    assert grading.study_facts(replace(BASE, blinding=blinding), CROSSOVER)["assessor_blinded"] is fact
    result = klass(blinding=blinding)
    assert (result.cls, result.certain) == (expected, certain), result.reason


def test_single_blind_is_not_reported_as_missing_blinding() -> None:
    result = klass(blinding="single", randomised=None)
    assert result.reason == "Class III: meets its rule"


@pytest.mark.parametrize(
    ("design", "total", "expected", "certain", "reason"),
    [
        pytest.param(
            "parallel-rct", 8, "III", True, "Class III: meets its rule", id="parallel_8_below_class_II"
        ),
        pytest.param(
            "parallel-rct",
            9,
            "III",
            True,
            "Class III: meets its rule",
            id="parallel_9_just_below_class_II",
        ),
        pytest.param(
            "parallel-rct",
            10,
            "III",
            False,
            "Class III at least; Class II not excluded (number on active stimulation not reported)",
            id="parallel_10_could_be_class_II",
        ),
        pytest.param(
            "parallel-rct",
            20,
            "III",
            False,
            "Class III at least; Class II not excluded (number on active stimulation not reported)",
            id="parallel_20_cannot_be_class_I",
        ),
        pytest.param(
            "parallel-rct",
            24,
            "III",
            False,
            "Class III at least; Class II not excluded (number on active stimulation not reported)",
            id="parallel_24_cannot_be_class_I",
        ),
        pytest.param(
            "parallel-rct",
            25,
            "III",
            False,
            "Class III at least; Class I/II not excluded (number on active stimulation not reported)",
            id="parallel_25_could_be_class_I",
        ),
        pytest.param(
            "parallel-rct",
            None,
            "III",
            False,
            "Class III at least; Class I/II not excluded (number on active stimulation not reported)",
            id="parallel_no_total_no_bound",
        ),
        pytest.param(
            "crossover-rct", 8, "III", True, "Class III: meets its rule", id="crossover_8_all_active"
        ),
        pytest.param(
            "crossover-rct", 20, "II", True, "Class II: meets its rule", id="crossover_20_all_active"
        ),
        pytest.param("crossover-rct", 25, "I", True, "Class I: meets its rule", id="crossover_25_all_active"),
        pytest.param(
            "crossover-rct",
            None,
            "III",
            False,
            "Class III at least; Class I/II not excluded (number on active stimulation not reported)",
            id="crossover_no_total_no_bound",
        ),
    ],
)
def test_unreported_active_count_is_bounded_by_the_total(
    design: str, total: int | None, expected: str, certain: bool, reason: str
) -> None:
    result = klass(design=design, patients_total=total, patients_active=None)
    assert (result.cls, result.certain, result.reason) == (expected, certain, reason)


@pytest.mark.parametrize(
    ("want", "total", "expected"),
    [
        pytest.param({"min": 10}, 9, {"III"}, id="min_above_total"),
        pytest.param({"min": 10}, 10, {"I", "III"}, id="min_at_total"),
        pytest.param({"max": 5}, 3, {"I"}, id="max_above_total"),
        pytest.param({"max": 5}, 6, {"I", "III"}, id="max_below_total"),
        pytest.param(12, 11, {"III"}, id="value_above_total"),
        pytest.param(12, 12, {"I", "III"}, id="value_at_total"),
        pytest.param([4, 30], 20, {"I", "III"}, id="list_partly_within_total"),
        pytest.param([25, 30], 20, {"III"}, id="list_above_total"),
    ],
)
def test_every_number_condition_is_bounded_by_the_total(want: Any, total: int, expected: set[str]) -> None:
    ruleset = replace(
        DEFAULT,
        class_rules=(ClassRule("I", ({"active_patients": want},)), ClassRule("III", ({"controlled": True},))),
    )
    facts = grading.study_facts(replace(BASE, patients_active=None, patients_total=total), CROSSOVER)
    assert grading.possible_classes(facts, ruleset)[0] == expected


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
        candidate_studies=tuple(studies),
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


BROADER = {("targets", "m1-hand", "m1"), ("protocols", "hf-rtms", "rtms")}


def _within(vocabulary: str, narrow: str, broad: str) -> bool:
    return narrow == broad or (vocabulary, narrow, broad) in BROADER


def _arms(spec: list[tuple[str, str, str | None]]) -> tuple[Arm, ...]:
    """(protocol, target, result) per arm; "" = not stated."""
    return tuple(
        Arm((target,) if target else (), (), (protocol,) if protocol else (), result=result)
        for protocol, target, result in spec
    )


NO_ARM = grading.NO_MATCHING_ARM


@pytest.mark.parametrize(
    ("arms", "overall", "expected", "direction"),
    [
        pytest.param(
            [("hf-rtms", "m1", P), ("lf-rtms", "m1", N)],
            M,
            P,
            "efficacy",
            id="matching_arm_decides_when_another_arm_differs",
        ),
        pytest.param(
            [("hf-rtms", "m1-hand", P), ("lf-rtms", "m1", N)], M, P, "efficacy", id="narrower_target_matches"
        ),
        pytest.param(
            [("hf-rtms", "m1", P), ("hf-rtms", "m1", N)],
            P,
            P,
            "efficacy",
            id="all_arms_match_overall_result_counts",
        ),
        pytest.param(
            [("hf-rtms", "m1", P), ("hf-rtms", "m1", N), ("lf-rtms", "m1", N)],
            M,
            M,
            "efficacy",
            id="matching_arms_disagree",
        ),
        pytest.param([("lf-rtms", "dlpfc", P)], P, NO_ARM, "efficacy", id="no_matching_arm"),
        pytest.param([("lf-rtms", "m1", P)], P, NO_ARM, "efficacy", id="no_arm_matches_the_protocol"),
        pytest.param([("hf-rtms", "dlpfc", P)], P, NO_ARM, "efficacy", id="no_arm_matches_the_target"),
        pytest.param(
            [("lf-rtms", "m1", P), ("hf-rtms", "s1", P)],
            P,
            NO_ARM,
            "efficacy",
            id="several_arms_none_matches",
        ),
        pytest.param(
            [("hf-rtms", "", P)],
            P,
            "not counted: target not stated",
            "efficacy",
            id="target_not_stated_supports",
        ),
        pytest.param(
            [("hf-rtms", "", N)],
            N,
            "negative (target not stated)",
            "efficacy",
            id="target_not_stated_opposes",
        ),
        pytest.param(
            [("hf-rtms", "", P)],
            P,
            "positive (target not stated)",
            "inefficacy",
            id="target_not_stated_opposes_inefficacy",
        ),
        pytest.param([("hf-rtms", "", M)], M, M, "efficacy", id="target_not_stated_mixed_counts_neither_way"),
        pytest.param([("lf-rtms", "", P)], P, NO_ARM, "efficacy", id="target_not_stated_protocol_differs"),
        pytest.param(
            [("", "m1", P)], P, "not counted: protocol not stated", "efficacy", id="protocol_not_stated"
        ),
        pytest.param(
            [("rtms", "m1", P)], P, "not counted: protocol not stated", "efficacy", id="protocol_only_broader"
        ),
        pytest.param(
            [("", "", N)], N, "negative (protocol and target not stated)", "efficacy", id="nothing_stated"
        ),
        pytest.param(
            [("hf-rtms", "m1", P), ("hf-rtms", "", P)],
            P,
            P,
            "efficacy",
            id="unstated_arm_agrees_with_matching_arm",
        ),
        pytest.param(
            [("hf-rtms", "m1", P), ("hf-rtms", "", N)],
            M,
            "not counted: target not stated",
            "efficacy",
            id="unstated_arm_could_make_study_mixed",
        ),
        pytest.param(
            [("hf-rtms", "m1", N), ("hf-rtms", "", P)],
            M,
            "negative (target not stated)",
            "efficacy",
            id="unstated_arm_could_leave_matching_arm_opposing",
        ),
    ],
)
def test_arm_result(
    arms: list[tuple[str, str, str | None]], overall: str, expected: str | None, direction: str
) -> None:
    study = replace(BASE, result=overall, arms=_arms(arms))
    result = grading.arm_result(rec(["s"], direction), study, _within)
    assert result == expected
    # Pages and questions read what a text that is not a result counts as, and why, here.
    assert result in {P, N, M, "inconclusive", None} or result in grading.ARM_NOTES


def test_arm_notes_say_what_each_text_counts_as() -> None:
    assert grading.ARM_NOTES[NO_ARM] == (None, "no arm matches the recommendation's protocol/target")
    assert grading.ARM_NOTES["not counted: target not stated"] == (
        None,
        "target not stated: never counted as support",
    )
    assert grading.ARM_NOTES["negative (target not stated)"] == (
        "negative",
        "target not stated: counted as opposing, the worse case",
    )


MATCH = [("hf-rtms", "m1", P)]
NO_MATCH_REASON = "no arm matches the recommendation's protocol/target"


@pytest.mark.parametrize(
    ("spec", "expected", "certain", "excluded"),
    [
        pytest.param([("I", MATCH, P), ("I", MATCH, P)], "A", True, {}, id="matching_studies_count"),
        pytest.param(
            [("I", MATCH, P), ("I", [("lf-rtms", "dlpfc", P)], P)],
            None,
            True,
            {"s1": NO_MATCH_REASON},
            id="study_with_no_matching_arm_does_not_support",
        ),
        pytest.param(
            [("I", MATCH, P), ("I", MATCH, P), ("I", [("lf-rtms", "m1", N)], N)],
            "A",
            True,
            {"s2": NO_MATCH_REASON},
            id="study_with_no_matching_arm_does_not_oppose",
        ),
        pytest.param(
            [("IV", [("lf-rtms", "dlpfc", P)], P), ("I", MATCH, P), ("I", MATCH, P)],
            "A",
            True,
            {"s0": NO_MATCH_REASON},
            id="no_matching_arm_reported_whatever_the_class",
        ),
        pytest.param(
            [("I", MATCH, P), ("I", [("hf-rtms", "", P)], P)],
            None,
            False,
            {"s1": "target not stated: never counted as support"},
            id="target_not_stated_is_never_support",
        ),
        pytest.param(
            [("I", MATCH, P), ("I", MATCH, P), ("I", [("hf-rtms", "", N)], N)],
            None,
            False,
            {},
            id="target_not_stated_counts_as_opposing",
        ),
    ],
)
def test_level_counts_only_studies_with_a_matching_arm(
    spec: list[tuple[str, list[tuple[str, str, str | None]], str]],
    expected: str | None,
    certain: bool,
    excluded: dict[str, str],
) -> None:
    ids = [f"s{i}" for i in range(len(spec))]
    studies = {
        sid: replace(BASE, id=sid, arms=_arms(arms), result=overall)
        for sid, (_, arms, overall) in zip(ids, spec, strict=True)
    }
    classes = {
        sid: grading.ClassResult(cls, "computed", True, "", DEFAULT.id)
        for sid, (cls, _, _) in zip(ids, spec, strict=True)
    }
    recommendation = rec(ids)
    results = {sid: grading.arm_result(recommendation, study, _within) for sid, study in studies.items()}
    result = grading.compute_level(recommendation, results, classes, DEFAULT)
    assert (result.level, result.certain, result.excluded) == (expected, certain, excluded), result.reason


def test_level_reason_names_studies_left_out_or_counted_the_worse_way() -> None:
    recommendation = rec(["a", "b", "c", "d"])
    classes = {sid: grading.ClassResult("I", "computed", True, "", DEFAULT.id) for sid in "abcd"}
    results = {
        "a": P,
        "b": NO_ARM,
        "c": "not counted: target not stated",
        "d": "negative (target not stated)",
    }
    result = grading.compute_level(recommendation, results, classes, DEFAULT)
    assert result.reason == (
        "no level: not enough concordant studies (supporting 1×I; opposing 1×I; "
        "counted as opposing: d (target not stated: counted as opposing, the worse case); "
        "not counted: b (no arm matches the recommendation's protocol/target), "
        "c (target not stated: never counted as support))"
    )
    assert result.counts == {"supporting": {"I": 1}, "opposing": {"I": 1}}
