"""`tmskb add`: read the imports, check for duplicates, assign keys, append, index the new entries.

The steps live in their own modules: keys (new keys), duplicates (the pre-flight check),
bibwrite (entries, the lock, the append) and rekey. This module runs them in order under the
bibliography lock, so concurrent adds serialise and a killed writer leaves the old or the new
file. Their public names are re-exported here for existing callers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import index as idx
from . import pipeline
from .bib import parse_bib, parse_bib_text
from .bibwrite import FIELD_ORDER, VERBATIM, append_entries, format_entry, locked
from .curation import read_not_duplicates, remember_not_duplicates
from .documents import content_hash, known_references, reference_document
from .duplicates import (
    TITLE_SIMILARITY,
    Known,
    duplicate_reason,
    find_duplicates,
    identity,
    known_from_rows,
    known_of,
    normalise_title,
)
from .importers import Candidate, read_candidates
from .keys import STOP_WORDS, ascii_fold, make_key
from .models import Problem
from .rekey import rekey
from .settings import Settings

__all__ = [
    "FIELD_ORDER",
    "STOP_WORDS",
    "TITLE_SIMILARITY",
    "VERBATIM",
    "AddReport",
    "Known",
    "add_references",
    "append_entries",
    "ascii_fold",
    "duplicate_reason",
    "find_duplicates",
    "format_entry",
    "identity",
    "known_of",
    "locked",
    "make_key",
    "normalise_title",
    "rekey",
]


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
        current = idx.is_current(settings.index_dir, pipeline.fingerprint(settings))
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
        new_bytes = append_entries(bib, entries)
        indexed = current and _index_new(settings, new_bytes, old_size, [key for key, _ in added])
    return AddReport(added, [], [], diff, written=True, indexed=indexed)


def _known(settings: Settings, current: bool) -> tuple[list[Known], list[Problem]]:
    """Existing references: from the current index generation when it is up to date (fast),
    else by parsing references.bib."""
    rows = idx.known_rows(settings.index_dir) if current else None
    if rows is None:
        references, problems = parse_bib(bib := settings.bib_path, settings.relative(bib))
        if problems:
            return [], problems
        rows = known_references(references.values())
    return known_from_rows(rows), []


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
        known=rows,
    )
    return report is not None
