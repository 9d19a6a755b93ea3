"""Grading rule sets: data files in kb/rulesets/, so curators can correct rules without code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import schema, yamlio
from .models import Problem, Source

# Facts the class rules may test; grading.study_facts derives them from a study.
FACTS = {
    "randomised": "patients were allocated at random",
    "controlled": "there is a control condition (sham or active)",
    "sham_controlled": "the control is sham stimulation",
    "assessor_blinded": "outcome assessment was masked (double-blind or assessor-blind)",
    "active_patients": "patients receiving active stimulation (all patients in a cross-over)",
    "has_flaws": "the curator noted a methodological flaw",
    "crossover": "the design is a cross-over (from the designs vocabulary)",
    "design": "the design id",
}


@dataclass(frozen=True)
class ClassRule:
    cls: str
    when: tuple[dict[str, Any], ...]  # alternatives; each maps fact -> wanted value
    meaning: str = ""


@dataclass(frozen=True)
class LevelRule:
    level: str
    any: tuple[dict[str, int], ...]  # alternatives; each maps class -> minimum count
    meaning: str = ""


@dataclass(frozen=True)
class RuleSet:
    id: str
    name: str
    source: Source
    verification: str
    description: str
    default: bool
    class_rules: tuple[ClassRule, ...]
    levels: tuple[LevelRule, ...]
    higher_class_counts_for_lower: bool = True
    classes_not_counted: tuple[str, ...] = ("IV",)
    conflict: str = "prevent"
    path: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} [{self.id}]"


def load_rulesets(rules_dir: Path, shown: str) -> tuple[dict[str, RuleSet], list[Problem]]:
    """Every rule set in kb/rulesets/*.yaml by id, and their problems."""
    rulesets: dict[str, RuleSet] = {}
    problems: list[Problem] = []
    for path in sorted(rules_dir.glob("*.yaml")):
        where = f"{shown}/{path.name}"
        try:
            located = yamlio.load(path.read_text(encoding="utf-8"))
        except yamlio.YamlError as exc:
            problems.append(Problem(where, exc.line, path.stem, "", exc.reason))
            continue
        errors = schema.validate(located, "ruleset", where, path.stem)
        errors += _fact_problems(located, where, path.stem)
        if errors:
            problems += errors
            continue
        ruleset = parse_ruleset(located.data, where)
        rulesets[ruleset.id] = ruleset
    defaults = [r for r in rulesets.values() if r.default]
    if rulesets and len(defaults) != 1:
        problems.append(
            Problem(
                shown,
                1,
                "",
                "default",
                f"{len(defaults)} rule sets are marked default",
                "mark exactly one rule set with default: true",
            )
        )
    return rulesets, problems


def _fact_problems(located: yamlio.Located, where: str, record: str) -> list[Problem]:
    problems = []
    for i, rule in enumerate(located.data.get("class_rules") or []):
        when = rule.get("when") if isinstance(rule, dict) else None
        alternatives = when if isinstance(when, list) else [when]
        for j, condition in enumerate(alternatives):
            for fact in condition or {}:
                if fact not in FACTS:
                    path = f"class_rules.{i}.when" + (f".{j}" if isinstance(when, list) else "")
                    problems.append(
                        Problem(
                            where,
                            located.line(f"{path}.{fact}"),
                            record,
                            f"{path}.{fact}",
                            f"unknown fact '{fact}'",
                            f"known facts: {', '.join(FACTS)}",
                        )
                    )
    return problems


def parse_ruleset(data: dict[str, Any], path: str = "") -> RuleSet:
    """Build a RuleSet from already-validated data."""
    levels = data["level_rules"]
    return RuleSet(
        id=data["id"],
        name=data["name"],
        source=Source(data["source"]["location"], data["source"].get("reference"), data["source"].get("url")),
        verification=data["verification"],
        description=data.get("description", "").strip(),
        default=bool(data.get("default", False)),
        class_rules=tuple(
            ClassRule(
                r["class"],
                tuple(r["when"] if isinstance(r["when"], list) else [r["when"]]),
                r.get("meaning", ""),
            )
            for r in data["class_rules"]
        ),
        levels=tuple(LevelRule(r["level"], tuple(r["any"]), r.get("meaning", "")) for r in levels["levels"]),
        higher_class_counts_for_lower=levels.get("higher_class_counts_for_lower", True),
        classes_not_counted=tuple(levels.get("classes_not_counted", ["IV"])),
        conflict=levels.get("conflict", "prevent"),
        path=path,
    )
