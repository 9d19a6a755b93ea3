"""The evidence table: every source's verdict (guideline recommendations and other sources'
verdicts) grouped by indication, each in its own scale, with its linked studies counted by
direction (a negative study is never counted as supporting). Built from SearchIndex.iter_hits."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .models import level_rank
from .query import Query
from .vocab import Vocabularies

if TYPE_CHECKING:
    from .search import SearchIndex

DIRECTIONS = ("supporting", "opposing", "inconclusive", "not-reported", "not-counted")
VERDICT_TYPES = ("recommendation", "verdict")


@dataclass(frozen=True)
class Row:
    """One verdict as a table row."""

    id: str
    type: str
    question: str
    question_title: str
    kind: str
    protocol: str
    target: str
    side: str
    coil: str
    outcome: str
    population: str
    level: str  # the published Lefaucheur level or bound (recommendations only)
    grades: tuple[dict[str, Any], ...]  # every grade in its own scale
    direction: str
    guideline: str  # the source's short citation
    guideline_key: str
    guideline_year: str
    search_cutoff: str
    studies_by_direction: dict[str, int]
    supporting_by_class: dict[str, int]  # class ('III+' = computed lower bound) -> supporting studies
    counted_studies: tuple[str, ...]  # verified links (the source's own)
    candidate_studies: tuple[str, ...]  # the curator's candidates
    computed_level: str | None
    computed_lower_bound: bool  # the computed level rests on lower-bound classes
    ruleset: str | None
    verification: str
    source_location: str
    studies: tuple[dict[str, Any], ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class Group:
    indication: str
    label: str
    rows: tuple[Row, ...]


def evidence_table(where: SearchIndex | Path, query: Query) -> list[Group]:
    """Verdicts matching `query`, grouped by indication; published Lefaucheur levels first, then
    verdicts in other scales (never ranked against them), then bounds."""
    query = replace(
        query, filters=tuple(f for f in query.filters if f[0] != "type") + (("type", VERDICT_TYPES),)
    )
    from .search import as_index  # the search engine is imported when a table is made

    index = as_index(where)
    vocab = index.vocab()
    groups: dict[str, list[Row]] = {}
    for hit in index.iter_hits(query):
        data = hit.data
        record = data.get("record", {})
        indication = record.get("indication") or next(iter(hit.fields.get("indication", "").split()), "")
        groups.setdefault(indication, []).append(_row(hit.id, hit.type, data, record, vocab))
    out = []
    for indication, rows in groups.items():
        rows.sort(key=lambda r: (_rank(r), r.guideline_year, r.id))
        out.append(Group(indication, vocab.label("indications", indication), tuple(rows)))
    out.sort(key=lambda g: (min(_rank(r) for r in g.rows), g.label))
    return out


def _rank(row: Row) -> int:
    return level_rank(row.level) if row.type == "recommendation" else 4


def _short(vocab: Vocabularies, vocabulary: str, ids: list[str], joiner: str = ", ") -> str:
    return joiner.join(vocab.short_label(vocabulary, i) for i in ids)


def class_key(study: dict[str, Any]) -> str:
    """'III', or 'III+' for a computed lower bound (Class III or better)."""
    grade = study.get("class") or {}
    cls = grade.get("cls") or "?"
    return cls + ("+" if grade.get("basis") == "computed" and grade.get("certain") is False else "")


def _row(doc_id: str, kind: str, data: dict[str, Any], record: dict[str, Any], vocab: Vocabularies) -> Row:
    labels = data.get("labels", {})
    verdict = data.get("verdict") or {}
    question = data.get("question") or {}
    computed = data.get("computed") or {}
    studies = data.get("studies") or []
    by_direction = {d: 0 for d in DIRECTIONS}
    supporting: dict[str, int] = {}
    for study in studies:
        by_direction[study.get("group") or "not-reported"] += 1
        if study.get("group") == "supporting":
            supporting[class_key(study)] = supporting.get(class_key(study), 0) + 1
    if kind == "recommendation":
        what = record
        level = record.get("level") or record.get("level_bound") or ""
    else:
        what, level = {}, ""
    source = verdict.get("source") or {}
    return Row(
        id=doc_id,
        type=kind,
        question=question.get("id", ""),
        question_title=question.get("title", ""),
        kind=verdict.get("kind_label", ""),
        protocol=_short(vocab, "protocols", what.get("protocol", []), " + "),
        target=_short(vocab, "targets", what.get("target", [])),
        side=", ".join(i["label"] for i in labels.get("side", [])),
        coil=_short(vocab, "coils", what.get("coil", [])),
        outcome=labels.get("outcome_domain", ""),
        population=record.get("population") or "",
        level=level,
        grades=tuple(verdict.get("grades") or ()),
        direction=verdict.get("direction") or "",
        guideline=source.get("short", ""),
        guideline_key=source.get("key", ""),
        guideline_year=str(source.get("year") or ""),
        search_cutoff=verdict.get("search_cutoff") or "",
        studies_by_direction=by_direction,
        supporting_by_class=dict(sorted(supporting.items())),
        counted_studies=tuple(s["id"] for s in studies if s.get("link") == "counted"),
        candidate_studies=tuple(s["id"] for s in studies if s.get("link") != "counted"),
        computed_level=computed.get("level") if computed.get("status") == "computed" else None,
        computed_lower_bound=bool(computed) and computed.get("certain") is False,
        ruleset=computed.get("ruleset"),
        verification=record.get("verification", ""),
        source_location=(record.get("source") or {}).get("location", ""),
        studies=tuple(studies),
    )
