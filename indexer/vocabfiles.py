"""Reading kb/vocab/*.yaml into Vocabularies, with problems (the write side of vocab.py).

Kept apart from vocab.py so that the search path, which only needs Vocabularies, does not load
PyYAML and the JSON Schema validators.
"""

from __future__ import annotations

from pathlib import Path

from . import schema, yamlio
from .models import Problem
from .vocab import Vocabularies, _hint, _term


def load_vocabularies(vocab_dir: Path, shown: str) -> tuple[Vocabularies, list[Problem]]:
    """Read kb/vocab/*.yaml; `shown` is the directory as shown in problems."""
    vocab, problems = Vocabularies(), []
    for path in sorted(vocab_dir.glob("*.yaml")):
        where = f"{shown}/{path.name}"
        try:
            located = yamlio.load(path.read_text(encoding="utf-8"))
        except yamlio.YamlError as exc:
            problems.append(Problem(where, exc.line, path.stem, "", exc.reason))
            continue
        errors = schema.validate(located, "vocabulary", where, path.stem)
        if errors:
            problems += errors
            continue
        name = located.data["vocabulary"]
        if name != path.stem:
            problems.append(
                Problem(
                    where,
                    located.line("vocabulary"),
                    path.stem,
                    "vocabulary",
                    f"name '{name}' does not match the file name",
                    f"rename the file to {name}.yaml or fix the name",
                )
            )
        problems += _add_terms(vocab, path.stem, located, where)
    problems += _check_broader(vocab, shown)
    return vocab, problems


def _add_terms(vocab: Vocabularies, name: str, located: yamlio.Located, where: str) -> list[Problem]:
    problems = []
    for i, data in enumerate(located.data["terms"]):
        term = _term(name, data, located.line(f"terms.{i}"))
        if vocab.get(name, term.id):
            problems.append(
                Problem(
                    where,
                    located.line(f"terms.{i}.id"),
                    name,
                    f"terms.{i}.id",
                    f"duplicate term id '{term.id}'",
                    "term ids must be unique",
                )
            )
            continue
        vocab.add(term)
    return problems


def _check_broader(vocab: Vocabularies, shown: str) -> list[Problem]:
    problems = []
    for name, terms in vocab.terms.items():
        for term in terms.values():
            for parent in term.broader:
                if parent not in terms:
                    problems.append(
                        Problem(
                            f"{shown}/{name}.yaml",
                            term.line,
                            name,
                            "broader",
                            f"'{parent}' is not a term of {name}",
                            _hint(vocab, name, parent),
                        )
                    )
    return problems
