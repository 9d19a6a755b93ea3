"""The guideline-style evidence table: recommendations grouped by indication, from search()."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .models import level_rank
from .search import Query, SearchIndex, as_index
from .vocab import Vocabularies


@dataclass(frozen=True)
class Row:
    """One recommendation as a table row."""

    id: str
    protocol: str
    target: str
    side: str
    coil: str
    outcome: str
    population: str
    level: str
    direction: str
    guideline: str
    guideline_year: str
    studies_by_class: dict[str, int]
    computed_level: str | None
    ruleset: str | None
    verification: str
    source_location: str


@dataclass(frozen=True)
class Group:
    indication: str
    label: str
    rows: tuple[Row, ...]


def evidence_table(where: SearchIndex | Path, query: Query) -> list[Group]:
    """Recommendations matching `query`, grouped by indication, strongest level first."""
    query = replace(
        query, filters=tuple(f for f in query.filters if f[0] != "type") + (("type", ("recommendation",)),)
    )
    index = as_index(where)
    vocab = index.vocab()
    groups: dict[str, list[Row]] = {}
    for hit in index.iter_hits(query):
        data = hit.data
        record = data.get("record", {})
        groups.setdefault(record.get("indication", ""), []).append(_row(hit.id, data, record, vocab))
    out = []
    for indication, rows in groups.items():
        rows.sort(key=lambda r: (level_rank(r.level), r.guideline_year, r.protocol))
        out.append(Group(indication, vocab.label("indications", indication), tuple(rows)))
    out.sort(key=lambda g: (min(level_rank(r.level) for r in g.rows), g.label))
    return out


def _short(vocab: Vocabularies, vocabulary: str, ids: list[str], joiner: str = ", ") -> str:
    return joiner.join(vocab.short_label(vocabulary, i) for i in ids)


def _row(doc_id: str, data: dict[str, Any], record: dict[str, Any], vocab: Vocabularies) -> Row:
    labels = data.get("labels", {})
    computed = data.get("computed") or {}
    by_class: dict[str, int] = {}
    for study in data.get("supporting", []):
        cls = (study.get("class") or {}).get("cls") or "?"
        by_class[cls] = by_class.get(cls, 0) + 1
    guideline = data.get("guideline", {})
    return Row(
        id=doc_id,
        protocol=_short(vocab, "protocols", record.get("protocol", []), " + "),
        target=_short(vocab, "targets", record.get("target", [])),
        side=", ".join(i["label"] for i in labels.get("side", [])),
        coil=_short(vocab, "coils", record.get("coil", [])),
        outcome=labels.get("outcome_domain", ""),
        population=record.get("population") or "",
        level=record.get("level") or record.get("level_bound") or "",
        direction=record.get("direction") or "",
        guideline=guideline.get("short", record.get("guideline", "")),
        guideline_year=str(guideline.get("year") or ""),
        studies_by_class=dict(sorted(by_class.items())),
        computed_level=computed.get("level") if computed.get("status") == "computed" else None,
        ruleset=computed.get("ruleset"),
        verification=record.get("verification", ""),
        source_location=(record.get("source") or {}).get("location", ""),
    )
