"""Turn a graded KB into flat index documents: facet values, search text and display data.

Nothing here imports Whoosh; index.py decides how these fields are stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from typing import Any

from . import grading
from . import index as idx
from .fields import FACETS, REFERENCE_PREFIX, reference_id
from .grading import ClassResult
from .models import NO_RANK, Knowledge, Recommendation, Reference, Study, class_rank, level_rank
from .pipeline import KB, counted_results
from .vocab import FIELD_VOCABULARY

__all__ = ["REFERENCE_PREFIX", "build_documents", "index_extras", "plain", "reference_document", "reference_id"]


def build_documents(kb: KB) -> list[dict[str, Any]]:
    """One document per reference and record, each with a content hash."""
    cited_by: dict[str, list[str]] = {}
    for record in kb.records:
        for key in _keys(record):
            cited_by.setdefault(kb.aliases.get(key, key), []).append(record.id)
    guidelines_of: dict[str, list[str]] = {}
    for rec in kb.recommendations.values():
        for sid in rec.supporting_studies:
            guidelines_of.setdefault(sid, []).append(kb.aliases.get(rec.guideline, rec.guideline))
    docs = []
    for ref in kb.references.values():
        docs.append(reference_document(ref, cited_by.get(ref.key, []), kb))
    comparisons = kb.comparisons()
    for record in kb.records:
        if isinstance(record, Study):
            doc = _study_doc(kb, record, sorted(set(guidelines_of.get(record.id, []))))
        elif isinstance(record, Recommendation):
            doc = _recommendation_doc(kb, record, comparisons.get(record.id))
        else:
            doc = _knowledge_doc(kb, record)
        docs.append(_with_extras(doc, record, kb))
    for doc in docs:
        doc["hash"] = content_hash(doc)
    return docs


def _with_extras(doc: dict[str, Any], source: Any, kb: KB | None) -> dict[str, Any]:
    """Fill the facets the registry defines with an `extract` function (fields.py)."""
    for facet in FACETS:
        if facet.extract is not None:
            values = [str(v) for v in facet.extract(source, kb) if v]
            doc[facet.name] = values if facet.multi else (values[0] if values else "")
    return doc


def known_references(references: Iterable[Reference]) -> list[dict[str, Any]]:
    """What duplicate detection needs about each reference, saved with each index generation."""
    out = []
    for r in references:
        first = f"{r.authors[0].von} {r.authors[0].last}".strip() if r.authors else ""
        out.append(
            {
                "key": r.key,
                "doi": r.doi,
                "pmid": r.pmid,
                "pmcid": r.pmcid,
                "title": r.title,
                "year": r.fields.get("year", ""),
                "first_author": first,
            }
        )
    return out


def index_extras(kb: KB) -> dict[str, Any]:
    """JSON files stored beside each generation, so the app and `tmskb add` need not read kb/."""
    return {
        idx.VOCAB: kb.vocab.to_json(),
        idx.RULESETS: [plain(r) for r in kb.rulesets.values()],
        idx.KNOWN: known_references(kb.references.values()),
        idx.ALIASES: kb.aliases,
    }


def content_hash(doc: dict[str, Any]) -> str:
    """Stable hash of a document's content (excluding any previous hash)."""
    body = {k: v for k, v in doc.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _keys(record: Study | Recommendation | Knowledge) -> list[str]:
    if isinstance(record, Study):
        return [record.reference]
    if isinstance(record, Recommendation):
        return [record.guideline]
    return list(record.references)


def _labels(kb: KB, field: str, ids: tuple[str, ...]) -> list[dict[str, str]]:
    vocabulary = FIELD_VOCABULARY[field]
    return [{"id": i, "label": kb.vocab.label(vocabulary, i)} for i in ids]


def _concepts(kb: KB, field: str, ids: tuple[str, ...]) -> list[str]:
    """Ids plus their broader terms, so 'neuropathic pain' also finds postherpetic neuralgia."""
    vocabulary = FIELD_VOCABULARY[field]
    out: list[str] = []
    for i in ids:
        out += [i, *kb.vocab.ancestors(vocabulary, i)]
    return out


def _citation(ref: Reference | None) -> dict[str, Any]:
    if ref is None:
        return {}
    return {
        "key": ref.key,
        "short": ref.short,
        "title": ref.title,
        "venue": ref.venue,
        "year": ref.year,
        "verification": ref.verification,
        "doi": ref.doi,
        "pmid": ref.pmid,
    }


def _base(
    doc_id: str,
    kind: str,
    title: str,
    summary: str,
    year: int | None,
    verification: str | None,
    body: list[str],
) -> dict[str, Any]:
    return {
        "id": doc_id,
        "type": kind,
        "title": title,
        "summary": summary,
        "year": str(year) if year else "",
        "year_sort": 9999 - year if year else 9999,
        "verification": verification or "",
        "level": "",
        "direction": "",
        "class": "",
        "indication": [],
        "target": [],
        "side": [],
        "protocol": [],
        "guideline": [],
        "concepts": [],
        "authors": "",
        "level_rank": NO_RANK,
        "class_rank": NO_RANK,
        "text": " ".join(part for part in (title, summary, *body) if part),
    }


def reference_document(ref: Reference, cited_by: list[str], kb: KB | None = None) -> dict[str, Any]:
    """The index document of one BibTeX entry (it needs nothing else from the KB)."""
    title = ref.title or f"{ref.short}, {ref.venue}".strip(", ")
    summary = f"{ref.short}. {ref.venue}".strip()
    doc = _base(
        reference_id(ref.key),
        "reference",
        title,
        summary,
        ref.year,
        ref.verification,
        [
            ref.key,
            ref.fields.get("note", ""),
            ref.fields.get("howpublished", ""),
            ref.doi or "",
            ref.pmid or "",
        ],
    )
    doc["authors"] = _authors(ref)
    doc["data"] = {
        "key": ref.key,
        "fields": ref.fields,
        "entry_type": ref.entry_type,
        "short": ref.short,
        "authors": [plain(a) for a in ref.authors],
        "raw": ref.raw,
        "cited_by": cited_by,
        "verification": ref.verification,
        "path": ref.path,
        "line": ref.line,
    }
    return _with_extras(doc, ref, kb)


def _authors(ref: Reference | None) -> str:
    return " ".join(f"{a.first} {a.von} {a.last}" for a in ref.authors if not a.is_others) if ref else ""


def _class_data(result: ClassResult | None) -> dict[str, Any]:
    return plain(result) if result else {}


def _study_doc(kb: KB, study: Study, guidelines: list[str]) -> dict[str, Any]:
    ref = kb.reference(study.reference)
    arms = study.arms
    targets = tuple(dict.fromkeys(t for a in arms for t in a.target))
    sides = tuple(dict.fromkeys(s for a in arms for s in a.side))
    protocols = tuple(dict.fromkeys(p for a in arms for p in a.protocol))
    coils = tuple(dict.fromkeys(c for a in arms for c in a.coil))
    conditions = [kb.vocab.label("indications", c) for c in study.condition]
    target_labels = [kb.vocab.label("targets", t) for t in targets]
    protocol_labels = [kb.vocab.label("protocols", p).split(" (")[0] for p in protocols]
    who = ref.short if ref else study.reference
    title = f"{who}: {_what(protocol_labels, target_labels)} in {', '.join(conditions)}"
    freqs = [f"{a.frequency_hz:g} Hz" for a in arms if a.frequency_hz is not None]
    grade = kb.classes.get(study.id)
    body = [
        study.outcome_measure or "",
        study.notes or "",
        " ".join(freqs),
        kb.vocab.label("designs", study.design),
        *(_names(kb, "indications", study.condition)),
        *(_names(kb, "targets", targets)),
        *(_names(kb, "protocols", protocols)),
        *(_names(kb, "sides", sides)),
        *(_names(kb, "coils", coils)),
        ref.title if ref else "",
    ]
    doc = _base(study.id, "study", title, study.summary, ref.year if ref else None, study.verification, body)
    doc.update(
        {
            "indication": list(study.condition),
            "target": list(targets),
            "side": list(sides),
            "protocol": list(protocols),
            "guideline": guidelines,
            "class": grade.cls or "" if grade else "",
            "direction": "",
            "authors": _authors(ref),
            "class_rank": class_rank(grade.cls) if grade else NO_RANK,
            "concepts": _concepts(kb, "condition", study.condition)
            + _concepts(kb, "target", targets)
            + _concepts(kb, "protocol", protocols)
            + list(sides)
            + list(coils)
            + [study.design],
        }
    )
    doc["data"] = {
        "record": _record_fields(study),
        "reference": _citation(ref),
        "class": _class_data(grade),
        "labels": {
            "condition": _labels(kb, "condition", study.condition),
            "design": kb.vocab.label("designs", study.design),
        },
        "arms": [
            {
                **plain(a),
                "target_labels": _labels(kb, "target", a.target),
                "side_labels": _labels(kb, "side", a.side),
                "protocol_labels": _labels(kb, "protocol", a.protocol),
                "coil_labels": _labels(kb, "coil", a.coil),
            }
            for a in arms
        ],
        "ruleset": kb.ruleset.id if kb.ruleset else None,
        "guidelines": [{"key": g, "short": _short(kb, g)} for g in guidelines],
    }
    return doc


def _short(kb: KB, key: str) -> str:
    ref = kb.reference(key)
    return ref.short if ref else key


def _what(protocols: list[str], targets: list[str]) -> str:
    """'HF-rTMS of M1', or just the protocol when the source names no target."""
    protocol = ", ".join(protocols) or "rTMS"
    return f"{protocol} of {', '.join(targets)}" if targets else f"{protocol} (target not stated)"


def _names(kb: KB, vocabulary: str, ids: tuple[str, ...]) -> list[str]:
    """Labels, so plain words match; other names reach records through query expansion."""
    return [kb.vocab.label(vocabulary, i) for i in ids]


def _recommendation_doc(kb: KB, rec: Recommendation, comparison: grading.Comparison | None) -> dict[str, Any]:
    guideline = kb.reference(rec.guideline)
    indication = kb.vocab.label("indications", rec.indication)
    outcome = kb.vocab.label("outcomes", rec.outcome_domain) if rec.outcome_domain else ""
    protocols = " + ".join(kb.vocab.label("protocols", p).split(" (")[0] for p in rec.protocol)
    targets = ", ".join(kb.vocab.label("targets", t) for t in rec.target)
    if rec.level:
        grade = f"Level {rec.level}"
    else:
        grade = f"below Level {rec.level_bound[-1]}" if rec.level_bound else "level not verified"
    what = _what([protocols], [targets] if targets else [])
    title = f"{indication}{f' ({outcome.lower()} outcome)' if outcome else ''}: {what} — {grade}"
    year = guideline.year if guideline else None
    body = [
        rec.population or "",
        rec.notes or "",
        outcome,
        *(_names(kb, "indications", (rec.indication,))),
        *(_names(kb, "targets", rec.target)),
        *(_names(kb, "protocols", rec.protocol)),
        *(_names(kb, "sides", rec.side)),
        *(_names(kb, "coils", rec.coil)),
        guideline.title if guideline else "",
    ]
    doc = _base(rec.id, "recommendation", title, rec.statement, year, rec.verification, body)
    computed = kb.levels.get(rec.id)
    counted = counted_results(kb, rec)
    doc.update(
        {
            "level": rec.level or (rec.level_bound or ""),
            "direction": rec.direction or "",
            "authors": _authors(guideline),
            "indication": [rec.indication],
            "target": list(rec.target),
            "side": list(rec.side),
            "protocol": list(rec.protocol),
            "guideline": [rec.guideline],
            "level_rank": level_rank(rec.level or rec.level_bound),
            "concepts": _concepts(kb, "indication", (rec.indication,))
            + _concepts(kb, "target", rec.target)
            + _concepts(kb, "protocol", rec.protocol)
            + list(rec.side)
            + list(rec.coil)
            + ([rec.outcome_domain] if rec.outcome_domain else []),
        }
    )
    doc["data"] = {
        "record": _record_fields(rec),
        "guideline": _citation(guideline),
        "computed": plain(computed) if computed else None,
        "comparison": plain(comparison) if comparison else None,
        "supporting": [_supporting(kb, sid, counted.get(sid)) for sid in rec.supporting_studies],
        "labels": {
            "indication": indication,
            "outcome_domain": outcome,
            "target": _labels(kb, "target", rec.target),
            "side": _labels(kb, "side", rec.side),
            "protocol": _labels(kb, "protocol", rec.protocol),
            "coil": _labels(kb, "coil", rec.coil),
        },
        "ruleset": kb.ruleset.id if kb.ruleset else None,
    }
    return doc


def _supporting(kb: KB, sid: str, counted: str | None) -> dict[str, Any]:
    study = kb.studies.get(sid)
    ref = kb.reference(study.reference) if study else None
    return {
        "id": sid,
        "short": ref.short if ref else sid,
        "result": counted,
        "study_result": study.result if study else None,
        "class": _class_data(kb.classes.get(sid)),
    }


def _knowledge_doc(kb: KB, page: Knowledge) -> dict[str, Any]:
    body = [
        *(f"{s.heading} {s.text}" for s in page.sections),
        *(_names(kb, "indications", page.indication)),
    ]
    doc = _base(page.id, "knowledge", page.title, page.summary, None, page.verification, body)
    doc["indication"] = list(page.indication)
    doc["concepts"] = _concepts(kb, "indication", page.indication)
    doc["data"] = {
        "record": _record_fields(page),
        "references": [_citation(kb.reference(k)) for k in page.references],
    }
    return doc


def _record_fields(record: Study | Recommendation | Knowledge) -> dict[str, Any]:
    return dict(plain(record))


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def plain(value: Any) -> Any:
    """Dataclasses as dicts, tuples as lists; like dataclasses.asdict without its deep copies."""
    if value is None or isinstance(value, str | int | float):
        return value
    names = _FIELD_NAMES.get(type(value))
    if names is None and is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES[type(value)] = tuple(f.name for f in fields(value) if f.name != "lines")
    if names is not None:
        return {name: plain(getattr(value, name)) for name in names}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value
