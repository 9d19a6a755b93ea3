"""The evidence model: frozen dataclasses shared by every step of the pipeline."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar


def _revive(cls: type, eager: tuple[Any, ...], rest: bytes) -> Any:
    """Unpickle a LazyFields instance: its eager fields now, the rest when first read."""
    obj: Any = object.__new__(cls)
    state = obj.__dict__
    state.update(zip(cls._EAGER, eager, strict=True))  # type: ignore[attr-defined]
    state["_rest"] = rest
    return obj


class LazyFields:
    """Pickling that defers most fields: a record read back from the parse cache has its
    `_EAGER` fields (what the checks and the link graph over the whole KB read) at once, and
    the others are unpickled on first access. An edit at 100k records unpickles every record
    but reads the text of few (30 us -> 9 us per study). Read back, an instance equals the
    original in every field: only the moment its fields are unpickled differs."""

    _EAGER: ClassVar[tuple[str, ...]] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        state = self.__dict__
        rest = state.get("_rest")
        if rest is None:
            deferred = {k: v for k, v in state.items() if k not in self._EAGER}
            rest = pickle.dumps(deferred, pickle.HIGHEST_PROTOCOL)
        return (_revive, (type(self), tuple(state[k] for k in self._EAGER), rest))

    if not TYPE_CHECKING:  # mypy keeps checking attribute names

        def __getattr__(self, name: str) -> Any:
            # Only called when normal lookup fails: a deferred field not loaded yet.
            if name.startswith("__"):
                raise AttributeError(name)
            state = object.__getattribute__(self, "__dict__")
            rest = state.get("_rest")
            if rest is not None:
                state.update(pickle.loads(rest))  # update before pop: safe between threads
                state.pop("_rest", None)
            return object.__getattribute__(self, name)


class Verification(StrEnum):
    """How well a reference or record has been checked against its source."""

    FULL_TEXT = "full-text"
    ABSTRACT = "abstract"
    SECONDARY = "secondary"
    AS_CITED = "as-cited"

    @property
    def label(self) -> str:
        return {
            "full-text": "Verified from full text",
            "abstract": "Verified from abstract",
            "secondary": "Verified from a secondary source",
            "as-cited": "As cited (unverified)",
        }[self.value]

    @property
    def description(self) -> str:
        return {
            "full-text": "checked against the full text.",
            "abstract": "checked against the abstract or a bibliographic record (PubMed, publisher, "
            "repository).",
            "secondary": "checked against a secondary source (a review's table, a summary), which the "
            "record names; the primary source itself was not read.",
            "as-cited": "taken from a citing text; no source confirms it.",
        }[self.value]


VERIFICATION_VALUES = tuple(v.value for v in Verification)
LEVELS = ("A", "B", "C")
CLASSES = ("I", "II", "III", "IV")
DIRECTIONS = ("efficacy", "inefficacy")

LEVEL_BOUNDS = ("below-A", "below-B", "below-C")
NO_RANK = 9
# One order for levels and classes, used by grading, documents, facets and tables.
_LEVEL_RANKS = {"A": 1, "B": 2, "C": 3, **{b: 4 + i for i, b in enumerate(LEVEL_BOUNDS)}}
CLASS_RANK = {c: i + 1 for i, c in enumerate(CLASSES)}


def level_rank(level: str | None) -> int:
    """A, B, C, then the bounds (below-A, below-B, below-C), then unknown."""
    return _LEVEL_RANKS.get(level or "", NO_RANK)


# The group a study's result puts it in, for a question or recommendation. A negative result
# (no benefit over sham or control) is opposing, never supporting.
RESULT_GROUPS = {
    "positive": "supporting",
    "negative": "opposing",
    "mixed": "inconclusive",
    "inconclusive": "inconclusive",
}


def direction_group(result: str | None) -> str:
    """supporting / opposing / inconclusive / not-reported."""
    return RESULT_GROUPS.get(result or "", "not-reported")


def class_rank(cls: str | None) -> int:
    """Class I first; unknown last."""
    return CLASS_RANK.get(cls or "", NO_RANK)


LEVEL_LABELS = {
    "A": "Level A: definite efficacy (or inefficacy)",
    "B": "Level B: probable efficacy (or inefficacy)",
    "C": "Level C: possible efficacy (or inefficacy)",
}


@dataclass(frozen=True, order=True)
class Problem:
    """One validation problem, printed compiler-style: path:line: record: field: reason (hint)."""

    path: str
    line: int
    record: str = ""
    field: str = ""
    reason: str = ""
    hint: str = ""

    def __str__(self) -> str:
        parts = [f"{self.path}:{self.line}"]
        if self.record:
            parts.append(self.record)
        if self.field:
            parts.append(self.field)
        text = ": ".join(parts) + f": {self.reason}"
        return f"{text} ({self.hint})" if self.hint else text


@dataclass(frozen=True)
class Author:
    """One author, split into BibTeX name parts."""

    last: str
    first: str = ""
    von: str = ""
    jr: str = ""

    @property
    def display(self) -> str:
        """'Lefaucheur JP' style, as in reference lists of clinical journals."""
        initials = "".join(p[0] for p in self.first.replace("-", " ").split() if p and p[0].isalpha())
        last = f"{self.von} {self.last}".strip()
        return f"{last} {initials}".strip()

    @property
    def is_others(self) -> bool:
        return self.last.lower() == "others" and not self.first


@dataclass(frozen=True)
class Reference(LazyFields):
    """One BibTeX entry of references.bib, decoded for display and indexing."""

    _EAGER: ClassVar[tuple[str, ...]] = ("key", "entry_type", "path", "line")

    key: str
    entry_type: str
    path: str
    line: int
    fields: dict[str, str]
    authors: tuple[Author, ...]
    raw: str
    verification: str | None
    field_lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def title(self) -> str:
        return self.fields.get("title", "")

    @property
    def year(self) -> int | None:
        value = self.fields.get("year", "")
        return int(value) if value.isdigit() else None

    @property
    def doi(self) -> str | None:
        return self.fields.get("doi") or None

    @property
    def pmid(self) -> str | None:
        return self.fields.get("pmid") or None

    @property
    def pmcid(self) -> str | None:
        return self.fields.get("pmcid") or None

    @property
    def venue(self) -> str:
        for name in ("journal", "booktitle", "howpublished", "publisher"):
            if self.fields.get(name):
                return self.fields[name]
        return ""

    @property
    def short(self) -> str:
        """'Lefaucheur et al. 2014' for hit titles and tables."""
        named = [a for a in self.authors if not a.is_others]
        if not named:
            who = self.fields.get("key", self.key)
        elif len(named) == 1 and len(self.authors) == 1:
            who = named[0].last
        elif len(named) == 2 and len(self.authors) == 2:
            who = f"{named[0].last} & {named[1].last}"
        else:
            who = f"{named[0].last} et al."
        return f"{who} {self.year or 'n.d.'}"


@dataclass(frozen=True)
class Source:
    """Where in a source a record's facts were read."""

    location: str
    reference: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Arm:
    """One stimulation condition of a study (most studies have one active arm)."""

    target: tuple[str, ...]
    side: tuple[str, ...]
    protocol: tuple[str, ...]
    frequency_hz: float | None = None
    intensity: str | None = None
    pulses_per_session: int | None = None
    sessions: int | None = None
    sessions_per_week: float | None = None
    schedule: str | None = None
    maintenance: str | None = None
    coil: tuple[str, ...] = ()
    targeting: str | None = None
    neuronavigation: bool | None = None
    result: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class StatedClass:
    """A study class as a source (usually a guideline table) states it."""

    cls: str
    reference: str
    location: str


@dataclass(frozen=True)
class Study(LazyFields):
    """A primary study linked to its BibTeX reference."""

    # what validate.cited_keys and the link graph read of every study
    _EAGER: ClassVar[tuple[str, ...]] = ("id", "path", "line", "reference", "stated_class", "source")

    id: str
    path: str
    line: int
    reference: str
    condition: tuple[str, ...]
    design: str
    randomised: bool | None
    control: str | None
    sham_type: str | None
    blinding: str | None
    patients_total: int | None
    patients_active: int | None
    flaws: tuple[str, ...] | None
    arms: tuple[Arm, ...]
    outcome_measure: str | None
    result: str | None
    summary: str
    stated_class: StatedClass | None
    source: Source
    verification: str
    notes: str | None = None
    not_reported: tuple[str, ...] = ()
    not_applicable: tuple[str, ...] = ()
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def line_of(self, name: str) -> int:
        return self.lines.get(name, self.line)

    def recorded_value(self, name: str) -> object:
        """The recorded value of a `not_reported` name: a study field, `patients.x`, or each arm's."""
        if name.startswith("patients."):
            return getattr(self, "patients_" + name.partition(".")[2])
        if hasattr(self, name):
            return getattr(self, name)
        return [getattr(arm, name) for arm in self.arms if getattr(arm, name) not in (None, ())]


@dataclass(frozen=True)
class StudyLink:
    """A study the source itself counted, with where the source says so (a verified link)."""

    study: str
    location: str
    note: str | None = None


def linked_ids(counted: tuple[StudyLink, ...], candidates: tuple[str, ...]) -> tuple[str, ...]:
    """Every linked study id: counted by the source first, then the curator's candidates."""
    ids = tuple(link.study for link in counted)
    return ids + tuple(s for s in candidates if s not in ids)


@dataclass(frozen=True)
class Recommendation(LazyFields):
    """What a guideline concludes for an indication and a protocol, with its published level."""

    _EAGER: ClassVar[tuple[str, ...]] = (
        *("id", "path", "line", "guideline", "source", "question"),
        *("candidate_studies", "counted_studies"),
    )

    id: str
    path: str
    line: int
    guideline: str
    indication: str
    outcome_domain: str | None
    population: str | None
    target: tuple[str, ...]
    side: tuple[str, ...]
    protocol: tuple[str, ...]
    coil: tuple[str, ...]
    level: str | None
    level_bound: str | None
    direction: str | None
    statement: str
    candidate_studies: tuple[str, ...]
    source: Source
    verification: str
    notes: str | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    question: str | None = None
    counted_studies: tuple[StudyLink, ...] = ()
    search_cutoff: str | None = None

    def line_of(self, name: str) -> int:
        return self.lines.get(name, self.line)

    @property
    def linked_studies(self) -> tuple[str, ...]:
        return linked_ids(self.counted_studies, self.candidate_studies)


@dataclass(frozen=True)
class Section:
    """One section of a knowledge page, with its own verification status."""

    heading: str
    text: str
    verification: str
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class Knowledge:
    """Reference knowledge the app shows beside the evidence (e.g. a diagnostic grading system)."""

    id: str
    path: str
    line: int
    title: str
    summary: str
    indication: tuple[str, ...]
    references: tuple[str, ...]
    sections: tuple[Section, ...]
    source: Source
    verification: str
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def line_of(self, name: str) -> int:
        return self.lines.get(name, self.line)


@dataclass(frozen=True)
class Intervention:
    """The stimulation a question asks about; an empty tuple means any."""

    protocol: tuple[str, ...] = ()
    target: tuple[str, ...] = ()
    side: tuple[str, ...] = ()
    coil: tuple[str, ...] = ()


@dataclass(frozen=True)
class Question:
    """A clinical question: does this intervention help this condition (outcome, population)?"""

    id: str
    path: str
    line: int
    title: str
    condition: str
    intervention: Intervention
    outcome_domain: str | None
    population: str | None
    verification: str
    notes: str | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    candidate_studies: tuple[str, ...] = ()
    counted_studies: tuple[StudyLink, ...] = ()  # a question has no source: always empty

    def line_of(self, name: str) -> int:
        return self.lines.get(name, self.line)


@dataclass(frozen=True)
class Grade:
    """A value in a scale (kb/scales/): a verdict's grade in the source's own terms."""

    scale: str
    value: str


@dataclass(frozen=True)
class Effect:
    """A pooled effect estimate as the source gives it."""

    measure: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    ci_level: float | None = None
    studies: int | None = None
    participants: int | None = None
    outcome: str | None = None
    timepoint: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Verdict:
    """One source's verdict on a question, in the source's own scale(s)."""

    id: str
    path: str
    line: int
    question: str
    source_reference: str
    kind: str
    grades: tuple[Grade, ...]
    direction: str | None
    statement: str
    effect: Effect | None
    search_cutoff: str | None
    inclusion: str | None
    population: str | None
    candidate_studies: tuple[str, ...]
    counted_studies: tuple[StudyLink, ...]
    source: Source
    verification: str
    notes: str | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def line_of(self, name: str) -> int:
        return self.lines.get(name, self.line)

    @property
    def linked_studies(self) -> tuple[str, ...]:
        return linked_ids(self.counted_studies, self.candidate_studies)


@dataclass(frozen=True)
class ScaleValue:
    value: str
    label: str
    meaning: str | None


@dataclass(frozen=True)
class Scale:
    """A grading scale, with the source that defines it (data, like rule sets)."""

    id: str
    path: str
    line: int
    name: str
    measures: str
    values: tuple[ScaleValue, ...]
    source: Source
    verification: str
    notes: str | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def line_of(self, name: str) -> int:
        return self.lines.get(name, self.line)

    def get(self, value: str) -> ScaleValue | None:
        return next((v for v in self.values if v.value == value), None)

    def rank(self, value: str) -> int:
        """Position in the scale, strongest first (unknown values last)."""
        return next((i for i, v in enumerate(self.values) if v.value == value), len(self.values))


Record = Study | Recommendation | Knowledge | Question | Verdict | Scale


@dataclass(frozen=True)
class Term:
    """One vocabulary term: an id used by records, its label, and what people type for it."""

    id: str
    label: str
    vocabulary: str
    broader: tuple[str, ...] = ()
    abbreviations: tuple[str, ...] = ()
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    line: int = field(default=0, compare=False)
    # The label in other interface languages (fr, zh-Hant), for display only: search reads
    # the synonyms.
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def all_names(self) -> tuple[str, ...]:
        """Label, abbreviations and synonyms in every language."""
        names = [self.label, *self.abbreviations]
        for values in self.synonyms.values():
            names.extend(values)
        return tuple(names)
