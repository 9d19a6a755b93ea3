"""Controlled vocabularies: ids that records use, with labels and what clinicians type for them."""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .models import Term

# The vocabulary behind each record field that takes ids.
FIELD_VOCABULARY = {
    "condition": "indications",
    "indication": "indications",
    "target": "targets",
    "side": "sides",
    "protocol": "protocols",
    "coil": "coils",
    "design": "designs",
    "outcome_domain": "outcomes",
    "targeting": "targeting",
}


@functools.lru_cache(maxsize=1 << 16)  # a full build folds every author's name of every reference
def fold(text: str) -> str:
    """Case-, accent-, hyphen- and space-insensitive form used to match what people type."""
    if not text.isascii():  # ASCII has nothing to decompose
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_FOLDED_APART.sub(" ", text.casefold()).split())


_FOLDED_APART = re.compile(r"[-_/’'`]")


@dataclass
class Vocabularies:
    """All vocabularies of a KB, indexed for lookup by id and by any name."""

    terms: dict[str, dict[str, Term]] = field(default_factory=dict)
    _names: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, term: Term) -> None:
        self.terms.setdefault(term.vocabulary, {})[term.id] = term
        names = self._names.setdefault(term.vocabulary, {})
        for name in (term.id, *term.all_names):
            names.setdefault(fold(name), term.id)

    def get(self, vocabulary: str, term_id: str) -> Term | None:
        return self.terms.get(vocabulary, {}).get(term_id)

    def label(self, vocabulary: str, term_id: str) -> str:
        term = self.get(vocabulary, term_id)
        return term.label if term else term_id

    def short_label(self, vocabulary: str, term_id: str) -> str:
        """First abbreviation (HF-rTMS, DLPFC), else the label: for dense tables."""
        term = self.get(vocabulary, term_id)
        if term is None:
            return term_id
        return term.abbreviations[0] if term.abbreviations else term.label

    def resolve(self, vocabulary: str, text: str) -> Term | None:
        """The term whose id, label, abbreviation or synonym is `text` (folded)."""
        term_id = self._names.get(vocabulary, {}).get(fold(text))
        return self.get(vocabulary, term_id) if term_id else None

    def suggest(self, vocabulary: str, text: str) -> str | None:
        """Closest id for an unknown value, matching ids and every name."""
        names = self._names.get(vocabulary, {})
        close = difflib.get_close_matches(fold(text), list(names), n=1, cutoff=0.6)
        return names[close[0]] if close else None

    def ancestors(self, vocabulary: str, term_id: str) -> list[str]:
        """Broader terms, nearest first, without repeats or cycles."""
        seen: list[str] = []
        start = self.get(vocabulary, term_id)
        todo = list(start.broader) if start else []
        while todo:
            current = todo.pop(0)
            if current in seen or current == term_id:
                continue
            seen.append(current)
            parent = self.get(vocabulary, current)
            todo.extend(parent.broader if parent else ())
        return seen

    def names(self) -> Iterator[tuple[str, str, str]]:
        """(folded name, vocabulary, term id) for every name of every term."""
        for vocabulary, names in self._names.items():
            for name, term_id in names.items():
                yield name, vocabulary, term_id

    def to_json(self) -> dict[str, list[dict[str, object]]]:
        """Plain data for the index, so search needs no access to kb/."""
        return {
            vocabulary: [
                {
                    "id": t.id,
                    "label": t.label,
                    "broader": list(t.broader),
                    "abbreviations": list(t.abbreviations),
                    "synonyms": {k: list(v) for k, v in t.synonyms.items()},
                    **({"labels": dict(t.labels)} if t.labels else {}),
                }
                for t in terms.values()
            ]
            for vocabulary, terms in self.terms.items()
        }

    @classmethod
    def from_json(cls, data: dict[str, list[dict[str, object]]]) -> Vocabularies:
        vocab = cls()
        for vocabulary, terms in data.items():
            for t in terms:
                vocab.add(_term(vocabulary, t))
        return vocab


def _term(vocabulary: str, data: dict[str, object], line: int = 0) -> Term:
    synonyms = data.get("synonyms") or {}
    labels = data.get("labels") or {}
    assert isinstance(synonyms, dict) and isinstance(labels, dict)
    return Term(
        id=str(data["id"]),
        label=str(data["label"]),
        vocabulary=vocabulary,
        broader=tuple(_strings(data.get("broader"))),
        abbreviations=tuple(_strings(data.get("abbreviations"))),
        synonyms={str(lang): tuple(_strings(v)) for lang, v in synonyms.items()},
        properties=dict(data.get("properties") or {}),  # type: ignore[call-overload]
        line=line,
        labels={str(lang): str(text) for lang, text in labels.items()},
    )


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _hint(vocab: Vocabularies, vocabulary: str, value: str) -> str:
    exact = vocab.resolve(vocabulary, value)
    close = exact.id if exact else vocab.suggest(vocabulary, value)
    return f"did you mean '{close}'?" if close else f"add it to kb/vocab/{vocabulary}.yaml"


def check_ids(vocab: Vocabularies, vocabulary: str, values: Iterable[str]) -> list[tuple[str, str]]:
    """(unknown value, hint) for every value that is not an id of `vocabulary`."""
    return [(v, _hint(vocab, vocabulary, v)) for v in values if vocab.get(vocabulary, v) is None]
