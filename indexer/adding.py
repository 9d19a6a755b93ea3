"""Add references to references.bib: stable keys, pre-flight duplicate check, safe writes.

The bibliography is only ever appended to: existing entries stay byte-for-byte as they were.
Writes go to a temporary file that is fsynced and renamed over the original, under an exclusive
lock, so concurrent adds serialise and a killed writer leaves the old or the new file.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from . import index as idx
from . import pipeline
from .bib import parse_bib, parse_bib_text
from .curation import ALIASES, read_aliases, read_not_duplicates, remember_not_duplicates
from .documents import content_hash, known_references, reference_document
from .importers import Candidate, read_candidates
from .models import Problem
from .settings import Settings

STOP_WORDS = frozenset("a an and are as at by for from in into is of on or the to with".split())
FIELD_ORDER = (
    "author",
    "title",
    "journal",
    "booktitle",
    "howpublished",
    "year",
    "month",
    "volume",
    "number",
    "pages",
    "publisher",
    "doi",
    "pmid",
    "pmcid",
    "url",
)
VERBATIM = ("doi", "url", "pmid", "pmcid")
TITLE_SIMILARITY = 0.92


def ascii_fold(text: str) -> str:
    """'André-Obadia' -> 'andreobadia': lower-case ASCII letters and digits only."""
    decomposed = unicodedata.normalize("NFKD", text)
    return re.sub(r"[^a-z0-9]", "", "".join(c for c in decomposed if not unicodedata.combining(c)).lower())


def make_key(candidate: Candidate, taken: set[str]) -> str:
    """<first author surname><year><first significant title word, else venue word>, a/b/c on clashes."""
    surname = ascii_fold(candidate.authors[0][0]) if candidate.authors else "anon"
    year = candidate.fields.get("year", "nd")
    words = [ascii_fold(w) for w in re.findall(r"[^\W_]+", candidate.fields.get("title", ""))]
    words = [w for w in words if w and w not in STOP_WORDS]
    if not words:
        venue = next(
            (candidate.fields[f] for f in ("journal", "booktitle", "howpublished") if f in candidate.fields),
            "",
        )
        words = [w for w in (ascii_fold(v) for v in venue.split()) if len(w) > 2] or ["ref"]
    base = f"{surname or 'anon'}{year}{words[0]}"
    lowered = {k.lower() for k in taken}
    key, suffix = base, 0
    while key.lower() in lowered:
        key = base + "abcdefghijklmnopqrstuvwxyz"[suffix % 26] * (suffix // 26 + 1)
        suffix += 1
    return key


@dataclass(frozen=True)
class Known:
    """What duplicate detection needs to know about an existing reference."""

    key: str
    doi: str | None
    pmid: str | None
    pmcid: str | None
    title: str
    year: str
    first_author: str


def identity(candidate: Candidate) -> str:
    """A stable name for a candidate before it has a key (for the not-duplicates file)."""
    f = candidate.fields
    for name in ("doi", "pmid", "pmcid"):
        if f.get(name):
            return f"{name}:{f[name]}"
    first = ascii_fold(candidate.authors[0][0]) if candidate.authors else ""
    return f"title:{normalise_title(f.get('title', ''))}|{f.get('year', '')}|{first}"


def normalise_title(title: str) -> str:
    decomposed = unicodedata.normalize("NFKD", title.replace("{", "").replace("}", ""))
    letters = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.findall(r"[a-z0-9]+", letters))


def duplicate_reason(candidate: Candidate, known: Known) -> str | None:
    """Why `candidate` is probably `known`, or None."""
    f = candidate.fields
    for name in ("doi", "pmid", "pmcid"):
        mine, theirs = f.get(name), getattr(known, name)
        if mine and theirs and mine.lower() == theirs.lower():
            return f"same {name.upper()} {mine}"
    for name in ("doi", "pmid"):  # different identifiers of the same kind: different papers
        mine, theirs = f.get(name), getattr(known, name)
        if mine and theirs and mine.lower() != theirs.lower():
            return None
    first = ascii_fold(candidate.authors[0][0]) if candidate.authors else ""
    if (
        not f.get("title")
        or not known.title
        or f.get("year", "") != known.year
        or first != known.first_author
    ):
        return None
    similarity = difflib.SequenceMatcher(
        None, normalise_title(f["title"]), normalise_title(known.title)
    ).ratio()
    if similarity >= TITLE_SIMILARITY:
        return f"same first author, year and title ({similarity:.0%} alike)"
    return None


def find_duplicates(
    candidates: list[Candidate], known: Iterable[Known], not_duplicates: set[tuple[str, str]]
) -> dict[int, list[tuple[str, str]]]:
    """For each candidate (by position), the (existing key, reason) pairs it duplicates.

    Candidates are also checked against each other, so one import cannot add a paper twice.
    """
    known = list(known)
    found: dict[int, list[tuple[str, str]]] = {}
    for i, candidate in enumerate(candidates):
        me = identity(candidate)
        hits = []
        for other in known:
            if (me, other.key) in not_duplicates:
                continue
            reason = duplicate_reason(candidate, other)
            if reason:
                hits.append((other.key, reason))
        for j, earlier in enumerate(candidates[:i]):
            reason = duplicate_reason(candidate, known_of(earlier, f"#{j + 1} in this import"))
            if reason:
                hits.append((f"#{j + 1} in this import", reason))
        if hits:
            found[i] = hits
    return found


def known_of(candidate: Candidate, key: str) -> Known:
    f = candidate.fields
    first = ascii_fold(candidate.authors[0][0]) if candidate.authors else ""
    return Known(
        key, f.get("doi"), f.get("pmid"), f.get("pmcid"), f.get("title", ""), f.get("year", ""), first
    )


def format_entry(key: str, candidate: Candidate, verification: str) -> str:
    """One BibTeX entry in the layout of references.bib (UTF-8, braces, aligned '=')."""
    fields = dict(candidate.fields)
    if candidate.authors:
        fields["author"] = " and ".join(
            f"{last}, {first}" if first else last for last, first in candidate.authors
        )
    ordered = [n for n in FIELD_ORDER if fields.get(n)] + sorted(
        n for n in fields if n not in FIELD_ORDER and fields[n] and n not in ("verification", "note")
    )
    ordered += ["verification"] + (["note"] if fields.get("note") else [])
    fields["verification"] = verification
    width = max(len(n) for n in ordered)
    lines = [f"@{candidate.entry_type}{{{key},"]
    for name in ordered:
        value = fields[name] if name in VERBATIM else _bibtex_value(fields[name], title=name == "title")
        lines.append(f"  {name:<{width}} = {{{value}}},")
    lines[-1] = lines[-1].rstrip(",")
    return "\n".join(lines) + "\n}\n"


def _bibtex_value(value: str, title: bool) -> str:
    """Escape LaTeX specials and balance braces; in titles protect acronyms like {rTMS}."""
    value = re.sub(r"(?<!\\)([&%#])", r"\\\1", value.replace("{", "").replace("}", ""))
    if title:
        value = re.sub(r"\b(\w*[A-Z]\w*[A-Z0-9]\w*|[a-z]+[A-Z]\w*)\b", r"{\1}", value)
    return value


def locked(bib_path: Path) -> contextlib.AbstractContextManager[None]:
    """Exclusive lock beside the bibliography; released by the kernel if the process dies."""
    return idx.process_lock(bib_path.with_name(bib_path.name + ".lock"))


def append_atomically(bib_path: Path, entries: list[str]) -> bytes:
    """Append entries after the existing bytes; temp file + fsync + rename. Returns the new bytes."""
    old = bib_path.read_bytes()
    separator = b"" if not old or old.endswith(b"\n\n") else (b"\n" if old.endswith(b"\n") else b"\n\n")
    new = old + separator + "\n".join(entries).encode("utf-8")
    write_atomically(bib_path, new)
    return new


def write_atomically(path: Path, new: bytes) -> None:
    """Replace a file's content: temporary file in the same directory, fsync, rename, fsync dir."""
    bib_path = path
    fd, tmp = tempfile.mkstemp(prefix=f".{bib_path.name}.", suffix=".tmp", dir=bib_path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(new)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, bib_path.stat().st_mode & 0o777 if bib_path.exists() else 0o644)
        os.replace(tmp, bib_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    directory = os.open(bib_path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def rekey(settings: Settings, old: str, new: str) -> list[str]:
    """Rename a BibTeX key in references.bib and every record citing it; keep `old` as an alias.

    Returns the files changed. Raises ValueError with a user-facing message when it cannot.
    """
    from .records import parse_records
    from .validate import cited_keys

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9:._+-]*", new):
        raise ValueError(f"'{new}' is not a usable key (letters, digits and :._+- only)")
    with locked(settings.bib_path):
        references, problems = parse_bib(settings.bib_path, settings.relative(settings.bib_path))
        if old not in references:
            raise ValueError(f"'{old}' is not in references.bib")
        if new.lower() in {k.lower() for k in references}:
            raise ValueError(f"'{new}' is already in references.bib")
        text = settings.bib_path.read_text("utf-8")
        pattern = re.compile(r"(@\w+\s*[{(]\s*)" + re.escape(old) + r"(\s*,)")
        if len(pattern.findall(text)) != 1:
            raise ValueError(f"cannot find the entry header of '{old}' exactly once")
        changed = {settings.bib_path: pattern.sub(lambda m: m.group(1) + new + m.group(2), text)}
        records, _, _ = parse_records(settings.kb_dir, settings.root)
        for record in records:
            lines = sorted({record.line_of(f) for f, key in cited_keys(record) if key == old})
            if lines:
                path = settings.root / record.path
                body = changed.get(path, path.read_text("utf-8")).split("\n")
                for line in lines:
                    body[line - 1] = re.sub(rf"(?<![\w.-]){re.escape(old)}(?![\w.-])", new, body[line - 1])
                changed[path] = "\n".join(body)
        aliases = {**read_aliases(settings.kb_dir), old: new}
        aliases = {k: (new if v == old else v) for k, v in aliases.items()}
        header = "# Old BibTeX keys renamed with `tmskb rekey`: links and citations to them still resolve.\n"
        changed[settings.kb_dir / ALIASES] = header + yaml.safe_dump({"aliases": aliases}, sort_keys=True)
        for path, content in changed.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, content.encode("utf-8"))
    return [settings.relative(p) for p in changed]


@dataclass
class AddReport:
    """What `tmskb add` did or would do."""

    added: list[tuple[str, Candidate]]
    refused: list[tuple[Candidate, list[tuple[str, str]]]]
    problems: list[Problem]
    diff: str
    written: bool = False
    indexed: bool = False


def add_references(
    settings: Settings,
    inputs: list[tuple[str, str]],
    *,
    fmt: str | None = None,
    verification: str = "as-cited",
    force: bool = False,
    not_duplicate: bool = False,
    dry_run: bool = False,
) -> AddReport:
    """Add the references of `inputs` ((shown name, text) pairs) to the bibliography.

    Nothing is written if any input has a problem, if a suspected duplicate is found (unless
    `force`, or `not_duplicate`, which also remembers the pairs), or with `dry_run`.
    """
    candidates: list[Candidate] = []
    problems: list[Problem] = []
    for shown, text in inputs:
        found, found_problems = read_candidates(text, shown, fmt)
        candidates += found
        problems += found_problems
    if problems:
        return AddReport([], [], sorted(problems), "")
    bib = settings.bib_path
    with locked(bib):
        before = pipeline.fingerprint(settings)
        current = idx.is_current(settings.index_dir, before)
        known, problems = _known(settings, current)
        if problems:
            return AddReport([], [], problems, "")
        duplicates = find_duplicates(candidates, known, read_not_duplicates(settings.kb_dir))
        if duplicates and not (force or not_duplicate):
            refused = [(candidates[i], hits) for i, hits in sorted(duplicates.items())]
            return AddReport([], refused, [], "")
        if not_duplicate and duplicates and not dry_run:
            pairs = [(identity(candidates[i]), key) for i, hits in duplicates.items() for key, _ in hits]
            remember_not_duplicates(settings.kb_dir, [p for p in pairs if not p[1].startswith("#")])
        added, problems = _assign_keys(candidates, {k.key for k in known})
        if problems:
            return AddReport([], [], problems, "")
        entries = [format_entry(key, c, verification) for key, c in added]
        diff = "".join(f"+{line}\n" for entry in entries for line in ["", *entry.splitlines()])
        if dry_run:
            return AddReport(added, [], [], diff)
        old_size = bib.stat().st_size
        new_bytes = append_atomically(bib, entries)
        indexed = current and _index_new(settings, new_bytes, old_size, [key for key, _ in added])
    return AddReport(added, [], [], diff, written=True, indexed=indexed)


def _known(settings: Settings, current: bool) -> tuple[list[Known], list[Problem]]:
    """Existing references: from the current index generation when it is up to date (fast),
    else by parsing references.bib."""
    generation = idx.current_dir(settings.index_dir) if current else None
    if generation is not None and (generation / idx.KNOWN).is_file():
        rows = json.loads((generation / idx.KNOWN).read_text("utf-8"))
    else:
        references, problems = parse_bib(bib := settings.bib_path, settings.relative(bib))
        if problems:
            return [], problems
        rows = known_references(references.values())
    return [
        Known(r["key"], r["doi"], r["pmid"], r["pmcid"], r["title"], r["year"], ascii_fold(r["first_author"]))
        for r in rows
    ], []


def _assign_keys(
    candidates: list[Candidate], taken: set[str]
) -> tuple[list[tuple[str, Candidate]], list[Problem]]:
    """Keep a key the import file gives when it is free; a taken one is an error (keys never change)."""
    lowered = {k.lower() for k in taken}
    added, problems = [], []
    for candidate in candidates:
        key = candidate.given_key
        if key and key.lower() in lowered:
            problems.append(
                Problem(
                    candidate.source,
                    candidate.line,
                    key,
                    "key",
                    f"key collision: '{key}' is already in references.bib",
                    "remove the key from the import file to get a new one, or skip the entry",
                )
            )
            continue
        key = key or make_key(candidate, taken)
        taken.add(key)
        lowered.add(key.lower())
        added.append((key, candidate))
    return added, problems


def _index_new(settings: Settings, new_bytes: bytes, old_size: int, keys: list[str]) -> bool:
    """Index just the new references (nothing else changes when a reference is added).

    Only the appended text is parsed; lines are shifted so the documents equal a full rebuild's.
    """
    offset = new_bytes[:old_size].count(b"\n")
    appended = new_bytes[old_size:].decode("utf-8")
    references, _ = parse_bib_text(appended, settings.relative(settings.bib_path))
    new = []
    for key in keys:
        ref = references.get(key)
        if ref is not None:
            lines = {name: line + offset for name, line in ref.field_lines.items()}
            new.append(replace(ref, line=ref.line + offset, field_lines=lines))
    docs = [reference_document(ref, []) for ref in new]
    for doc in docs:
        doc["hash"] = content_hash(doc)
    rows = known_references(new)
    report = idx.add_documents(
        docs,
        settings.index_dir,
        fingerprint=pipeline.fingerprint(settings),
        extra={idx.KNOWN: lambda old: [*(old or []), *rows]},
    )
    return report is not None
