"""What a user asks and what they get back, independent of the search engine.

`parse_params` is the one reader of search parameters: the web pages, the JSON API, the CLI's
options and indexer.api all turn their input into a name -> values mapping and call it, so the
same parameters always mean the same query. `results_json` is the one JSON shape of a page of
results (the API and `tmskb search --format json`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .errors import QueryTooExpensive
from .fields import FACETS, SORTS

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# Filter values one request may carry: a facet's own (OR within it) and all facets' together.
# A page's size and cost grow with them (its links and facet lists repeat them), and a cached
# page keeps them; no filter list offers a person more values than this to tick.
MAX_VALUES_PER_FILTER = 50
MAX_FILTER_VALUES = 100
JSON_VERSION = 1  # bump when the shape of results_json changes incompatibly


@dataclass(frozen=True)
class Query:
    """What the user asked for: text, facet filters, sort and page.

    `nocorrect`: a query that finds nothing is not replaced by its spelling correction (the
    correction is only suggested); `literal`: field words (`level A`, `2015-2020`, `Cochrane`)
    are searched as words instead of being read as filters."""

    text: str = ""
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    sort: str = "evidence"
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    nocorrect: bool = False
    literal: bool = False

    @classmethod
    def make(
        cls,
        text: str = "",
        filters: Mapping[str, Iterable[str]] | None = None,
        sort: str = "evidence",
        page: int = 1,
        page_size: int = DEFAULT_PAGE_SIZE,
        *,
        nocorrect: bool = False,
        literal: bool = False,
    ) -> Query:
        """Normalise filters (comma-separated values split, sorted, no empty values) so equal
        views compare equal."""
        clean = tuple(
            sorted(
                (name, tuple(sorted({v for v in split_values(values) if v})))
                for name, values in (filters or {}).items()
            )
        )
        filtered = tuple((n, v) for n, v in clean if v)
        return cls(text.strip(), filtered, sort, page, page_size, nocorrect, literal)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Query:
        return parse_params(params)

    @property
    def filter_map(self) -> dict[str, tuple[str, ...]]:
        return dict(self.filters)

    def to_params(self, **changes: Any) -> list[tuple[str, str]]:
        """URL parameters for this query (defaults left out), with `changes` applied."""
        query = replace(self, **changes)
        params = [("q", query.text)] if query.text else []
        params += [(name, value) for name, values in query.filters for value in values]
        if query.sort != "evidence":
            params.append(("sort", query.sort))
        if query.page != 1:
            params.append(("page", str(query.page)))
        if query.page_size != DEFAULT_PAGE_SIZE:
            params.append(("page_size", str(query.page_size)))
        params += [(name, "1") for name in FLAGS if getattr(query, name)]
        return params

    def toggled(self, name: str, value: str) -> Query:
        """The same query with one facet value switched on or off, back on page 1."""
        current = set(self.filter_map.get(name, ()))
        current ^= {value}
        return self.with_filter(name, current)

    def with_filter(self, name: str, values: Iterable[str]) -> Query:
        """The same query with facet `name` restricted to `values` (replacing its filter)."""
        filters = {**self.filter_map, name: tuple(values)}
        return Query.make(
            self.text, filters, self.sort, 1, self.page_size, nocorrect=self.nocorrect, literal=self.literal
        )


def check_limits(query: Query) -> None:
    """QueryTooExpensive if the query has more filter values than one request may carry.

    search() calls it before anything else, so the page, the API, the CLI, indexer.api and the
    downloads all refuse such a query with the same message."""
    for name, values in query.filters:
        if len(values) > MAX_VALUES_PER_FILTER:
            raise QueryTooExpensive(
                f"too many values for the {name} filter: {len(values)}, at most "
                f"{MAX_VALUES_PER_FILTER} per filter; choose fewer values or search for them instead"
            )
    count = sum(len(values) for _, values in query.filters)
    if count > MAX_FILTER_VALUES:
        raise QueryTooExpensive(
            f"too many filter values: {count}, at most {MAX_FILTER_VALUES} in one request; "
            "remove some filters"
        )


def split_values(values: str | Iterable[str]) -> list[str]:
    """'phn,crps' and ['phn', 'crps'] alike: every value, comma-separated ones split, stripped."""
    items = [values] if isinstance(values, str) else list(values)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


FLAGS = ("nocorrect", "literal")  # URL parameters that switch a reading off: ?nocorrect=1
TRUE = frozenset({"1", "true", "yes", "on"})


def _number(raw: Any, default: int) -> int:
    """A page number as typed: digits only; anything else is 0, which search() rejects."""
    text = str(raw if raw not in (None, "") else default).strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else 0


def parse_params(params: Mapping[str, Any]) -> Query:
    """A Query from search parameters: q, sort, page, page_size, the flags nocorrect and
    literal (1/true/yes/on), and one parameter per facet.

    `params` may be a werkzeug MultiDict (repeated parameters), or map names to a string or a
    list of strings (the CLI's options, indexer.api's keyword arguments). A facet value may hold
    several comma-separated values. Values are checked later, by search(), against the facet's
    vocabulary or value set and their number against the limits (check_limits), so every front
    reports a bad value or too many values the same way.
    """

    def values(name: str) -> list[str]:
        getlist = getattr(params, "getlist", None)
        raw = getlist(name) if getlist else params.get(name, [])
        return split_values(raw if raw is not None else [])

    def one(name: str) -> Any:
        raw = params.get(name)
        return raw[0] if isinstance(raw, list | tuple) and raw else raw

    filters = {name: values(name) for name in FACETS.names if values(name)}
    return Query.make(
        str(one("q") or ""),
        filters,
        str(one("sort") or "evidence"),
        _number(one("page"), 1),
        _number(one("page_size"), DEFAULT_PAGE_SIZE),
        nocorrect=str(one("nocorrect") or "").strip().lower() in TRUE,
        literal=str(one("literal") or "").strip().lower() in TRUE,
    )


@dataclass(frozen=True)
class Segment:
    """A piece of highlighted text; `match` pieces matched the query."""

    text: str
    match: bool


@dataclass(frozen=True)
class Hit:
    id: str
    type: str
    title: str
    summary: str
    highlights: tuple[tuple[Segment, ...], ...]
    rank_reason: str
    score: float | None
    fields: dict[str, Any]
    data: dict[str, Any]
    # Set when the hit answers a broader condition than the one asked about, e.g. "covers
    # neuropathic pain in general; postherpetic neuralgia is one of its kinds".
    note: str = ""


@dataclass(frozen=True)
class FacetValue:
    value: str
    label: str
    count: int
    selected: bool


@dataclass(frozen=True)
class Results:
    query: Query
    hits: tuple[Hit, ...] = ()
    total: int = 0
    facets: dict[str, list[FacetValue]] = field(default_factory=dict)
    suggestion: str | None = None
    understood: str = ""
    expansions: tuple[dict[str, str], ...] = ()
    error: str | None = None
    generation: str = ""
    # A query that found nothing was run as its spelling correction: the hits are for
    # `corrected_to`, and `corrected_from` is the text as typed (query.text; ?nocorrect=1 runs it).
    corrected_from: str | None = None
    corrected_to: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def readings(self) -> tuple[dict[str, str], ...]:
        """How the query was read ("How we read your query"), without the spelling correction
        (shown on its own, as "Showing results for ...")."""
        return tuple(e for e in self.expansions if e.get("vocabulary") != "spelling")

    @property
    def read_as_filters(self) -> bool:
        """Some words were read as filters (level A, 2015-2020...): ?literal=1 searches them as words."""
        return any(e.get("vocabulary") == "filter" for e in self.expansions)

    @property
    def page_count(self) -> int:
        return max(1, math.ceil(self.total / self.query.page_size))

    def label(self, name: str, value: str) -> str:
        """The label of a facet value as shown in this result's facet lists."""
        for item in self.facets.get(name, ()):
            if item.value == value:
                return item.label
        return value


def results_json(results: Results) -> dict[str, Any]:
    """One page of results as plain JSON data (/api/search and `tmskb search --format json`)."""
    return {
        "version": JSON_VERSION,
        "ok": results.ok,
        "query": {
            "text": results.query.text,
            "filters": results.query.filter_map,
            "sort": results.query.sort,
            "page": results.query.page,
            "page_size": results.query.page_size,
            "nocorrect": results.query.nocorrect,
            "literal": results.query.literal,
        },
        "total": results.total,
        "page_count": results.page_count,
        "generation": results.generation,
        "understood": results.understood,
        "expansions": list(results.expansions),
        "suggestion": results.suggestion,
        "corrected_from": results.corrected_from,
        "corrected_to": results.corrected_to,
        "facets": {name: [asdict(v) for v in values] for name, values in results.facets.items()},
        "hits": [
            {
                "id": h.id,
                "type": h.type,
                "title": h.title,
                "summary": h.summary,
                "rank_reason": h.rank_reason,
                "note": h.note or None,
                "score": h.score,
                "highlights": [[asdict(s) for s in frag] for frag in h.highlights],
                "level": h.fields.get("level") or None,
                "class": h.fields.get("class") or None,
                "year": h.fields.get("year") or None,
                "verification": h.fields.get("verification"),
            }
            for h in results.hits
        ],
    }


__all__ = [
    "MAX_FILTER_VALUES",
    "MAX_PAGE_SIZE",
    "MAX_VALUES_PER_FILTER",
    "SORTS",
    "FacetValue",
    "Hit",
    "Query",
    "Results",
    "Segment",
    "check_limits",
    "parse_params",
    "results_json",
    "split_values",
]
