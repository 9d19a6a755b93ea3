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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import bibtexparser

from . import index as idx
from . import pipeline
from .bib import decode_bib, parse_bib_text
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
    verbatim_entry,
)
from .build import ensure_index
from .curation import read_aliases, read_not_duplicates, remember_aliases, remember_not_duplicates
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
from .importers import Candidate, decode_input, read_candidates
from .keys import STOP_WORDS, ascii_fold, fits_pattern, make_key
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
    skipped: list[Problem] = field(default_factory=list)  # with skip_bad: the entries left out, and why
    # (the import file's key, the key written) where the file's key lacked the documented shape;
    # the old key is kept as an alias in kb/curation/key-aliases.yaml
    renamed: list[tuple[str, str]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # the import file's own keys, kept as they fit
    rewritten: list[str] = field(default_factory=list)  # BibTeX imports not written verbatim
    alias_error: str | None = None  # why the renamed keys' aliases could not be written
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
    inputs: Sequence[tuple[str, str | bytes]],
    *,
    fmt: str | None = None,
    verification: str = "as-cited",
    force: bool = False,
    not_duplicate: bool = False,
    dry_run: bool = False,
    skip_bad: bool = False,
) -> AddReport:
    """Add the references of `inputs` ((shown name, text or bytes) pairs) to the bibliography.

    Every entry is checked as `tmskb check` would check it in references.bib before anything is
    written. Nothing is written if any input has a problem (with `skip_bad`, the entries with
    problems are left out and listed in `skipped`), if a suspected duplicate is found (unless
    `force`, or `not_duplicate`, which also remembers the pairs), or with `dry_run`.
    """
    candidates, problems = _read_inputs(inputs, fmt)
    skipped: list[Problem] = []
    if problems and skip_bad:
        bad = {id(p) for p in problems}
        candidates = [c for c in candidates if not any(id(p) in bad for p in c.problems)]
        skipped, problems = problems, []
    if problems or (skip_bad and not candidates):
        return AddReport([], [], sorted(problems), "", sorted(skipped))
    bib = settings.bib_path
    tried: list[_Attempt] = []

    def change(snapshot: Snapshot, committed: bool) -> tuple[bytes | None, _Attempt]:
        if committed and tried and "\n".join(tried[-1].entries).encode("utf-8") in snapshot.data:
            return None, replace(tried[-1], current=False)  # the other program kept our entries
        attempt = _attempt(
            settings, snapshot, candidates, verification, force, not_duplicate, dry_run, skip_bad
        )
        attempt.report.skipped = sorted(skipped + attempt.report.skipped)
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
            return AddReport([], [], [missing], "", sorted(skipped))
        report = done.report
        if report.written and report.renamed:
            try:
                remember_aliases(settings.kb_dir, report.renamed)
            except (OSError, KBError) as exc:
                report.alias_error = _reason(exc)
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
    skip_bad: bool = False,
) -> _Attempt:
    """Check the candidates against this snapshot of the bibliography and make its new bytes."""
    current = _index_matches(settings, snapshot)
    known, problems = _known(settings, snapshot, current)
    if problems:
        settled(snapshot)
        return _Attempt(AddReport([], [], problems, ""))
    duplicates = find_duplicates(candidates, known, read_not_duplicates(settings.kb_dir))
    refused = [(candidates[i], hits) for i, hits in sorted(duplicates.items())]
    if refused and not (force or not_duplicate):
        if not skip_bad:
            settled(snapshot)
            return _Attempt(AddReport([], refused, [], ""))
        candidates = [c for i, c in enumerate(candidates) if i not in duplicates]  # skipped, listed
        duplicates = {}
    else:
        refused = []
    taken = {k.key for k in known}
    added, entries, problems, skipped = _entries(candidates, taken, verification, skip_bad)
    if problems or not added:
        settled(snapshot)
        return _Attempt(AddReport([], refused, problems, "", skipped))
    diff = "".join(f"+{line}\n" for entry in entries for line in ["", *entry.splitlines()])
    report = AddReport(added, refused, [], diff, skipped, written=not dry_run)
    _note_keys_and_text(report, entries, taken | set(read_aliases(settings.kb_dir)), verification)
    if dry_run:
        return _Attempt(report)
    if not_duplicate and duplicates:
        pairs = [(identity(candidates[i]), key) for i, hits in duplicates.items() for key, _ in hits]
        remember_not_duplicates(settings.kb_dir, [p for p in pairs if not p[1].startswith("#")])
    new = appended(snapshot.data, entries)
    return _Attempt(report, new, len(snapshot.data), current, entries)


def _entries(
    candidates: list[Candidate], taken: set[str], verification: str, skip_bad: bool
) -> tuple[list[tuple[str, Candidate]], list[str], list[Problem], list[Problem]]:
    """Keys and entries for the candidates, each checked as `tmskb check` checks references.bib.

    Returns (added, entries, problems, skipped): with `skip_bad`, candidates whose entry would
    not pass are skipped (and the others get their keys again, as if those were never there).
    """
    skipped: list[Problem] = []
    for _ in range(2):
        added, problems = _assign_keys(candidates, set(taken))
        memo: dict[str, tuple[str, str]] = {}
        written = [_written_form(key, c, verification, memo) for key, c in added]
        entries = [entry for entry, _ in written]
        problems += [p for _, found in written for p in found]
        if not problems or not skip_bad:
            return added, entries, sorted(problems), skipped
        bad = {(p.path, p.line) for p in problems}
        candidates = [c for c in candidates if (c.source, c.line) not in bad]
        skipped += problems
    return [], [], sorted(problems), skipped


def _written_form(
    key: str, candidate: Candidate, verification: str, memo: dict[str, tuple[str, str]]
) -> tuple[str, list[Problem]]:
    """The entry to write and its problems: a BibTeX import's own text when it reads back as the
    laid-out entry would (same type, fields, authors, status), else the laid-out entry.

    The import's text cannot stand alone when it leans on the file (an `@string` macro, a
    `crossref` parent) or uses biblatex names; it is then written in the layout of format_entry.
    """
    laid_out = format_entry(key, candidate, verification)
    problems = _check_entry(key, candidate, laid_out, memo)
    verbatim = verbatim_entry(key, candidate, verification)
    if verbatim is None or problems:
        return laid_out, problems
    same = _same_names(verbatim, laid_out) and _reads_as(verbatim, laid_out, candidate.source, memo)
    return (verbatim if same else laid_out), []


def _same_names(text: str, other: str) -> bool:
    """True if two one-entry texts have the same entry type and field names as written (so a
    biblatex `journaltitle` or `@online` is written as its BibTeX name, which other tools read)."""
    entries = [bibtexparser.parse_string(t).entries for t in (text, other)]
    if any(len(e) != 1 for e in entries):
        return False
    names = [
        (e[0].entry_type.lower(), {k.lower() for k in e[0].fields_dict} - {"verification"}) for e in entries
    ]
    return names[0] == names[1]


def _reads_as(text: str, other: str, shown: str, memo: dict[str, tuple[str, str]]) -> bool:
    """True if two one-entry texts parse, without problems, to the same reference."""
    (mine, problems), (theirs, _) = (parse_bib_text(t, shown, memo) for t in (text, other))
    if problems or len(mine) != 1 or list(mine) != list(theirs):
        return False
    a, b = next(iter(mine.values())), next(iter(theirs.values()))

    def plain(fields: dict[str, str]) -> dict[str, str]:
        return {k: " ".join(v.split()) for k, v in fields.items() if k != "verification"}

    return (a.entry_type, plain(a.fields), a.authors, a.verification) == (
        b.entry_type,
        plain(b.fields),
        b.authors,
        b.verification,
    )


def _note_keys_and_text(report: AddReport, entries: list[str], known: set[str], verification: str) -> None:
    """Which import keys were kept, which replaced, which BibTeX entries were not written verbatim."""
    report.renamed = _renamed(report.added, known)
    report.kept = [key for key, c in report.added if c.given_key == key]
    report.rewritten = [
        key
        for (key, c), entry in zip(report.added, entries, strict=True)
        if c.raw and entry != verbatim_entry(key, c, verification)
    ]


def _renamed(added: list[tuple[str, Candidate]], known: set[str]) -> list[tuple[str, str]]:
    """(file's key, new key) for keys replaced because they lacked the documented shape; a key
    that is (ignoring case) a key or alias already is not kept as an alias."""
    lowered = {k.lower() for k in known} | {key.lower() for key, _ in added}
    return [
        (c.given_key, key)
        for key, c in added
        if c.given_key and c.given_key != key and c.given_key.lower() not in lowered
    ]


def _check_entry(
    key: str, candidate: Candidate, entry: str, memo: dict[str, tuple[str, str]]
) -> list[Problem]:
    """What `tmskb check` would report about `entry` in references.bib, at the candidate's place."""
    references, problems = parse_bib_text(entry, candidate.source, memo)
    if not problems and list(references) != [key]:
        problems = [
            Problem(candidate.source, 1, key, "", "the entry written for it does not read back as one entry")
        ]
    return [Problem(candidate.source, candidate.line, key, p.field, p.reason, p.hint) for p in problems]


def _read_inputs(
    inputs: Sequence[tuple[str, str | bytes]], fmt: str | None
) -> tuple[list[Candidate], list[Problem]]:
    candidates: list[Candidate] = []
    problems: list[Problem] = []
    for shown, data in inputs:
        if isinstance(data, bytes):
            text, found_problems = decode_input(data, shown)
            problems += found_problems
            if text is None:
                continue
        else:
            text = data
        found, found_problems = read_candidates(text, shown, fmt)
        candidates += found
        problems += found_problems
    return candidates, problems


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
        text, problems = decode_bib(snapshot.data, shown)
        references, found = parse_bib_text(text, shown)
        problems += found
        if problems:
            return [], problems
        rows = known_references(references.values())
    return known_from_rows(rows), []


def _assign_keys(
    candidates: list[Candidate], taken: set[str]
) -> tuple[list[tuple[str, Candidate]], list[Problem]]:
    """Keep a key the import file gives when it has the documented shape and is free (a taken
    one is an error: keys never change); replace one without that shape by a new key."""
    lowered = {k.lower() for k in taken}
    mine: dict[str, Candidate] = {}
    added, problems = [], []
    for candidate in candidates:
        key = candidate.given_key if candidate.given_key and fits_pattern(candidate.given_key) else None
        if key and key.lower() in lowered:
            first = mine.get(key.lower())
            where = "references.bib" if first is None else f"{first.source} (line {first.line})"
            problems.append(
                Problem(
                    candidate.source,
                    candidate.line,
                    key,
                    "key",
                    f"key collision: '{key}' is already in {where}",
                    "remove the key from the import file to get a new one, or skip the entry",
                )
            )
            continue
        key = key or make_key(candidate, taken)
        taken.add(key)
        lowered.add(key.lower())
        mine[key.lower()] = candidate
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
