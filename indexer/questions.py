"""Clinical questions and every source's verdict on them, each in the source's own scale.

Builds the plain data the question page, the API and exports show: the verdicts on a question
(its own, then those of the questions that cover it, labelled), the linked studies grouped by
the direction of the result that counts for the question, with their class (lower bounds
marked), size, year, how each was linked and whether it appeared after a source's search
cut-off, and the level the grading engine computes from them, labelled with its rule set.
Nothing here converts a verdict into another scale.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import dose, grading, pictures
from .models import (
    Question,
    Recommendation,
    Source,
    Study,
    Verdict,
    direction_group,
    level_rank,
)

if TYPE_CHECKING:
    from .pipeline import KB

LEFAUCHEUR_SCALE = "lefaucheur-level"
KIND_LABELS = {
    "guideline-recommendation": "Guideline recommendation",
    "systematic-review": "Systematic review",
    "meta-analysis": "Meta-analysis",
    "consensus-statement": "Consensus statement",
}
DIRECTION_LABELS = {
    "for": "for the intervention",
    "against": "against the intervention",
    "no-recommendation": "no recommendation",
}
GROUP_LABELS = {
    "supporting": "Supporting: benefit shown",
    "opposing": "Opposing: no benefit over sham or control",
    "inconclusive": "Inconclusive or mixed",
    "not-reported": "Result not reported",
    "not-counted": "Linked but not counted for this question",
}
GROUPS = tuple(GROUP_LABELS)


# -- coverage ------------------------------------------------------------------------------------


def covers(kb: KB, broad: Question, narrow: Question) -> bool:
    """True if `broad` asks the same or a broader question than `narrow` (computed, never curated):
    its condition is the same or broader, and each part of its intervention is any (empty) or
    the same or broader."""
    if not kb.within("indications", narrow.condition, broad.condition):
        return False
    if broad.outcome_domain and broad.outcome_domain != narrow.outcome_domain:
        return False
    for name, vocabulary in (
        ("protocol", "protocols"),
        ("target", "targets"),
        ("side", "sides"),
        ("coil", "coils"),
    ):
        wide, tight = getattr(broad.intervention, name), getattr(narrow.intervention, name)
        if not wide:
            continue
        if not tight or not all(any(kb.within(vocabulary, t, w) for w in wide) for t in tight):
            return False
    return True


def covering(kb: KB, question: Question) -> list[Question]:
    """Questions that cover `question` (not itself), nearest first (fewest broadenings)."""
    found = [q for q in kb.questions.values() if q.id != question.id and covers(kb, q, question)]
    return sorted(found, key=lambda q: (_breadth(kb, q), q.id))


def _breadth(kb: KB, question: Question) -> int:
    what = question.intervention
    empty = sum(not getattr(what, n) for n in ("protocol", "target", "side", "coil"))
    return len(kb.vocab.ancestors("indications", question.condition)) * -1 + empty * 10


def relation(kb: KB, broad: Question, narrow: Question) -> str:
    """Plain words for how a covering question relates: 'covers neuropathic pain in general'."""
    parts = []
    if broad.condition != narrow.condition:
        general = kb.vocab.label("indications", broad.condition).lower()
        specific = kb.vocab.label("indications", narrow.condition).lower()
        parts.append(f"covers {general} in general; {specific} is one of its kinds")
    widened = [
        label
        for name, label in (("protocol", "protocols"), ("target", "targets"), ("side", "sides"))
        if getattr(narrow.intervention, name) and not getattr(broad.intervention, name)
    ]
    if widened:
        parts.append("any " + " and ".join(w.rstrip("s") for w in widened) + " of rTMS")
    broader_protocol = [p for p in broad.intervention.protocol if p not in narrow.intervention.protocol]
    if broader_protocol and not widened:
        parts.append(f"asks about {', '.join(kb.vocab.label('protocols', p) for p in broader_protocol)}")
    return "; ".join(parts) or "asks a broader question"


# -- verdicts ------------------------------------------------------------------------------------


def verdicts_on(kb: KB, question_id: str) -> list[Recommendation | Verdict]:
    """Every recommendation and verdict answering this question."""
    found: list[Recommendation | Verdict] = [
        r for r in kb.recommendations.values() if r.question == question_id
    ]
    found += [v for v in kb.verdicts.values() if v.question == question_id]
    return sorted(found, key=lambda r: (-(_year(kb, r) or 0), r.id))


def _source_key(record: Recommendation | Verdict) -> str:
    return record.guideline if isinstance(record, Recommendation) else record.source_reference


def _short_source(kb: KB, record: Recommendation | Verdict) -> str:
    ref = kb.reference(_source_key(record))
    return ref.short if ref else _source_key(record)


def _year(kb: KB, record: Recommendation | Verdict) -> int | None:
    ref = kb.reference(_source_key(record))
    return ref.year if ref else None


def grades_of(kb: KB, record: Recommendation | Verdict) -> list[dict[str, Any]]:
    """The verdict's grades, each with its scale's name and the value's label and meaning."""
    pairs: list[tuple[str, str, str | None]]
    if isinstance(record, Recommendation):
        if record.level:
            pairs = [(LEFAUCHEUR_SCALE, record.level, None)]
        elif record.level_bound:
            label = f"Below Level {record.level_bound[-1]} (exact level not verified)"
            pairs = [(LEFAUCHEUR_SCALE, record.level_bound, label)]
        else:
            pairs = []
    else:
        pairs = [(g.scale, g.value, None) for g in record.grades]
    out = []
    for scale_id, value, fixed in pairs:
        scale = kb.scales.get(scale_id)
        item = scale.get(value) if scale else None
        out.append(
            {
                "scale": scale_id,
                "scale_name": scale.name if scale else scale_id,
                "measures": scale.measures if scale else "",
                "value": value,
                "label": fixed or (item.label if item else value),
                "meaning": item.meaning if item else None,
                "scale_verification": scale.verification if scale else None,
            }
        )
    return out


def verdict_view(kb: KB, record: Recommendation | Verdict) -> dict[str, Any]:
    """One source's verdict as shown side by side with the others (never in another's scale)."""
    ref = kb.reference(_source_key(record))
    if isinstance(record, Recommendation):
        kind, direction = (
            "guideline-recommendation",
            {"efficacy": "for", "inefficacy": "against"}.get(record.direction or ""),
        )
        effect, inclusion, population = None, None, record.population
        cutoff = record.search_cutoff
    else:
        kind, direction = record.kind, record.direction
        effect = _plain(record.effect) if record.effect else None
        inclusion, population, cutoff = record.inclusion, record.population, record.search_cutoff
    return {
        "id": record.id,
        "type": "recommendation" if isinstance(record, Recommendation) else "verdict",
        "question": record.question,
        "source": {
            "key": ref.key if ref else _source_key(record),
            "short": ref.short if ref else _source_key(record),
            "title": ref.title if ref else "",
            "venue": ref.venue if ref else "",
            "year": ref.year if ref else None,
            "doi": ref.doi if ref else None,
            "verification": ref.verification if ref else None,
        },
        "kind": kind,
        "kind_label": KIND_LABELS.get(kind, kind),
        "grades": grades_of(kb, record),
        "direction": direction,
        "direction_label": DIRECTION_LABELS.get(direction or "", "direction not read"),
        "statement": record.statement,
        "effect": effect,
        "search_cutoff": cutoff,
        "inclusion": inclusion,
        "population": population,
        "verification": record.verification,
        "location": record.source.location,
        "url": record.source.url,
        "notes": record.notes,
    }


def _plain(value: Any) -> Any:
    from dataclasses import asdict

    return asdict(value)


# -- studies -------------------------------------------------------------------------------------


def _as_recommendation(question: Question) -> Recommendation:
    """The question in the shape the grading engine counts studies for (efficacy direction)."""
    what = question.intervention
    return Recommendation(
        id=question.id,
        path=question.path,
        line=question.line,
        guideline="",
        indication=question.condition,
        outcome_domain=question.outcome_domain,
        population=question.population,
        target=what.target,
        side=what.side,
        protocol=what.protocol,
        coil=what.coil,
        level=None,
        level_bound=None,
        direction="efficacy",
        statement=question.title,
        candidate_studies=(),
        source=Source("question"),
        verification=question.verification,
    )


def _fits(kb: KB, question: Question, study: Study) -> bool:
    """The study is about the question's condition (or a narrower one)."""
    return any(kb.within("indications", c, question.condition) for c in study.condition)


def studies_on(kb: KB, question: Question, shown: list[Recommendation | Verdict]) -> list[dict[str, Any]]:
    """Studies linked by the verdicts shown, that fit the question, each with its links."""
    links: dict[str, list[dict[str, Any]]] = {}
    for record in shown:
        who = _short_source(kb, record)
        for link in record.counted_studies:
            links.setdefault(link.study, []).append(
                {"verdict": record.id, "source": who, "kind": "counted", "location": link.location}
            )
        for sid in record.candidate_studies:
            links.setdefault(sid, []).append(
                {"verdict": record.id, "source": who, "kind": "candidate", "location": None}
            )
    for sid in question.candidate_studies:
        links.setdefault(sid, []).append(
            {"verdict": question.id, "source": "this question", "kind": "candidate", "location": None}
        )
    target = _as_recommendation(question)
    cutoffs = [(_short_source(kb, r), r.search_cutoff) for r in shown]
    out = []
    for sid, how in links.items():
        study = kb.studies.get(sid)
        if study is None or not _fits(kb, question, study):
            continue
        result = grading.arm_result(target, study, kb.within)
        note = grading.ARM_NOTES.get(result) if result is not None else None
        group = "not-counted" if note and note[0] is None else direction_group(note[0] if note else result)
        ref = kb.reference(study.reference)
        year = ref.year if ref else None
        cls = kb.classes.get(sid)
        arms = grading.matching_arms(target, study, kb.within) or list(study.arms)
        out.append(
            {
                "id": sid,
                "short": ref.short if ref else sid,
                "dose": [dose.arm_dose(study, arm) for arm in arms],
                "reference": {
                    "title": ref.title if ref else "",
                    "venue": ref.venue if ref else "",
                    "doi": ref.doi if ref else None,
                },
                "completeness": dose.study_dose(study)["completeness"],
                "year": year,
                "group": group,
                "result": note[0] if note else result,
                "result_note": note[1] if note else None,
                "class": _class_view(cls),
                "patients_total": study.patients_total,
                "patients_active": study.patients_active,
                "links": how,
                "after_cutoff": [who for who, cut in cutoffs if cut and year and year > int(cut[:4])],
                "verification": study.verification,
            }
        )
    order = {g: i for i, g in enumerate(GROUPS)}
    return sorted(
        out, key=lambda s: (order[s["group"]], (s["class"] or {}).get("rank", 9), -(s["year"] or 0))
    )


def _class_view(cls: grading.ClassResult | None) -> dict[str, Any] | None:
    if cls is None:
        return None
    from .models import class_rank

    return {
        "cls": cls.cls,
        "basis": cls.basis,
        "lower_bound": cls.basis == "computed" and not cls.certain,
        "ruleset": cls.ruleset,
        "reason": cls.reason,
        "rank": class_rank(cls.cls),
    }


def computed_level(kb: KB, question: Question, studies: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The level the default rule set computes from the question's linked studies (labelled)."""
    if kb.ruleset is None or not studies:
        return None
    target = replace(_as_recommendation(question), candidate_studies=tuple(s["id"] for s in studies))
    results = {s["id"]: grading.arm_result(target, kb.studies[s["id"]], kb.within) for s in studies}
    level = grading.compute_level(target, results, kb.classes, kb.ruleset)
    rests_on_bounds = any((s["class"] or {}).get("lower_bound") for s in studies)
    only_candidates = all(link["kind"] == "candidate" for s in studies for link in s["links"])
    return {
        "level": level.level,
        "status": level.status,
        "reason": level.reason,
        "ruleset": level.ruleset,
        "ruleset_name": kb.ruleset.name,
        "ruleset_verification": kb.ruleset.verification,
        "rests_on_lower_bounds": rests_on_bounds,
        "from_candidates_only": only_candidates,
        "excluded": dict(getattr(level, "excluded", {}) or {}),
    }


def question_view(kb: KB, question: Question) -> dict[str, Any]:
    """Everything the question page shows, as plain data (stored with the question document)."""
    own = verdicts_on(kb, question.id)
    broader = covering(kb, question)
    panel = [{**verdict_view(kb, r), "covers": None} for r in own]
    for broad in broader:
        for record in verdicts_on(kb, broad.id):
            panel.append(
                {
                    **verdict_view(kb, record),
                    "covers": {
                        "question": broad.id,
                        "title": broad.title,
                        "relation": relation(kb, broad, question),
                    },
                }
            )
    shown = own + [r for b in broader for r in verdicts_on(kb, b.id)]
    studies = studies_on(kb, question, shown)
    narrower = [q for q in kb.questions.values() if q.id != question.id and covers(kb, question, q)]
    return {
        "verdicts": panel,
        "broader": [{"id": q.id, "title": q.title, "relation": relation(kb, q, question)} for q in broader],
        "narrower": [{"id": q.id, "title": q.title} for q in sorted(narrower, key=lambda q: q.id)],
        "studies": studies,
        "groups": [
            {"group": g, "label": GROUP_LABELS[g], "count": sum(s["group"] == g for s in studies)}
            for g in GROUPS
        ],
        "computed": computed_level(kb, question, studies),
        "dose_plot": pictures.dose_plot(studies),
        "comparison_columns": [{"key": k, "label": label} for k, label in COMPARISON_COLUMNS.items()],
    }


# The studies side by side on a question page: column key -> heading. Sorting reads the first
# matching arm's value; empty values sort last either way.
COMPARISON_COLUMNS = {
    "study": "Study",
    "group": "Direction",
    "n": "Patients (n)",
    "class": "Class",
    "frequency": "Frequency (Hz)",
    "intensity": "Intensity",
    "pulses": "Pulses/session",
    "sessions": "Sessions",
    "total": "Total pulses",
    "navigation": "Navigation",
    "coil": "Coil",
    "result": "Result",
}


def _sort_value(study: dict[str, Any], column: str) -> Any:
    arm = (study.get("dose") or [{}])[0]
    if column == "study":
        return (study["short"].lower(), study.get("year") or 0)
    if column == "group":
        return GROUPS.index(study["group"])
    if column == "n":
        return study.get("patients_total")
    if column == "class":
        return (study.get("class") or {}).get("rank")
    values = {
        "frequency": arm.get("frequency_hz"),
        "intensity": arm.get("intensity_percent"),
        "pulses": arm.get("pulses_per_session"),
        "sessions": arm.get("sessions"),
        "total": arm.get("total_pulses"),
        "navigation": None if arm.get("navigated") is None else not arm.get("navigated"),
        "coil": ",".join(arm.get("coil") or []) or None,
        "result": study.get("result"),
    }
    return values.get(column)


def sort_comparison(
    studies: list[dict[str, Any]], column: str, descending: bool = False
) -> list[dict[str, Any]]:
    """The comparison table in the order a column header asks for; unknown columns keep the order."""
    if column not in COMPARISON_COLUMNS:
        return list(studies)
    known = [s for s in studies if _sort_value(s, column) is not None]
    unknown = [s for s in studies if _sort_value(s, column) is None]
    return sorted(known, key=lambda s: _sort_value(s, column), reverse=descending) + unknown


def evidence_map_view(kb: KB) -> dict[str, Any]:
    """Conditions x interventions: each cell a question with its sources' verdicts and its studies.

    Data only (stored with each index generation); pictures.evidence_map lays it out when shown."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    rows: dict[str, str] = {}
    columns: dict[str, str] = {}
    for question in sorted(kb.questions.values(), key=lambda q: q.id):
        row = kb.vocab.label("indications", question.condition)
        column = _intervention_label(kb, question)
        rows[question.condition] = row
        columns[column] = column
        view_verdicts = [verdict_view(kb, r) for r in verdicts_on(kb, question.id)]
        cells.setdefault((question.condition, column), []).append(
            {
                "question": question.id,
                "title": question.title,
                "verdicts": [
                    {
                        "source": v["source"]["short"],
                        "grades": [g["label"] for g in v["grades"]] or ["grade not read"],
                    }
                    for v in view_verdicts
                ],
                "studies": len(studies_on(kb, question, list(verdicts_on(kb, question.id)))),
            }
        )
    return {
        "rows": [{"id": k, "label": v} for k, v in sorted(rows.items(), key=lambda kv: kv[1])],
        "columns": [{"id": c, "label": c} for c in sorted(columns)],
        "cells": [{"row": r, "column": c, "questions": qs} for (r, c), qs in sorted(cells.items())],
    }


def _intervention_label(kb: KB, question: Question) -> str:
    """'HF-rTMS · M1', 'LF-rTMS · DLPFC', 'rTMS · any target': short, for the map's columns."""
    what = question.intervention
    protocols = "/".join(kb.vocab.short_label("protocols", p) for p in what.protocol) or "rTMS"
    targets = "/".join(kb.vocab.short_label("targets", t) for t in what.target) or "any target"
    return f"{protocols} · {targets}"


def best_rank(kb: KB, question: Question) -> int:
    """Sort helper: the strongest published Lefaucheur level among its own verdicts, if any."""
    ranks = [level_rank(r.level) for r in verdicts_on(kb, question.id) if isinstance(r, Recommendation)]
    return min(ranks, default=9)


def grade_report(kb: KB) -> dict[str, Any]:
    """`tmskb grade` as data: per question, each source's verdict in its own scale, and for
    recommendations the published vs computed Lefaucheur level; then the question's computed level."""
    comparisons = kb.comparisons()
    out = []
    for question in sorted(kb.questions.values(), key=lambda q: q.id):
        view = question_view(kb, question)
        rows = []
        for verdict in view["verdicts"]:
            row: dict[str, Any] = {
                "id": verdict["id"],
                "type": verdict["type"],
                "source": verdict["source"]["short"],
                "grades": [{"scale": g["scale"], "label": g["label"]} for g in verdict["grades"]],
                "covers": (verdict["covers"] or {}).get("relation"),
            }
            comparison = comparisons.get(verdict["id"])
            if comparison is not None:
                row.update(
                    published=comparison.published,
                    computed=comparison.computed,
                    agreement=comparison.verdict,
                    reason=comparison.reason,
                )
            rows.append(row)
        out.append(
            {"id": question.id, "title": question.title, "verdicts": rows, "computed": view["computed"]}
        )
    return {"questions": out}
