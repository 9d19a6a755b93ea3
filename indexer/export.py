"""Exports of a search or an evidence table: one streaming layer for the CLI, the web and scripts.

`export(index, query, fmt, table)` checks the query first (raising ExportError, so callers can
fail before writing anything), then returns a generator of chunks: `str` for the text formats,
`bytes` for xlsx. Records are read 100 at a time (SearchIndex.iter_hits, without the result
cache) and the text formats are written row by row, so they never hold the whole result. Three
things do hold more: the evidence table (all recommendations of the view, sorted: a small
table), the reference formats (the set of keys already written), and XLSX (openpyxl's write-only
workbook buffers rows in a temporary file, which is then streamed back).

The column schema is documented in docs/export.md; change it there and in RECORD_COLUMNS /
EVIDENCE_COLUMNS together.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from . import dose
from .citations import csl_item
from .errors import ExportError
from .evidence import evidence_table
from .fields import REFERENCE_PREFIX
from .query import Query
from .vocab import Vocabularies

if TYPE_CHECKING:  # the search engine is imported when an export runs, not with the CLI
    from .search import SearchIndex

JOINER = "; "
TABLES = ("records", "evidence")
CLASSES = ("I", "II", "III", "IV")

RECORD_COLUMNS: tuple[str, ...] = (
    "id",
    "type",
    "title",
    "citation",
    "year",
    "indication",
    "indication_label",
    "target",
    "side",
    "protocol",
    "coil",
    "question",
    "grades",
    "direction",
    "published_level",
    "published_level_bound",
    "computed_level",
    "computed_level_status",
    "computed_level_rests_on_lower_bounds",
    "level_ruleset",
    "class",
    "class_lower_bound",
    "class_basis",
    "class_ruleset",
    "verification",
    "guideline",
    "references",
    "doi",
    "pmid",
    "source_location",
    "source_url",
    "summary",
)
EVIDENCE_COLUMNS: tuple[str, ...] = (
    "indication",
    "indication_label",
    "id",
    "type",
    "question",
    "source",
    "source_year",
    "kind",
    "grades",
    "published_level",
    "direction",
    "search_cutoff",
    "protocol",
    "target",
    "side",
    "coil",
    "outcome",
    "population",
    "studies_supporting",
    "studies_opposing",
    "studies_inconclusive",
    "studies_not_reported",
    "studies_not_counted",
    "supporting_by_class",
    "counted_studies",
    "candidate_studies",
    "computed_level",
    "computed_level_rests_on_lower_bounds",
    "level_ruleset",
    "verification",
    "references",
    "source_location",
)
# The LaTeX table is for a paper: a few columns that fit a page (docs/export.md). Every computed
# value keeps its rule set and its lower-bound mark.
LATEX_COLUMNS = {
    "records": (
        "id",
        "type",
        "title",
        "citation",
        "year",
        "published_level",
        "grades",
        "computed_level",
        "computed_level_rests_on_lower_bounds",
        "level_ruleset",
        "class",
        "class_lower_bound",
        "verification",
    ),
    "evidence": (
        "indication_label",
        "source",
        "grades",
        "studies_supporting",
        "studies_opposing",
        "studies_inconclusive",
        "supporting_by_class",
        "computed_level",
        "computed_level_rests_on_lower_bounds",
        "level_ruleset",
    ),
}
LATEX_WIDE = {"title": "p{0.3\\linewidth}"}  # wrapped columns; the others are "l"
# Multi-valued columns are lists in json/jsonl (and the Python API) and joined with "; " elsewhere.
MULTI_VALUED = frozenset(
    {
        "indication",
        "indication_label",
        "target",
        "side",
        "protocol",
        "coil",
        "grades",
        "guideline",
        "references",
        "counted_studies",
        "candidate_studies",
        "supporting_by_class",
    }
)


@dataclass(frozen=True)
class Format:
    name: str
    label: str
    extension: str
    mimetype: str
    kind: str  # "table" (records or evidence rows), "references" or "bundle" (the hits' documents)
    binary: bool = False
    linked: bool = True  # offered as a download link on the pages (xlsx needs an optional extra)


# The one list of export formats: the CLI's --format choices, the web's download links and
# /search.<ext> routes, and indexer.api all read it.
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("csv", "CSV", "csv", "text/csv; charset=utf-8", "table"),
        Format("tsv", "TSV", "tsv", "text/tab-separated-values; charset=utf-8", "table"),
        Format("json", "JSON", "json", "application/json", "table"),
        Format("jsonl", "JSON Lines", "jsonl", "application/x-ndjson", "table"),
        Format("markdown", "Markdown", "md", "text/markdown; charset=utf-8", "table"),
        Format("latex", "LaTeX", "tex", "application/x-tex; charset=utf-8", "table"),
        Format(
            "xlsx",
            "Excel",
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "table",
            binary=True,
            linked=False,
        ),
        Format("bibtex", "BibTeX", "bib", "application/x-bibtex; charset=utf-8", "references"),
        Format("ris", "RIS", "ris", "application/x-research-info-systems; charset=utf-8", "references"),
        Format("csljson", "CSL-JSON", "csl.json", "application/vnd.citationstyles.csl+json", "references"),
        Format(
            "fhir", "FHIR R5", "fhir.json", "application/fhir+json; fhirVersion=5.0", "bundle", linked=False
        ),
    )
}
EXTENSIONS = {f.extension: f.name for f in FORMATS.values()}


# ---------------------------------------------------------------------------------------------
# Entry points


Where: TypeAlias = "SearchIndex | Path"


def as_index(where: Where) -> SearchIndex:
    """search.as_index, imported when an export runs."""
    from .search import as_index as handle

    return handle(where)


def check(where: Where, query: Query, fmt: str, table: str = "records", *, allow_empty: bool = True) -> None:
    """Raise ExportError if the export cannot be made (IndexMissing passes through).

    With allow_empty=False a view without any record is an error too, with the spelling
    suggestion when there is one (a typo should not quietly export an empty table).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")
    if table not in TABLES:
        raise ExportError(f"unknown table '{table}' (expected one of {', '.join(TABLES)})")
    if fmt == "xlsx":
        try:
            import openpyxl  # noqa: F401
        except ImportError:
            raise ExportError("xlsx needs openpyxl: pip install 'tms-evidence-kb[export]'") from None
    if fmt == "fhir":
        try:
            import fhir.resources  # noqa: F401
        except ImportError:
            raise ExportError("fhir needs fhir.resources: pip install 'tms-evidence-kb[export]'") from None
    probe = as_index(where).search(replace(query, page=1, page_size=1), cache=False)
    if not probe.ok:
        raise ExportError(f"bad query: {probe.error}")
    if probe.total == 0 and not allow_empty:
        hint = f"; did you mean '{probe.suggestion}'?" if probe.suggestion else ""
        raise ExportError(f"no records match this query{hint} (nothing was exported)")


def export(
    where: Where, query: Query, fmt: str, table: str = "records", *, allow_empty: bool = True
) -> Iterator[str | bytes]:
    """Check now, then stream the export chunk by chunk."""
    index = as_index(where)
    check(index, query, fmt, table, allow_empty=allow_empty)
    return _stream(index, query, fmt, table)


def export_bytes(
    where: Where, query: Query, fmt: str, table: str = "records", *, allow_empty: bool = True
) -> Iterator[bytes]:
    """export() with text encoded as UTF-8 (what the web and the CLI send)."""
    chunks = export(where, query, fmt, table, allow_empty=allow_empty)
    return (c if isinstance(c, bytes) else c.encode("utf-8") for c in chunks)


def write_atomic(path: Path, chunks: Iterable[str | bytes]) -> None:
    """Write chunks to a temporary file next to `path`, then os.replace it into place."""
    from .fsio import atomic_write

    atomic_write(path, chunks)


def columns(table: str) -> tuple[str, ...]:
    return EVIDENCE_COLUMNS if table == "evidence" else RECORD_COLUMNS


def rows(where: Where, query: Query, table: str = "records") -> Iterator[dict[str, Any]]:
    """The exported rows as dicts (multi-valued columns as lists), in export order.

    Records are read page by page without the search result cache (an export reads each page
    once; caching it would only evict what interactive searches use)."""
    index = as_index(where)
    vocab = index.vocab()
    if table == "evidence":
        for indication, row in _evidence_rows(index, query):
            yield evidence_row(indication, row, vocab)
    else:
        for hit in index.iter_hits(query):
            yield record_row(hit.id, hit.type, hit.title, hit.summary, hit.fields, hit.data, vocab)


def references(where: Where, query: Query, table: str = "records") -> Iterator[dict[str, Any]]:
    """Stored data of the references behind the exported rows, de-duplicated, in row order."""
    index = as_index(where)
    seen: set[str] = set()
    for row in rows(index, query, table):
        for key in row["references"]:
            if key in seen:
                continue
            seen.add(key)
            doc = index.document(REFERENCE_PREFIX + key)
            if doc and doc.get("data"):
                yield doc["data"]


# ---------------------------------------------------------------------------------------------
# Rows


def _labels(vocab: Vocabularies, vocabulary: str, ids: Iterable[str]) -> list[str]:
    return [vocab.label(vocabulary, i) for i in ids]


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def record_row(
    doc_id: str,
    kind: str,
    title: str,
    summary: str,
    fields: dict[str, Any],
    data: dict[str, Any],
    vocab: Vocabularies,
) -> dict[str, Any]:
    """One hit as a flat record (RECORD_COLUMNS)."""
    record = data.get("record") or {}
    source = record.get("source") or {}
    row: dict[str, Any] = dict.fromkeys(RECORD_COLUMNS, "")
    row.update(
        {
            "id": doc_id,
            "type": kind,
            "title": title,
            "summary": summary,
            "year": fields.get("year") or "",
            "verification": fields.get("verification") or "",
            "source_location": source.get("location") or "",
            "source_url": source.get("url") or "",
        }
    )
    for name in MULTI_VALUED & set(RECORD_COLUMNS):
        row[name] = []
    indications: list[str] = []
    cited: dict[str, Any] = {}
    if kind == "reference":
        ref_fields = data.get("fields") or {}
        row["citation"] = data.get("short") or ""
        row["references"] = [data.get("key", "")]
        row["doi"] = ref_fields.get("doi") or ""
        row["pmid"] = ref_fields.get("pmid") or ""
        row["source_url"] = ref_fields.get("url") or ""
        row["source_location"] = f"{data.get('path', '')}:{data.get('line', '')}".strip(":")
    elif kind == "study":
        arms = data.get("arms") or []
        indications = list(record.get("condition") or [])
        row["target"] = _unique(t for a in arms for t in a.get("target", []))
        row["side"] = _unique(s for a in arms for s in a.get("side", []))
        row["protocol"] = _unique(p for a in arms for p in a.get("protocol", []))
        row["coil"] = _unique(c for a in arms for c in a.get("coil", []))
        grade = data.get("class") or {}
        row["class"] = grade.get("cls") or ""
        row["class_lower_bound"] = (
            (grade.get("basis") == "computed" and grade.get("certain") is False) if grade else ""
        )
        row["class_basis"] = grade.get("basis") or ""
        row["class_ruleset"] = grade.get("ruleset") or ""
        row["guideline"] = [g for g in str(fields.get("guideline") or "").split() if g]
        cited = data.get("reference") or {}
        row["references"] = _unique([cited.get("key") or record.get("reference") or ""])
    elif kind == "recommendation":
        indications = [record["indication"]] if record.get("indication") else []
        for name in ("target", "side", "protocol", "coil"):
            row[name] = list(record.get(name) or [])
        row["direction"] = record.get("direction") or ""
        row["published_level"] = record.get("level") or ""
        row["published_level_bound"] = record.get("level_bound") or ""
        computed = data.get("computed") or {}
        row["computed_level"] = computed.get("level") or ""
        row["computed_level_status"] = computed.get("status") or ""
        row["computed_level_rests_on_lower_bounds"] = (
            (computed.get("certain") is False) if computed.get("level") else ""
        )
        row["level_ruleset"] = computed.get("ruleset") or ""
        row["question"] = (data.get("question") or {}).get("id") or ""
        row["grades"] = [grade_text(g) for g in (data.get("verdict") or {}).get("grades") or []]
        cited = data.get("guideline") or {}
        row["guideline"] = _unique([record.get("guideline") or ""])
        row["references"] = _unique([cited.get("key") or record.get("guideline") or ""])
    elif kind == "verdict":
        verdict = data.get("verdict") or {}
        indications = [i for i in str(fields.get("indication") or "").split() if i]
        for name in ("target", "side", "protocol"):
            row[name] = [v for v in str(fields.get(name) or "").split() if v]
        row["question"] = record.get("question") or ""
        row["grades"] = [grade_text(g) for g in verdict.get("grades") or []]
        row["direction"] = verdict.get("direction") or ""
        cited = data.get("source") or {}
        row["references"] = _unique([record.get("source_reference") or ""])
    elif kind == "question":
        indications = [str(record["condition"])] if record.get("condition") else []
        what = record.get("intervention") or {}
        for name in ("target", "side", "protocol", "coil"):
            row[name] = list(what.get(name) or [])
        row["question"] = doc_id
        row["grades"] = [
            f"{v['source']['short']}: {grade_text(g)}"
            for v in data.get("verdicts") or []
            if not v.get("covers")
            for g in v.get("grades") or []
        ]
        computed = data.get("computed") or {}
        row["computed_level"] = computed.get("level") or ""
        row["computed_level_status"] = computed.get("status") or ""
        row["computed_level_rests_on_lower_bounds"] = (
            computed.get("rests_on_lower_bounds", "") if computed.get("level") else ""
        )
        row["level_ruleset"] = computed.get("ruleset") or ""
    elif kind == "knowledge":
        indications = list(record.get("indication") or [])
        cites = data.get("references") or []
        row["citation"] = JOINER.join(c.get("short", "") for c in cites if c)
        row["references"] = _unique(record.get("references") or [])
    if cited:
        row["citation"] = cited.get("short") or ""
        row["doi"] = cited.get("doi") or ""
        row["pmid"] = cited.get("pmid") or ""
    row["indication"] = indications
    row["indication_label"] = _labels(vocab, "indications", indications)
    return row


def _evidence_rows(index: SearchIndex, query: Query) -> Iterator[tuple[str, Any]]:
    for group in evidence_table(index, query):
        for row in group.rows:
            yield group.indication, row


def evidence_row(indication: str, row: Any, vocab: Vocabularies) -> dict[str, Any]:
    """One evidence-table row (EVIDENCE_COLUMNS): one source's verdict in its own scale."""
    by_direction = row.studies_by_direction
    return {
        "indication": [indication] if indication else [],
        "indication_label": [vocab.label("indications", indication)] if indication else [],
        "id": row.id,
        "type": row.type,
        "question": row.question,
        "source": row.guideline_key,
        "source_year": row.guideline_year,
        "kind": row.kind,
        "grades": [grade_text(g) for g in row.grades],
        "published_level": row.level,
        "direction": row.direction,
        "search_cutoff": row.search_cutoff,
        "protocol": [p for p in row.protocol.split(" + ") if p],
        "target": [t for t in row.target.split(", ") if t],
        "side": [s for s in row.side.split(", ") if s],
        "coil": [c for c in row.coil.split(", ") if c],
        "outcome": row.outcome,
        "population": row.population,
        "studies_supporting": by_direction.get("supporting", 0),
        "studies_opposing": by_direction.get("opposing", 0),
        "studies_inconclusive": by_direction.get("inconclusive", 0),
        "studies_not_reported": by_direction.get("not-reported", 0),
        "studies_not_counted": by_direction.get("not-counted", 0),
        "supporting_by_class": [f"{n} x Class {class_words(c)}" for c, n in row.supporting_by_class.items()],
        "counted_studies": list(row.counted_studies),
        "candidate_studies": list(row.candidate_studies),
        "computed_level": row.computed_level or "",
        "computed_level_rests_on_lower_bounds": row.computed_lower_bound if row.computed_level else "",
        "level_ruleset": row.ruleset or "",
        "verification": row.verification,
        "references": [row.guideline_key] if row.guideline_key else [],
        "source_location": row.source_location,
    }


def grade_text(grade: dict[str, Any]) -> str:
    """'Low [grade-certainty]': the value's label and its scale, never converted."""
    return f"{grade.get('label') or grade.get('value')} [{grade.get('scale')}]"


def class_words(cls: str) -> str:
    """'III' or 'III or better (lower bound)' for a computed lower bound ('III+')."""
    return f"{cls[:-1]} or better (lower bound)" if cls.endswith("+") else cls


# The studies of one question side by side, one row per matching arm (the question page's
# comparison table). Numbers stay numbers; why a value is empty is in `missing`.
QUESTION_COLUMNS: tuple[str, ...] = (
    "question",
    "study",
    "citation",
    "year",
    "direction",
    "result",
    "patients_total",
    "class",
    "class_lower_bound",
    "arm",
    "frequency_hz",
    "intensity",
    "intensity_percent",
    "intensity_reference",
    "pulses_per_session",
    "sessions",
    "sessions_per_week",
    "total_pulses_computed",
    "navigated",
    "targeting",
    "coil",
    "dose_completeness",
    "missing",
    "link",
)


def question_rows(where: Where, question_id: str) -> Iterator[dict[str, Any]]:
    """One row per (study, matching arm) of a question, in the page's order; ExportError if unknown."""
    index = as_index(where)
    doc = index.document(question_id)
    if doc is None or doc.get("type") != "question":
        raise ExportError(f"no question with id '{question_id}'")
    for study in (doc.get("data") or {}).get("studies", []):
        cls = study.get("class") or {}
        links = sorted({link["kind"] for link in study.get("links", [])})
        for arm in study.get("dose") or [{}]:
            states = arm.get("state_labels") or {}
            yield {
                "question": question_id,
                "study": study["id"],
                "citation": study["short"],
                "year": str(study["year"]) if study.get("year") else "",
                "direction": study["group"],
                "result": study.get("result") or "",
                "patients_total": study.get("patients_total"),
                "class": cls.get("cls") or "",
                "class_lower_bound": bool(cls.get("lower_bound")),
                "arm": arm.get("label") or "",
                "frequency_hz": arm.get("frequency_hz"),
                "intensity": arm.get("intensity") or "",
                "intensity_percent": arm.get("intensity_percent"),
                "intensity_reference": arm.get("intensity_reference") or "",
                "pulses_per_session": arm.get("pulses_per_session"),
                "sessions": arm.get("sessions"),
                "sessions_per_week": arm.get("sessions_per_week"),
                "total_pulses_computed": arm.get("total_pulses"),
                "navigated": "" if arm.get("navigated") is None else bool(arm["navigated"]),
                "targeting": arm.get("targeting") or "",
                "coil": arm.get("coil") or [],
                "dose_completeness": (study.get("completeness") or {}).get("share"),
                "missing": [
                    f"{dose.CORE_LABELS[name]}: {why}"
                    for name, why in states.items()
                    if name in dose.CORE and why != "reported"
                ],
                "link": links,
            }


def export_question(where: Where, question_id: str, fmt: str) -> Iterator[bytes]:
    """The comparison table of a question in a table format, encoded as UTF-8."""
    if fmt not in FORMATS or FORMATS[fmt].kind != "table":
        tables = ", ".join(f for f, spec in FORMATS.items() if spec.kind == "table")
        raise ExportError(f"unknown format '{fmt}' for a question table (expected one of {tables})")
    index = as_index(where)
    first = list(question_rows(index, question_id))  # one question: small, and errors come first
    chunks = _TABLE_WRITERS[fmt](iter(first), QUESTION_COLUMNS, "question")
    return (c if isinstance(c, bytes) else c.encode("utf-8") for c in chunks)


# ---------------------------------------------------------------------------------------------
# Writers


def edition_text(index: SearchIndex) -> str:
    """'TMS Evidence KB version 0.2.0 of 2026-12-02, content sha256:…' for the exports that can
    say it (BibTeX, LaTeX, Markdown; FHIR tags its Bundle; the web also sends it as a header)."""
    kb = index.about().get("kb") or {}
    release = f"version {kb['version']}" if kb.get("version") else "(no release yet)"
    if kb.get("version") and kb.get("date"):
        release += f" of {kb['date']}"
    return f"TMS Evidence KB {release}, content {kb.get('content_hash') or 'unknown'}"


def _stream(index: SearchIndex, query: Query, fmt: str, table: str) -> Iterator[str | bytes]:
    spec = FORMATS[fmt]
    if fmt in ("bibtex", "latex"):
        yield f"% {edition_text(index)}\n" + ("\n" if fmt == "bibtex" else "")
    if spec.kind == "references":
        yield from _REFERENCE_WRITERS[fmt](references(index, query, table))
    elif spec.kind == "bundle":
        yield from _fhir(index, query, table)
    else:
        yield from _TABLE_WRITERS[fmt](rows(index, query, table), columns(table), table)
    if fmt == "markdown":
        yield f"\n_{edition_text(index)}_\n"


def _fhir(index: SearchIndex, query: Query, table: str) -> Iterator[str]:
    """A FHIR R5 Bundle of the view (indexer/fhir.py): the hits' documents, in hit order; the
    evidence table's verdicts bring their linked studies."""
    from . import fhir

    vocab = index.vocab()
    scales = [dict(h.fields, data=h.data) for h in index.iter_hits(Query.make("", {"type": ["scale"]}))]
    builder = fhir.Builder(index.document, vocab.label, scales, index.rulesets())
    if table == "evidence":
        docs: Iterator[dict[str, Any] | None] = (
            index.document(row.id) for _, row in _evidence_rows(index, query)
        )
    else:
        docs = (dict(hit.fields, data=hit.data) for hit in index.iter_hits(query))

    def entries() -> Iterator[dict[str, Any]]:
        yield from builder.codesystems()
        for doc in docs:
            if doc is not None:
                yield from builder.entries(doc, with_studies=table == "evidence")

    yield from fhir.write_bundle(fhir.bundle_head(index.about().get("kb")), entries())


def cell(value: Any) -> str:
    """A value as text: lists joined with '; ', None as ''."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return JOINER.join(str(v) for v in value)
    return str(value)


# Spreadsheet safety (OWASP "CSV Injection"; ASVS 1.2.10 adds NUL). A spreadsheet reads a cell
# as a formula when it starts with = + - or @; some importers trim leading spaces first, and a
# leading tab, CR or NUL is listed too. The usual fix (an apostrophe before every such cell)
# would turn the number -0.22 into the text '-0.22, so plain numbers are left alone.
FORMULA_STARTS = ("=", "+", "-", "@")
CONTROL_STARTS = ("\t", "\r", "\0")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_RISKY_FIRST = frozenset(FORMULA_STARTS + CONTROL_STARTS)


def formula_like(text: str) -> bool:
    """True if a spreadsheet could evaluate `text`: a leading tab, CR or NUL, or = + - @ as its
    first character after any leading whitespace, unless it is a plain number ("-0.22")."""
    first = text[:1]
    if not first or (first not in _RISKY_FIRST and not first.isspace()):
        return False  # the common case, decided by the first character
    if first in CONTROL_STARTS:
        return True
    stripped = text.strip()
    return stripped[:1] in FORMULA_STARTS and not _PLAIN_NUMBER.fullmatch(stripped)


def spreadsheet_cell(value: Any) -> str:
    """cell(value) for CSV and TSV: text that formula_like() flags gets a leading apostrophe
    ("'=1+2"); numbers (int, float) and plain numbers written as text are unchanged."""
    text = cell(value)
    first = text[:1]
    if not first or (first not in _RISKY_FIRST and not first.isspace()):  # most cells: one test
        return text
    return "'" + text if formula_like(text) and not isinstance(value, int | float) else text


def _csv(records: Iterable[dict[str, Any]], cols: tuple[str, ...], table: str) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(cols)
    for n, record in enumerate(records, start=1):
        writer.writerow([spreadsheet_cell(record[c]) for c in cols])
        if n % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _tsv_cell(value: Any) -> str:
    if isinstance(value, int | float):
        return cell(value)
    text = cell(value).replace("\r\n", " ").replace("\t", " ").replace("\n", " ").replace("\r", " ")
    return spreadsheet_cell(text)


def _tsv(records: Iterable[dict[str, Any]], cols: tuple[str, ...], table: str) -> Iterator[str]:
    yield "\t".join(cols) + "\n"
    for record in records:
        yield "\t".join(_tsv_cell(record[c]) for c in cols) + "\n"


def _json(records: Iterable[dict[str, Any]], cols: tuple[str, ...], table: str) -> Iterator[str]:
    first = True
    for record in records:
        yield ("[\n" if first else ",\n") + json.dumps(record, ensure_ascii=False)
        first = False
    yield "[]\n" if first else "\n]\n"


def _jsonl(records: Iterable[dict[str, Any]], cols: tuple[str, ...], table: str) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False) + "\n"


def _md_cell(value: Any) -> str:
    text = cell(value).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.split())


def _markdown(records: Iterable[dict[str, Any]], cols: tuple[str, ...], table: str) -> Iterator[str]:
    yield "| " + " | ".join(cols) + " |\n"
    yield "|" + "|".join(" --- " for _ in cols) + "|\n"
    for record in records:
        yield "| " + " | ".join(_md_cell(record[c]) for c in cols) + " |\n"


LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Plain text for a LaTeX document (UTF-8 input assumed: accents and CJK are kept)."""
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in " ".join(text.split()))


def _latex(records: Iterable[dict[str, Any]], cols: tuple[str, ...], table: str) -> Iterator[str]:
    chosen = LATEX_COLUMNS[table]
    yield "% Requires \\usepackage{booktabs} and \\usepackage{longtable}; UTF-8 input.\n"
    spec = "".join(LATEX_WIDE.get(c, "l") for c in chosen)
    yield "\\begin{longtable}{" + spec + "}\n\\toprule\n"
    header = " & ".join(latex_escape(c) for c in chosen) + " \\\\\n\\midrule\n"
    yield header + "\\endhead\n"
    for record in records:
        yield " & ".join(latex_escape(cell(record[c])) for c in chosen) + " \\\\\n"
    yield "\\bottomrule\n\\end{longtable}\n"


def _xlsx(records: Iterable[dict[str, Any]], cols: tuple[str, ...], table: str) -> Iterator[bytes]:
    from openpyxl import Workbook  # optional extra, checked by check()
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(table)

    def typed(value: Any) -> Any:
        """A number as a number cell; text as a string cell, never a formula or an error value."""
        if isinstance(value, int | float) and (isinstance(value, bool) or math.isfinite(value)):
            return value
        # Control characters cannot be stored in the XML (openpyxl raises); show them as U+FFFD.
        text = ILLEGAL_CHARACTERS_RE.sub("\ufffd", cell(value))
        if not formula_like(text) and text not in ERROR_CODES:
            return text
        # openpyxl stores any str starting with '=' as a formula and '#N/A' & co. as error values.
        stored = WriteOnlyCell(sheet, text)
        stored.data_type = "s"
        stored.quotePrefix = True  # Excel's "text" mark: the value stays text when the cell is edited
        return stored

    sheet.append(list(cols))
    for record in records:
        sheet.append([typed(record[c]) for c in cols])
    with tempfile.TemporaryFile() as tmp:  # openpyxl writes a zip; stream it back in chunks
        workbook.save(tmp)
        tmp.seek(0)
        while chunk := tmp.read(64 * 1024):
            yield chunk


def _bibtex(refs: Iterable[dict[str, Any]]) -> Iterator[str]:
    for n, data in enumerate(refs):
        yield ("\n" if n else "") + data.get("raw", "").strip() + "\n"


RIS_TYPES = {
    "article": "JOUR",
    "inproceedings": "CPAPER",
    "misc": "GEN",
    "book": "BOOK",
    "incollection": "CHAP",
    "phdthesis": "THES",
    "techreport": "RPRT",
    "online": "ELEC",
}


def ris_entry(data: dict[str, Any]) -> dict[str, Any]:
    """A reference document's data as a rispy entry."""
    fields: dict[str, str] = data.get("fields") or {}
    entry: dict[str, Any] = {"type_of_reference": RIS_TYPES.get(data.get("entry_type", ""), "GEN")}
    entry["id"] = data.get("key", "")
    authors = []
    for a in data.get("authors") or []:
        if a["last"].lower() == "others" and not a["first"]:
            continue
        last = f"{a['von']} {a['last']}".strip()
        name = f"{last}, {a['first']}" if a["first"] else last
        authors.append(f"{name}, {a['jr']}" if a.get("jr") else name)
    if authors:
        entry["authors"] = authors
    simple = {
        "title": "title",
        "journal": "journal_name",
        "booktitle": "secondary_title",
        "year": "year",
        "volume": "volume",
        "number": "number",
        "doi": "doi",
        "publisher": "publisher",
    }
    for bib, ris in simple.items():
        if fields.get(bib):
            entry[ris] = fields[bib]
    pages = fields.get("pages", "").replace("--", "–")
    if pages:
        start, _, end = pages.partition("–")
        entry["start_page"] = start.strip()
        if end.strip():
            entry["end_page"] = end.strip()
    if fields.get("pmid"):
        entry["accession_number"] = f"PMID:{fields['pmid']}"
    if fields.get("url"):
        entry["urls"] = [fields["url"]]
    if fields.get("note"):
        entry["notes"] = [fields["note"]]
    return entry


def _ris(refs: Iterable[dict[str, Any]]) -> Iterator[str]:
    import rispy

    for n, data in enumerate(refs):
        text = rispy.dumps([ris_entry(data)])
        yield ("\n" if n else "") + text.removeprefix("1.\n").strip("\n") + "\n"


def _csljson(refs: Iterable[dict[str, Any]]) -> Iterator[str]:
    first = True
    for data in refs:
        yield ("[\n" if first else ",\n") + json.dumps(csl_item(data), ensure_ascii=False)
        first = False
    yield "[]\n" if first else "\n]\n"


_TABLE_WRITERS: dict[str, Callable[..., Iterator[Any]]] = {
    "csv": _csv,
    "tsv": _tsv,
    "json": _json,
    "jsonl": _jsonl,
    "markdown": _markdown,
    "latex": _latex,
    "xlsx": _xlsx,
}
_REFERENCE_WRITERS: dict[str, Callable[..., Iterator[str]]] = {
    "bibtex": _bibtex,
    "ris": _ris,
    "csljson": _csljson,
}
