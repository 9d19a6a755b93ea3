"""The grading engine: pure functions from study facts and a rule set to classes and levels.

Published levels stay authoritative; everything computed here is labelled with its rule set.
Unknown facts are never taken as met: a rule that depends on one cannot place a study in its
class, so the computed class is the best class the known facts prove (marked uncertain).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from .models import CLASS_RANK, Arm, Recommendation, Study
from .rulesets import ClassRule, RuleSet

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
# What each `blinding` value of the study schema says of the fact `assessor_blinded` (was the
# outcome assessor masked?); docs/kb-format.md, "Grading rule sets", has the same table. `single`
# masks the patient only, so the assessor was not masked. null, or a value missing here, is unknown.
BLINDED = {"double": True, "assessor": True, "single": False, "open": False}

# Bounds on the values an unreported number could take: (least value, fact giving the greatest).
# At least one patient, and no more than the total, receive active stimulation (in a cross-over,
# all of them: study_facts then knows the number).
NUMBER_BOUNDS: dict[str, tuple[int | None, str | None]] = {"active_patients": (1, "total_patients")}


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
    # Linked studies left out, with why (no arm matches the recommendation's protocol/target...).
    excluded: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """Published level against computed level."""

    published: str | None
    computed: str | None
    verdict: str  # "agree", "disagree" or "n/a"
    reason: str
    ruleset: str


def study_facts(study: Study, crossover_designs: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The facts class rules may test; None means the source does not say.

    `total_patients` is not a rule fact: it bounds an unreported `active_patients` (NUMBER_BOUNDS).
    """
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
        "total_patients": study.patients_total,
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


def _candidates(name: str, ruleset: RuleSet, facts: Mapping[str, Any]) -> list[Any]:
    """Values an unreported fact could take that make a difference to the rules."""
    wants = [cond[name] for rule in ruleset.class_rules for cond in rule.when if name in cond]
    if wants and all(_numeric(want) for want in wants):
        low, high_fact = NUMBER_BOUNDS.get(name, (None, None))
        return _numbers(wants, low, facts.get(high_fact) if high_fact else None)
    values: list[Any] = []
    for want in wants:
        if isinstance(want, dict):
            values += [b + d for b in (want.get("min"), want.get("max")) if b is not None for d in (-1, 0, 1)]
        elif isinstance(want, list):
            values += want
        elif isinstance(want, bool):
            values += [True, False]
        else:
            values.append(want)
    distinct = list(dict.fromkeys(values))
    return distinct if all(isinstance(v, bool) for v in distinct) else [*distinct, _OTHER]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numeric(want: Any) -> bool:
    if isinstance(want, dict):
        return True
    if isinstance(want, list):
        return bool(want) and all(_is_number(v) for v in want)
    return _is_number(want)


def _numbers(wants: list[Any], low: int | None, high: int | None) -> list[int]:
    """One whole number from each stretch of [low, high] on which every condition is constant.

    The conditions (`{min, max}`, a value, a list of values) change truth only where a stretch
    starts: at a min, after a max, at and after a named value. So the stretch starts that lie
    within the bounds stand for every number the fact could be, and none it could not.
    """
    starts: set[int] = set()
    for want in wants:
        if isinstance(want, dict):
            if want.get("min") is not None:
                starts.add(math.ceil(want["min"]))
            if want.get("max") is not None:
                starts.add(math.floor(want["max"]) + 1)
        else:
            for value in want if isinstance(want, list) else [want]:
                if float(value).is_integer():
                    starts |= {int(value), int(value) + 1}
    first = low if low is not None else min(starts, default=0) - 1
    if high is not None:
        first = min(first, high)
    return [first, *sorted(s for s in starts if s > first and (high is None or s <= high))]


_OTHER = "<other>"  # stands for any value no rule names


def possible_classes(facts: dict[str, Any], ruleset: RuleSet) -> tuple[set[str | None], list[str]]:
    """Every class the study could have, given that unreported facts could be anything."""
    rules_text, used = _rules_key(ruleset.class_rules)
    unknown = [name for name in used if facts.get(name) is None]
    key = (rules_text, tuple(sorted((k, str(v)) for k, v in facts.items())))
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        options = [_candidates(name, ruleset, facts) for name in unknown]
        _CACHE[key] = {
            _first_class({**facts, **dict(zip(unknown, combo, strict=True))}, ruleset)
            for combo in product(*options)
        }
    return _CACHE[key], unknown


_CACHE: dict[tuple[str, tuple[tuple[str, str], ...]], set[str | None]] = {}
_CACHE_SIZE = 50_000


def _rules_key(rules: tuple[ClassRule, ...]) -> tuple[str, list[str]]:
    """The class rules' text and the facts they name. possible_classes is keyed by the rules'
    content, not the rule set's id: an edited rule set loaded in the same process
    (open_kb(build=True) in a script, tests) must not be graded with the old rules. The text
    is made once per rules object (11 us each time, a quarter of grading a study)."""
    known = _RULES_KEYS.get(id(rules))
    if known is not None and known[0] is rules:
        return known[1], known[2]
    used = sorted({name for rule in rules for cond in rule.when for name in cond})
    if len(_RULES_KEYS) >= 64:
        _RULES_KEYS.clear()
    text = repr(rules)
    _RULES_KEYS[id(rules)] = (rules, text, used)
    return text, used


_RULES_KEYS: dict[int, tuple[tuple[ClassRule, ...], str, list[str]]] = {}


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


NO_MATCH_REASON = "no arm matches the recommendation's protocol/target"
NO_MATCHING_ARM = f"not counted: {NO_MATCH_REASON}"
_UNSTATED = ("target", "protocol", "protocol and target")


def _not_stated(what: str, result: str | None = None) -> str:
    return f"{result} ({what} not stated)" if result else f"not counted: {what} not stated"


# arm_result's texts for a study whose arms may or may not match the recommendation, because
# `what` is not stated: text -> (the opposing result it counts as, or None: not counted; what).
_NOT_STATED: dict[str, tuple[str | None, str]] = {
    **{_not_stated(w): (None, w) for w in _UNSTATED},
    **{_not_stated(w, r): (r, w) for w in _UNSTATED for r in ("positive", "negative")},
}

# Every text arm_result gives that is not a study's result: text -> (the result it counts as, or
# None for not counted; why). compute_level follows them; pages show the result and the why.
ARM_NOTES: dict[str, tuple[str | None, str]] = {
    NO_MATCHING_ARM: (None, NO_MATCH_REASON),
    **{
        text: (
            result,
            f"{what} not stated: "
            + ("counted as opposing, the worse case" if result else "never counted as support"),
        )
        for text, (result, what) in _NOT_STATED.items()
    },
}


def _sides(direction: str | None) -> tuple[str | None, str | None]:
    """The results that support and oppose a recommendation of this direction."""
    return {"efficacy": ("positive", "negative"), "inefficacy": ("negative", "positive")}.get(
        direction or "", (None, None)
    )


def _fits(
    vocabulary: str,
    arm_ids: tuple[str, ...],
    rec_ids: tuple[str, ...],
    within: Callable[[str, str, str], bool],
) -> bool | None:
    """Whether an arm is on the recommendation's terms: True, False, or None (it may be)."""
    if not rec_ids or any(within(vocabulary, a, r) for a in arm_ids for r in rec_ids):
        return True
    if not arm_ids or any(within(vocabulary, r, a) for a in arm_ids for r in rec_ids):
        return None  # not stated, or stated only by a broader term (rTMS for a 10 Hz recommendation)
    return False


def _matching_result(study: Study, results: set[str | None], every_arm: bool) -> str | None:
    if not results:
        return NO_MATCHING_ARM
    if every_arm:
        return study.result
    return next(iter(results)) if len(results) == 1 else "mixed"


def arm_result(rec: Recommendation, study: Study, within: Callable[[str, str, str], bool]) -> str | None:
    """The result that counts for `rec`: that of the study's arms matching its protocol and target.

    `within(vocabulary, narrow, broad)` says whether a term is the same as or narrower than
    another (an M1 hand-area arm matches an M1 recommendation). Only when some arms fall outside
    the recommendation (a 1 Hz arm beside a 10 Hz one) do the matching arms decide: one result if
    they agree, 'mixed' if not. When every arm matches, the study's overall result counts; when
    none does, the study does not count (NO_MATCHING_ARM).

    An arm whose target or protocol is not stated (or only by a broader term) may match or not.
    The study then counts in the worse way for `rec`: as opposing if it could oppose, else not at
    all if it could be anything but support; the text says so (see ARM_NOTES).
    """
    arms = study.arms or (Arm((), (), (), result=study.result),)
    sure: set[str | None] = set()
    unsure: dict[str | None, int] = {}  # result -> how many arms with it may match
    missing: set[str] = set()
    outside = False
    for arm in arms:
        protocol = _fits("protocols", arm.protocol, rec.protocol, within)
        target = _fits("targets", arm.target, rec.target, within)
        if protocol is False or target is False:
            outside = True
        elif protocol and target:
            sure.add(arm.result)
        else:
            unsure[arm.result] = unsure.get(arm.result, 0) + 1
            missing |= {name for name, fit in (("protocol", protocol), ("target", target)) if fit is None}
    # Each group of unsure arms with one result matches in none, some or all of its arms.
    choices = [("none", "some", "all") if n > 1 else ("none", "all") for n in unsure.values()]
    outcomes = {
        _matching_result(
            study,
            sure | {r for r, c in zip(unsure, combo, strict=True) if c != "none"},
            not outside and all(c == "all" for c in combo),
        )
        for combo in product(*choices)
    }
    if len(outcomes) == 1:
        return outcomes.pop()
    wanted, opposed = _sides(rec.direction)

    def rank(outcome: str | None) -> int:
        return 0 if opposed and outcome == opposed else 2 if wanted and outcome == wanted else 1

    worst = min(rank(o) for o in outcomes)
    if worst == max(rank(o) for o in outcomes):  # counts alike either way: a result, not a note
        return min(outcomes, key=lambda o: (o == NO_MATCHING_ARM, str(o)))
    what = "protocol and target" if len(missing) == 2 else missing.pop()
    return _not_stated(what, opposed if worst == 0 else None)


def matching_arms(rec: Recommendation, study: Study, within: Callable[[str, str, str], bool]) -> list[Arm]:
    """The arms that are, or may be, on `rec`'s protocol and target (those not clearly outside)."""
    return [
        arm
        for arm in study.arms
        if _fits("protocols", arm.protocol, rec.protocol, within) is not False
        and _fits("targets", arm.target, rec.target, within) is not False
    ]


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
    """Level from the linked studies' classes and result directions.

    `results` maps study id -> result (positive/negative/mixed/inconclusive/None), as arm_result
    gives it: NO_MATCHING_ARM leaves a study out (listed in `excluded`, with why), and so do its
    other ARM_NOTES texts (arms that may or may not match), unless the study may oppose: it then
    counts as opposing, the worse case.
    """
    if not rec.linked_studies:
        return LevelResult(None, "not-computable", "no studies linked", ruleset.id)
    wanted, opposed = _sides(rec.direction)
    if wanted is None:
        return LevelResult(None, "not-computable", "no direction to count studies for", ruleset.id)
    support: list[tuple[str, str]] = []
    against: list[tuple[str, str]] = []
    excluded: dict[str, str] = {}
    worse_case: list[str] = []
    uncertain = unsure_arms = 0
    for sid in rec.linked_studies:
        result, grade = results.get(sid), classes.get(sid)
        if result == NO_MATCHING_ARM:
            excluded[sid] = NO_MATCH_REASON
            continue
        if grade is None or grade.cls is None or grade.cls in ruleset.classes_not_counted:
            continue
        uncertain += not grade.certain
        if result is not None and result in _NOT_STATED:
            # Its arms may or may not match: counted the worse way, so the level is a lower bound.
            unsure_arms += 1
            text, (result, what) = result, _NOT_STATED[result]
            if result != opposed:
                excluded[sid] = f"{what} not stated: never counted as support"
                continue
            worse_case.append(f"{sid} ({ARM_NOTES[text][1]})")
        if result == wanted:
            support.append((sid, grade.cls))
        elif result == opposed:
            against.append((sid, grade.cls))
    counts = {"supporting": _counts(support), "opposing": _counts(against)}
    level, reason = _level_from(support, against, ruleset)
    notes = [f"supporting {_describe(counts['supporting'])}", f"opposing {_describe(counts['opposing'])}"]
    if uncertain:
        notes.append(f"{uncertain} class(es) are lower bounds")
    if worse_case:
        notes.append(f"counted as opposing: {', '.join(worse_case)}")
    if excluded:
        notes.append(f"not counted: {', '.join(f'{sid} ({why})' for sid, why in excluded.items())}")
    return LevelResult(
        level,
        "computed",
        f"{reason} ({'; '.join(notes)})",
        ruleset.id,
        certain=uncertain == 0 and unsure_arms == 0,
        counts=counts,
        excluded=excluded,
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
