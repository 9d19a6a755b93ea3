"""Partial knowledge bases: records with problems are left out of the index, the rest is served.

A researcher previewing a draft must not lose the whole site to one unfinished record. A
record (or BibTeX entry) with problems is left out, and so is every record that depends on one
left out (a study citing a left-out reference, a recommendation or question linking a left-out
study): a computed level is never shown from fewer studies than the curator linked. Problems
that are not any one record's (a vocabulary, a rule set, an unreadable bibliography) still stop
the build, as they would change every record.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import PurePosixPath

from . import pipeline
from .errors import ProblemsFound
from .models import Problem
from .records import NOT_RECORDS
from .validate import check


@dataclass(frozen=True)
class LeftOut:
    """One record or reference left out of the index, and why (its first problem)."""

    kind: str  # "record" or "reference"
    id: str
    path: str
    line: int
    problems: int
    first: str

    def as_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "id": self.id,
            "path": self.path,
            "line": self.line,
            "problems": self.problems,
            "first": self.first,
        }


def partition(kb: pipeline.KB) -> tuple[pipeline.KB, list[LeftOut]]:
    """The KB without its records that have problems (re-graded), and what was left out.

    Raises ProblemsFound when a problem belongs to no record (see the module docstring).
    """
    if not kb.problems:
        return kb, []
    settings = kb.settings
    bib = settings.relative(settings.bib_path)
    kb_shown = settings.relative(settings.kb_dir)
    fatal = [p for p in kb.problems if not _is_record_problem(p, bib, kb_shown, bool(kb.references))]
    if fatal:
        raise ProblemsFound(kb.problems)
    problems = list(kb.problems)
    references, records = dict(kb.references), list(kb.records)
    left: dict[tuple[str, str], list[Problem]] = {}
    while True:
        for problem in problems:
            left.setdefault(_owner(problem, bib), []).append(problem)
        bad_keys = {key for path, key in left if path == bib}
        bad_paths = {path for path, _ in left if path != bib}
        references = {k: r for k, r in references.items() if k not in bad_keys}
        records = [r for r in records if r.path not in bad_paths]
        # What the removals break (links and citations to what was left out) is left out too,
        # until a check finds nothing new (each round removes at least one record, so it ends).
        problems = check(references, records, kb.vocab, frozenset(), kb.aliases)
        if all(_owner(p, bib) in left for p in problems):
            break
    kept = replace(kb, references=references, records=records, problems=[])
    if kept.ruleset is not None:
        pipeline.grade(kept, kept.ruleset)
    return kept, _described(left, bib)


def _is_record_problem(problem: Problem, bib: str, kb_shown: str, bib_readable: bool) -> bool:
    """A problem of one BibTeX entry or one record file (not of a vocabulary, rule set...)."""
    if problem.path == bib:
        return bib_readable
    path = PurePosixPath(problem.path)
    if not path.is_relative_to(kb_shown) or path == PurePosixPath(kb_shown):
        return False
    return path.relative_to(kb_shown).parts[0] not in NOT_RECORDS


def _owner(problem: Problem, bib: str) -> tuple[str, str]:
    """(file, record) a problem is about: a BibTeX key in the bibliography, a record file else."""
    if problem.path == bib:
        return bib, problem.record or f"line {problem.line}"
    return problem.path, ""


def _described(left: dict[tuple[str, str], list[Problem]], bib: str) -> list[LeftOut]:
    out = []
    for (path, key), found in sorted(left.items()):
        first = min(found, key=lambda p: p.line)
        kind = "reference" if path == bib else "record"
        record_id = key if kind == "reference" else (first.record or PurePosixPath(path).stem)
        out.append(LeftOut(kind, record_id, path, first.line, len(found), str(first)))
    return out
