"""Parse references.bib with bibtexparser 2.x into References, collecting every problem.

bibtexparser reports 0-based lines and silently accepts a few malformed inputs (an entry
without a key, a missing comma swallowed into the previous value, undefined macros);
this module turns all of that into Problems with 1-based lines.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from pathlib import Path

import bibtexparser
from bibtexparser import model
from bibtexparser.middlewares import (
    LatexDecodingMiddleware,
    RemoveEnclosingMiddleware,
    ResolveStringReferencesMiddleware,
    SeparateCoAuthors,
    SplitNameParts,
)
from bibtexparser.middlewares.names import NameParts

from .models import VERIFICATION_VALUES, Author, Problem, Reference

# bibtexparser logs each failed block; we report them as Problems instead.
logging.getLogger("bibtexparser").addHandler(logging.NullHandler())
logging.getLogger("bibtexparser").propagate = False

MONTH_MACROS = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    # each inner tuple: at least one of these fields must be present
    # A title is not required: primary studies known only from an abstract record may lack one.
    "article": (("author", "key"), ("journal",), ("year",)),
    "inproceedings": (("title",), ("author", "key"), ("booktitle",), ("year",)),
    "misc": (("title", "howpublished"), ("author", "key"), ("year",)),
    "book": (("title",), ("author", "editor", "key"), ("year",)),
    "incollection": (("title",), ("author", "key"), ("booktitle",), ("year",)),
    "techreport": (("title",), ("author", "key", "institution"), ("year",)),
    "phdthesis": (("title",), ("author",), ("school",), ("year",)),
    "online": (("title",), ("url",), ("year",)),
}
DOI_RE = re.compile(r"^10\.\d{4,9}/\S+$")
PMCID_RE = re.compile(r"^PMC\d+$")
KEY_RE = re.compile(r"@\s*\w+\s*[{(]\s*([^,\s{}()]*)")
SWALLOWED_FIELD_RE = re.compile(r"\n\s*([A-Za-z][\w-]*)\s*=\s*[{\"\d]")
LATEX_MARKERS = ("\\", "$", "~", "--", "``", "''")


ACCENTS = {
    '"': "\u0308",
    "'": "\u0301",
    "`": "\u0300",
    "^": "\u0302",
    "~": "\u0303",
    "=": "\u0304",
    ".": "\u0307",
    "u": "\u0306",
    "v": "\u030c",
    "H": "\u030b",
    "c": "\u0327",
    "k": "\u0328",
    "r": "\u030a",
    "d": "\u0323",
    "b": "\u0331",
}
SYMBOLS = {
    "ss": "ß",
    "ae": "æ",
    "AE": "Æ",
    "oe": "œ",
    "OE": "Œ",
    "aa": "å",
    "AA": "Å",
    "o": "ø",
    "O": "Ø",
    "l": "ł",
    "L": "Ł",
    "i": "ı",
    "j": "ȷ",
}
_BASE = r"(?:\\[ij](?![A-Za-z])|[A-Za-z])"
# \'e, \'{e}, \v{s}, \c c: the argument's braces are consumed only when they open right after the macro.
ACCENT_RE = re.compile(
    rf"""\\(["'`^~=.])\s*(?:\{{\s*({_BASE})\s*\}}|({_BASE}))"""
    rf"""|\\([uvHckrdb])(?:\s*\{{\s*({_BASE})\s*\}}|\s+({_BASE}))"""
)
# A brace group holding one macro, as in M{\"u}ller or {\v{S}}: pylatexenc drops these braces.
BRACED_RE = re.compile(r"\{\s*(\\[^{}\s]+(?:\s*\{[^{}]*\}|\s+[A-Za-z])?)\s*\}")
SYMBOL_RE = re.compile(r"\\(ss|ae|AE|oe|OE|aa|AA|o|O|l|L|i|j)(?![A-Za-z])\s*")
ESCAPED_RE = re.compile(r"\\([&%_#])")


def _accent(match: re.Match[str]) -> str:
    mark = match.group(1) or match.group(4)
    base = match.group(2) or match.group(3) or match.group(5) or match.group(6)
    base = {"\\i": "i", "\\j": "j"}.get(base, base)
    return unicodedata.normalize("NFC", base + ACCENTS[mark])


def _braced(match: re.Match[str]) -> str:
    inner = match.group(1).strip()
    accent = ACCENT_RE.fullmatch(inner)
    if accent:
        return _accent(accent)
    symbol = SYMBOL_RE.fullmatch(inner)
    return SYMBOLS[symbol.group(1)] if symbol else match.group(0)


def fast_latex(text: str) -> str | None:
    """Decode the LaTeX that bibliographies mostly contain (accents, ß/ø/ł, --, escaped & %).

    Returns None when anything else is left, so pylatexenc handles it.
    """
    out = BRACED_RE.sub(_braced, text)
    out = ACCENT_RE.sub(_accent, out)
    out = SYMBOL_RE.sub(lambda m: SYMBOLS[m.group(1)], out)
    out = ESCAPED_RE.sub(lambda m: m.group(1), out)
    if "\\" in out or "$" in out:
        return None
    return out.replace("---", "—").replace("--", "–").replace("``", "“").replace("''", "”").replace("~", " ")


class FastLatexDecoding(LatexDecodingMiddleware):
    """bibtexparser's LaTeX decoder (pylatexenc) behind a fast path for common cases.

    pylatexenc costs ~0.8 ms a field: 12 s of a 10k-entry build. Plain text is returned as is,
    accents and a few symbols are decoded by table; everything else goes to pylatexenc.
    """

    def _transform_python_value_string(self, python_string: str) -> tuple[str, str]:
        if not any(marker in python_string for marker in LATEX_MARKERS):
            return python_string, ""
        decoded = fast_latex(python_string)
        if decoded is not None:
            return decoded, ""
        return super()._transform_python_value_string(python_string)


def _line(item: object) -> int:
    """1-based line of a bibtexparser block or field (it counts from 0)."""
    start = getattr(item, "start_line", None)
    return (start or 0) + 1


def strip_braces(text: str) -> str:
    """Remove BibTeX protective braces and collapse whitespace: '{rTMS}' -> 'rTMS'."""
    return " ".join(text.replace("{", "").replace("}", "").split())


def parse_bib(path: Path, shown: str) -> tuple[dict[str, Reference], list[Problem]]:
    """Return references by key and every problem found in the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, [
            Problem(shown, 1, reason="bibliography file not found", hint="create it or point TMSKB_BIB at it")
        ]
    except UnicodeDecodeError as exc:
        return {}, [
            Problem(
                shown,
                1,
                reason=f"not UTF-8 ({exc.reason} at byte {exc.start})",
                hint="save the file as UTF-8",
            )
        ]
    return parse_bib_text(text, shown)


def parse_bib_text(text: str, shown: str) -> tuple[dict[str, Reference], list[Problem]]:
    """Parse BibTeX source text; `shown` is the path used in problems."""
    library = bibtexparser.parse_string(text, parse_stack=[])
    problems = _failed_block_problems(library, shown)
    problems += _raw_entry_problems(library, shown)
    for middleware in (
        ResolveStringReferencesMiddleware(True),
        RemoveEnclosingMiddleware(True),
        FastLatexDecoding(keep_braced_groups=True),
        SeparateCoAuthors(True),
        SplitNameParts(True),
    ):
        library = middleware.transform(library)
    problems += _middleware_problems(library, shown)
    references: dict[str, Reference] = {}
    seen_lower: dict[str, Reference] = {}
    for entry in library.entries:
        if not entry.key:
            continue  # reported by _raw_entry_problems
        reference = _to_reference(entry, shown)
        first = seen_lower.get(reference.key.lower())
        if first is not None:
            problems.append(
                Problem(
                    shown,
                    reference.line,
                    reference.key,
                    "key",
                    f"key differs only in case from '{first.key}' (line {first.line})",
                    "keys must be unique ignoring case",
                )
            )
            continue
        seen_lower[reference.key.lower()] = reference
        references[reference.key] = reference
        problems += _entry_problems(reference, entry, shown)
    return references, problems


def _failed_block_problems(library: bibtexparser.Library, shown: str) -> list[Problem]:
    problems = []
    for block in library.failed_blocks:
        line = _line(block)
        match = KEY_RE.match(block.raw or "")
        key = match.group(1) if match else ""
        error = getattr(block, "error", None)
        reason = str(getattr(error, "abort_reason", None) or error or "").strip()
        if isinstance(block, model.DuplicateBlockKeyBlock):
            first = _line(block.previous_block)
            problems.append(
                Problem(
                    shown,
                    line,
                    block.key,
                    "key",
                    f"duplicate key (first defined on line {first})",
                    "rename one of the entries or merge them",
                )
            )
        elif isinstance(block, model.DuplicateFieldKeyBlock):
            names = ", ".join(sorted(block.duplicate_keys))
            problems.append(
                Problem(
                    shown,
                    line,
                    key,
                    names,
                    "field appears twice in the entry",
                    "keep one value; the entry is ignored until then",
                )
            )
        else:
            problems.append(
                Problem(
                    shown,
                    line,
                    key,
                    "",
                    f"malformed BibTeX entry: {reason or 'cannot parse'}",
                    "check braces, commas and '=' between this line and the next entry",
                )
            )
    return problems


def _middleware_problems(library: bibtexparser.Library, shown: str) -> list[Problem]:
    """Entries a middleware could not process (e.g. unbalanced braces in a name) become failed blocks."""
    problems = []
    for block in library.failed_blocks:
        if isinstance(block, model.MiddlewareErrorBlock):
            entry = block.ignore_error_block
            key = getattr(entry, "key", "") or ""
            names = "name" in str(block.error).lower()
            fields = getattr(entry, "fields_dict", {}) or {}
            where = fields.get("author") if names else None
            problems.append(
                Problem(
                    shown,
                    _line(where or block),
                    key,
                    "author" if names else "",
                    f"cannot be read: {block.error}",
                    "write names as 'Last, First' joined by ' and '"
                    if names
                    else "check that every { has its }",
                )
            )
    return problems


def _raw_entry_problems(library: bibtexparser.Library, shown: str) -> list[Problem]:
    """Checks on unprocessed values: missing keys, swallowed fields, macros, '#'."""
    problems = []
    macros = {s.key.lower() for s in library.strings} | MONTH_MACROS
    for entry in library.entries:
        if not entry.key:
            problems.append(
                Problem(
                    shown,
                    _line(entry),
                    "",
                    "key",
                    "entry has no citation key",
                    "write @type{key, ...}",
                )
            )
            continue
        for fld in entry.fields:
            problems += _raw_value_problems(entry.key, fld, macros, shown)
    return problems


def _raw_value_problems(key: str, fld: model.Field, macros: set[str], shown: str) -> list[Problem]:
    value = str(fld.value).strip()

    def problem(reason: str, hint: str) -> list[Problem]:
        return [Problem(shown, _line(fld), key, fld.key, reason, hint)]

    swallowed = SWALLOWED_FIELD_RE.search(value)
    if swallowed:
        return problem(
            f"value runs into the next field '{swallowed.group(1)}'",
            "add the missing comma at the end of this field",
        )
    if value[:1] in '{"' or value.isdigit():
        return []
    if "#" in value:
        return problem(
            "'#' string concatenation is not supported", "write the value out in full inside braces"
        )
    if value.lower() not in macros:
        return problem(f"undefined macro '{value}'", "enclose the value in braces, or define it with @string")
    return []


def _to_reference(entry: model.Entry, shown: str) -> Reference:
    fields: dict[str, str] = {}
    lines: dict[str, int] = {}
    authors: tuple[Author, ...] = ()
    for fld in entry.fields:
        name = fld.key.lower()
        lines[name] = _line(fld)
        if name == "author" and isinstance(fld.value, list):
            authors = tuple(_author(p) for p in fld.value)
            fields[name] = " and ".join(a.display for a in authors)
        else:
            fields[name] = strip_braces(str(fld.value))
    if "doi" in fields:
        fields["doi"] = normalise_doi(fields["doi"])
    return Reference(
        key=entry.key,
        entry_type=entry.entry_type.lower(),
        path=shown,
        line=_line(entry),
        fields=fields,
        authors=authors,
        raw=entry.raw or "",
        verification=fields.get("verification"),
        field_lines=lines,
    )


def _author(part: object) -> Author:
    if isinstance(part, NameParts):
        return Author(
            last=strip_braces(" ".join(part.last)),
            first=strip_braces(" ".join(part.first)),
            von=strip_braces(" ".join(part.von)),
            jr=strip_braces(" ".join(part.jr)),
        )
    return Author(last=strip_braces(str(part)))


def normalise_doi(doi: str) -> str:
    """DOI without resolver prefix, case-folded (DOIs are case-insensitive)."""
    doi = re.sub(r"^(https?://(dx\.)?doi\.org/|doi:\s*)", "", doi.strip(), flags=re.I)
    return doi.lower()


def _entry_problems(ref: Reference, entry: model.Entry, shown: str) -> list[Problem]:
    problems = []

    def add(field: str, reason: str, hint: str = "") -> None:
        problems.append(Problem(shown, ref.field_lines.get(field, ref.line), ref.key, field, reason, hint))

    for alternatives in REQUIRED.get(ref.entry_type, (("title", "howpublished"), ("year",))):
        if not any(ref.fields.get(name) for name in alternatives):
            add(
                alternatives[0],
                "missing required field"
                if len(alternatives) == 1
                else f"missing required field (one of {', '.join(alternatives)})",
                f"add {alternatives[0]} = {{...}} to this @{ref.entry_type}",
            )
    if ref.fields.get("year") and not re.fullmatch(r"\d{4}", ref.fields["year"]):
        add("year", f"'{ref.fields['year']}' is not a four-digit year")
    if ref.verification is None:
        add(
            "verification",
            "missing required field",
            "add verification = {full-text}, {abstract}, {secondary} or {as-cited}",
        )
    elif ref.verification not in VERIFICATION_VALUES:
        add(
            "verification",
            f"'{ref.verification}' is not a verification status",
            f"expected one of {', '.join(VERIFICATION_VALUES)}",
        )
    if ref.doi and not DOI_RE.match(ref.doi):
        add("doi", f"'{ref.doi}' is not a DOI", "a DOI looks like 10.1016/j.clinph.2014.05.021")
    if ref.pmid and not ref.pmid.isdigit():
        add("pmid", f"'{ref.pmid}' is not a PubMed id", "a PMID is digits only")
    if ref.pmcid and not PMCID_RE.match(ref.pmcid):
        add("pmcid", f"'{ref.pmcid}' is not a PMC id", "a PMCID looks like PMC4949003")
    return problems
