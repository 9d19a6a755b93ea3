"""Read references to add from BibTeX, RIS (rispy) and PubMed MEDLINE (.nbib, nbib) files.

Every format becomes the same Candidate: a BibTeX entry type, decoded Unicode fields, authors as
(last, first) and normalised identifiers (DOI lower-case without resolver prefix, PMID digits,
PMCID as PMC + digits). Problems name the file, line and record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import nbib
import rispy

from .bib import normalise_doi, parse_bib_text
from .models import Problem

RIS_TYPES = {
    "JOUR": "article",
    "JFULL": "article",
    "EJOUR": "article",
    "MGZN": "article",
    "CONF": "inproceedings",
    "CPAPER": "inproceedings",
    "ABST": "misc",
    "BOOK": "book",
    "CHAP": "incollection",
    "THES": "phdthesis",
    "RPRT": "techreport",
    "ELEC": "online",
}
PMID_RE = re.compile(r"^\d{1,9}$")
PMCID_RE = re.compile(r"^(?:PMC)?(\d{3,9})$", re.I)


@dataclass
class Candidate:
    """A reference read from an import file, not yet in references.bib."""

    entry_type: str
    fields: dict[str, str]
    authors: list[tuple[str, str]]  # (last, first)
    source: str  # file as shown in messages
    line: int
    given_key: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def label(self) -> str:
        """How the record is named in messages: its key, else its first author and year."""
        if self.given_key:
            return self.given_key
        who = self.authors[0][0] if self.authors else "?"
        return f"{who} {self.fields.get('year', '?')}"


def detect_format(text: str, name: str = "") -> str | None:
    """bibtex, ris or medline, from the file name or the first meaningful line."""
    suffix = Path(name).suffix.lower()
    by_suffix = {".bib": "bibtex", ".ris": "ris", ".nbib": "medline", ".medline": "medline"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("%"):
            continue
        if stripped.startswith("@"):
            return "bibtex"
        if re.match(r"^TY  - ", line):
            return "ris"
        if re.match(r"^PMID- ", line):
            return "medline"
        return None
    return None


def read_candidates(text: str, shown: str, fmt: str | None = None) -> tuple[list[Candidate], list[Problem]]:
    """Candidates from one import file's text; `shown` names it in problems."""
    fmt = fmt or detect_format(text, shown)
    if fmt is None:
        return [], [
            Problem(
                shown,
                1,
                reason="not a BibTeX, RIS or MEDLINE file",
                hint="give a .bib, .ris or .nbib file, or --format",
            )
        ]
    if not text.strip():
        return [], [Problem(shown, 1, reason="file is empty")]
    reader = {"bibtex": _from_bibtex, "ris": _from_ris, "medline": _from_medline}[fmt]
    candidates, problems = reader(text, shown)
    for candidate in candidates:
        _normalise(candidate)
        problems += candidate.problems
    if not candidates and not problems:
        problems.append(
            Problem(shown, 1, reason=f"no {fmt} records found", hint="check the file and its format")
        )
    return candidates, problems


def _from_bibtex(text: str, shown: str) -> tuple[list[Candidate], list[Problem]]:
    references, problems = parse_bib_text(text, shown)
    # An imported entry need not say how it was verified yet: `tmskb add --verification` sets it.
    problems = [p for p in problems if p.field != "verification"]
    out = []
    for ref in references.values():
        fields = {k: v for k, v in ref.fields.items() if k not in ("author", "verification")}
        authors = [(f"{a.von} {a.last}".strip(), a.first) for a in ref.authors]
        out.append(Candidate(ref.entry_type, fields, authors, shown, ref.line, given_key=ref.key))
    return out, problems


def _ris_lines(text: str) -> list[int]:
    return [i for i, line in enumerate(text.splitlines(), start=1) if line.startswith("TY  - ")]


def _from_ris(text: str, shown: str) -> tuple[list[Candidate], list[Problem]]:
    starts = _ris_lines(text)
    try:
        records = rispy.loads(text)
    except Exception as exc:  # rispy raises plain IOError/ValueError subclasses on broken files
        return [], [
            Problem(
                shown,
                1,
                reason=f"cannot read RIS: {exc}",
                hint="each record starts with 'TY  - ' and ends with 'ER  - '",
            )
        ]
    if len(records) != len(starts) or not text.rstrip().endswith(("ER  -", "ER  - ")):
        return [], [
            Problem(
                shown,
                starts[-1] if starts else 1,
                reason="RIS file is truncated or malformed",
                hint="every record must end with an 'ER  - ' line",
            )
        ]
    out = []
    for record, line in zip(records, starts, strict=True):
        fields: dict[str, str] = {}
        title = record.get("title") or record.get("primary_title")
        if title:
            fields["title"] = str(title)
        journal = (
            record.get("secondary_title")
            or record.get("journal_name")
            or record.get("alternate_title1")
            or record.get("alternate_title3")
        )
        kind = RIS_TYPES.get(str(record.get("type_of_reference", "")), "misc")
        if journal:
            fields[
                "journal" if kind == "article" else "booktitle" if kind == "inproceedings" else "howpublished"
            ] = str(journal)
        year = str(record.get("year") or record.get("publication_year") or record.get("date") or "")[:4]
        if year:
            fields["year"] = year
        for ris, bib in (
            ("volume", "volume"),
            ("number", "number"),
            ("doi", "doi"),
            ("publisher", "publisher"),
        ):
            if record.get(ris):
                fields[bib] = str(record[ris])
        pages = [str(record[k]) for k in ("start_page", "end_page") if record.get(k)]
        if pages:
            fields["pages"] = "--".join(pages)
        urls = record.get("urls") or []
        if urls:
            fields["url"] = str(urls[0])
        _ris_identifiers(record, fields)
        authors = [_split_name(a) for a in record.get("authors") or record.get("first_authors") or []]
        candidate = Candidate(kind, fields, authors, shown, line)
        if not title:
            candidate.problems.append(
                Problem(shown, line, candidate.label, "TI", "RIS record has no title", "add a 'TI  - ' line")
            )
        out.append(candidate)
    return out, []


def _ris_identifiers(record: dict[str, object], fields: dict[str, str]) -> None:
    """PMID/PMCID as reference managers put them: AN, or 'PMID: n' / 'PMCID: PMCn' in notes or M2/C2."""
    for key in ("accession_number", "notes", "note", "custom2", "custom1"):
        raw = record.get(key)
        values: list[object] = list(raw) if isinstance(raw, list) else [raw]
        for value in values:
            text = str(value or "")
            if key == "accession_number" and PMID_RE.match(text):
                fields.setdefault("pmid", text)
            for name, pattern in (("pmid", r"PMID:?\s*(\d+)"), ("pmcid", r"(PMC\d+)")):
                found = re.search(pattern, text)
                if found:
                    fields.setdefault(name, found.group(1))


def _split_name(name: str) -> tuple[str, str]:
    last, _, first = str(name).partition(",")
    return last.strip(), first.strip()


def _from_medline(text: str, shown: str) -> tuple[list[Candidate], list[Problem]]:
    starts = [i for i, line in enumerate(text.splitlines(), start=1) if line.startswith("PMID- ")]
    try:
        records = nbib.read(text)
    except Exception as exc:  # nbib raises on lines it cannot place
        return [], [Problem(shown, 1, reason=f"cannot read MEDLINE: {exc}")]
    if len(records) != len(starts):
        return [], [
            Problem(shown, 1, reason="MEDLINE file is malformed", hint="each record starts with 'PMID- '")
        ]
    out = []
    for record, line in zip(records, starts, strict=True):
        fields: dict[str, str] = {}
        if record.get("title"):
            fields["title"] = str(record["title"])
        if record.get("journal"):
            fields["journal"] = str(record["journal"])
        year = str(record.get("publication_date") or "")[:4]
        if year.isdigit():
            fields["year"] = year
        for src, bib in (
            ("journal_volume", "volume"),
            ("journal_issue", "number"),
            ("doi", "doi"),
            ("pubmed_id", "pmid"),
        ):
            if record.get(src):
                fields[bib] = str(record[src])
        if record.get("pmcid"):
            fields["pmcid"] = f"PMC{record['pmcid']}"
        if record.get("pages"):
            fields["pages"] = _expand_pages(str(record["pages"]))
        authors = [
            (a.get("last_name") or a.get("author", ""), a.get("first_name") or "")
            for a in record.get("authors") or []
        ]
        out.append(Candidate("article", fields, authors, shown, line))
    return out, []


def _expand_pages(pages: str) -> str:
    """MEDLINE's '1065-72' -> '1065--1072'."""
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
        fields["doi"] = doi
    if fields.get("pmid"):
        pmid = fields["pmid"].strip().removeprefix("PMID:").strip()
        if not PMID_RE.match(pmid):
            candidate.problems.append(
                Problem(*where, "pmid", f"'{fields['pmid']}' is not a PubMed id", "a PMID is digits only")
            )
        fields["pmid"] = pmid
    if fields.get("pmcid"):
        match = PMCID_RE.match(fields["pmcid"].strip())
        if not match:
            candidate.problems.append(
                Problem(
                    *where, "pmcid", f"'{fields['pmcid']}' is not a PMC id", "a PMCID looks like PMC4949003"
                )
            )
        else:
            fields["pmcid"] = f"PMC{match.group(1)}"
