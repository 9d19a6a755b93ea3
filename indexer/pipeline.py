"""load(settings): parse -> validate -> grade, returning the whole knowledge base."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from . import grading
from .bib import parse_bib
from .curation import read_aliases
from .errors import ProblemsFound
from .models import Knowledge, Problem, Question, Recommendation, Record, Reference, Scale, Study, Verdict
from .records import read_records, record_files
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


def load(settings: Settings, ruleset_id: str | None = None) -> KB:
    """Parse every source, check it, and grade it under the chosen (default) rule set."""
    kb_dir, shown_kb = settings.kb_dir, settings.relative(settings.kb_dir)
    references, problems = parse_bib(settings.bib_path, settings.relative(settings.bib_path))
    if not kb_dir.is_dir():
        problems.append(
            Problem(
                shown_kb,
                1,
                reason="knowledge base directory not found",
                hint="create kb/ or point TMSKB_KB_DIR at it",
            )
        )
    vocab, found = load_vocabularies(kb_dir / "vocab", f"{shown_kb}/vocab")
    problems += found
    rulesets, found = load_rulesets(kb_dir / "rulesets", f"{shown_kb}/rulesets")
    problems += found
    parsed = read_records(kb_dir, settings.root)
    problems += parsed.problems
    try:
        aliases = read_aliases(kb_dir)
    except ProblemsFound as exc:  # a damaged curation file is one more problem, not a crash
        aliases = {}
        problems += exc.problems
    problems += check(
        references, parsed.records, vocab, parsed.unreadable, aliases, parsed.drafts, parsed.repaired
    )
    kb = KB(settings, references, parsed.records, vocab, rulesets, sorted(set(problems)), aliases=aliases)
    kb.ruleset = choose_ruleset(rulesets, ruleset_id)
    if kb.ruleset is not None:
        grade(kb, kb.ruleset)
    return kb


def choose_ruleset(rulesets: dict[str, RuleSet], ruleset_id: str | None) -> RuleSet | None:
    """The requested rule set, else the default one; None if there is none."""
    if ruleset_id is not None:
        return rulesets.get(ruleset_id)
    defaults = [r for r in rulesets.values() if r.default]
    return defaults[0] if defaults else None


def crossover_designs(vocab: Vocabularies) -> frozenset[str]:
    """Design ids the designs vocabulary marks as cross-over."""
    return frozenset(t.id for t in vocab.terms.get("designs", {}).values() if t.properties.get("crossover"))


def grade(kb: KB, ruleset: RuleSet) -> None:
    """Fill kb.classes (every study) and kb.levels (every recommendation) under `ruleset`."""
    crossover = crossover_designs(kb.vocab)
    studies = kb.studies
    kb.classes = {sid: grading.effective_class(s, ruleset, crossover) for sid, s in studies.items()}
    kb.levels = {
        rid: grading.compute_level(rec, counted_results(kb, rec), kb.classes, ruleset)
        for rid, rec in kb.recommendations.items()
    }


def counted_results(kb: KB, rec: Recommendation) -> dict[str, str | None]:
    """Study id -> the result that counts for `rec` (its matching arm's, see grading.arm_result)."""

    studies = kb.studies
    return {
        sid: grading.arm_result(rec, studies[sid], kb.within) for sid in rec.linked_studies if sid in studies
    }


def source_files(settings: Settings) -> list[Path]:
    """Every file the index is built from, in a stable order."""
    kb_dir = settings.kb_dir
    extra = [
        *sorted((kb_dir / "vocab").glob("*.yaml")),
        *sorted((kb_dir / "rulesets").glob("*.yaml")),
        *sorted((kb_dir / "curation").glob("*.yaml")),
    ]
    return [settings.bib_path, *extra, *record_files(kb_dir)] if kb_dir.is_dir() else [settings.bib_path]


def fingerprint(settings: Settings) -> str:
    """Hash of every source file's path and bytes: equal fingerprints mean nothing changed."""
    digest = hashlib.sha256()
    for path in source_files(settings):
        digest.update(
            str(path.relative_to(settings.root) if path.is_relative_to(settings.root) else path).encode()
        )
        digest.update(b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
        digest.update(b"\0")
    return digest.hexdigest()
