"""Read references to add from BibTeX, RIS, PubMed MEDLINE (.nbib), Web of Science and CSL-JSON files.

Every format becomes the same Candidate: a BibTeX entry type, plain Unicode fields (for keys,
duplicate checks and messages), authors and editors as Names and normalised identifiers (DOI
lower-case without resolver prefix, PMID digits, PMCID as PMC + digits). A BibTeX import also
keeps each value's own source text (`bibtex`), which is what gets written. BibTeX goes through
bib.py, the parser `tmskb check` uses; the tagged formats (RIS, MEDLINE, WoS: one `TAG - value`
per line) through one line reader here; CSL-JSON through csljson.py. Problems name the file,
line and record.

Abstracts, keywords and MeSH terms are kept as the `abstract`, `keywords` and `mesh` fields,
lists joined with KEYWORD_SEPARATOR ("; ": MeSH headings such as 'Pain, Intractable' hold
commas, so a comma cannot separate them).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from bibtexparser.middlewares.names import parse_single_name_into_parts

from .bib import (
    CHECKED_FIELDS,
    Source,
    decode,
    decode_latex,
    entry_problems,
    normalise_doi,
    people,
    read_source,
)
from .candidates import Candidate, Name
from .csljson import read_csljson
from .models import Problem

__all__ = ["Candidate", "Name", "decode_input", "detect_format", "person", "read_candidates"]

RIS_TYPES = {
    "JOUR": "article",
    "JFULL": "article",
    "EJOUR": "article",
    "MGZN": "article",
    "NEWS": "article",
    "INPR": "article",
    "CONF": "inproceedings",
    "CPAPER": "inproceedings",
    "ABST": "misc",
    "BOOK": "book",
    "EBOOK": "book",
    "EDBOOK": "book",
    "CHAP": "incollection",
    "ECHAP": "incollection",
    "THES": "phdthesis",
    "RPRT": "techreport",
    "ELEC": "online",
    "BLOG": "online",
    "WEB": "online",
    # EndNote writes some types out in full
    "JOURNAL ARTICLE": "article",
    "BOOK SECTION": "incollection",
    "CONFERENCE PAPER": "inproceedings",
    "CONFERENCE PROCEEDINGS": "inproceedings",
    "THESIS": "phdthesis",
    "REPORT": "techreport",
}
WOS_TYPES = {"J": "article", "B": "book", "S": "incollection", "P": "misc"}
CANDIDATE_FIELDS = CHECKED_FIELDS | {"journal", "booktitle", "editor", "volume", "number", "pages"}
KEYWORD_SEPARATOR = "; "
FORMAT_ALIASES = {"csl-json": "csljson"}
# RIS tags holding one name or keyword per line: an untagged line after one is the next item.
RIS_LIST_TAGS = frozenset({"AU", "A1", "A2", "A3", "A4", "ED", "KW"})
ISSN_RE = re.compile(r"\b\d{4}-\d{3}[\dX]\b")
PMID_RE = re.compile(r"^\d{1,9}$")
PMCID_RE = re.compile(r"^(?:PMC)?(\d{3,9})$", re.I)
SUFFIX_RE = re.compile(r"^(?:Jr|Sr|II|III|IV|2nd|3rd|4th)\.?$", re.I)
INITIALS_RE = re.compile(r"^(?:[A-Z]\.?-?){1,4}$")  # 'E.', 'JP', 'J.-P.'
CORPORATE_RE = re.compile(
    r"\b(?:Organi[sz]ation|Group|Committee|Association|Society|Consortium|Collaboration|Institute|"
    r"Council|Network|Investigators|Task Force|Foundation|Agency|Ministry|Department|Federation|"
    r"Academy|College|Board|Panel|Centre|Center|Office|Working)\b",
    re.I,
)
ENCODING_RE = re.compile(rb"^\s*%\s*Encoding:\s*([\w.:-]+)", re.I | re.M)
# One line of a tagged format; the value may be missing ('ER  -').
TAG_LINES = {
    "ris": re.compile(r"^([A-Z][A-Z0-9]) {1,2}-(?: (.*)|\s*)$"),
    "medline": re.compile(r"^([A-Z][A-Z0-9]{1,3}) *-(?: ?(.*))$"),
    "wos": re.compile(r"^([A-Z][A-Z0-9])(?: (.*))?$"),
}


def decode_input(data: bytes, shown: str) -> tuple[str | None, list[Problem]]:
    """An import file's text: UTF-8 (a byte-order mark is dropped), UTF-16 with a byte-order
    mark, or the encoding named by a JabRef '% Encoding: ...' line."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), []
        except UnicodeDecodeError as exc:
            return None, [Problem(shown, 1, reason=f"not UTF-16 text ({exc.reason} at byte {exc.start})")]
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        declared = ENCODING_RE.search(data[:1000])
        if declared and declared.group(1).lower().replace(b"-", b"") != b"utf8":
            try:
                return data.decode(declared.group(1).decode("ascii")), []
            except (LookupError, UnicodeDecodeError):
                pass
        line = data[: exc.start].count(b"\n") + 1
        begins = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[begins : exc.start].decode("utf-8", errors="replace")) + 1
        bad = data[exc.start : exc.end].hex(" ")
        return None, [
            Problem(
                shown,
                line,
                reason=f"not UTF-8: byte {bad} at column {column}",
                hint="save the file as UTF-8, or name its encoding in a line '% Encoding: windows-1252'",
            )
        ]


def detect_format(text: str, name: str = "") -> str | None:
    """bibtex, ris, medline, wos or csljson, from the first meaningful line, else from the file name."""
    for line in text.removeprefix("\ufeff").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("%") or re.fullmatch(r"\d+\.", stripped):
            continue  # blank, a BibTeX comment, or a record number as some RIS exporters write
        if stripped.startswith("@"):
            return "bibtex"
        if re.match(r"^TY {1,2}- ", line):
            return "ris"
        if re.match(r"^(?:PMID|PMC|PMCR)\s*-", line):
            return "medline"
        if re.match(r"^FN ", line):
            return "wos"
        if stripped.startswith(("[", "{")):
            return "csljson"
        break
    by_suffix = {
        ".bib": "bibtex",
        ".ris": "ris",
        ".nbib": "medline",
        ".medline": "medline",
        ".json": "csljson",
    }
    return by_suffix.get(Path(name).suffix.lower())


def read_candidates(text: str, shown: str, fmt: str | None = None) -> tuple[list[Candidate], list[Problem]]:
    """Candidates from one import file's text and every problem (each candidate's own are also
    on it); `shown` names the file in problems."""
    text = text.removeprefix("\ufeff")
    fmt = FORMAT_ALIASES.get(fmt or "", fmt) or detect_format(text, shown)
    if fmt is None:
        return [], [
            Problem(
                shown,
                1,
                reason="not a BibTeX, RIS or MEDLINE file, nor CSL-JSON",
                hint="give a .bib, .ris, .nbib or .json file, or --format",
            )
        ]
    if not text.strip():
        return [], [Problem(shown, 1, reason="file is empty")]
    if fmt == "bibtex":
        candidates, problems = _from_bibtex(text, shown)
    elif fmt == "csljson":
        candidates, problems = read_csljson(text, shown)
    else:
        candidates, problems = _from_tagged(text, shown, fmt)
    for candidate in candidates:
        _normalise(candidate)
        problems += candidate.problems
    if not candidates and not problems:
        problems.append(
            Problem(shown, 1, reason=f"no {fmt} records found", hint="check the file and its format")
        )
    return candidates, problems


def _from_bibtex(text: str, shown: str) -> tuple[list[Candidate], list[Problem]]:
    sources, problems = read_source(text, shown)
    memo: dict[str, tuple[str, str]] = {}
    return [_bibtex_candidate(source, shown, memo) for source in sources], problems


def _bibtex_candidate(source: Source, shown: str, memo: dict[str, tuple[str, str]]) -> Candidate:
    """A BibTeX entry as a candidate; an entry without a key gets one when it is added."""
    problems = [p for p in source.problems if not (p.field == "key" and not source.key)]
    # The validation before writing decodes every field, as `tmskb check` does; here only what
    # keys, duplicate checks, messages and the required-field check read.
    reference, found = decode(source, shown, CANDIDATE_FIELDS, memo)
    candidate = Candidate(source.entry_type, {}, [], shown, source.line, source.key or None, problems + found)
    candidate.raw = source.raw
    if reference is None:
        return candidate
    # An imported entry need not say how it was verified yet: `tmskb add --verification` sets it.
    candidate.problems += [
        p for p in entry_problems(reference, shown, source.missing_parent) if p.field != "verification"
    ]
    candidate.fields = {k: v for k, v in reference.fields.items() if k not in ("author", "verification")}
    candidate.authors = [Name(f"{a.von} {a.last}".strip(), a.first, a.jr) for a in reference.authors]
    if not candidate.authors and source.fields.get("editor"):  # for the key (it decoded above)
        editors = people(decode_latex(source.fields["editor"])[0])
        candidate.editors = [Name(f"{a.von} {a.last}".strip(), a.first, a.jr) for a in editors]
    # Written as the import has it, less what is resolved (crossref) or set by the add (verification).
    candidate.bibtex = {
        k: v for k, v in source.fields.items() if k not in ("crossref", "verification") and v.strip()
    }
    if "mesh-terms" in candidate.bibtex and "mesh" not in candidate.bibtex:  # one name for MeSH terms
        candidate.bibtex["mesh"] = candidate.bibtex.pop("mesh-terms")
    return candidate


class Tagged(NamedTuple):
    """One record of a tagged file: its first line, its (tag, value, line) items, its problems."""

    line: int
    items: list[tuple[str, str, int]]
    closed: bool
    problems: list[Problem]

    def all(self, *tags: str) -> list[str]:
        return [v for t, v, _ in self.items if t in tags and v]

    def first(self, *tags: str) -> str:
        """The value of the first of `tags` (in that order of preference) the record has."""
        return next((v for tag in tags for t, v, _ in self.items if t == tag and v), "")


def _tagged_records(text: str, fmt: str, shown: str) -> tuple[list[Tagged], list[Problem]]:
    """Records of a RIS, MEDLINE or WoS file. RIS and WoS records run from TY/PT to ER;
    MEDLINE ones are separated by blank lines. A line that is not a tag continues the last value."""
    pattern = TAG_LINES[fmt]
    start = {"ris": "TY", "wos": "PT"}.get(fmt)
    records: list[Tagged] = []
    problems: list[Problem] = []
    current: Tagged | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if fmt == "medline" and not line.strip():
            current = None
            continue
        match = pattern.match(line)
        if match:
            tag, value = match.group(1), (match.group(2) or "").strip()
            if tag == start and current is not None:
                # A record runs to its ER line (as rispy and JabRef read it): a second TY inside
                # one means the ER before it is missing, and the record cannot be trusted.
                reason = (
                    f"'{tag}' line inside the record of line {current.line}: its 'ER  - ' line is missing"
                )
                current.problems.append(
                    Problem(shown, number, reason=reason, hint="end each record with 'ER  - '")
                )
                continue
            if tag == start or (fmt == "medline" and current is None):
                current = Tagged(number, [], fmt == "medline", [])
                records.append(current)
            if current is None:
                if fmt == "ris" and tag != "ER":
                    reason = f"'{tag}' line outside a record"
                    problems.append(
                        Problem(shown, number, reason=reason, hint="a record starts with 'TY  - '")
                    )
            elif start and tag == "ER":
                records[-1] = current._replace(closed=True)
                current = None
            else:
                current.items.append((tag, value, number))
        elif current is not None and line.strip():
            if fmt == "medline" and not line[:1].isspace():
                reason = f"not a MEDLINE line: '{line.strip()[:40]}'"
                current.problems.append(Problem(shown, number, reason=reason, hint="write 'TAG - value'"))
            elif current.items and fmt == "ris" and current.items[-1][0] in RIS_LIST_TAGS:
                current.items.append((current.items[-1][0], line.strip(), number))  # one name a line
            elif current.items:  # the last value goes on (MEDLINE and WoS indent these lines)
                tag, value, first_line = current.items[-1]
                joiner = "\n" if fmt == "wos" and tag in ("AU", "AF") else " "
                current.items[-1] = (tag, f"{value}{joiner}{line.strip()}".strip(), first_line)
    return records, problems


def _from_tagged(text: str, shown: str, fmt: str) -> tuple[list[Candidate], list[Problem]]:
    records, problems = _tagged_records(text, fmt, shown)
    reader = {"ris": _ris_candidate, "medline": _medline_candidate, "wos": _wos_candidate}[fmt]
    candidates = []
    for record in records:
        candidate = reader(record, shown)
        candidate.problems += record.problems
        if not record.closed:
            candidate.problems.append(
                Problem(
                    shown,
                    record.line,
                    reason=f"{fmt.upper() if fmt != 'medline' else 'MEDLINE'} file is truncated or malformed",
                    hint="every record must end with an 'ER  - ' line",
                )
            )
        candidates.append(candidate)
    return candidates, problems


def _year(*values: str) -> str:
    found = next((m.group(0) for v in values if (m := re.search(r"\b(1[5-9]|20)\d\d\b", v))), "")
    return found


def _ris_candidate(record: Tagged, shown: str) -> Candidate:
    kind = RIS_TYPES.get(record.first("TY").upper(), "misc")
    fields: dict[str, str] = {}
    title = record.first("TI", "T1", "CT", "ST")
    if title:
        fields["title"] = title
    if kind == "article":
        venue = record.first("JF", "JO", "T2", "JA", "J2", "J1", "BT")
        fields["journal"] = venue
    elif kind in ("inproceedings", "incollection"):
        fields["booktitle"] = record.first("T2", "BT", "T3")
    elif kind == "phdthesis":
        fields["school"] = record.first("PB")
    elif kind != "book":
        fields["howpublished"] = record.first("T2", "JF", "JO", "BT", "PB")
    fields["year"] = _year(record.first("PY"), record.first("Y1"), record.first("DA"))
    for tag, name in (("VL", "volume"), ("IS", "number"), ("PB", "publisher"), ("CY", "address")):
        fields[name] = record.first(tag) if (tag, kind) != ("PB", "phdthesis") else ""
    fields["edition"] = record.first("ET") if kind == "book" else ""
    fields["series"] = record.first("T3", "T2") if kind == "book" else ""
    fields["doi"] = record.first("DO")
    # UR is the work's address; L2 (a full-text link) only stands in for a missing one.
    urls = [u for v in record.all("UR") or record.all("L2") for u in re.split(r"[\s;]+", v) if u]
    if urls:
        fields["url"] = urls[0]
    if not fields["doi"]:
        fields["doi"] = next((u for u in urls if re.match(r"https?://[^/]*doi[^/]*/10\.", u, re.I)), "")
    fields["pages"] = _ris_pages(record.first("SP"), record.first("EP"))
    serial = record.first("SN")  # an ISSN for serials, an ISBN for books
    if serial:
        isbn = kind in ("book", "incollection") or len(re.sub(r"[^\dX]", "", serial.split()[0])) in (10, 13)
        fields["isbn" if isbn and not ISSN_RE.search(serial) else "issn"] = serial
    _ris_identifiers(record, fields)
    fields["abstract"] = " ".join(record.all("AB") or record.all("N2"))
    fields["keywords"] = _joined(k for v in record.all("KW") for k in v.split(";"))
    candidate = Candidate(
        kind,
        {k: v for k, v in fields.items() if v},
        _names(record.all("AU", "A1")),
        shown,
        record.line,
        editors=_names(record.all("ED", "A2")),  # A2, the secondary author, is the editor
    )
    if not title:
        candidate.problems.append(
            Problem(
                shown, record.line, candidate.label, "TI", "RIS record has no title", "add a 'TI  - ' line"
            )
        )
    return candidate


def _ris_pages(start: str, end: str) -> str:
    if start and end:
        return f"{start}--{end}"
    return re.sub(r"(?<=\d)\s*-+\s*(?=\d)", "--", start)


def _ris_identifiers(record: Tagged, fields: dict[str, str]) -> None:
    """PMID/PMCID as reference managers put them: AN, or 'PMID: n' / 'PMCID: PMCn' in notes or M2/C2."""
    for tag in ("AN", "N1", "M1", "M2", "C2", "C1"):
        for text in record.all(tag):
            if tag == "AN" and PMID_RE.match(text):
                fields.setdefault("pmid", text)
            for name, pattern in (("pmid", r"PMID:?\s*(\d+)"), ("pmcid", r"(PMC\d+)")):
                found = re.search(pattern, text)
                if found:
                    fields.setdefault(name, found.group(1))


def _medline_candidate(record: Tagged, shown: str) -> Candidate:
    types = [t.lower() for t in record.all("PT")]
    book = record.first("BTI")
    chapter = bool(book and record.first("TI"))
    kind = "incollection" if chapter else "book" if book or "book" in types else "article"
    # PubMed ends every title with a period; it is not part of the title.
    article_title = " ".join(record.all("TI"))  # a title split over several TI lines is one title
    title = re.sub(r"(?<![.\s])\.$", "", article_title if kind != "book" else book or article_title)
    fields = {"title": title, "year": _year(record.first("DP"))}
    if kind == "incollection":
        fields["booktitle"] = re.sub(r"(?<![.\s])\.$", "", book)
    # NLM's abbreviation (what PubMed's citations print), else the title less PubMed's place
    # qualifier: 'European journal of pain (London, England)' is 'Eur J Pain'.
    journal = record.first("TA") or re.sub(r"\s*\([^()]*\)$", "", record.first("JT"))
    if kind == "article" and not journal:
        kind = "misc"
    if kind == "article":
        fields["journal"] = journal
    for tag, name in (("VI", "volume"), ("IP", "number"), ("PB", "publisher"), ("PMID", "pmid")):
        fields[name] = record.first(tag)
    fields["pmcid"] = record.first("PMC")
    fields["isbn"] = record.first("ISBN")
    fields["pages"] = _expand_pages(record.first("PG"))
    fields["doi"] = next(
        (re.sub(r"\s*\[doi\]$", "", v) for v in record.all("LID", "AID") if v.endswith("[doi]")), ""
    )
    fields["abstract"] = " ".join(record.all("AB"))
    fields["keywords"] = _joined(record.all("OT"))  # other terms: the authors' keywords
    fields["mesh"] = _joined(record.all("MH"))
    return Candidate(
        kind,
        {k: v for k, v in fields.items() if v},
        _medline_names(record, "FAU", "AU", "CN"),
        shown,
        record.line,
        editors=_medline_names(record, "FED", "ED", ""),
    )


def _medline_names(record: Tagged, full: str, short: str, corporate: str) -> list[Name]:
    """FAU/AU pairs (either order; the full name wins) and CN bodies, in the record's order."""
    slots: list[dict[str, str]] = []
    for tag, value, _ in record.items:
        if not value:
            continue
        if tag == corporate:
            slots.append({corporate: value})
        elif tag in (full, short):
            last = slots[-1] if slots else None
            other = short if tag == full else full
            if last is not None and other in last and tag not in last:
                last[tag] = value
            else:
                slots.append({tag: value})
    names = []
    for slot in slots:
        if corporate and corporate in slot:
            names.append(Name(slot[corporate], corporate=True))
        elif (name := person(slot.get(full) or slot.get(short, ""))) is not None:
            names.append(name)
    return names


def _wos_candidate(record: Tagged, shown: str) -> Candidate:
    kind = WOS_TYPES.get(record.first("PT").upper(), "misc")
    fields = {
        "title": record.first("TI"),
        "journal" if kind == "article" else "booktitle" if kind == "incollection" else "howpublished": (
            record.first("SO")
        ),
        "year": _year(record.first("PY")),
        "volume": record.first("VL"),
        "number": record.first("IS"),
        "pages": _ris_pages(record.first("BP"), record.first("EP")),
        "doi": record.first("DI"),
        "pmid": record.first("PM"),
        "publisher": record.first("PU"),
        "issn": record.first("SN"),
        "abstract": " ".join(record.all("AB")),
        "keywords": _joined(k for v in record.all("DE") for k in v.split(";")),
    }
    names = [n for value in record.all("AF") or record.all("AU") for n in value.split("\n")]
    return Candidate(kind, {k: v for k, v in fields.items() if v}, _names(names), shown, record.line)


def _joined(terms: Iterable[str]) -> str:
    """Keywords or MeSH terms as one field value: each once, in their order, "; " between."""
    return KEYWORD_SEPARATOR.join(dict.fromkeys(t for t in (" ".join(v.split()) for v in terms) if t))


def _names(values: list[str]) -> list[Name]:
    return [n for n in (person(v) for v in values) if n is not None]


def person(raw: str) -> Name | None:
    """A name as tagged formats write it: 'Last, First[, Jr]', Vancouver 'Last IN [Jr]', or
    'First Last'; a body ('World Health Organization', or a name ending in a comma) is corporate."""
    text = " ".join(raw.split())
    if not text.strip(" ,;."):
        return None
    if (text.endswith(",") and text.count(",") == 1) or ("," not in text and CORPORATE_RE.search(text)):
        return Name(text.rstrip(", "), corporate=True)
    if "," in text:
        last, *rest = [p.strip() for p in text.split(",")]
        jr = next((p for p in rest if SUFFIX_RE.match(p)), "")
        first = " ".join(p for p in rest if p and p != jr)
        words = first.split()
        if not jr and len(words) > 1 and SUFFIX_RE.match(words[-1]):
            jr, first = words[-1], " ".join(words[:-1])
        return Name(last, first, jr)
    words = text.split()
    jr = ""
    if len(words) > 2 and SUFFIX_RE.match(words[-1]) and INITIALS_RE.match(words[-2]):
        jr = words.pop()
    if len(words) > 1 and INITIALS_RE.match(words[-1]):  # Vancouver: 'Fanning E.', 'Lefaucheur JP'
        return Name(" ".join(words[:-1]), words[-1], jr)
    parts = parse_single_name_into_parts(" ".join(words), strict=False)
    return Name(" ".join(parts.von + parts.last), " ".join(parts.first), jr or " ".join(parts.jr))


def _expand_pages(pages: str) -> str:
    """MEDLINE's '1065-72' -> '1065--1072'."""
    if not pages:
        return ""
    match = re.fullmatch(r"(\w*?)(\d+)-(\d+)", pages.strip())
    if not match:
        return pages.replace("-", "--")
    prefix, first, last = match.groups()
    if len(last) < len(first):
        last = first[: len(first) - len(last)] + last
    return f"{prefix}{first}--{prefix}{last}"


def _normalise(candidate: Candidate) -> None:
    """Identifiers in one canonical form; a malformed one is a problem, not a silent guess."""
    fields = candidate.fields
    where = (candidate.source, candidate.line, candidate.label)

    def keep(name: str, value: str) -> None:
        fields[name] = value
        if name in candidate.bibtex:
            candidate.bibtex[name] = value

    if fields.get("doi"):
        doi = normalise_doi(fields["doi"])
        if not re.match(r"^10\.\d{4,9}/\S+$", doi):
            candidate.problems.append(
                Problem(
                    *where,
                    "doi",
                    f"'{fields['doi']}' is not a DOI",
                    "a DOI looks like 10.1016/j.clinph.2014.05.021",
                )
            )
        keep("doi", doi)
    if fields.get("pmid"):
        pmid = fields["pmid"].strip().removeprefix("PMID:").strip()
        if not PMID_RE.match(pmid):
            candidate.problems.append(
                Problem(*where, "pmid", f"'{fields['pmid']}' is not a PubMed id", "a PMID is digits only")
            )
        keep("pmid", pmid)
    if fields.get("pmcid"):
        match = PMCID_RE.match(fields["pmcid"].strip())
        if not match:
            candidate.problems.append(
                Problem(
                    *where, "pmcid", f"'{fields['pmcid']}' is not a PMC id", "a PMCID looks like PMC4949003"
                )
            )
        else:
            keep("pmcid", f"PMC{match.group(1)}")
