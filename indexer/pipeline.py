"""load(settings): parse -> validate -> grade, returning the whole knowledge base."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

from . import grading, parsecache
from .curation import read_aliases
from .errors import ProblemsFound
from .models import Knowledge, Problem, Question, Recommendation, Record, Reference, Scale, Study, Verdict
from .parsecache import ParseCache
from .records import record_files
from .rulesets import RuleSet, load_rulesets
from .settings import Settings
from .validate import check
from .vocab import Vocabularies
from .vocabfiles import load_vocabularies


@dataclass
class KB:
    """A parsed, validated and graded knowledge base."""

    settings: Settings
    references: dict[str, Reference]
    records: list[Record]
    vocab: Vocabularies
    rulesets: dict[str, RuleSet]
    problems: list[Problem]
    classes: dict[str, grading.ClassResult] = field(default_factory=dict)
    levels: dict[str, grading.LevelResult] = field(default_factory=dict)
    ruleset: RuleSet | None = None
    aliases: dict[str, str] = field(default_factory=dict)

    def reference(self, key: str) -> Reference | None:
        """The reference with this key, following `tmskb rekey` aliases."""
        return self.references.get(key) or self.references.get(self.aliases.get(key, ""))

    @cached_property
    def studies(self) -> dict[str, Study]:
        return {r.id: r for r in self.records if isinstance(r, Study)}

    @cached_property
    def recommendations(self) -> dict[str, Recommendation]:
        return {r.id: r for r in self.records if isinstance(r, Recommendation)}

    @cached_property
    def knowledge(self) -> dict[str, Knowledge]:
        return {r.id: r for r in self.records if isinstance(r, Knowledge)}

    @cached_property
    def questions(self) -> dict[str, Question]:
        return {r.id: r for r in self.records if isinstance(r, Question)}

    @cached_property
    def verdicts(self) -> dict[str, Verdict]:
        return {r.id: r for r in self.records if isinstance(r, Verdict)}

    @cached_property
    def scales(self) -> dict[str, Scale]:
        return {r.id: r for r in self.records if isinstance(r, Scale)}

    def within(self, vocabulary: str, narrow: str, broad: str) -> bool:
        """True if `narrow` is `broad` or one of its narrower terms."""
        return narrow == broad or broad in self.vocab.ancestors(vocabulary, narrow)

    def comparisons(self) -> dict[str, grading.Comparison]:
        """Published vs computed level for every recommendation (call once; it is not cached)."""
        return {
            rid: grading.compare(rec, self.levels[rid])
            for rid, rec in self.recommendations.items()
            if rid in self.levels
        }


def load(settings: Settings, ruleset_id: str | None = None, cache: ParseCache | None = None) -> KB:
    """Parse every source, check it, and grade it under the chosen (default) rule set.

    With a `cache`, files whose bytes are unchanged since they were cached are not parsed again.
    """
    kb_dir, shown_kb = settings.kb_dir, settings.relative(settings.kb_dir)
    (references, problems), parsed = parsecache.parse_sources(
        cache, settings.bib_path, settings.relative(settings.bib_path), kb_dir, settings.root
    )
    if not kb_dir.is_dir():
        problems.append(
            Problem(
                shown_kb,
                1,
                reason="knowledge base directory not found",
                hint="create kb/ or point TMSKB_KB_DIR at it",
            )
        )
    vocab, rulesets, aliases, found = load_shared(settings)
    problems += found
    problems += parsed.problems
    problems += check(
        references,
        parsed.records,
        vocab,
        parsed.unreadable,
        aliases,
        parsed.drafts,
        parsed.repaired,
        memo=cache.memo if cache is not None else None,
    )
    kb = KB(settings, references, parsed.records, vocab, rulesets, sorted(set(problems)), aliases=aliases)
    kb.ruleset = choose_ruleset(rulesets, ruleset_id)
    if kb.ruleset is not None:
        grade(kb, kb.ruleset, cache)
    return kb


def load_shared(settings: Settings) -> tuple[Vocabularies, dict[str, RuleSet], dict[str, str], list[Problem]]:
    """What every record is read with: vocabularies, rule sets, `tmskb rekey` aliases, and their
    problems (a damaged curation file is one more problem, not a crash)."""
    kb_dir, shown_kb = settings.kb_dir, settings.relative(settings.kb_dir)
    vocab, problems = load_vocabularies(kb_dir / "vocab", f"{shown_kb}/vocab")
    rulesets, found = load_rulesets(kb_dir / "rulesets", f"{shown_kb}/rulesets")
    problems += found
    try:
        aliases = read_aliases(kb_dir)
    except ProblemsFound as exc:
        aliases = {}
        problems += exc.problems
    return vocab, rulesets, aliases, problems


def choose_ruleset(rulesets: dict[str, RuleSet], ruleset_id: str | None) -> RuleSet | None:
    """The requested rule set, else the default one; None if there is none."""
    if ruleset_id is not None:
        return rulesets.get(ruleset_id)
    defaults = [r for r in rulesets.values() if r.default]
    return defaults[0] if defaults else None


def crossover_designs(vocab: Vocabularies) -> frozenset[str]:
    """Design ids the designs vocabulary marks as cross-over."""
    return frozenset(t.id for t in vocab.terms.get("designs", {}).values() if t.properties.get("crossover"))


def grade(kb: KB, ruleset: RuleSet, cache: ParseCache | None = None) -> None:
    """Fill kb.classes (every study) and kb.levels (every recommendation) under `ruleset`.

    With a `cache`, a study whose file is unchanged keeps the class it was last given under
    the same rules, and a recommendation whose file and linked studies are unchanged its level
    (parsecache.ParseCache.memo)."""
    crossover = crossover_designs(kb.vocab)
    studies = kb.studies
    if cache is None:
        kb.classes = {sid: grading.effective_class(s, ruleset, crossover) for sid, s in studies.items()}
        kb.levels = {rid: _level(kb, rec, ruleset) for rid, rec in kb.recommendations.items()}
        return
    with cache.memo("classes", ruleset, sorted(crossover)) as known:
        kb.classes = {
            sid: known.get(s.path, partial(grading.effective_class, s, ruleset, crossover))
            for sid, s in studies.items()
        }
    # A level depends on the recommendation, its linked studies (their classes come from
    # them) and the vocabularies (kb.within).
    with cache.memo("levels", ruleset, sorted(crossover), kb.vocab.to_json()) as known:
        kb.levels = {
            rid: known.get(
                rec.path,
                partial(_level, kb, rec, ruleset),
                [studies[sid].path if sid in studies else f"<no study {sid}>" for sid in rec.linked_studies],
            )
            for rid, rec in kb.recommendations.items()
        }


def _level(kb: KB, rec: Recommendation, ruleset: RuleSet) -> grading.LevelResult:
    return grading.compute_level(rec, counted_results(kb, rec), kb.classes, ruleset)


def counted_results(kb: KB, rec: Recommendation) -> dict[str, str | None]:
    """Study id -> the result that counts for `rec` (its matching arm's, see grading.arm_result)."""

    studies = kb.studies
    return {
        sid: grading.arm_result(rec, studies[sid], kb.within) for sid in rec.linked_studies if sid in studies
    }


def source_files(settings: Settings, records: bool = True) -> list[Path]:
    """Every file the index is built from, in a stable order (without the record files, which
    come last, if not `records`)."""
    kb_dir = settings.kb_dir
    extra = [
        *sorted((kb_dir / "vocab").glob("*.yaml")),
        *sorted((kb_dir / "rulesets").glob("*.yaml")),
        *sorted((kb_dir / "curation").glob("*.yaml")),
    ]
    if not kb_dir.is_dir():
        return [settings.bib_path]
    return [settings.bib_path, *extra, *(record_files(kb_dir) if records else ())]


def fingerprint(settings: Settings, hashes: Mapping[str, str] | None = None) -> str:
    """Hash of every source file's path and content hash: equal fingerprints mean nothing changed.

    `hashes` (parsecache.ParseCache.hashes of the text of each of source_files(settings), in
    that order: sha256 of each file, '' if missing) saves reading unchanged files; without it
    every file is read.
    """
    root = os.path.join(settings.root, "")
    cut = len(root)
    if hashes is None:
        pairs = [
            (str(path), hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "")
            for path in source_files(settings)
        ]
    else:
        pairs = list(hashes.items())
    parts = []
    for text, sha in pairs:  # one string hashed at once: an edit at 100k records lists every file
        parts.append(f"{text[cut:] if text.startswith(root) else text}\0{sha or '<missing>'}\0")
    digest = hashlib.sha256("".join(parts).encode())
    return digest.hexdigest()
