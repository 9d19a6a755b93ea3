"""Read CSL-JSON (Zotero's "CSL JSON" export, citeproc-js, pandoc, Better BibTeX) into Candidates.

A file holds an array of items, one item, or an object with an `items` array. The standard json
module reads it: CSL-JSON is plain JSON, and the work is mapping CSL variables to BibTeX fields
the way the other readers do, which no CSL library does. Each item's line is where it starts, so
problems found later (validation before writing, key collisions) point at it. Identifiers are
normalised afterwards with every other format's (importers.read_candidates).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .bib import MONTHS
from .candidates import Candidate, Name
from .models import Problem

CSL_TYPES = {
    "article-journal": "article",
    "article-magazine": "article",
    "article-newspaper": "article",
    "review": "article",
    "review-book": "article",
    "article": "article",  # a preprint: an article when it names a venue, else misc
    "chapter": "incollection",
    "entry": "incollection",
    "entry-dictionary": "incollection",
    "entry-encyclopedia": "incollection",
    "book": "book",
    "paper-conference": "inproceedings",
    "report": "techreport",
    "thesis": "phdthesis",
    # webpage, post, post-weblog, dataset, software, manuscript and the rest: misc
}
# CSL variable -> BibTeX field, for the variables that map one to one.
PLAIN = {
    "volume": "volume",
    "edition": "edition",
    "publisher-place": "address",
    "DOI": "doi",
    "PMID": "pmid",
    "PMCID": "pmcid",
    "URL": "url",
    "ISBN": "isbn",
    "ISSN": "issn",
    "abstract": "abstract",
    "note": "note",
    "language": "language",
}
KEY_RE = re.compile(r"^[A-Za-z][\w:.+-]*$")  # an id usable as a BibTeX key (not a Zotero URI)
MARKUP_RE = re.compile(r"</?(?:i|b|sup|sub|span|sc)(?:\s[^<>]*)?>")  # CSL's rich-text tags
YEAR_RE = re.compile(r"\b(1[5-9]|20)\d\d\b")
HINT = "CSL-JSON is an array of items, as Zotero's Export > CSL JSON writes it"
TYPE_HINT = 'add "type": "article-journal", "book", "chapter", "paper-conference", "report" or "webpage"'


def read_csljson(text: str, shown: str) -> tuple[list[Candidate], list[Problem]]:
    """Candidates from a CSL-JSON file's text, and the problems not tied to one item (each
    candidate's own are on it)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"not valid JSON: {exc.msg} at column {exc.colno}"
        return [], [Problem(shown, exc.lineno, reason=reason, hint=HINT)]
    except RecursionError:
        return [], [Problem(shown, 1, reason="not CSL-JSON: nested too deeply", hint=HINT)]
    items = _items(data)
    if items is None:
        reason = f"not CSL-JSON: expected an array of items or one item, found {_kind(data)}"
        return [], [Problem(shown, 1, reason=reason, hint=HINT)]
    if not items:
        return [], [Problem(shown, 1, reason="no CSL-JSON items found", hint=HINT)]
    lines = _item_lines(text, data, len(items))
    candidates, problems = [], []
    for number, (item, line) in enumerate(zip(items, lines, strict=True), start=1):
        if isinstance(item, dict):
            candidates.append(_candidate(item, number, shown, line))
        else:
            reason = f"not a CSL-JSON item: expected an object, found {_kind(item)}"
            problems.append(Problem(shown, line, f"item {number}", reason=reason, hint=HINT))
    return candidates, problems


def _items(data: Any) -> list[Any] | None:
    """The items of an array, of {"items": [...]}, or the one item an object is; None otherwise."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        if isinstance(data.get("items"), list):
            return list(data["items"])
        if "type" in data or "title" in data:
            return [data]
    return None


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(type(value), "a number")


def _item_lines(text: str, data: Any, count: int) -> list[int]:
    """The line each item starts on (json.loads keeps no positions, so the array is walked
    again with raw_decode); line 1 for all when the array cannot be found."""
    start = 0
    if isinstance(data, dict):
        found = re.search(r'"items"\s*:\s*\[', text) if "items" in data else None
        if found is None:
            return [text[: len(text) - len(text.lstrip())].count("\n") + 1] * count
        start = found.end() - 1
    else:
        start = text.index("[")
    decoder, lines, pos = json.JSONDecoder(), [], start + 1
    try:
        for _ in range(count):
            pos = _skip(text, pos)
            lines.append(text.count("\n", 0, pos) + 1)
            _, pos = decoder.raw_decode(text, pos)
            pos = _skip(text, pos) + 1  # past the comma
    except (json.JSONDecodeError, ValueError):
        return [1] * count
    return lines


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _candidate(item: dict[str, Any], number: int, shown: str, line: int) -> Candidate:
    """One item as a Candidate; a missing title or type, or a value of the wrong shape, is a problem."""
    ident = item.get("id")
    label = f"item {number}" + (f" ({ident})" if isinstance(ident, str | int) and str(ident) else "")
    problems: list[Problem] = []

    def text(name: str) -> str:
        value = item.get(name)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return " ".join(MARKUP_RE.sub("", str(value)).split())
        if value is not None:
            reason = f"expected text, found {_kind(value)}"
            problems.append(Problem(shown, line, label, name, reason, f'write "{name}": "..."'))
        return ""

    csl_type = text("type")
    fields = _fields(item, csl_type, text)
    shapes = {p.field for p in problems}  # a value of the wrong shape is reported once
    if not csl_type and "type" not in shapes:
        problems.append(Problem(shown, line, label, "type", "CSL-JSON item has no type", TYPE_HINT))
    if not fields.get("title") and "title" not in shapes:
        problems.append(
            Problem(shown, line, label, "title", "CSL-JSON item has no title", 'add "title": "..."')
        )
    key = text("citation-key") or text("citationKey") or (str(ident) if isinstance(ident, str) else "")
    candidate = Candidate(
        _entry_type(csl_type, fields),
        {k: v for k, v in fields.items() if v},
        _names(item.get("author"), label, "author", shown, line, problems),
        shown,
        line,
        key if KEY_RE.match(key) else None,
        editors=_names(item.get("editor"), label, "editor", shown, line, problems),
    )
    candidate.problems = problems
    return candidate


def _entry_type(csl_type: str, fields: dict[str, str]) -> str:
    kind = CSL_TYPES.get(csl_type, "misc")
    if csl_type == "article" and not fields.get("journal"):
        return "misc"
    if csl_type == "thesis" and "master" in fields.get("type", "").lower():
        return "mastersthesis"
    return kind


def _fields(item: dict[str, Any], csl_type: str, text: Callable[[str], str]) -> dict[str, str]:
    """The BibTeX fields of an item, as plain text (`text(name)` reads one CSL variable)."""
    kind = CSL_TYPES.get(csl_type, "misc")
    venue = text("container-title") or text("container-title-short") or text("journalAbbreviation")
    fields = {name: text(csl) for csl, name in PLAIN.items()}
    fields["title"] = text("title")
    fields.update(_date(item.get("issued")))
    fields["pages"] = re.sub(r"(?<=\w)\s*[-\u2010-\u2015]+\s*(?=\w)", "--", text("page"))
    publisher = text("publisher")
    if kind == "article":
        fields["journal"] = venue
        fields["number"] = text("issue")
    elif kind in ("incollection", "inproceedings"):
        fields["booktitle"] = venue or (text("event-title") if kind == "inproceedings" else "")
        fields["number"] = text("issue")
    elif kind == "misc":
        fields["howpublished"] = venue
    if kind == "techreport":
        fields["institution"], fields["number"] = publisher, text("number")
    elif kind == "phdthesis":
        fields["school"], fields["type"] = publisher, text("genre")
    else:
        fields["publisher"] = publisher
    fields["keywords"] = _keywords(item.get("keyword"), text)
    for name, pattern in (("pmid", r"PMID:\s*(\d+)"), ("pmcid", r"PMCID:\s*(PMC\d+)")):
        found = re.search(pattern, fields["note"])  # Zotero puts its Extra field in `note`
        if not fields[name] and found:
            fields[name] = found.group(1)
    return fields


def _keywords(value: Any, text: Callable[[str], str]) -> str:
    """CSL's `keyword` is one string (kept as written); a list, as some tools write, is joined by "; "."""
    if isinstance(value, list):
        return "; ".join(dict.fromkeys(" ".join(str(v).split()) for v in value if str(v).strip()))
    return text("keyword")


def _date(issued: Any) -> dict[str, str]:
    """Year and month of `issued`: date-parts, else raw or literal text (or an EDTF string)."""
    if isinstance(issued, list) and issued and isinstance(issued[0], dict):
        issued = issued[0]  # the old citeproc-js form: a list of date objects
    parts: list[Any] = []
    if isinstance(issued, dict):
        given = issued.get("date-parts")
        first = given[0] if isinstance(given, list) and given else None
        parts = first if isinstance(first, list) else []
        if not parts:
            issued = str(issued.get("raw") or issued.get("literal") or "")
    if isinstance(issued, str):
        found = YEAR_RE.search(issued)
        numeric = re.match(r"^\s*\d{4}-(\d\d)", issued)  # EDTF / ISO: 2020-03-15
        parts = [found.group(0) if found else "", numeric.group(1) if numeric else ""]
    year = str(parts[0]).strip() if parts else ""
    month = str(parts[1]).strip() if len(parts) > 1 else ""
    fields = {"year": year if re.fullmatch(r"\d{4}", year) else ""}
    if month.isdigit() and 1 <= int(month) <= 12:
        fields["month"] = MONTHS[int(month) - 1][:3].lower()
    return fields


def _names(value: Any, label: str, field: str, shown: str, line: int, problems: list[Problem]) -> list[Name]:
    """CSL name objects as Names: `literal` is a body, kept as one (braced) name; particles go
    with the family name as BibTeX's von part; `suffix` is its Jr part."""
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]
    names = []
    for person in value:
        if not isinstance(person, dict):
            reason = f"expected name objects, found {_kind(person)}"
            problems.append(Problem(shown, line, label, field, reason, '{"family": "...", "given": "..."}'))
            continue
        part = {k: " ".join(str(v).split()) for k, v in person.items() if isinstance(v, str | int)}
        family = " ".join(
            p
            for p in (part.get("dropping-particle"), part.get("non-dropping-particle"), part.get("family"))
            if p
        )
        if part.get("literal") and not family:
            names.append(Name(part["literal"], corporate=True))
        elif family:
            names.append(Name(family, part.get("given", ""), part.get("suffix", "")))
        elif part.get("given"):  # one name only (a mononym)
            names.append(Name(part["given"]))
    return names
