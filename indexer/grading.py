"""The grading engine: pure functions from study facts and a rule set to classes and levels.

Published levels stay authoritative; everything computed here is labelled with its rule set.
Unknown facts are never taken as met: a rule that depends on one cannot place a study in its
class, so the computed class is the best class the known facts prove (marked uncertain).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from .models import CLASS_RANK, Recommendation, Study
from .rulesets import RuleSet

FACT_WORDS = {
    "randomised": "randomisation",
    "controlled": "control",
    "sham_controlled": "sham control",
    "assessor_blinded": "blinding",
    "active_patients": "number on active stimulation",
    "has_flaws": "flaw assessment",
    "crossover": "design",
    "design": "design",
}
BLINDED = {"double": True, "assessor": True, "open": False}


@dataclass(frozen=True)
class ClassResult:
    """A study's class, and how it was obtained."""

    cls: str | None
    basis: str  # "stated" (by a source) or "computed" (by a rule set)
    certain: bool
    reason: str
    ruleset: str | None = None


@dataclass(frozen=True)
class LevelResult:
    """A recommendation's computed level under one rule set."""

    level: str | None
    status: str  # "computed" or "not-computable"
    reason: str
    ruleset: str
    certain: bool = True
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """Published level against computed level."""

    published: str | None
    computed: str | None
    verdict: str  # "agree", "disagree" or "n/a"
    reason: str
    ruleset: str


def study_facts(study: Study, crossover_designs: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The facts class rules may test; None means the source does not say."""
    control = study.control
    crossover = study.design in crossover_designs
    active = study.patients_active
    if active is None and crossover:
        active = study.patients_total
    return {
        "randomised": study.randomised,
        "controlled": None if control is None else control != "none",
        "sham_controlled": None if control is None else control == "sham",
        "assessor_blinded": BLINDED.get(study.blinding) if study.blinding else None,
        "active_patients": active,
        "has_flaws": None if study.flaws is None else bool(study.flaws),
        "crossover": crossover,
        "design": study.design,
    }


def _matches(have: Any, want: Any) -> bool:
    if isinstance(want, list):
        return have in want
    if isinstance(want, dict):
        if not isinstance(have, int | float) or isinstance(have, bool):
            return False
        low, high = want.get("min"), want.get("max")
        return (low is None or have >= low) and (high is None or have <= high)
    return bool(have == want)


def _holds(condition: dict[str, Any], facts: dict[str, Any]) -> bool:
    return all(
        facts.get(name) is not None and _matches(facts[name], want) for name, want in condition.items()
    )


def _first_class(facts: dict[str, Any], ruleset: RuleSet) -> str | None:
    for rule in ruleset.class_rules:
        if any(_holds(cond, facts) for cond in rule.when):
            return rule.cls
    return None


def _candidates(name: str, ruleset: RuleSet) -> list[Any]:
    """Values an unreported fact could take that make a difference to the rules."""
    values: list[Any] = []
    for rule in ruleset.class_rules:
        for cond in rule.when:
            want = cond.get(name, _ABSENT)
            if want is _ABSENT:
                continue
            if isinstance(want, dict):
                values += [
                    b + d for b in (want.get("min"), want.get("max")) if b is not None for d in (-1, 0, 1)
                ]
            elif isinstance(want, list):
                values += want
            elif isinstance(want, bool):
                values += [True, False]
            else:
                values.append(want)
    distinct = list(dict.fromkeys(values))
    return distinct if all(isinstance(v, bool) for v in distinct) else [*distinct, _OTHER]


_ABSENT = object()
_OTHER = "<other>"  # stands for any value no rule names


def possible_classes(facts: dict[str, Any], ruleset: RuleSet) -> tuple[set[str | None], list[str]]:
    """Every class the study could have, given that unreported facts could be anything."""
    used = sorted({name for rule in ruleset.class_rules for cond in rule.when for name in cond})
    unknown = [name for name in used if facts.get(name) is None]
    # Keyed by the rules' content, not the rule set's id: an edited rule set loaded in the same
    # process (open_kb(build=True) in a script, tests) must not be graded with the old rules.
    key = (repr(ruleset.class_rules), tuple(sorted((k, str(v)) for k, v in facts.items())))
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        options = [_candidates(name, ruleset) for name in unknown]
        _CACHE[key] = {
            _first_class({**facts, **dict(zip(unknown, combo, strict=True))}, ruleset)
            for combo in product(*options)
        }
    return _CACHE[key], unknown


_CACHE: dict[tuple[str, tuple[tuple[str, str], ...]], set[str | None]] = {}
_CACHE_SIZE = 50_000


def classify(facts: dict[str, Any], ruleset: RuleSet) -> ClassResult:
    """The worst class the study could have; better ones still possible are named in the reason."""
    possible, unknown = possible_classes(facts, ruleset)
    ranked = sorted((c for c in possible if c is not None), key=CLASS_RANK.__getitem__)
    if not ranked:
        return ClassResult(None, "computed", False, "no class rule applies", ruleset.id)
    worst = None if None in possible else ranked[-1]
    if len(possible) == 1:
        return ClassResult(worst, "computed", True, f"Class {worst}: meets its rule", ruleset.id)
    missing = ", ".join(FACT_WORDS.get(name, name) for name in unknown)
    better = "/".join(c for c in ranked if c != worst)
    if worst is None:
        return ClassResult(
            None,
            "computed",
            False,
            f"undetermined: could be Class {better} ({missing} not reported)",
            ruleset.id,
        )
    return ClassResult(
        worst,
        "computed",
        False,
        f"Class {worst} at least; Class {better} not excluded ({missing} not reported)",
        ruleset.id,
    )


def effective_class(study: Study, ruleset: RuleSet, crossover_designs: frozenset[str]) -> ClassResult:
    """The class a source states, else the one the rule set computes."""
    if study.stated_class:
        sc = study.stated_class
        return ClassResult(sc.cls, "stated", True, f"stated by {sc.reference} ({sc.location})")
    return classify(study_facts(study, crossover_designs), ruleset)


def arm_result(rec: Recommendation, study: Study, within: Callable[[str, str, str], bool]) -> str | None:
    """The result that counts for `rec`: that of the study's arms matching its protocol and target.

    `within(vocabulary, narrow, broad)` says whether a term is the same as or narrower than
    another (an M1 hand-area arm matches an M1 recommendation). Only when some arms fall outside
    the recommendation (a 1 Hz arm beside a 10 Hz one) do the matching arms decide: one result if
    they agree, 'mixed' if not. Otherwise the study's overall result counts.
    """

    def overlaps(vocabulary: str, arm_ids: tuple[str, ...], rec_ids: tuple[str, ...]) -> bool:
        return not rec_ids or any(within(vocabulary, a, r) for a in arm_ids for r in rec_ids)

    matching = [
        arm.result
        for arm in study.arms
        if overlaps("protocols", arm.protocol, rec.protocol) and overlaps("targets", arm.target, rec.target)
    ]
    if not matching or len(matching) == len(study.arms):
        return study.result
    distinct = set(matching)
    return matching[0] if len(distinct) == 1 else "mixed"


def _satisfies(requirement: Mapping[str, int], classes: list[str], nested: bool) -> bool:
    """Whether distinct studies of these classes meet the requirement (class -> count)."""
    pool = sorted(classes, key=CLASS_RANK.__getitem__)
    for cls, count in sorted(requirement.items(), key=lambda kv: CLASS_RANK[kv[0]]):
        for _ in range(count):
            fits = [c for c in pool if (CLASS_RANK[c] <= CLASS_RANK[cls] if nested else c == cls)]
            if not fits:
                return False
            pool.remove(fits[-1])  # use the weakest study that still qualifies
    return True


def _counts(items: list[tuple[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, cls in items:
        counts[cls] = counts.get(cls, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: CLASS_RANK[kv[0]]))


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{n}×{c}" for c, n in counts.items()) or "none"


def compute_level(
    rec: Recommendation,
    results: Mapping[str, str | None],
    classes: Mapping[str, ClassResult],
    ruleset: RuleSet,
) -> LevelResult:
    """Level from the supporting studies' classes and result directions.

    `results` maps study id -> result (positive/negative/mixed/inconclusive/None).
    """
    if not rec.supporting_studies:
        return LevelResult(None, "not-computable", "no supporting studies linked", ruleset.id)
    if rec.direction is None:
        return LevelResult(None, "not-computable", "no direction to count studies for", ruleset.id)
    wanted, opposed = ("positive", "negative") if rec.direction == "efficacy" else ("negative", "positive")
    support: list[tuple[str, str]] = []
    against: list[tuple[str, str]] = []
    uncertain = 0
    for sid in rec.supporting_studies:
        result, grade = results.get(sid), classes.get(sid)
        if grade is None or grade.cls is None or grade.cls in ruleset.classes_not_counted:
            continue
        uncertain += not grade.certain
        if result == wanted:
            support.append((sid, grade.cls))
        elif result == opposed:
            against.append((sid, grade.cls))
    counts = {"supporting": _counts(support), "opposing": _counts(against)}
    level, reason = _level_from(support, against, ruleset)
    note = f"; {uncertain} class(es) are lower bounds" if uncertain else ""
    summary = f"supporting {_describe(counts['supporting'])}; opposing {_describe(counts['opposing'])}"
    return LevelResult(
        level, "computed", f"{reason} ({summary}{note})", ruleset.id, certain=uncertain == 0, counts=counts
    )


def _level_from(
    support: list[tuple[str, str]], against: list[tuple[str, str]], ruleset: RuleSet
) -> tuple[str | None, str]:
    classes = [c for _, c in support]
    blocked: list[str] = []
    for index, rule in enumerate(ruleset.levels):
        for requirement in rule.any:
            if not _satisfies(requirement, classes, ruleset.higher_class_counts_for_lower):
                continue
            weakest = max(CLASS_RANK[c] for c in requirement)
            conflicts = [sid for sid, c in against if CLASS_RANK[c] <= weakest]
            if not conflicts:
                note = f" after conflicts blocked {', '.join(blocked)}" if blocked else ""
                return rule.level, f"Level {rule.level}: meets {_requirement(requirement)}{note}"
            if ruleset.conflict == "downgrade":
                lower = ruleset.levels[index + 1].level if index + 1 < len(ruleset.levels) else None
                return lower, (
                    f"Level {rule.level} lowered to {lower or 'none'} by conflicting {', '.join(conflicts)}"
                )
            blocked.append(f"{rule.level} (conflicting {', '.join(conflicts)})")
    if blocked:
        return None, f"no level: conflicting results prevent {'; '.join(blocked)}"
    return None, "no level: not enough concordant studies"


def _requirement(requirement: Mapping[str, int]) -> str:
    return " + ".join(
        f"{n}×Class {c}" for c, n in sorted(requirement.items(), key=lambda kv: CLASS_RANK[kv[0]])
    )


def compare(rec: Recommendation, computed: LevelResult) -> Comparison:
    """Agree, disagree or n/a, with the reason in one line."""
    published = rec.level
    if computed.status != "computed":
        return Comparison(published, None, "n/a", computed.reason, computed.ruleset)
    if published is None:
        bound = f" (published bound: {rec.level_bound})" if rec.level_bound else ""
        return Comparison(
            None, computed.level, "n/a", f"no published level{bound}; {computed.reason}", computed.ruleset
        )
    verdict = "agree" if computed.level == published else "disagree"
    return Comparison(published, computed.level, verdict, computed.reason, computed.ruleset)
