"""Counts for `tmskb stats`: references, records, verdicts per question, studies by condition and class."""

from __future__ import annotations

from typing import Any

from .pipeline import KB
from .questions import covering, verdicts_on


def statistics(kb: KB) -> dict[str, Any]:
    """Counts for `tmskb stats`: references by status, recommendations by guideline and level,
    studies by condition and class (stated or computed)."""
    refs: dict[str, int] = {}
    for ref in kb.references.values():
        refs[ref.verification or "missing"] = refs.get(ref.verification or "missing", 0) + 1
    recs: dict[str, dict[str, int]] = {}
    for rec in kb.recommendations.values():
        level = rec.level or (rec.level_bound or "no level")
        table = recs.setdefault(rec.guideline, {})
        table[level] = table.get(level, 0) + 1
    conditions: dict[str, int] = {}
    for study in kb.studies.values():
        for condition in study.condition:
            label = kb.vocab.label("indications", condition)
            conditions[label] = conditions.get(label, 0) + 1
    classes: dict[str, int] = {}
    for result in kb.classes.values():
        key = f"{result.cls or 'undetermined'} ({result.basis}{'' if result.certain else ', lower bound'})"
        classes[key] = classes.get(key, 0) + 1
    return {
        "totals": {
            "references": len(kb.references),
            "studies": len(kb.studies),
            "recommendations": len(kb.recommendations),
            "questions": len(kb.questions),
            "verdicts (other sources)": len(kb.verdicts),
            "scales": len(kb.scales),
            "knowledge pages": len(kb.knowledge),
        },
        "sources' verdicts per question (own; with those of covering questions)": _verdict_counts(kb),
        "references by verification": dict(sorted(refs.items())),
        "recommendations by guideline and level": {
            k: dict(sorted(v.items())) for k, v in sorted(recs.items())
        },
        "studies by condition": dict(sorted(conditions.items(), key=lambda kv: (-kv[1], kv[0]))),
        "studies by class": dict(sorted(classes.items())),
    }


def _verdict_counts(kb: KB) -> dict[str, str]:
    """Per question: how many sources give a verdict on it, and with the covering questions'."""
    out = {}
    for question in sorted(kb.questions.values(), key=lambda q: q.id):
        own = verdicts_on(kb, question.id)
        shown = own + [v for broad in covering(kb, question) for v in verdicts_on(kb, broad.id)]
        if shown:
            out[question.id] = f"{len(own)}; {len(shown)}"
    return out
