"""`tmskb add`: read the imports, check for duplicates, assign keys, append, index the new entries.

The steps live in their own modules: keys (new keys), duplicates (the pre-flight check),
bibwrite (entries, the lock, the append) and rekey. This module runs them in order under the
bibliography lock, so concurrent adds serialise and a killed writer leaves the old or the new
file. Validation and the append work on one snapshot of the file's bytes, and the new file is
swapped in only if the file still holds them (bibwrite.update): an editor saving it meanwhile
makes the add start again on the editor's version, never overwrite it. Their public names are
re-exported here for existing callers.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, replace

from . import index as idx
from . import pipeline
from .bib import parse_bib_text
from .bibwrite import (
    ATTEMPTS,
    FIELD_ORDER,
    VERBATIM,
    append_entries,
    appended,
    format_entry,
    locked,
    settled,
    update,
)
from .build import ensure_index
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
from .errors import KBError, ProblemsFound
from .fsio import GRACE, Snapshot
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
    "refresh_index",
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
    index_error: str | None = None  # why the index could not be updated (the entries are written)


@dataclass
class _Attempt:
    """One try at an add, made from one snapshot of references.bib."""

    report: AddReport
    new: bytes | None = None  # the new bibliography, None when nothing is to be written
    old_size: int = 0
    current: bool = False  # the index matched the snapshot: update it in place
    entries: list[str] = field(default_factory=list)


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
    tried: list[_Attempt] = []

    def change(snapshot: Snapshot, committed: bool) -> tuple[bytes | None, _Attempt]:
        if committed and tried and "\n".join(tried[-1].entries).encode("utf-8") in snapshot.data:
            return None, replace(tried[-1], current=False)  # the other program kept our entries
        attempt = _attempt(settings, snapshot, candidates, verification, force, not_duplicate, dry_run)
        tried.append(attempt)
        return attempt.new, attempt

    with locked(bib):
        try:
            done = update(bib, change)
        except FileNotFoundError:
            shown = settings.relative(bib)
            missing = Problem(
                shown, 1, reason="bibliography file not found", hint="create it or point TMSKB_BIB at it"
            )
            return AddReport([], [], [missing], "")
        report = done.report
        if report.written and done.current and done.new is not None:
            try:
                report.indexed = _index_new(settings, done.new, done.old_size, [k for k, _ in report.added])
            except (OSError, KBError) as exc:
                report.index_error = _reason(exc)
    return report


def refresh_index(settings: Settings) -> str | None:
    """Bring the index up to date after a write; None, or why it could not be (the write stands).

    Problems found while another program was saving a source file (half of references.bib)
    are not reported: the sources are read again once they hold still.
    """
    for _ in range(ATTEMPTS):
        before = pipeline.fingerprint(settings)
        try:
            ensure_index(settings)
            return None
        except ProblemsFound as exc:
            time.sleep(GRACE)
            if pipeline.fingerprint(settings) == before:
                return f"{exc} (tmskb check lists them)"
        except (OSError, KBError) as exc:
            return _reason(exc)
    return f"the sources kept changing while they were indexed ({ATTEMPTS} attempts)"


def _attempt(
    settings: Settings,
    snapshot: Snapshot,
    candidates: list[Candidate],
    verification: str,
    force: bool,
    not_duplicate: bool,
    dry_run: bool,
) -> _Attempt:
    """Check the candidates against this snapshot of the bibliography and make its new bytes."""
    current = _index_matches(settings, snapshot)
    known, problems = _known(settings, snapshot, current)
    if problems:
        settled(snapshot)
        return _Attempt(AddReport([], [], problems, ""))
    duplicates = find_duplicates(candidates, known, read_not_duplicates(settings.kb_dir))
    if duplicates and not (force or not_duplicate):
        settled(snapshot)
        refused = [(candidates[i], hits) for i, hits in sorted(duplicates.items())]
        return _Attempt(AddReport([], refused, [], ""))
    added, problems = _assign_keys(candidates, {k.key for k in known})
    if problems:
        settled(snapshot)
        return _Attempt(AddReport([], [], problems, ""))
    entries = [format_entry(key, c, verification) for key, c in added]
    diff = "".join(f"+{line}\n" for entry in entries for line in ["", *entry.splitlines()])
    if dry_run:
        return _Attempt(AddReport(added, [], [], diff))
    if not_duplicate and duplicates:
        pairs = [(identity(candidates[i]), key) for i, hits in duplicates.items() for key, _ in hits]
        remember_not_duplicates(settings.kb_dir, [p for p in pairs if not p[1].startswith("#")])
    report = AddReport(added, [], [], diff, written=True)
    new = appended(snapshot.data, entries)
    return _Attempt(report, new, len(snapshot.data), current, entries)


def _index_matches(settings: Settings, snapshot: Snapshot) -> bool:
    """True if the index was built from exactly the snapshot's bytes (and the other sources)."""
    current = idx.is_current(settings.index_dir, pipeline.fingerprint(settings))
    return current and settings.bib_path.read_bytes() == snapshot.data  # fingerprint read these bytes


def _reason(exc: OSError | KBError) -> str:
    """What went wrong, in one line (shutil.copytree reports a list of failed copies)."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        return str(exc.args[0][0][2])
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


def _known(settings: Settings, snapshot: Snapshot, current: bool) -> tuple[list[Known], list[Problem]]:
    """Existing references: from the current index generation when it is up to date (fast),
    else by parsing the snapshot of references.bib."""
    rows = idx.known_rows(settings.index_dir) if current else None
    if rows is None:
        shown = settings.relative(settings.bib_path)
        try:
            text = snapshot.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            reason = f"not UTF-8 ({exc.reason} at byte {exc.start})"
            return [], [Problem(shown, 1, reason=reason, hint="save the file as UTF-8")]
        references, problems = parse_bib_text(text, shown)
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
    False (not indexed) when the bibliography changed again since it was written.
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
    fingerprint = pipeline.fingerprint(settings)
    if settings.bib_path.read_bytes() != new_bytes:  # else the fingerprint may be of other bytes
        return False
    report = idx.add_documents(docs, settings.index_dir, fingerprint=fingerprint, known=rows)
    return report is not None
