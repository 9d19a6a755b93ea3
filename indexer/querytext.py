"""Read a user's query: find vocabulary terms (any language, abbreviations, lay words) and
rewrite them as `(original OR concepts:<id>)`, resolve fielded vocabulary values, and reject
unknown fields. The result is Whoosh query syntax; nothing here imports Whoosh.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from .errors import QueryError
from .fields import DOSE_BY_NAME, FACETS, DoseNumber
from .vocab import Vocabularies, fold

MAX_QUERY_LENGTH = 500
MAX_NGRAM = 6
OPERATORS = {"AND", "OR", "NOT", "ANDNOT", "ANDMAYBE"}
# Dropped from unquoted words only: they would otherwise be required terms (phrases keep them).
STOP_WORDS = frozenset(
    "a an and are as at be by for from in into is of on or the to with de des du la le les et en "
    "pour par sur un une dans".split()
)
# Words of a clinician's question that name no content: "how many sessions ..." asks about dose.
QUESTION_WORDS = frozenset("how many much".split())
# Dose words: shown as understood (every study hit carries its dose), not required as text.
DOSE_WORDS = {
    "sessions": "number of sessions",
    "session": "number of sessions",
    "dose": "dose",
    "dosage": "dose",
    "pulses": "pulses per session",
    "séances": "number of sessions",
    "疗程": "number of sessions",
    "療程": "number of sessions",
}
# `pulses:[1000 TO 3000]` (Whoosh's range syntax, with spaces) as one token, before tokenising.
DOSE_RANGE = re.compile(r"\b([A-Za-z_]+):\[\s*([\d.]*)\s+TO\s+([\d.]*)\s*\]", re.IGNORECASE)
DOSE_VALUE = re.compile(r"^(?:(>=|<=|>|<)?(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)?\.\.(\d+(?:\.\d+)?)?)$")
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
TOKEN = re.compile(r'"[^"]*"?|[()]|[^\s()"]+')
FIELDED = re.compile(r"^([A-Za-z_]+):(.*)$")


@dataclass(frozen=True)
class Expansion:
    """One piece of the query matched to a vocabulary term."""

    text: str
    vocabulary: str
    term_id: str
    label: str
    broader: tuple[str, ...] = ()  # broader conditions whose questions and verdicts also answer


COVERS = re.compile(r" OR covers:[\w.-]+")


@dataclass(frozen=True)
class Understood:
    """The query rewritten for the engine, and what was recognised in it."""

    text: str
    expansions: tuple[Expansion, ...]

    @property
    def specific_text(self) -> str:
        """The query without the broader-condition clauses: what matches the condition itself."""
        return COVERS.sub("", self.text)

    @property
    def broader(self) -> dict[str, str]:
        """Broader condition id -> the narrower condition the query named (for labels)."""
        return {b: e.term_id for e in self.expansions for b in e.broader}


def understand(text: str, vocab: Vocabularies) -> Understood:
    """Rewrite `text` with synonym expansion; raise QueryError for an unusable query."""
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"query is {len(text)} characters long; the limit is {MAX_QUERY_LENGTH}")
    text = DOSE_RANGE.sub(lambda m: f"{m.group(1)}:{m.group(2)}..{m.group(3)}", text)
    tokens = TOKEN.findall(text)
    for token, following in zip(tokens, tokens[1:], strict=False):
        if token == "NOT" and following in OPERATORS:  # Whoosh's parser crashes on these
            raise QueryError(f"'NOT {following}': NOT must be followed by a word, phrase or group")
    out: list[str] = []
    found: list[Expansion] = []
    words: list[str] = []
    for token in tokens:
        if _is_plain_word(token):
            words.append(token)
            continue
        out += _expand_words(words, vocab, found)
        words = []
        out.append(_rewrite_token(token, vocab, found))
    out += _expand_words(words, vocab, found)
    return Understood(" ".join(out), tuple(found))


def _is_plain_word(token: str) -> bool:
    return not (token in OPERATORS or token in "()" or token.startswith('"') or FIELDED.match(token))


def _expand_words(words: list[str], vocab: Vocabularies, found: list[Expansion]) -> list[str]:
    """Longest-match vocabulary names over runs of plain words."""
    out: list[str] = []
    i = 0
    while i < len(words):
        for size in range(min(MAX_NGRAM, len(words) - i), 0, -1):
            span = " ".join(words[i : i + size])
            terms = _lookup(span, vocab)
            if terms:
                out.append(_group(span, terms, vocab, found))
                i += size
                break
        else:
            word = words[i].lower()
            if word in DOSE_WORDS:
                found.append(Expansion(words[i], "dose", word, DOSE_WORDS[word]))
            elif word not in STOP_WORDS and word not in QUESTION_WORDS:
                out.append(_cjk(words[i], vocab, found))
            i += 1
    return out


def _lookup(text: str, vocab: Vocabularies) -> list[tuple[str, str]]:
    """(vocabulary, term id) for every vocabulary that has `text` as a name."""
    key = fold(text)
    hits = []
    for vocabulary in vocab.terms:
        term = vocab.resolve(vocabulary, key)
        if term is not None:
            hits.append((vocabulary, term.id))
    return hits


def _group(original: str, terms: list[tuple[str, str]], vocab: Vocabularies, found: list[Expansion]) -> str:
    """`(original OR concepts:id ...)`; several plain words stay ANDed inside their own group."""
    covers: list[str] = []
    for vocabulary, term_id in terms:
        broader = tuple(vocab.ancestors(vocabulary, term_id)) if vocabulary == "indications" else ()
        found.append(Expansion(original, vocabulary, term_id, vocab.label(vocabulary, term_id), broader))
        covers += [f"covers:{b}" for b in broader if f"covers:{b}" not in covers]
    words = f"({original})" if " " in original and not original.startswith('"') else original
    return "(" + " OR ".join([words, *(f"concepts:{term_id}" for _, term_id in terms), *covers]) + ")"


def _cjk(word: str, vocab: Vocabularies, found: list[Expansion]) -> str:
    """Chinese is written without spaces: look for vocabulary names inside the word."""
    if not CJK.search(word):
        return word
    terms = [(v, t) for name, v, t in vocab.names() if CJK.search(name) and name in word]
    return _group(word, list(dict.fromkeys(terms)), vocab, found) if terms else word


def _rewrite_token(token: str, vocab: Vocabularies, found: list[Expansion]) -> str:
    if token.startswith('"'):
        inner = token.strip('"')
        terms = _lookup(inner, vocab) if inner else []
        return _group(f'"{inner}"', terms, vocab, found) if terms else token
    match = FIELDED.match(token)
    if not match:
        return token
    name, value = match.group(1).lower(), match.group(2)
    number = DOSE_BY_NAME.get(name)
    if number is not None and DOSE_VALUE.match(value):
        return _dose_query(number, value)
    if number is not None and number.name not in FACETS:
        raise QueryError(
            f"'{name}:{value}' is not a number or a range "
            f"(e.g. {name}:10, {name}:>=5, {name}:[5 TO 20]; unit: {number.unit})"
        )
    known = FACETS.query_fields()
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=1)
        hint = f" (did you mean '{close[0]}:'?)" if close else f" (fields: {', '.join(known)})"
        raise QueryError(f"unknown field '{name}'{hint}")
    field = FACETS.field_of(name)
    vocabulary = known[name]
    if vocabulary and value:
        resolved = f"{field}:{_resolve_value(name, vocabulary, value, vocab, found)}"
        broader = found[-1].broader
        return f"({' OR '.join([resolved, *(f'covers:{b}' for b in broader)])})" if broader else resolved
    facet = FACETS.get(field)
    if facet is not None and facet.values is not None and value and not set(value) & set('"*?[]{}()'):
        value = facet.normalise(value, vocab)
    return f"{field}:{value}"


def _dose_query(number: DoseNumber, value: str) -> str:
    """`sessions:>=10` -> a range of the zero-padded terms the index holds for that parameter."""
    match = DOSE_VALUE.match(value)
    assert match is not None
    op, single, low, high = match.groups()
    bottom, top = number.term(0), number.top
    if single is not None:
        x = float(single)
        if not op:
            return f"{number.field}:{number.term(x)}"
        step = 1 / number.scale  # > and < exclude the value itself, at the field's precision
        bounds = {
            ">=": (number.term(x), top),
            ">": (number.term(x + step), top),
            "<=": (bottom, number.term(x)),
            "<": (bottom, number.term(max(0.0, x - step))),
        }[op]
    else:
        if low and high and float(low) > float(high):
            raise QueryError(f"'{number.name}:{value}': the lower bound is above the upper one")
        bounds = (number.term(float(low)) if low else bottom, number.term(float(high)) if high else top)
    return f"{number.field}:[{bounds[0]} TO {bounds[1]}]"


def _resolve_value(
    name: str, vocabulary: str, value: str, vocab: Vocabularies, found: list[Expansion]
) -> str:
    term = vocab.resolve(vocabulary, value.strip('"'))
    if term is None:
        close = vocab.suggest(vocabulary, value.strip('"'))
        hint = f" (did you mean '{close}'?)" if close else ""
        raise QueryError(f"'{value.strip(chr(34))}' is not a known {name}{hint}")
    broader = tuple(vocab.ancestors(vocabulary, term.id)) if vocabulary == "indications" else ()
    found.append(Expansion(value, vocabulary, term.id, term.label, broader))
    return term.id
