"""Turn a graded KB into flat index documents: facet values, search text and display data.

Nothing here imports Whoosh; index.py decides how these fields are stored.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Set
from dataclasses import fields, is_dataclass
from typing import Any

from . import dose, grading, questions
from . import index as idx
from .fields import DOSE_NUMBERS, FACETS, REFERENCE_PREFIX, reference_id
from .grading import ClassResult
from .models import (
    NO_RANK,
    Author,
    Knowledge,
    Question,
    Recommendation,
    Record,
    Reference,
    Scale,
    Study,
    Verdict,
    class_rank,
    direction_group,
    level_rank,
)
from .pipeline import KB, counted_results
from .validate import cited_keys
from .vocab import FIELD_VOCABULARY, fold

__all__ = [
    "REFERENCE_PREFIX",
    "build_documents",
    "index_extras",
    "plain",
    "reference_document",
    "reference_id",
    "source_labels",
]


def build_documents(kb: KB, only: Set[str] | None = None) -> list[dict[str, Any]]:
    """One document per reference and record, each with a content hash (only those whose ids
    are in `only`, if given: build.py re-builds the documents an edit can change)."""
    return list(iter_documents(kb, only))


def iter_documents(kb: KB, only: Set[str] | None = None) -> Iterator[dict[str, Any]]:
    """build_documents one by one, so a full build can index each while the next is made."""
    cited_by: dict[str, list[str]] = {}
    for record in kb.records:
        for key in _keys(record):
            cited_by.setdefault(kb.aliases.get(key, key), []).append(record.id)
    counted_by, candidate_for = _study_links(kb)
    for ref in kb.references.values():
        if only is None or reference_id(ref.key) in only:
            doc = reference_document(ref, cited_by.get(ref.key, []), kb)
            doc["hash"] = content_hash(doc)
            yield doc
    records = kb.records if only is None else [r for r in kb.records if r.id in only]
    if only is None:
        comparisons = kb.comparisons()
    else:
        comparisons = {
            r.id: grading.compare(r, kb.levels[r.id])
            for r in records
            if isinstance(r, Recommendation) and r.id in kb.levels
        }
    for record in records:
        if isinstance(record, Study):
            doc = _study_doc(kb, record, counted_by.get(record.id, []), candidate_for.get(record.id, []))
        elif isinstance(record, Recommendation):
            doc = _recommendation_doc(kb, record, comparisons.get(record.id))
        elif isinstance(record, Question):
            doc = _question_doc(kb, record)
        elif isinstance(record, Verdict):
            doc = _verdict_doc(kb, record)
        elif isinstance(record, Scale):
            doc = _scale_doc(kb, record)
        else:
            doc = _knowledge_doc(kb, record)
        doc = _with_extras(doc, record, kb)
        doc["hash"] = content_hash(doc)
        yield doc


def document_shares(kb: KB) -> Callable[[int, int], Iterator[dict[str, Any]]]:
    """iter_documents(kb) cut in n interleaved shares: share(k, n) makes share k alone, so
    that each writer process of a full build makes only the documents it writes."""
    ids = [*(reference_id(key) for key in kb.references), *(r.id for r in kb.records)]

    def share(k: int, n: int) -> Iterator[dict[str, Any]]:
        return iter_documents(kb, only=set(ids[k::n]))

    return share


def _study_links(kb: KB) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """Per study: the sources that counted it (verified, with location), and the verdicts that
    list it as the curator's candidate (never shown as the source's own studies)."""
    counted: dict[str, list[dict[str, Any]]] = {}
    candidates: dict[str, list[dict[str, Any]]] = {}
    records: list[Recommendation | Verdict] = [*kb.recommendations.values(), *kb.verdicts.values()]
    for record in records:
        key = record.guideline if isinstance(record, Recommendation) else record.source_reference
        key = kb.aliases.get(key, key)
        who = {"key": key, "short": _short(kb, key), "record": record.id}
        for link in record.counted_studies:
            counted.setdefault(link.study, []).append({**who, "location": link.location})
        for sid in record.candidate_studies:
            candidates.setdefault(sid, []).append(who)
    return counted, candidates


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
                "volume": r.fields.get("volume", ""),
                "first_page": re.split(r"[-\u2013\u2014,]", r.fields.get("pages", ""), maxsplit=1)[0].strip(),
            }
        )
    return out


def index_extras(
    kb: KB,
    known: Iterable[Reference] | idx.EncodedJSON | None = None,
    sources: dict[str, str] | None = None,
) -> dict[str, Any]:
    """JSON files stored beside each generation, so the app and `tmskb add` need not read kb/.

    `known`: the references duplicate detection compares with (by default the KB's), or their
    known_references rows already encoded; `sources`: source_labels of a superset of the KB's
    references (build.py keeps both per content of references.bib)."""
    rows: object = known
    if not isinstance(known, idx.EncodedJSON):
        rows = known_references(kb.references.values() if known is None else known)
    return {
        idx.VOCAB: kb.vocab.to_json(),
        idx.RULESETS: [plain(r) for r in kb.rulesets.values()],
        idx.KNOWN: rows,
        idx.ALIASES: kb.aliases,
        idx.LABELS: facet_labels(kb, sources),
        idx.PAGES: {"evidence_map": questions.evidence_map_view(kb)},
    }


def source_labels(references: Iterable[Reference]) -> dict[str, str]:
    """BibTeX key -> 'Author et al. year', the label of the source and guideline facets."""
    return {ref.key: ref.short for ref in references}


def content_hash(doc: dict[str, Any]) -> str:
    """Stable hash of a document's content (excluding any previous hash). The record data is
    hashed as the index stores it (idx.StoredData keeps the text for the index): its key order
    is the order the document was made in, which is the same on every build."""
    body = {k: v for k, v in doc.items() if k not in ("hash", idx.STORED_JSON)}
    # Compact ASCII JSON without the circular check: 40 us a document instead of 66 (a full
    # build hashes every document; documents are trees of JSON values, never cyclic).
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), check_circular=False)
    data = doc.get(idx.STORED_JSON)
    if isinstance(data, dict):
        stored = doc[idx.STORED_JSON] = idx.StoredData(data)
        stored.text = idx.encode_stored(data)
        text = f"{text}\0{stored.text}"
    elif data is not None:
        text = f"{text}\0{idx.encode_stored(data)}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _keys(record: Record) -> list[str]:
    return [key for _, key in cited_keys(record)]


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
        "author_keys": [],
        "first_author": [],
        "identifiers": [doc_id.lower()],
        "level_rank": NO_RANK,
        "class_rank": NO_RANK,
        "text": " ".join(part for part in (title, summary, *body) if part),
    }


def reference_document(ref: Reference, cited_by: list[str], kb: KB | None = None) -> dict[str, Any]:
    """The index document of one BibTeX entry (it needs nothing else from the KB)."""
    title = ref.title or f"{ref.short}, {ref.venue}".strip(", ")
    summary = f"{ref.short}. {ref.venue}".strip()
    abstract = " ".join(ref.fields.get("abstract", "").split())
    keywords = _imported_terms(ref.fields.get("keywords", ""))
    mesh = _imported_terms(ref.fields.get("mesh", ""), ";")
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
            abstract,
            *keywords,
            *mesh,
        ],
    )
    doc["authors"] = _authors(ref)
    doc.update(_author_fields(ref))
    doc["identifiers"] = identifiers(ref)
    doc["abstract"] = abstract
    doc["keywords"] = "; ".join(keywords + mesh)
    doc["data"] = {
        "keywords": keywords,
        "mesh": mesh,
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


def _imported_terms(value: str, separators: str = ";,") -> list[str]:
    """Keywords or MeSH terms of a field, each once: split at the first of `separators` the
    value holds (keywords: "; " as `tmskb add` writes them, else ", " as many BibTeX tools do;
    MeSH terms only at ";", since headings such as 'Pain, Intractable' hold commas)."""
    separator = next((s for s in separators if s in value), None)
    terms = value.split(separator) if separator else [value]
    return list(dict.fromkeys(t for t in (" ".join(term.split()) for term in terms) if t))


def _authors(ref: Reference | None) -> str:
    """Family names (von + last) of every author: a given name is never matched as a word."""
    return " ".join(f"{a.von} {a.last}".strip() for a in _named(ref))


def _named(ref: Reference | None) -> list[Author]:
    return [a for a in ref.authors if not a.is_others] if ref else []


def author_keys(author: Author) -> list[str]:
    """How `author:` finds one author: the folded family name joined ('andreobadia'), each part of
    a compound one ('andre', 'obadia'), and the joined name with the first or all initials
    ('andreobadia_n', as PubMed's [au] reads 'André-Obadia N'), or with none when the given name
    is not recorded ('andreobadia_')."""
    return list(_author_keys(author.von, author.last, author.first))


@functools.lru_cache(maxsize=1 << 17)  # a study's document and its reference's name the same authors
def _author_keys(von: str, last: str, first: str) -> tuple[str, ...]:
    parts = fold(f"{von} {last}").replace(".", " ").split()
    if not parts:
        return ()
    family = "".join(parts)
    initials = "".join(p[0] for p in fold(first).replace(".", " ").split() if p[0].isalpha())
    keys = [family, *(parts if len(parts) > 1 else [])]
    # 'andreobadia_': the given name is not recorded, so any initials may be this author's
    keys += [f"{family}_{initials[:n]}" for n in sorted({1, len(initials)})] if initials else [f"{family}_"]
    return tuple(dict.fromkeys(keys))


def _author_fields(ref: Reference | None) -> dict[str, list[str]]:
    """author_keys for `author:`; first_author without the parts of a compound name, so that a
    plain query ranks first an author named in full ('Obadia' alone is not André-Obadia)."""
    named = _named(ref)
    first = author_keys(named[0]) if named else []
    return {
        "author_keys": list(dict.fromkeys(k for a in named for k in author_keys(a))),
        "first_author": [k for k in first if k == first[0] or "_" in k],
    }


CD_NUMBER = re.compile(r"\bcd\d{6}\b")
NCT_NUMBER = re.compile(r"\bnct\d{8}\b")


def identifiers(ref: Reference | None) -> list[str]:
    """A reference's identifiers, lower-case: key, DOI, PMID, PMCID, Cochrane number (CD008208,
    from a Cochrane DOI), NCT numbers named in its fields."""
    if ref is None:
        return []
    doi = (ref.doi or "").strip().lower()
    found = [ref.key.lower(), doi, (ref.pmid or "").strip(), (ref.pmcid or "").strip().lower()]
    text = " ".join(ref.fields.values()).lower()
    found += CD_NUMBER.findall(doi) + NCT_NUMBER.findall(text)
    return [i for i in dict.fromkeys(found) if i and " " not in i]


def _cites(kb: KB, doc: dict[str, Any], own_id: str, keys: Iterable[str]) -> dict[str, Any]:
    """Identifiers of the references a record is drawn from (so a DOI finds the reference and the
    records citing it), plus the record's own id."""
    refs = [kb.reference(k) for k in keys]
    found = [own_id.lower()] + [i for r in refs for i in identifiers(r)]
    doc["identifiers"] = list(dict.fromkeys(found))
    return doc


def _class_data(result: ClassResult | None) -> dict[str, Any]:
    return plain(result) if result else {}


def class_value(result: ClassResult | None) -> str:
    """The Class facet value: 'III', or 'III+' when the computed class is a lower bound
    (the study is Class III or better; the reported facts do not settle which)."""
    if result is None or not result.cls:
        return ""
    return result.cls + ("+" if result.basis == "computed" and not result.certain else "")


def _study_doc(
    kb: KB, study: Study, counted_by: list[dict[str, Any]], candidate_for: list[dict[str, Any]]
) -> dict[str, Any]:
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
    targeting = tuple(
        dict.fromkeys(str(dose.arm_value(a, "targeting")) for a in arms if dose.arm_value(a, "targeting"))
    )
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
        *(_names(kb, "targeting", targeting)),
        ref.title if ref else "",
    ]
    doc = _base(study.id, "study", title, study.summary, ref.year if ref else None, study.verification, body)
    doc.update(
        {
            "indication": list(study.condition),
            "target": list(targets),
            "side": list(sides),
            "protocol": list(protocols),
            # Only sources whose own tables or text count the study: never the curator's candidates.
            "guideline": sorted({link["key"] for link in counted_by}),
            "class": class_value(grade),
            "direction": "",
            "authors": _authors(ref),
            **_author_fields(ref),
            "class_rank": class_rank(grade.cls) if grade else NO_RANK,
            "concepts": _concepts(kb, "condition", study.condition)
            + _concepts(kb, "target", targets)
            + _concepts(kb, "protocol", protocols)
            + list(sides)
            + list(coils)
            + _concepts(kb, "targeting", targeting)
            + [study.design],
        }
    )
    _cites(kb, doc, study.id, [study.reference])
    study_dose = dose.study_dose(study)
    for number in DOSE_NUMBERS:
        values = [arm[number.key] for arm in study_dose["arms"] if arm[number.key] is not None]
        doc[number.field] = sorted({number.term(v) for v in values})
    doc["data"] = {
        "record": _record_fields(study),
        "dose": study_dose,
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
        "counted_by": counted_by,
        "candidate_for": candidate_for,
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
    verdict = questions.verdict_view(kb, rec)
    doc.update(
        {
            "level": rec.level or (rec.level_bound or ""),
            "direction": rec.direction or "",
            "authors": _authors(guideline),
            **_author_fields(guideline),
            "indication": [rec.indication],
            "target": list(rec.target),
            "side": list(rec.side),
            "protocol": list(rec.protocol),
            "guideline": [rec.guideline],
            "source": [rec.guideline],
            "grade": [f"{g['scale']}:{g['value']}" for g in verdict["grades"]],
            "covers": [rec.indication],
            "level_rank": level_rank(rec.level or rec.level_bound),
            "concepts": _concepts(kb, "indication", (rec.indication,))
            + _concepts(kb, "target", rec.target)
            + _concepts(kb, "protocol", rec.protocol)
            + list(rec.side)
            + list(rec.coil)
            + ([rec.outcome_domain] if rec.outcome_domain else []),
        }
    )
    _cites(kb, doc, rec.id, [rec.guideline])
    doc["data"] = {
        "record": _record_fields(rec),
        "guideline": _citation(guideline),
        "computed": plain(computed) if computed else None,
        "comparison": plain(comparison) if comparison else None,
        "studies": _linked(kb, rec, counted),
        "verdict": verdict,
        "question": _question_ref(kb, rec.question),
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


def _linked(kb: KB, rec: Recommendation | Verdict, counted: dict[str, str | None]) -> list[dict[str, Any]]:
    """Linked studies with how each was linked (counted by the source, or a candidate) and the
    group its counted result puts it in (a negative study is opposing, never supporting)."""
    where = {link.study: link.location for link in rec.counted_studies}
    out = []
    for sid in rec.linked_studies:
        study = kb.studies.get(sid)
        ref = kb.reference(study.reference) if study else None
        result = counted.get(sid)
        note = grading.ARM_NOTES.get(result) if result is not None else None
        shown = note[0] if note else result
        out.append(
            {
                "id": sid,
                "short": ref.short if ref else sid,
                "year": ref.year if ref else None,
                "link": "counted" if sid in where else "candidate",
                "location": where.get(sid),
                "result": shown,
                "result_note": note[1] if note else None,
                "group": "not-counted" if note and note[0] is None else direction_group(shown),
                "study_result": study.result if study else None,
                "class": _class_data(kb.classes.get(sid)),
                "patients_total": study.patients_total if study else None,
            }
        )
    return out


def _question_ref(kb: KB, question_id: str | None) -> dict[str, Any] | None:
    question = kb.questions.get(question_id or "")
    return {"id": question.id, "title": question.title} if question else None


def _intervention_words(kb: KB, question: Question) -> str:
    what = question.intervention
    protocols = [kb.vocab.label("protocols", p).split(" (")[0] for p in what.protocol]
    targets = [kb.vocab.label("targets", t) for t in what.target]
    return _what(protocols, targets) if targets else (", ".join(protocols) or "rTMS") + " (any target)"


def _question_doc(kb: KB, question: Question) -> dict[str, Any]:
    view = questions.question_view(kb, question)
    condition = kb.vocab.label("indications", question.condition)
    lines = [
        f"{v['source']['short']}: "
        + (", ".join(g["scale_name"] + " " + g["label"] for g in v["grades"]) or "grade not read")
        for v in view["verdicts"]
        if v["covers"] is None
    ]
    summary = "; ".join(lines) or "No verdict recorded yet."
    what = question.intervention
    body = [
        condition,
        _intervention_words(kb, question),
        question.notes or "",
        *(_names(kb, "targets", what.target)),
        *(_names(kb, "protocols", what.protocol)),
        *(_names(kb, "sides", what.side)),
        *(v["statement"] for v in view["verdicts"]),
    ]
    doc = _base(question.id, "question", question.title, summary, None, question.verification, body)
    doc.update(
        {
            "indication": [question.condition],
            "target": list(what.target),
            "side": list(what.side),
            "protocol": list(what.protocol),
            "covers": [question.condition],
            "source": sorted({v["source"]["key"] for v in view["verdicts"] if v["covers"] is None}),
            # A question sorts with the strongest Lefaucheur level published on it (else with the
            # verdicts in other scales), before the verdicts themselves (class_rank 0).
            "level_rank": min(questions.best_rank(kb, question), 4),
            "class_rank": 0,
            "concepts": _concepts(kb, "indication", (question.condition,))
            + _concepts(kb, "target", what.target)
            + _concepts(kb, "protocol", what.protocol)
            + list(what.side),
        }
    )
    doc["data"] = {
        "record": _record_fields(question),
        "labels": {
            "condition": condition,
            "intervention": _intervention_words(kb, question),
            "target": _labels(kb, "target", what.target),
            "side": _labels(kb, "side", what.side),
            "protocol": _labels(kb, "protocol", what.protocol),
            "outcome_domain": kb.vocab.label("outcomes", question.outcome_domain)
            if question.outcome_domain
            else "",
        },
        **view,
        "ruleset": kb.ruleset.id if kb.ruleset else None,
    }
    return doc


def _verdict_doc(kb: KB, verdict: Verdict) -> dict[str, Any]:
    view = questions.verdict_view(kb, verdict)
    question = kb.questions.get(verdict.question)
    ref = kb.reference(verdict.source_reference)
    grades = "; ".join(g["label"] for g in view["grades"]) or "grade not read"
    asked = question.title if question else verdict.question
    title = f"{view['source']['short']} ({view['kind_label'].lower()}): {grades}"
    body = [
        asked,
        verdict.population or "",
        verdict.inclusion or "",
        verdict.notes or "",
        ref.title if ref else "",
        *(kb.vocab.label("indications", question.condition) for _ in [0] if question),
    ]
    doc = _base(
        verdict.id, "verdict", title, verdict.statement, ref.year if ref else None, verdict.verification, body
    )
    what = question.intervention if question else None
    doc.update(
        {
            "indication": [question.condition] if question else [],
            "target": list(what.target) if what else [],
            "protocol": list(what.protocol) if what else [],
            "side": list(what.side) if what else [],
            "covers": [question.condition] if question else [],
            "source": [verdict.source_reference],
            "grade": [f"{g['scale']}:{g['value']}" for g in view["grades"]],
            "direction": "",
            "authors": _authors(ref),
            **_author_fields(ref),
            "level_rank": 4,  # after Lefaucheur A-C, never ranked against them (another scale)
            "concepts": (_concepts(kb, "indication", (question.condition,)) if question else [])
            + (
                _concepts(kb, "target", what.target) + _concepts(kb, "protocol", what.protocol)
                if what
                else []
            ),
        }
    )
    _cites(kb, doc, verdict.id, [verdict.source_reference])
    doc["data"] = {
        "record": _record_fields(verdict),
        "verdict": view,
        "question": _question_ref(kb, verdict.question),
        "source": _citation(ref),
        "studies": _linked(kb, verdict, {}),
    }
    return doc


def _scale_doc(kb: KB, scale: Scale) -> dict[str, Any]:
    values = "; ".join(f"{v.label}: {v.meaning or 'meaning not read'}" for v in scale.values)
    ref = kb.reference(scale.source.reference or "")
    doc = _base(scale.id, "scale", scale.name, values, None, scale.verification, [scale.notes or ""])
    _cites(kb, doc, scale.id, [scale.source.reference] if scale.source.reference else [])
    doc["data"] = {"record": _record_fields(scale), "source": _citation(ref)}
    return doc


def facet_labels(kb: KB, sources: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Labels of facet values that only the KB can name (grades, sources), saved per generation
    (`sources`: source_labels of the KB's references or of more)."""
    grades = {}
    for scale in kb.scales.values():
        for value in scale.values:
            grades[f"{scale.id}:{value.value}"] = f"{scale.name}: {value.label}"
    for bound in ("below-A", "below-B", "below-C"):
        grades.setdefault(
            f"lefaucheur-level:{bound}", f"Lefaucheur level: below {bound[-1]} (exact level not verified)"
        )
    if sources is None:
        labels = source_labels(kb.references.values())
    else:
        labels = {key: sources.get(key) or kb.references[key].short for key in kb.references}
    return {"grade": grades, "source": labels, "guideline": labels}


def _knowledge_doc(kb: KB, page: Knowledge) -> dict[str, Any]:
    body = [
        *(f"{s.heading} {s.text}" for s in page.sections),
        *(_names(kb, "indications", page.indication)),
    ]
    doc = _base(page.id, "knowledge", page.title, page.summary, None, page.verification, body)
    doc["indication"] = list(page.indication)
    doc["concepts"] = _concepts(kb, "indication", page.indication)
    _cites(kb, doc, page.id, page.references)
    doc["data"] = {
        "record": _record_fields(page),
        "references": [_citation(kb.reference(k)) for k in page.references],
    }
    return doc


def _record_fields(record: Record) -> dict[str, Any]:
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
