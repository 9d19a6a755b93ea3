"""Parse BibTeX (references.bib and imported files) with bibtexparser 2.x, collecting every problem.

Two steps, shared by `tmskb check`, the index and `tmskb add`: `read_source` gives each entry's
values as BibTeX source text (field names in lower case, enclosing braces or quotes removed,
@string macros and `#` concatenation resolved, biblatex fields mapped to BibTeX ones, crossref
parents' fields filled in); `decode` turns one into a Reference for display and indexing (LaTeX
decoded, names split; url, doi and file values verbatim). bibtexparser reports 0-based lines,
miscounts them after a backslash at the end of a line, and silently accepts a few malformed
inputs (an entry without a key, a missing comma swallowed into the previous value, undefined
macros); this module turns all of that into Problems with 1-based lines.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import bibtexparser
from bibtexparser import model
from bibtexparser.middlewares import LatexDecodingMiddleware
from bibtexparser.middlewares.names import (
    InvalidNameError,
    NameParts,
    parse_single_name_into_parts,
    split_multiple_persons_names,
)

from .models import VERIFICATION_VALUES, Author, Problem, Reference

# bibtexparser logs each failed block; we report them as Problems instead.
logging.getLogger("bibtexparser").addHandler(logging.NullHandler())
logging.getLogger("bibtexparser").propagate = False

MONTHS = ("January February March April May June July August September October November December").split()
MONTH_MACROS = {m[:3].lower() for m in MONTHS}
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
NAME_FIELDS = ("author", "editor", "translator")
# Taken as written: no LaTeX decoding ('~' and '--' are part of an address).
VERBATIM_FIELDS = frozenset(
    {"url", "doi", "file", "pdf", "eprint", "pmid", "pmcid", "isbn", "issn", "urldate"}
)
# biblatex names -> BibTeX names (applied when the BibTeX field is absent)
BIBLATEX_FIELDS = {"journaltitle": "journal", "location": "address"}
BIBLATEX_TYPES = {
    "report": "techreport",
    "thesis": "phdthesis",
    "collection": "book",
    "mvbook": "book",
    "mvcollection": "book",
    "reference": "book",
    "mvreference": "book",
    "bookinbook": "inbook",
    "suppbook": "inbook",
    "inreference": "incollection",
    "suppcollection": "incollection",
    "mvproceedings": "proceedings",
    "electronic": "online",
    "www": "online",
    "webpage": "online",
    "software": "misc",
    "softwareversion": "misc",
    "softwaremodule": "misc",
    "codefragment": "misc",
    "dataset": "misc",
}
# Entries that are not references: they group or configure other entries.
NOT_REFERENCES = frozenset({"set", "xdata", "ieeetranbstctl"})
# A crossref child does not take these from its parent (they name the parent itself).
NOT_INHERITED = frozenset({"crossref", "ids", "entryset", "key", "shorthand", "sortkey", "label"})


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


class _Lines:
    """1-based lines of bibtexparser's 0-based ones.

    Its splitter does not count a newline right after a backslash (a LaTeX `\\\\` line break at
    the end of a line), so every line after one would be reported too early.
    """

    def __init__(self, text: str) -> None:
        self._starts: list[int] | None = None
        if "\\\n" in text:
            # starts[c]: the first real line that bibtexparser numbers c
            starts = [0]
            for number, line in enumerate(text.split("\n")[:-1]):
                if not line.endswith("\\"):
                    starts.append(number + 1)
            self._starts = starts

    def __call__(self, item: object) -> int:
        start = getattr(item, "start_line", None) or 0
        if self._starts is not None and 0 <= start < len(self._starts):
            return self._starts[start] + 1
        return start + 1


def strip_braces(text: str) -> str:
    """Remove BibTeX protective braces and collapse whitespace: '{rTMS}' -> 'rTMS'.

    Braces inside math (`$T_{2}$`) are kept: there they group, and dropping them changes the formula.
    """
    if "$" not in text:
        return " ".join(text.replace("{", "").replace("}", "").split())
    parts = re.split(r"(?<!\\)(\$[^$]*\$)", text)
    kept = [
        p if p.startswith("$") and p.endswith("$") and len(p) > 1 else re.sub(r"[{}]", "", p) for p in parts
    ]
    return " ".join("".join(kept).split())


def decode_bib(data: bytes, shown: str) -> tuple[str, list[Problem]]:
    """The text of a bibliography that should be UTF-8; each undecodable line is one problem.

    Bytes that are not UTF-8 are replaced (U+FFFD), so the rest of the file is still read and
    the records citing its entries do not all fail as well.
    """
    try:
        return data.decode("utf-8").removeprefix("\ufeff"), []
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    problems = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = line[exc.start : exc.end]
            column = len(line[: exc.start].decode("utf-8", errors="replace")) + 1
            problems.append(
                Problem(
                    shown,
                    number,
                    reason=f"not UTF-8: byte {bad.hex(' ')} at column {column} ({exc.reason})",
                    hint="save the file as UTF-8; the character is shown as \ufffd until then",
                )
            )
    return text, problems


def parse_bib(path: Path, shown: str) -> tuple[dict[str, Reference], list[Problem]]:
    """Return references by key and every problem found in the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, [
            Problem(shown, 1, reason="bibliography file not found", hint="create it or point TMSKB_BIB at it")
        ]
    text, problems = decode_bib(data, shown)
    references, found = parse_bib_text(text, shown)
    return references, problems + found


def parse_bib_text(
    text: str, shown: str, memo: dict[str, tuple[str, str]] | None = None
) -> tuple[dict[str, Reference], list[Problem]]:
    """Parse BibTeX source text; `shown` is the path used in problems.

    `memo` keeps decoded values for later calls (values repeat: journals, publishers, macros).
    """
    memo = {} if memo is None else memo
    sources, problems = read_source(text, shown)
    references: dict[str, Reference] = {}
    seen_lower: dict[str, Reference] = {}
    for source in sources:
        problems += source.problems
        if not source.key:
            continue  # reported by read_source
        reference, found = decode(source, shown, memo=memo)
        problems += found
        if reference is None:
            continue
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
        problems += entry_problems(reference, shown, source.missing_parent)
    return references, problems


@dataclass
class Source:
    """One BibTeX entry as written: each value's source text, macros and crossref resolved."""

    key: str
    entry_type: str
    line: int
    fields: dict[str, str]  # lower-case name -> BibTeX source text, without enclosing braces/quotes
    field_lines: dict[str, int]
    raw: str
    problems: list[Problem] = field(default_factory=list)
    crossref: str | None = None  # the parent's key, when its fields were filled in

    @property
    def missing_parent(self) -> str | None:
        """The crossref key, when no entry of the file has it."""
        named = strip_braces(self.fields.get("crossref", ""))
        return named if named and self.crossref is None else None


def read_source(text: str, shown: str) -> tuple[list[Source], list[Problem]]:
    """Every entry of `text` (keyless ones too) and the problems of blocks that are not entries."""
    text = text.removeprefix("\ufeff")
    library = bibtexparser.parse_string(text, parse_stack=[])
    at = _Lines(text)
    problems = _failed_block_problems(library, shown, at)
    macros = _macros(library, shown, at, problems)
    entries = list(library.entries) + _keyless_after_the_first(library)
    entries.sort(key=lambda entry: entry.start_line or 0)
    sources = [_source(entry, macros, shown, at) for entry in entries]
    _resolve_crossrefs(sources)
    return sources, problems


def _macros(library: bibtexparser.Library, shown: str, at: _Lines, problems: list[Problem]) -> dict[str, str]:
    """@string macros by lower-case name, each resolved with the ones defined before it."""
    macros: dict[str, str] = {}
    for string in library.strings:
        value, reason = _resolve(str(string.value), macros)
        if reason:
            problems.append(Problem(shown, at(string), string.key, "", reason, _MACRO_HINT))
        macros[string.key.lower()] = value
    return macros


_MACRO_HINT = "enclose the value in braces, or define it with @string"


def _resolve(value: str, macros: dict[str, str]) -> tuple[str, str]:
    """The text of a raw value (`{a}`, `"a"`, 12, macro, `a # {b}`) and a problem, if any."""
    value = value.strip()
    if value[:1] == "{" and value[-1:] == "}" and _balanced_group(value):
        return value[1:-1], ""  # the common case, however many '#' it holds
    text, problem, pieces = [], "", _pieces(value)
    for piece in pieces:
        if (piece[:1], piece[-1:]) in (("{", "}"), ('"', '"')) and len(piece) > 1:
            text.append(piece[1:-1])
        elif piece.isdigit():
            text.append(piece)
        elif piece.lower() in macros:
            text.append(macros[piece.lower()])
        elif piece.lower() in MONTH_MACROS:
            text.append(piece if len(pieces) == 1 else MONTHS[_month(piece) - 1])
        else:
            text.append(piece)
            problem = problem or f"undefined macro '{piece}'"
    return "".join(text), problem


def _month(macro: str) -> int:
    return [m[:3].lower() for m in MONTHS].index(macro.lower()) + 1


_BRACE = re.compile(r"[{}]")


def _balanced_group(value: str) -> bool:
    """True if the braces opening `value` close only at its end (only the braces are visited:
    every field value of every entry goes through here)."""
    depth = 0
    for match in _BRACE.finditer(value):
        i = match.start()
        if i and value[i - 1] == "\\":
            continue
        if value[i] == "{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return i == len(value) - 1
    return False


def _pieces(value: str) -> list[str]:
    """`a # {b # c} # "d"` -> ['a', '{b # c}', '"d"']: split on '#' outside braces and quotes."""
    pieces, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(value):
        escaped = value[i - 1 : i] == "\\"
        if char == "{" and not escaped:
            depth += 1
        elif char == "}" and not escaped:
            depth -= 1
        elif char == '"' and depth == 0:
            quoted = not quoted
        elif char == "#" and depth == 0 and not quoted:
            pieces.append(value[start:i].strip())
            start = i + 1
    pieces.append(value[start:].strip())
    return [p for p in pieces if p] or [""]


def _source(entry: model.Entry, macros: dict[str, str], shown: str, at: _Lines) -> Source:
    key, line = entry.key, at(entry)
    problems = []
    if not key:
        problems.append(Problem(shown, line, "", "key", "entry has no citation key", "write @type{key, ...}"))
    fields: dict[str, str] = {}
    lines: dict[str, int] = {}
    for fld in entry.fields:
        name, where = fld.key.lower(), at(fld)
        if name in fields:
            problems.append(
                Problem(
                    shown,
                    where,
                    key,
                    name,
                    f"field appears twice in the entry (line {lines[name]}; names ignore case)",
                    "keep one value",
                )
            )
            continue
        raw = str(fld.value)
        swallowed = _swallowed(raw)
        if swallowed:
            problems.append(
                Problem(
                    shown,
                    where,
                    key,
                    name,
                    f"value runs into the next field '{swallowed.group(1)}'",
                    "add the missing comma at the end of this field",
                )
            )
            raw = raw[: swallowed.start()].rstrip()  # the value as meant; the swallowed field is lost
        value, reason = _resolve(raw, macros)
        if reason:
            problems.append(Problem(shown, where, key, name, reason, _MACRO_HINT))
        fields[name], lines[name] = value, where
    entry_type = entry.entry_type.lower()
    entry_type = BIBLATEX_TYPES.get(entry_type, entry_type)
    _biblatex_fields(fields, lines)
    return Source(key, entry_type, line, fields, lines, entry.raw or "", problems)


def _swallowed(raw: str) -> re.Match[str] | None:
    """A `name = {` after a line break outside the value's braces and quotes: a missing comma."""
    for match in SWALLOWED_FIELD_RE.finditer(raw):
        depth, quoted = 0, False
        for i, char in enumerate(raw[: match.start()]):
            if raw[i - 1 : i] == "\\":
                continue
            depth += {"{": 1, "}": -1}.get(char, 0)
            quoted = not quoted if char == '"' and depth == 0 else quoted
        if depth == 0 and not quoted:
            return match
    return None


def _biblatex_fields(fields: dict[str, str], lines: dict[str, int]) -> None:
    """biblatex's journaltitle, location and date as BibTeX's journal, address and year."""
    for biblatex, bibtex in BIBLATEX_FIELDS.items():
        if biblatex in fields and bibtex not in fields:
            fields[bibtex] = fields.pop(biblatex)
            lines[bibtex] = lines.pop(biblatex)
    year = re.match(r"\s*(\d{4})\b", fields.get("date", ""))
    if year and not fields.get("year"):
        fields["year"], lines["year"] = year.group(1), lines["date"]


def _resolve_crossrefs(sources: list[Source]) -> None:
    """Fill each crossref child's missing fields from its parent (BibTeX's inheritance).

    The parent's title becomes the booktitle of a child that has none (as biblatex does).
    """
    by_key = {s.key.lower(): s for s in sources if s.key}
    for source in sources:
        current, seen = source, {source.key.lower()}
        while "crossref" in current.fields:
            parent = by_key.get(strip_braces(current.fields["crossref"]).lower())
            if parent is None or parent.key.lower() in seen:
                break
            seen.add(parent.key.lower())
            _inherit(source, parent)
            current = parent


def _inherit(child: Source, parent: Source) -> None:
    where = child.field_lines.get("crossref", child.line)
    child.crossref = child.crossref or parent.key
    part = child.entry_type.startswith("in")  # a part of the parent: its title is the book's
    for name, value in parent.fields.items():
        if part and name in ("title", "subtitle"):
            name = "book" + name
        if name not in child.fields and name not in NOT_INHERITED:
            child.fields[name], child.field_lines[name] = value, where


def _keyless_after_the_first(library: bibtexparser.Library) -> list[model.Entry]:
    """Entries without a key after the first one: bibtexparser takes them for duplicates of it
    (the same key, ''), but each is an entry of its own (reported as keyless, given a key by add)."""
    return [
        block.ignore_error_block
        for block in library.failed_blocks
        if isinstance(block, model.DuplicateBlockKeyBlock)
        and not block.key.strip()
        and isinstance(block.ignore_error_block, model.Entry)
    ]


def _failed_block_problems(library: bibtexparser.Library, shown: str, at: _Lines) -> list[Problem]:
    problems = []
    for block in library.failed_blocks:
        if isinstance(block, model.DuplicateBlockKeyBlock) and not block.key.strip():
            continue  # an entry without a key: read as one (see _keyless_after_the_first)
        line = at(block)
        match = KEY_RE.match(block.raw or "")
        key = match.group(1) if match else ""
        error = getattr(block, "error", None)
        reason = str(getattr(error, "abort_reason", None) or error or "").strip()
        if isinstance(block, model.DuplicateBlockKeyBlock):
            first = at(block.previous_block)
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


@functools.cache
def _decoder() -> FastLatexDecoding:
    return FastLatexDecoding(keep_braced_groups=True)


def decode_latex(value: str) -> tuple[str, str]:
    """A value's LaTeX as Unicode (braces kept, math verbatim) and an error message, if any.

    A bare '%' is literal in BibTeX, but would start a LaTeX comment and swallow the rest;
    `\\href{url}{text}` is read as its text.
    """
    if "%" in value:
        value = re.sub(r"(?<!\\)%", r"\\%", value)
    if "\\noopsort" in value:  # a sort key for BibTeX styles: not part of the text
        value = re.sub(r"\\noopsort\s*\{[^{}]*\}", "", value)
    if "\\href" in value:
        value = _unwrap_href(value)
    return _decoder()._transform_python_value_string(value)


def _unwrap_href(value: str) -> str:
    out, rest = [], value
    while (start := rest.find("\\href")) >= 0:
        url_end = _group_end(rest, start + len("\\href"))
        text_end = _group_end(rest, url_end) if url_end > 0 else -1
        if text_end < 0:
            break
        out.append(rest[:start] + rest[url_end:text_end].strip())
        rest = rest[text_end:]
    return "".join(out) + rest


def _group_end(text: str, start: int) -> int:
    """End of the brace group starting at `start` (after spaces), or -1."""
    while start < len(text) and text[start] == " ":
        start += 1
    if start >= len(text) or text[start] != "{":
        return -1
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    return -1


def decode(
    source: Source,
    shown: str,
    only: Collection[str] | None = None,
    memo: dict[str, tuple[str, str]] | None = None,
) -> tuple[Reference | None, list[Problem]]:
    """A Reference for display and indexing; None (and the problem) if a value cannot be read.

    `only`: decode just these fields (LaTeX decoding is most of the cost of reading a file);
    `memo`: values decoded before (value -> decoded text and error), added to.
    """
    fields: dict[str, str] = {}
    persons: dict[str, tuple[Author, ...]] = {}
    for name, value in source.fields.items():
        if only is not None and name not in only:
            continue
        if name in VERBATIM_FIELDS:
            fields[name] = " ".join(value.split()) if name in ("url", "file") else strip_braces(value)
            continue
        decoded = memo.get(value) if memo is not None else None
        if decoded is None:
            decoded = decode_latex(value)
            if memo is not None:
                memo[value] = decoded
        text, error = decoded
        where = source.field_lines.get(name, source.line)
        if error:
            reason = f"cannot be read: {error}"
            return None, [Problem(shown, where, source.key, name, reason, "check that every { has its }")]
        if name in NAME_FIELDS:
            try:
                persons[name] = people(text)
            except InvalidNameError as exc:
                hint = "write names as 'Last, First' joined by ' and '"
                return None, [Problem(shown, where, source.key, name, f"cannot be read: {exc}", hint)]
            fields[name] = " and ".join(a.display for a in persons[name])
        else:
            fields[name] = strip_braces(text)
    if "doi" in fields:
        fields["doi"] = normalise_doi(fields["doi"])
    reference = Reference(
        key=source.key,
        entry_type=source.entry_type,
        path=shown,
        line=source.line,
        fields=fields,
        authors=persons.get("author", ()),
        raw=source.raw,
        # No field means as-cited, the weakest status: an imported entry is written as the
        # import has it, and claims nothing about how it was checked.
        verification=fields.get("verification", "as-cited"),
        field_lines=dict(source.field_lines),
    )
    return reference, []


def people(names: str) -> tuple[Author, ...]:
    """The persons of a decoded name list ('Doe, Jo and {The TMS Group}'); InvalidNameError if
    one cannot be split."""
    return tuple(_author(parse_single_name_into_parts(n)) for n in split_multiple_persons_names(names))


def _author(part: NameParts) -> Author:
    return Author(
        last=strip_braces(" ".join(part.last)),
        first=strip_braces(" ".join(part.first)),
        von=strip_braces(" ".join(part.von)),
        jr=strip_braces(" ".join(part.jr)),
    )


DOI_PREFIX_RE = re.compile(r"^(?:https?://[^/\s]*doi[^/\s]*/+|doi:\s*|doi\s+)", re.I)


def normalise_doi(doi: str) -> str:
    """DOI without resolver prefix (any doi.org-like host, `doi:`), unescaped, case-folded.

    'http://dx.doi.org/10.1000/ABC', 'https://doi.acm.org/10.1145/x', 'doi:10.1000/abc' -> '10.1000/abc'.
    """
    doi = DOI_PREFIX_RE.sub("", doi.strip())
    if "%2" in doi.lower():
        from urllib.parse import unquote

        doi = unquote(doi)
    return doi.lower()


# What entry_problems reads: the fields REQUIRED names, and those whose values it checks.
CHECKED_FIELDS = frozenset(
    {name for rules in REQUIRED.values() for names in rules for name in names}
    | {"title", "howpublished", "year", "verification", "doi", "pmid", "pmcid"}
)


def entry_problems(ref: Reference, shown: str, unresolved: str | None = None) -> list[Problem]:
    """Problems of one decoded entry on its own: required fields, year, verification, identifiers.

    `unresolved`: the key of a crossref parent that is not in the file (named when a field is missing).
    """
    problems = []

    def add(field: str, reason: str, hint: str = "") -> None:
        problems.append(Problem(shown, ref.field_lines.get(field, ref.line), ref.key, field, reason, hint))

    if ref.entry_type in NOT_REFERENCES:
        add("", f"@{ref.entry_type} is not a reference (it groups or configures other entries)")
        return problems
    for alternatives in REQUIRED.get(ref.entry_type, (("title", "howpublished"), ("year",))):
        if not any(ref.fields.get(name) for name in alternatives):
            add(
                alternatives[0],
                "missing required field"
                if len(alternatives) == 1
                else f"missing required field (one of {', '.join(alternatives)})",
                f"add {alternatives[0]} = {{...}} to this @{ref.entry_type}"
                + (f" (its crossref '{unresolved}' is not in the file)" if unresolved else ""),
            )
    if ref.fields.get("year") and not re.fullmatch(r"\d{4}", ref.fields["year"]):
        add("year", f"'{ref.fields['year']}' is not a four-digit year")
    if ref.verification not in VERIFICATION_VALUES:
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
