"""Our import readers against independent parsers, on every real export in ../shared/real-inputs.

Each file is read twice: by our reader (importers.read_candidates on the decoded file, what
`tmskb add` reads) and by a parser that shares no code with it: pybtex for BibTeX, rispy for
RIS, Biopython's Bio.Medline for PubMed MEDLINE. Per file the two must find the same number of
entries, and every field the independent parser gives that has a BibTeX counterpart must be
in our candidate with the same text after `norm`. Then `tmskb add --skip-bad` runs on a fresh
copy of tests/data/kb, and the well-formed entries it imports are counted per source (the
origin named in SOURCES.md and the file names: jabref, pybtex, rispy, ...).

What the comparison normalises (`norm`), on both sides alike: LaTeX as Unicode (pylatexenc,
math kept verbatim), braces dropped, Unicode NFC, runs of whitespace as one space. Beyond that:
month macros and names as month numbers; DOIs lower-case without a resolver prefix; pages
compared by their first and last page; person names as the multiset of their words (so
'Shannon,Claude E.' equals Last 'Shannon', First 'Claude E.'); keyword lists as sets of terms
split on ';'; PubMed's trailing period on titles dropped; a year by its four digits.

An entry is *well-formed* when the independent parser reads it without reporting an error in
it and it has what a citation of its kind needs: for BibTeX the required fields BibTeX's own
documentation (btxdoc) lists for its type (unknown types are @misc, which needs none; a
crossref parent's fields count; @set, @xdata and IEEEtran's control entry are instructions
to styles, not works); for RIS and MEDLINE a title, an author or editor (a person or a body)
and a year, plus a journal for a journal article. Files the independent parser also rejects
(text it cannot decode) must be reported by us with a file:line.

Fields with no BibTeX counterpart are not compared (not carried by design): reference-manager
bookkeeping (RIS ID, AN when not a PMID, DB, DP, C1-C8, LB, CN, Y2, RN, L1/L4, M3, RP, AD, N1
notes; MEDLINE's OWN/STAT/dates, AD affiliations, PT, LA, PL, JID, SB, GR, RN, IS, PII), and
RIS URLs after the first (BibTeX's url holds one address).

`pytest tests/test_real_inputs_parity.py -s` (or `python bench/real_inputs.py`) prints the
figures per source.
"""

from __future__ import annotations

import io
import re
import shutil
import traceback
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbib
import pybtex.errors
import pytest
import rispy
from Bio import Medline
from conftest import DATA
from pybtex.database import parse_string as pybtex_parse
from pylatexenc.latex2text import LatexNodes2Text
from test_real_inputs import FILES, REAL

from indexer import pipeline
from indexer.adding import add_references
from indexer.bib import decode_latex, people
from indexer.candidates import Candidate, Name
from indexer.importers import decode_input, detect_format, read_candidates
from indexer.settings import Settings

FLOOR = 0.90  # share of well-formed entries `tmskb add --skip-bad` must import, overall and per source
MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
# BibTeX's required fields per type (btxdoc, "Entry types"); a tuple is "one of".
BTXDOC_REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "article": (("author",), ("title",), ("journal",), ("year",)),
    "book": (("author", "editor"), ("title",), ("publisher",), ("year",)),
    "booklet": (("title",),),
    "conference": (("author",), ("title",), ("booktitle",), ("year",)),
    "inbook": (("author", "editor"), ("title",), ("chapter", "pages"), ("publisher",), ("year",)),
    "incollection": (("author",), ("title",), ("booktitle",), ("publisher",), ("year",)),
    "inproceedings": (("author",), ("title",), ("booktitle",), ("year",)),
    "manual": (("title",),),
    "mastersthesis": (("author",), ("title",), ("school",), ("year",)),
    "phdthesis": (("author",), ("title",), ("school",), ("year",)),
    "proceedings": (("title",), ("year",)),
    "techreport": (("author",), ("title",), ("institution",), ("year",)),
    "unpublished": (("author",), ("title",), ("note",)),
}
NOT_WORKS = {"set", "xdata", "ieeetranbstctl"}
# biblatex names our reader maps to BibTeX ones (bib.BIBLATEX_FIELDS), and MeSH's one name.
RENAMED = {"journaltitle": "journal", "location": "address", "mesh-terms": "mesh"}
NOT_COMPARED_BIBTEX = {"crossref"}  # resolved: the parent's fields are filled in instead
_LATEX = LatexNodes2Text(math_mode="verbatim", strict_latex_spaces=True)


# -- normalisation (for comparing only) ---------------------------------------------------------


def norm(text: str) -> str:
    """LaTeX as Unicode, braces dropped, NFC, whitespace collapsed."""
    if "\\" in text or "$" in text or "~" in text or "--" in text:
        try:
            text = _LATEX.latex_to_text(re.sub(r"(?<!\\)%", r"\\%", text))
        except Exception:  # pylatexenc gives up on some inputs: compare them as written
            pass
        text = text.replace("~", " ")
    text = text.replace("{", "").replace("}", "").replace("–", "--").replace("—", "---")
    return " ".join(unicodedata.normalize("NFC", text).split())


def norm_month(text: str) -> str:
    value = norm(text).lower()
    if value[:3] in MONTHS:
        return str(MONTHS.index(value[:3]) + 1)
    return value.lstrip("0")


def norm_doi(text: str) -> str:
    return re.sub(r"^(?:https?://[^/]*doi[^/]*/|doi:\s*)", "", norm(text).strip(), flags=re.I).lower()


def norm_pages(text: str) -> tuple[str, str]:
    """First and last page: '1065-72' and '1065--1072' alike."""
    parts = [p for p in re.split(r"\s*(?:-+|–|—)\s*", norm(text)) if p]
    if not parts:
        return "", ""
    first, last = parts[0], parts[-1]
    if last.isdigit() and first.isdigit() and len(last) < len(first):
        last = first[: len(first) - len(last)] + last
    return first, last


def name_words(text: str) -> list[str]:
    return sorted(w for w in re.split(r"[\s,.]+", norm(text)) if w)


def ours_words(name: Name) -> list[str]:
    return name_words(f"{name.last} {name.first} {name.jr}")


def terms(values: Iterable[str]) -> set[str]:
    return {norm(t).lower() for v in values for t in v.split(";") if norm(t)}


def year_of(text: str) -> str:
    found = re.search(r"\b(1[5-9]|20)\d\d\b", text)
    return found.group(0) if found else ""


# -- the comparison ------------------------------------------------------------------------------


@dataclass
class Entry:
    """One entry as the independent parser read it, with what it needs for the comparison."""

    label: str
    fields: dict[str, Any]  # the parser's own field names and values
    well_formed: bool
    errors: list[str] = field(default_factory=list)


@dataclass
class FileParity:
    name: str
    source: str  # bib/jabref, ris/rispy, ...
    independent: list[Entry] = field(default_factory=list)
    ours: list[Candidate] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # what the independent parser refused, with lines
    reported: list[str] = field(default_factory=list)  # our problems (file:line: ...)
    lost: list[str] = field(default_factory=list)  # fields the independent parser has and we do not
    imported: int = 0  # well-formed entries `tmskb add --skip-bad` wrote
    duplicates: int = 0  # well-formed entries it held back as suspected duplicates (--force adds them)
    check: list[str] = field(default_factory=list)  # what `tmskb check` says after the add
    tracebacks: list[str] = field(default_factory=list)
    unreadable: bool = False  # an independent parser rejects the file as a whole
    added: int = 0  # entries `tmskb add --skip-bad` wrote, well-formed or not

    @property
    def well_formed(self) -> int:
        return sum(e.well_formed for e in self.independent)

    @property
    def expected(self) -> int:
        """The well-formed entries an add should write: all but the suspected duplicates."""
        return self.well_formed - self.duplicates


def source_of(path: Path) -> str:
    return f"{path.parent.name}/{path.name.split('__', 1)[0]}"


def independent_decode(data: bytes) -> tuple[str | None, str]:
    """The text as the independent parsers get it: Python's codecs, UTF-8 (a byte-order mark
    dropped) or UTF-16 with a byte-order mark, or the encoding a JabRef '% Encoding:' header names.
    None and why (with the line) when none decodes it."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16"), ""
    try:
        return data.decode("utf-8-sig"), ""
    except UnicodeDecodeError as exc:
        header = re.search(rb"^%\s*Encoding:\s*(\S+)", data[:1000], re.M | re.I)
        if header and header.group(1).lower() not in (b"utf-8", b"utf8"):
            try:
                return data.decode(header.group(1).decode("ascii")), ""
            except (LookupError, UnicodeDecodeError):
                pass
        line = data[: exc.start].count(b"\n") + 1
        return None, f"line {line}: {exc.reason}"


def read_bibtex(text: str) -> tuple[list[Entry], list[tuple[int | None, str]]]:
    """pybtex's entries and its errors (line, message), in file order."""
    with pybtex.errors.capture() as errors:
        data = pybtex_parse(text, "bibtex")
    found = [(getattr(e, "lineno", None), str(e)) for e in errors]
    entries = []
    for key, entry in data.entries.items():
        fields = {name.lower(): str(value) for name, value in entry.fields.items()}
        persons = {role.lower(): list(ps) for role, ps in entry.persons.items()}
        parent = data.entries.get(fields.get("crossref", ""))
        have = set(fields) | set(persons)
        if parent is not None:
            have |= {n.lower() for n in parent.fields} | {r.lower() for r in parent.persons}
            have |= {"booktitle"} if "title" in {n.lower() for n in parent.fields} else set()
        kind = entry.type.lower()
        complete = all(any(n in have for n in names) for names in BTXDOC_REQUIRED.get(kind, ()))
        entries.append(Entry(key, {"fields": fields, "persons": persons}, complete and kind not in NOT_WORKS))
    repeated = sum(1 for _, message in found if message.startswith("repeated bibliography entry"))
    entries += [Entry("(repeated key)", {"fields": {}, "persons": {}}, False) for _ in range(repeated)]
    return entries, found


def compare_bibtex(entry: Entry, ours: Candidate) -> list[str]:
    lost = []
    if not entry.label.startswith("unnamed-") and (ours.given_key or "").lower() != entry.label.lower():
        return [f"entry '{entry.label}' read as '{ours.given_key}' (entries out of step)"]
    for name, value in entry.fields["fields"].items():
        if name in NOT_COMPARED_BIBTEX or not norm(value):
            continue
        mine = ours.bibtex.get(name, ours.bibtex.get(RENAMED.get(name, name)))
        same = {"month": norm_month, "doi": norm_doi}.get(name, norm)
        if mine is None:
            lost.append(f"{name}: missing (independent: {norm(value)[:60]!r})")
        elif same(mine) != same(value):
            lost.append(f"{name}: {norm(mine)[:60]!r} != independent {norm(value)[:60]!r}")
    for role, persons in entry.fields["persons"].items():
        expected = [
            name_words(
                " ".join(
                    map(
                        str,
                        [*p.first_names, *p.middle_names, *p.prelast_names, *p.last_names, *p.lineage_names],
                    )
                )
            )
            for p in persons
        ]
        if role == "author":
            got = [ours_words(n) for n in ours.authors]
        elif role not in ours.bibtex:
            got = []
        else:
            try:
                got = [
                    name_words(f"{a.von} {a.last} {a.first} {a.jr}")
                    for a in people(decode_latex(ours.bibtex[role])[0])
                ]
            except Exception as exc:
                got = [[f"unreadable: {exc}"]]
        if got != expected:
            lost.append(f"{role}: {got[:3]} != independent {expected[:3]}")
    return lost


def _ris_editors(record: dict[str, Any]) -> list[str]:
    """A2, and ED (which rispy keeps among the tags it does not know)."""
    return record.get("secondary_authors", []) + list(record.get("unknown_tag", {}).get("ED", []))


def read_ris(text: str) -> list[Entry]:
    entries = []
    for record in rispy.loads(text):
        authors = record.get("authors", []) + record.get("first_authors", [])
        editors = _ris_editors(record)
        year = year_of(record.get("year", "") or record.get("publication_year", "") or record.get("date", ""))
        title = record.get("title") or record.get("primary_title")
        kind = record.get("type_of_reference", "")
        venue = [
            record.get(k)
            for k in (
                "journal_name",
                "alternate_title3",
                "secondary_title",
                "alternate_title2",
                "alternate_title1",
            )
        ]
        journal_ok = kind not in ("JOUR", "JFULL", "EJOUR", "MGZN") or any(venue)
        label = f"{(authors or ['?'])[0]} {year}"
        entries.append(Entry(label, record, bool(title and (authors or editors) and year and journal_ok)))
    return entries


def _first(value: Any) -> str:
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return str(value or "")


def compare_ris(entry: Entry, ours: Candidate) -> list[str]:
    record, fields, lost = entry.fields, ours.fields, []

    def same(name: str, expected: str, got: str | None, how: Any = norm) -> None:
        if expected and how(expected) != how(got or ""):
            lost.append(f"{name}: {norm(got or '')[:60]!r} != independent {norm(expected)[:60]!r}")

    same("title", _first(record.get("title") or record.get("primary_title")), fields.get("title"))
    authors = record.get("authors", []) + record.get("first_authors", [])
    if [name_words(a) for a in authors] != [ours_words(n) for n in ours.authors]:
        lost.append(f"authors: {ours.authors[:3]} != independent {authors[:3]}")
    editors = _ris_editors(record)
    if [name_words(a) for a in editors] != [ours_words(n) for n in ours.editors]:
        lost.append(f"editors: {ours.editors[:3]} != independent {editors[:3]}")
    year = record.get("year") or record.get("publication_year") or record.get("date") or ""
    same("year", year_of(year), fields.get("year"))
    venues = [
        _first(record.get(k))
        for k in (
            "journal_name",
            "alternate_title3",
            "secondary_title",
            "alternate_title2",
            "alternate_title1",
            "tertiary_title",
        )
    ]
    venues = [norm(v) for v in venues if v]
    mine = [norm(fields[k]) for k in ("journal", "booktitle", "howpublished", "series") if fields.get(k)]
    if venues and not set(venues) & set(mine):
        lost.append(f"journal/booktitle: {mine} != independent {venues}")
    for key, name in (
        ("volume", "volume"),
        ("number", "number"),
        ("publisher", "publisher"),
        ("place_published", "address"),
    ):
        same(name, _first(record.get(key)), fields.get(name))
    if ours.entry_type == "book":  # for a journal article EndNote's ET holds the e-publication date
        same("edition", _first(record.get("edition")), fields.get("edition"))
    same("doi", _first(record.get("doi")), fields.get("doi"), norm_doi)
    if record.get("issn"):
        same("issn/isbn", _first(record["issn"]), fields.get("issn") or fields.get("isbn"))
    start, end = _first(record.get("start_page")), _first(record.get("end_page"))
    if start:
        expected = norm_pages(f"{start}--{end}" if end else start)
        if norm_pages(fields.get("pages", "")) != expected:
            lost.append(f"pages: {fields.get('pages')!r} != independent {expected}")
    abstract = _first(record.get("abstract")) or _first(record.get("notes_abstract"))
    same("abstract", abstract, fields.get("abstract"))
    if record.get("keywords") and terms(record["keywords"]) != terms([fields.get("keywords", "")]):
        lost.append(f"keywords: {fields.get('keywords')!r} != independent {record['keywords'][:5]}")
    urls = [u for v in record.get("urls", []) for u in re.split(r"[\s;]+", v) if u]
    if urls and fields.get("url") != urls[0]:
        lost.append(f"url: {fields.get('url')!r} != independent {urls[0]!r}")
    return lost


def read_wos(text: str) -> list[Entry]:
    entries = []
    for record in rispy.loads(text, implementation=rispy.WokParser):
        authors = record.get("author_full_name") or record.get("authors") or []
        year = year_of(record.get("publication_year", ""))
        title, journal = record.get("document_title"), record.get("publication_name")
        ok = bool(title and authors and year and (journal or record.get("publication_type") != "J"))
        entries.append(Entry(f"{(authors or ['?'])[0]} {year}", record, ok))
    return entries


def compare_wos(entry: Entry, ours: Candidate) -> list[str]:
    record, fields, lost = entry.fields, ours.fields, []
    for key, name, how in (
        ("document_title", "title", norm),
        ("publication_name", "journal", norm),
        ("publication_year", "year", norm),
        ("volume", "volume", norm),
        ("issue", "number", norm),
        ("doi", "doi", norm_doi),
        ("pubmed_id", "pmid", norm),
        ("abstract", "abstract", norm),
        ("publisher", "publisher", norm),
        ("issn", "issn", norm),
    ):
        expected, got = _first(record.get(key)), fields.get(name, "")
        if expected and how(expected) != how(got):
            lost.append(f"{name}: {norm(got)[:60]!r} != independent {norm(expected)[:60]!r}")
    if record.get("beginning_page"):
        pages = norm_pages(f"{record['beginning_page']}--{record.get('ending_page', '')}")
        if norm_pages(fields.get("pages", "")) != pages:
            lost.append(f"pages: {fields.get('pages')!r} != independent {pages}")
    authors = record.get("author_full_name") or record.get("authors") or []
    if [name_words(a) for a in authors] != [ours_words(n) for n in ours.authors]:
        lost.append(f"authors: {ours.authors[:3]} != independent {authors[:3]}")
    keywords = record.get("author_keywords")
    if keywords and terms([_first(keywords)] if isinstance(keywords, str) else keywords) != terms(
        [fields.get("keywords", "")]
    ):
        lost.append(f"keywords: {fields.get('keywords')!r} != independent {keywords}")
    return lost


def read_medline(text: str) -> list[Entry]:
    entries = []
    for record in Medline.parse(io.StringIO(text)):
        record = dict(record)
        if not any(k.strip() for k in record):
            continue
        names = record.get("FAU") or record.get("AU") or []
        people_ = names + record.get("CN", []) + (record.get("FED") or record.get("ED") or [])
        title = record.get("TI") or record.get("BTI")
        year = year_of(_first(record.get("DP")))
        book = bool(record.get("BTI")) or "Book" in " ".join(record.get("PT", []))
        journal_ok = book or record.get("TA") or record.get("JT")
        label = f"PMID {_first(record.get('PMID'))}"
        entries.append(Entry(label, record, bool(title and people_ and year and journal_ok)))
    return entries


def _list(value: Any) -> list[str]:
    """Bio.Medline gives a tag seen once in a text field as a string, others as lists."""
    return [value] if isinstance(value, str) else list(value or [])


def _period(text: str) -> str:
    return re.sub(r"(?<![.\s])\.$", "", norm(text))


def compare_medline(entry: Entry, ours: Candidate) -> list[str]:
    record, fields, lost = entry.fields, ours.fields, []

    def same(name: str, expected: str, got: str | None, how: Any = norm) -> None:
        if expected and how(expected) != how(got or ""):
            lost.append(f"{name}: {norm(got or '')[:60]!r} != independent {norm(expected)[:60]!r}")

    title, book = _first(record.get("TI")), _first(record.get("BTI"))
    if title:
        same("title", title, fields.get("title"), _period)
    if book:
        same("booktitle" if title else "title", book, fields.get("booktitle" if title else "title"), _period)
    same("pmid", _first(record.get("PMID")), fields.get("pmid"))
    same("pmcid", _first(record.get("PMC")), fields.get("pmcid"))
    same("year", year_of(_first(record.get("DP"))), fields.get("year"))
    same("abstract", _first(record.get("AB")), fields.get("abstract"))
    same("volume", _first(record.get("VI")), fields.get("volume"))
    same("number", _first(record.get("IP")), fields.get("number"))
    same("publisher", _first(record.get("PB")), fields.get("publisher"))
    same("isbn", _first(record.get("ISBN")), fields.get("isbn"))
    if record.get("PG"):
        same("pages", _first(record["PG"]), fields.get("pages"), norm_pages)
    journals = {norm(_first(record.get("TA"))), re.sub(r"\s*\([^()]*\)$", "", norm(_first(record.get("JT"))))}
    journals.discard("")
    if journals and not book and norm(fields.get("journal", "")) not in journals:
        lost.append(f"journal: {fields.get('journal')!r} != independent {sorted(journals)}")
    ids = " ".join(_list(record.get("LID")) + _list(record.get("AID")))  # Bio.Medline joins LID lines
    dois = re.findall(r"(\S+) \[doi\]", ids)
    if dois:
        same("doi", dois[0], fields.get("doi"), norm_doi)
    persons = [name_words(a) for a in (record.get("FAU") or record.get("AU") or [])]
    if persons != [ours_words(n) for n in ours.authors if not n.corporate]:
        lost.append(
            f"authors: {ours.authors[:3]} != independent {(record.get('FAU') or record.get('AU') or [])[:3]}"
        )
    bodies = [norm(c) for c in record.get("CN", [])]
    if bodies != [norm(n.last) for n in ours.authors if n.corporate]:
        lost.append(
            f"collective authors (CN): {[n for n in ours.authors if n.corporate]} != independent {bodies}"
        )
    editors = [name_words(a) for a in (record.get("FED") or record.get("ED") or [])]
    if editors != [ours_words(n) for n in ours.editors]:
        lost.append(f"editors: {ours.editors[:3]} != independent {editors[:3]}")
    if record.get("OT") and terms(record["OT"]) != terms([fields.get("keywords", "")]):
        lost.append(f"keywords: {fields.get('keywords')!r} != independent {record['OT'][:5]}")
    if record.get("MH") and terms(record["MH"]) != terms([fields.get("mesh", "")]):
        lost.append(f"mesh: {fields.get('mesh')!r} != independent {record['MH'][:5]}")
    return lost


READERS: dict[str, Callable[[str], list[Entry]]] = {"ris": read_ris, "wos": read_wos, "medline": read_medline}
COMPARE = {"bibtex": compare_bibtex, "ris": compare_ris, "wos": compare_wos, "medline": compare_medline}


def compare_file(path: Path, where: Path) -> FileParity:
    """Read `path` both ways, compare, then `tmskb add --skip-bad` it into a copy of tests/data/kb."""
    name = str(path.relative_to(REAL))
    result = FileParity(name, source_of(path))
    data = path.read_bytes()
    text, why = independent_decode(data)
    # The format the file's first line names (a Web of Science export among the RIS files).
    fmt = detect_format(text or "", name) or {"bib": "bibtex"}.get(path.parent.name, path.parent.name)
    if text is None:
        result.rejected.append(f"{name}: {why}")
        result.unreadable = True
    else:
        try:
            if fmt == "bibtex":
                result.independent, errors = read_bibtex(text)
                result.rejected += [f"{name}:{line}: {message}" for line, message in errors]
            else:
                result.independent = READERS[fmt](text)
                if not result.independent:
                    result.rejected.append(f"{name}: no complete record")
                    result.unreadable = True
            if fmt == "medline":
                _medline_layout(result, text)
        except Exception as exc:  # the independent parser gives up on the file: it rejects it
            result.rejected.append(f"{name}: {type(exc).__name__}: {exc}")
            result.unreadable = True
    try:
        ours_text, problems = decode_input(data, name)
        if ours_text is not None:
            result.ours, found = read_candidates(ours_text, name)
            problems += found
        result.reported = [str(p) for p in problems]
    except Exception:
        result.tracebacks.append(f"read_candidates: {traceback.format_exc()}")
    _mark_errors(result)
    compare = COMPARE[fmt]
    for entry, candidate in zip(result.independent, result.ours, strict=False):
        if result.unreadable and fmt == "medline":
            continue  # Bio.Medline reads columns: off MEDLINE's layout its values are not the file's
        result.lost += [
            f"{name}:{candidate.line}: {entry.label}: {lost}" for lost in compare(entry, candidate)
        ]
    _add(result, data, where)
    return result


def _medline_layout(result: FileParity, text: str) -> None:
    """nbib, a strict MEDLINE reader, as the judge of the layout Bio.Medline's columns assume."""
    try:
        nbib.read(text)
    except Exception as exc:
        quoted = re.search(r'"(.*)"', str(exc))
        lines = text.splitlines()
        line = next((i for i, t in enumerate(lines, 1) if quoted and t.strip() == quoted.group(1).strip()), 0)
        result.rejected.append(f"{result.name}:{line}: nbib: {exc}")
        result.unreadable = True
        for entry in result.independent:
            entry.well_formed = False


def _mark_errors(result: FileParity) -> None:
    """An entry holding a line the independent parser reported an error on is not well-formed."""
    lines = [c.line for c in result.ours]
    for text in result.rejected:
        found = re.match(r".*?:(\d+): ", text)
        if not found or not lines:
            continue
        line = int(found.group(1))
        index = max((i for i, start in enumerate(lines) if start <= line), default=None)
        if index is not None and index < len(result.independent):
            result.independent[index].well_formed = False
            result.independent[index].errors.append(text)


def _add(result: FileParity, data: bytes, where: Path) -> None:
    root = where / "kb"
    shutil.copytree(DATA / "kb", root)
    settings = Settings.for_root(root, where / "index")
    try:
        report = add_references(settings, [(result.name, data)], skip_bad=True)
    except Exception:
        result.tracebacks.append(f"tmskb add --skip-bad: {traceback.format_exc()}")
        return
    result.reported += [str(p) for p in report.problems + report.skipped]
    if report.written:
        result.check = [str(p) for p in pipeline.load(settings).problems]
    well_formed = {c.line for c, e in zip(result.ours, result.independent, strict=False) if e.well_formed}
    result.imported = sum(1 for _, c in report.added if c.line in well_formed) if report.written else 0
    result.added = len(report.added) if report.written else 0
    result.duplicates = sum(1 for c, _ in report.refused if c.line in well_formed)


# -- figures -------------------------------------------------------------------------------------


def survey(where: Path) -> list[FileParity]:
    assert REAL.is_dir(), f"{REAL} is missing: clone the shared inputs beside the project"
    return [compare_file(path, where / str(i)) for i, path in enumerate(FILES)]


def table(results: list[FileParity]) -> str:
    rows: dict[str, list[FileParity]] = {}
    for r in results:
        rows.setdefault(r.source, []).append(r)
    rows["all"] = results
    head = (
        f"{'source':<22} {'files':>5} {'independent':>11} {'ours':>5} {'well-formed':>11} "
        f"{'duplicates':>10} {'imported':>8} {'%':>6} {'lost':>5} {'rejected':>8}"
    )
    lines = [head, "-" * len(head)]
    for source, group in rows.items():
        expected = sum(r.expected for r in group)
        imported = sum(r.imported for r in group)
        pct = f"{100 * imported / expected:.1f}" if expected else "-"
        lines.append(
            f"{source:<22} {len(group):>5} {sum(len(r.independent) for r in group):>11} "
            f"{sum(len(r.ours) for r in group):>5} {sum(r.well_formed for r in group):>11} "
            f"{sum(r.duplicates for r in group):>10} {imported:>8} {pct:>6} "
            f"{sum(len(r.lost) for r in group):>5} {sum(1 for r in group if r.rejected):>8}"
        )
    lines.append(
        "independent: entries pybtex/rispy/Bio.Medline read; ours: entries importers.read_candidates "
        "reads; duplicates: well-formed entries `add --skip-bad` holds back as suspected duplicates; "
        "% = imported / (well-formed - duplicates); lost: fields the independent parser has and we "
        "do not; rejected: files in which the independent parser reports an error."
    )
    return "\n".join(lines)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[FileParity]:
    return survey(tmp_path_factory.mktemp("parity"))


def test_figures_per_source(results: list[FileParity], capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + table(results))
    assert len(results) >= 98


def test_no_tracebacks(results: list[FileParity]) -> None:
    assert [t for r in results for t in r.tracebacks] == []


def test_entry_counts_equal_the_independent_parsers(results: list[FileParity]) -> None:
    differ = [
        f"{r.name}: ours {len(r.ours)}, independent {len(r.independent)}"
        for r in results
        if len(r.ours) != len(r.independent) and not r.unreadable
    ]
    assert differ == []


def test_no_field_is_lost_against_the_independent_parsers(results: list[FileParity]) -> None:
    lost = [line for r in results for line in r.lost]
    assert lost == [], f"{len(lost)} fields lost:\n" + "\n".join(lost[:60])


def test_files_the_independent_parser_rejects_are_reported_with_a_line(results: list[FileParity]) -> None:
    """...or, read more leniently than the independent parser, imported without a broken KB."""
    for r in results:
        if r.unreadable and not r.added:
            assert any(re.match(rf"{re.escape(r.name)}:\d+: ", p) for p in r.reported), (r.name, r.reported)


def test_no_successful_add_leaves_check_failing(results: list[FileParity]) -> None:
    assert [f"{r.name}: {r.check[0]}" for r in results if r.check] == []


def test_at_least_90_percent_of_well_formed_entries_are_imported(results: list[FileParity]) -> None:
    by_source: Counter[str] = Counter()
    imported: Counter[str] = Counter()
    for r in results:
        by_source[r.source] += r.expected
        imported[r.source] += r.imported
    short = {s: f"{imported[s]}/{n}" for s, n in by_source.items() if n and imported[s] < FLOOR * n}
    assert short == {}
    assert sum(imported.values()) >= FLOOR * sum(by_source.values())
