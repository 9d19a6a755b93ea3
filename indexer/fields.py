"""The one registry of index fields and facets.

Every facet is defined here once: its index type, whether it is multi-valued, its label, the
vocabulary or closed value set its values come from, how its values are ordered and labelled,
and (for facets added later) how a document gets its values. The Whoosh schema (index.py),
document building (documents.py), filtering and facet counts (search.py), the query language's
field names (querytext.py), the CLI's filter options, the OpenAPI parameters and the templates'
filter lists all read it. Adding a facet is one `Facet(...)` entry plus the data it reads:
see docs/architecture.md.

Nothing here imports Whoosh or the parsing stack, so the read path stays light.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import dose
from .errors import QueryError
from .models import CLASSES, DIRECTIONS, LEVEL_BOUNDS, LEVELS, Study, Verification, class_rank, level_rank

if TYPE_CHECKING:
    from .vocab import Vocabularies

REFERENCE_PREFIX = "@"  # a study's id is its BibTeX key, so reference documents get "@key"


def reference_id(key: str) -> str:
    """Index id of the document for a BibTeX entry."""
    return REFERENCE_PREFIX + key


# A function a facet uses to get its values from a record when documents are built:
# extract(record, kb) -> values. Only facets added after the built-in ones need one; the
# built-in facets are filled by documents.py, which knows each record type.
Extract = Callable[[Any, Any], Iterable[str]]


@dataclass(frozen=True)
class Facet:
    """One filterable, countable field.

    name        index field and URL/CLI parameter name
    title       heading of its filter list, and its column label
    multi       several values per document (KEYWORD) or one (ID)
    vocabulary  kb/vocab/<vocabulary>.yaml gives its values and their labels
    values      a closed set of values (case-insensitive on input); None: open
    labels      fixed labels for values (else the vocabulary's, else the value)
    order       facet value order: "count" (most first), "rank" (by `rank`), "desc" (newest first)
    rank        sort key of a value for order="rank"
    pattern     regular expression open values must match (e.g. a year)
    extract     how documents get values, for facets documents.py does not fill itself
    """

    name: str
    title: str
    multi: bool = False
    vocabulary: str | None = None
    values: tuple[str, ...] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    order: str = "count"
    rank: Callable[[str], int] | None = None
    pattern: str | None = None
    describe: str = ""
    extract: Extract | None = None
    indexed_labels: bool = False  # labels saved with each index generation (labels.json)
    on_evidence: bool = True  # offered as a filter of the evidence table (recommendations)

    def normalise(self, value: str, vocab: Vocabularies | None) -> str:
        """The stored form of a filter value as typed by a user; QueryError if it cannot be one."""
        text = value.strip()
        if self.values is not None:
            for known in self.values:
                if known.lower() == text.lower():
                    return known
            raise QueryError(
                f"'{text}' is not a {self.title.lower()} value (expected one of {', '.join(self.values)})"
            )
        if self.vocabulary and vocab is not None:
            term = vocab.resolve(self.vocabulary, text)
            if term is not None:
                return term.id
            close = vocab.suggest(self.vocabulary, text)
            hint = f"; did you mean '{close}'?" if close else ""
            raise QueryError(f"'{text}' is not a known {self.title.lower()}{hint}")
        if self.pattern and not re.fullmatch(self.pattern, text):
            raise QueryError(f"'{text}' is not a valid {self.title.lower()} ({self.describe})")
        return text

    def label(self, value: str, vocab: Vocabularies | None) -> str:
        """Human label of a value (reference short names are resolved by the search layer)."""
        if value in self.labels:
            return self.labels[value]
        if self.vocabulary and vocab is not None:
            return vocab.label(self.vocabulary, value)
        return value

    def sort_key(self) -> Callable[[Any], Any]:
        """Key over FacetValue-like objects (value, label, count) for this facet's order."""
        if self.order == "rank" and self.rank is not None:
            rank = self.rank
            return lambda f: (rank(f.value), f.value)
        if self.order == "desc":
            return lambda f: _Desc(f.value)
        return lambda f: (-f.count, f.label)


@dataclass(frozen=True)
class _Desc:
    """Reverses string order inside a sort key."""

    value: str

    def __lt__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.value > other.value


TYPE_LABELS = {
    "question": "Question",
    "recommendation": "Recommendation",
    "verdict": "Verdict",
    "study": "Study",
    "reference": "Reference",
    "knowledge": "Background",
    "scale": "Scale",
}
# Class facet values: 'III' (stated, or computed and certain) and 'III+' (a computed lower bound:
# Class III or better; the reported facts do not settle which).
CLASS_VALUES = tuple(v for c in CLASSES for v in (c, c + "+") if v != "I+")
CLASS_LABELS = {c: f"Class {c}" for c in CLASSES} | {
    f"{c}+": f"Class {c} or better (computed lower bound)" for c in CLASSES if c != "I"
}


def class_value_rank(value: str) -> int:
    """I, II, II+, III, III+, IV, IV+."""
    return class_rank(value.rstrip("+")) * 2 + value.endswith("+")


LEVEL_FACET_LABELS = {
    **{k: f"Level {k}" for k in LEVELS},
    **{b: f"Below Level {b[-1]}" for b in LEVEL_BOUNDS},
}


def _sessions(record: Any, kb: Any) -> list[str]:
    """Each arm's sessions bin, or why it has none (not reported in the source / not recorded)."""
    if not isinstance(record, Study):
        return []
    out = []
    for arm in record.arms:
        state = dose.state(record, arm, "sessions")
        out.append(dose.sessions_bin(arm.sessions) or state)
    return list(dict.fromkeys(v for v in out if v != dose.NOT_APPLICABLE))


def _navigated(record: Any, kb: Any) -> list[str]:
    if not isinstance(record, Study):
        return []
    out = []
    for arm in record.arms:
        nav = dose.navigated(arm)
        out.append("yes" if nav else "no" if nav is False else dose.state(record, arm, "targeting"))
    return list(dict.fromkeys(out))


def _completeness(record: Any, kb: Any) -> list[str]:
    return [dose.completeness(record).bin] if isinstance(record, Study) else []


_UNKNOWN_LABELS = {dose.NOT_REPORTED: "Not reported in the source", dose.NOT_RECORDED: "Not recorded"}
SESSION_VALUES = (*dose.SESSION_BINS, dose.NOT_REPORTED, dose.NOT_RECORDED)
NAVIGATED_VALUES = ("yes", "no", dose.NOT_REPORTED, dose.NOT_RECORDED)
DOSE_FACETS: tuple[Facet, ...] = (
    Facet(
        "sessions",
        "Sessions",
        multi=True,
        values=SESSION_VALUES,
        labels={"1": "1 session", "2-5": "2-5 sessions", "6-10": "6-10 sessions", ">10": "More than 10"}
        | _UNKNOWN_LABELS,
        order="rank",
        rank=SESSION_VALUES.index,
        extract=_sessions,
        on_evidence=False,
    ),
    Facet(
        "navigated",
        "Navigated (neuronavigation)",
        multi=True,
        values=NAVIGATED_VALUES,
        labels={"yes": "Navigated", "no": "Not navigated"} | _UNKNOWN_LABELS,
        order="rank",
        rank=NAVIGATED_VALUES.index,
        extract=_navigated,
        on_evidence=False,
    ),
    Facet(
        "completeness",
        "Dose reporting completeness",
        values=dose.COMPLETENESS_BINS,
        labels={"all": "All core parameters", "under 50%": "Under 50%"},
        order="rank",
        rank=dose.COMPLETENESS_BINS.index,
        extract=_completeness,
        on_evidence=False,
    ),
)

BUILTIN_FACETS: tuple[Facet, ...] = (
    Facet("type", "Record type", values=tuple(TYPE_LABELS), labels=TYPE_LABELS, on_evidence=False),
    Facet(
        "level",
        "Level",
        values=(*LEVELS, *LEVEL_BOUNDS),
        labels=LEVEL_FACET_LABELS,
        order="rank",
        rank=level_rank,
    ),
    Facet("direction", "Direction", values=DIRECTIONS),
    Facet("indication", "Indication", multi=True, vocabulary="indications"),
    Facet("target", "Target", multi=True, vocabulary="targets"),
    Facet("side", "Side", multi=True, vocabulary="sides", on_evidence=False),
    Facet("protocol", "Protocol", multi=True, vocabulary="protocols"),
    Facet(
        "class",
        "Study class",
        values=CLASS_VALUES,
        labels=CLASS_LABELS,
        order="rank",
        rank=class_value_rank,
        on_evidence=False,
    ),
    Facet(
        "year", "Year", order="desc", pattern=r"\d{4}", describe="four digits, e.g. 2020", on_evidence=False
    ),
    # A study's guidelines are only those whose own tables or text count it (verified links).
    Facet("guideline", "Guideline (counted by)", multi=True, indexed_labels=True),
    Facet("source", "Source of the verdict", multi=True, indexed_labels=True),
    Facet("grade", "Grade (in the source's scale)", multi=True, indexed_labels=True),
    Facet(
        "verification",
        "Verification",
        values=tuple(v.value for v in Verification),
        labels={v.value: v.label for v in Verification},
    ),
    *DOSE_FACETS,
)


@dataclass(frozen=True)
class DoseNumber:
    """A dose parameter searchable as a number: `sessions:>=10`, `frequency:10`, `pulses:[1000 TO 3000]`.

    Each arm's value is indexed as a zero-padded term (value x scale), so a numeric range is a
    range of terms; a study matches when any of its arms does.
    """

    name: str  # what users write before the colon
    field: str  # index field
    title: str
    unit: str
    scale: int
    width: int
    key: str  # the arm_dose() value it reads

    def term(self, value: float) -> str:
        scaled = round(value * self.scale)
        return f"{max(0, min(scaled, 10**self.width - 1)):0{self.width}d}"

    @property
    def top(self) -> str:
        return "9" * self.width


DOSE_NUMBERS: tuple[DoseNumber, ...] = (
    DoseNumber("sessions", "dose_sessions", "Sessions", "sessions", 1, 5, "sessions"),
    DoseNumber("frequency", "dose_frequency", "Frequency", "Hz", 100, 6, "frequency_hz"),
    DoseNumber("pulses", "dose_pulses", "Pulses per session", "pulses", 1, 7, "pulses_per_session"),
    DoseNumber(
        "total_pulses", "dose_total_pulses", "Total pulses (computed)", "pulses", 1, 9, "total_pulses"
    ),
    DoseNumber(
        "intensity", "dose_intensity", "Intensity", "% of motor threshold", 10, 5, "intensity_percent"
    ),
)
DOSE_BY_NAME = {d.name: d for d in DOSE_NUMBERS}


@dataclass(frozen=True)
class TextField:
    """A searchable or stored field that is not a facet."""

    name: str
    kind: str  # "id" (unique, stored), "text" (analysed), "keyword", "stored", "column"
    query_names: tuple[str, ...] = ()  # names users may write before a colon
    column_type: str = ""  # struct code of a numeric sort column


FIELDS: tuple[TextField, ...] = (
    TextField("id", "id", ("id",)),
    # One searchable text field (title, summary and the rest): matching a word is one posting
    # list instead of a union over fields.
    TextField("text", "text", ("title", "summary", "body")),
    # Family names of every author (von + last: given names are never searched as words);
    # `author:` reads author_keys, and first_author ranks an author's own papers first.
    TextField("authors", "text", ("author",)),
    TextField("author_keys", "keyword"),  # folded family names, with initials: andreobadia, andreobadia_n
    TextField("first_author", "keyword"),  # the same keys of the first author only
    # Identifiers of the reference a document is (or is drawn from): BibTeX key, DOI, PMID,
    # PMCID, Cochrane review number, NCT number, and a record's own id; lower-case.
    TextField("identifiers", "keyword", ("doi", "pmid", "pmcid", "nct", "key")),
    # A reference's abstract, and its keywords with its MeSH terms, as the bibliography holds
    # them (kept by `tmskb add`): `abstract:`, `keywords:` and `mesh:` search only these. Plain
    # words find them too, through `text`, which repeats them: one posting list per word stays
    # enough, and the spelling word list (read from `text`) knows their words.
    TextField("abstract", "text", ("abstract",)),
    TextField("keywords", "text", ("keywords", "mesh")),
    TextField("title", "stored"),
    TextField("summary", "stored"),
    TextField("data", "stored"),
    TextField("concepts", "keyword"),
    # The condition a question or verdict is about (no broader or narrower terms): a query for a
    # narrower condition also finds these through its broader terms (querytext).
    TextField("covers", "keyword"),
    # Sort keys live only in columns: a numeric field would also index ~8 trie terms per value.
    TextField("level_rank", "column", column_type="B"),
    TextField("class_rank", "column", column_type="B"),
    TextField("year_sort", "column", column_type="H"),
    *(TextField(d.field, "keyword") for d in DOSE_NUMBERS),
)
SEARCH_FIELDS = ("text", "authors")
# Sorts and the columns they order by (ties by document number).
SORT_COLUMNS: dict[str, tuple[str, ...]] = {
    "evidence": ("level_rank", "class_rank", "year_sort"),
    "relevance": (),
    "year": ("year_sort", "level_rank", "class_rank"),
}
SORTS = tuple(SORT_COLUMNS)
# Query-language aliases of facet names.
FACET_ALIASES = {"condition": "indication"}


class Registry:
    """The facets in force (built-ins plus any registered, e.g. by a test or a plug-in)."""

    def __init__(self, facets: Iterable[Facet]) -> None:
        self._facets: dict[str, Facet] = {f.name: f for f in facets}

    def __iter__(self) -> Iterator[Facet]:
        return iter(self._facets.values())

    def __contains__(self, name: object) -> bool:
        return name in self._facets

    def __getitem__(self, name: str) -> Facet:
        return self._facets[name]

    def get(self, name: str) -> Facet | None:
        return self._facets.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._facets)

    @property
    def multi_valued(self) -> tuple[str, ...]:
        return tuple(f.name for f in self if f.multi)

    def register(self, facet: Facet) -> None:
        if facet.name in self._facets or facet.name in {f.name for f in FIELDS}:
            raise ValueError(f"field '{facet.name}' is already defined")
        self._facets[facet.name] = facet

    def unregister(self, name: str) -> None:
        if any(f.name == name for f in BUILTIN_FACETS):
            raise ValueError(f"'{name}' is a built-in facet")
        self._facets.pop(name, None)

    def signature(self) -> list[str]:
        """What an index generation must have been built with (stored in its manifest)."""
        return [f"{f.name}:{'multi' if f.multi else 'single'}" for f in self]

    def query_fields(self) -> dict[str, str | None]:
        """Names users may write before a colon -> the vocabulary their values come from."""
        out: dict[str, str | None] = {}
        for text_field in FIELDS:
            for name in text_field.query_names:
                out[name] = None
        for facet in self:
            out[facet.name] = facet.vocabulary
        for alias, target in FACET_ALIASES.items():
            if target in self._facets:
                out[alias] = self._facets[target].vocabulary
        for number in DOSE_NUMBERS:
            out.setdefault(number.name, None)
        return out

    def field_of(self, query_name: str) -> str:
        """The index field a query-language name searches."""
        for text_field in FIELDS:
            if query_name in text_field.query_names:
                return text_field.name
        return FACET_ALIASES.get(query_name, query_name)


FACETS = Registry(BUILTIN_FACETS)


@contextmanager
def extra_facet(facet: Facet) -> Iterator[Facet]:
    """Register a facet for the duration of a block (tests, experiments)."""
    FACETS.register(facet)
    try:
        yield facet
    finally:
        FACETS.unregister(facet.name)
