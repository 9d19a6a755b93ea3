"""search(): the one query path for the web app, the JSON API, the CLI and exports.

Besides index.py this is the only module that imports Whoosh.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from whoosh import highlight, spelling
from whoosh import query as wq
from whoosh.qparser import MultifieldParser
from whoosh.reading import TermNotFound

from . import index as idx
from .documents import FACETS, reference_id
from .facets import SORT_COLUMNS, FacetStore
from .models import LEVEL_LABELS, Verification
from .querytext import CJK, QueryError, Understood, understand
from .vocab import Vocabularies

log = logging.getLogger(__name__)

SORTS = ("evidence", "relevance", "year")
SEARCH_FIELDS = ("text", "authors")
MAX_PAGE_SIZE = 100
FACET_VOCABULARY = {
    "indication": "indications",
    "target": "targets",
    "side": "sides",
    "protocol": "protocols",
}
TYPE_LABELS = {
    "recommendation": "Recommendation",
    "study": "Study",
    "reference": "Reference",
    "knowledge": "Background",
}
LEVEL_FACET_LABELS = {
    **{k: f"Level {k}" for k in LEVEL_LABELS},
    "below-A": "Below Level A",
    "below-B": "Below Level B",
    "below-C": "Below Level C",
}


class IndexMissing(RuntimeError):
    """There is no usable index at the configured place."""


_BROKEN: dict[Path, str] = {}


@dataclass(frozen=True)
class Query:
    """What the user asked for: text, facet filters, sort and page."""

    text: str = ""
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    sort: str = "evidence"
    page: int = 1
    page_size: int = 20

    @classmethod
    def make(
        cls,
        text: str = "",
        filters: Mapping[str, Iterable[str]] | None = None,
        sort: str = "evidence",
        page: int = 1,
        page_size: int = 20,
    ) -> Query:
        """Normalise filters (sorted, no empty values) so equal views compare equal."""
        clean = tuple(
            sorted(
                (name, tuple(sorted({v for v in values if v}))) for name, values in (filters or {}).items()
            )
        )
        return cls(text.strip(), tuple((n, v) for n, v in clean if v), sort, page, page_size)

    @property
    def filter_map(self) -> dict[str, tuple[str, ...]]:
        return dict(self.filters)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], page_size: int = 20) -> Query:
        """A Query from URL parameters (q, sort, page, one repeatable parameter per facet).

        `params` needs getlist() for repeated facets (werkzeug's MultiDict) or maps names to lists.
        """

        def values(name: str) -> list[str]:
            getlist = getattr(params, "getlist", None)
            raw = getlist(name) if getlist else params.get(name, [])
            return [raw] if isinstance(raw, str) else list(raw)

        page = str(params.get("page") or "1")
        filters = {name: values(name) for name in FACETS if values(name)}
        return cls.make(
            str(params.get("q") or ""),
            filters,
            str(params.get("sort") or "evidence"),
            int(page) if page.isascii() and page.isdigit() and len(page) < 10 else 0,
            page_size,
        )

    def to_params(self, **changes: Any) -> list[tuple[str, str]]:
        """URL parameters for this query (defaults left out), with `changes` applied."""
        query = replace(self, **changes)
        params = [("q", query.text)] if query.text else []
        params += [(name, value) for name, values in query.filters for value in values]
        if query.sort != "evidence":
            params.append(("sort", query.sort))
        if query.page != 1:
            params.append(("page", str(query.page)))
        return params

    def toggled(self, name: str, value: str) -> Query:
        """The same query with one facet value switched on or off, back on page 1."""
        current = set(self.filter_map.get(name, ()))
        current ^= {value}
        filters = {**self.filter_map, name: tuple(current)}
        return Query.make(self.text, filters, self.sort, 1, self.page_size)


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

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def page_count(self) -> int:
        return max(1, math.ceil(self.total / self.query.page_size))


@dataclass
class _Opened:
    ix: Any
    vocab: Vocabularies
    generation: str
    spelling_words: dict[str, int]
    store: FacetStore
    aliases: dict[str, str] = field(default_factory=dict)
    rulesets: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[tuple[str, str], str] = field(default_factory=dict)
    results: OrderedDict[Query, Results] = field(default_factory=OrderedDict)
    results_lock: threading.Lock = field(default_factory=threading.Lock)
    postings: dict[tuple[str, Any], Any] = field(default_factory=dict)
    local: threading.local = field(default_factory=threading.local)

    def searcher(self) -> Any:
        """This thread's searcher (Whoosh searchers are not thread-safe; opening one costs ~15 ms)."""
        searcher = getattr(self.local, "searcher", None)
        if searcher is None:
            searcher = self.local.searcher = self.ix.searcher()
        return searcher


_OPEN: dict[Path, _Opened] = {}
_LOCK = threading.Lock()


def open_index(index_dir: Path) -> _Opened:
    """The current generation, opened once per process and reused until a new one is swapped in."""
    generation = idx.current_dir(index_dir)
    if generation is None:
        raise IndexMissing(f"no index in {index_dir}; build it with 'tmskb index'")
    with _LOCK:
        opened = _OPEN.get(generation)
        if opened is None:
            vocab_json = generation / idx.VOCAB
            vocab = Vocabularies.from_json(_read_json(vocab_json)) if vocab_json.is_file() else Vocabularies()
            spelling_file = generation / idx.SPELLING
            words = dict(_read_json(spelling_file)) if spelling_file.is_file() else {}
            for name, _, _ in vocab.names():
                for word in name.split():
                    if word.isalpha():
                        words.setdefault(word, 1)
            if generation in _BROKEN:
                raise IndexMissing(_BROKEN[generation])
            try:
                ix = idx.open_generation(generation)
                opened = _Opened(
                    ix,
                    vocab,
                    generation.name,
                    words,
                    _facet_store(ix),
                    aliases=_json_or(generation / idx.ALIASES, {}),
                    rulesets=_json_or(generation / idx.RULESETS, []),
                )
            except Exception as exc:  # a damaged generation: say so once, do not retry per request
                log.error("cannot open index generation %s: %s", generation, repr(exc))
                _BROKEN[generation] = (
                    f"the index in {index_dir} cannot be read ({type(exc).__name__}); "
                    "rebuild it with 'tmskb index --force'"
                )
                raise IndexMissing(_BROKEN[generation]) from None
            for stale in [p for p in _OPEN if p.parent == generation.parent]:
                del _OPEN[stale]
            _OPEN[generation] = opened
        return opened


def _facet_store(ix: Any) -> FacetStore:
    """Facet postings and sort columns of a generation, read once into NumPy arrays."""
    with ix.searcher() as searcher:
        reader = searcher.reader()
        size = reader.doc_count_all()
        alive = np.zeros(size, dtype=bool)
        alive[np.fromiter(reader.all_doc_ids(), dtype=np.int64)] = True
        postings: dict[str, dict[str, Any]] = {}
        for name in FACETS:
            postings[name] = {
                term.decode("utf-8"): np.fromiter(reader.postings(name, term).all_ids(), dtype=np.int32)
                for term in reader.lexicon(name)
            }
        columns = {}
        for name in {c for keys in SORT_COLUMNS.values() for c in keys}:
            column = reader.column_reader(name)
            columns[name] = np.fromiter((column[i] for i in range(size)), dtype=np.int32, count=size)
    return FacetStore(size, alive, postings, columns)


def _json_or(path: Path, default: Any) -> Any:
    return _read_json(path) if path.is_file() else default


def _read_json(path: Path) -> Any:
    import json

    return json.loads(path.read_text("utf-8"))


def search(index_dir: Path, query: Query) -> Results:
    """Run a query; bad input comes back as Results.error, never as an exception."""
    try:
        _check(query)
        opened = open_index(index_dir)
        understood = understand(query.text, opened.vocab)
    except QueryError as exc:
        return Results(query, error=str(exc))
    cached = _cached(opened, query)
    if cached is not None:
        return cached
    try:
        return _remember(opened, query, _run(opened, query, understood))
    except QueryError as exc:
        return Results(query, error=str(exc), generation=opened.generation)
    except Exception as exc:  # the engine must never turn a user's query into a crash
        log.exception("search failed for %r", query)
        return Results(
            query, error=f"the query could not be run ({type(exc).__name__})", generation=opened.generation
        )


RESULTS_CACHE_SIZE = 1024


def _cached(opened: _Opened, query: Query) -> Results | None:
    """Results of an identical query on the same generation (a new generation starts empty)."""
    with opened.results_lock:
        results = opened.results.get(query)
        if results is not None:
            opened.results.move_to_end(query)
        return results


def _remember(opened: _Opened, query: Query, results: Results) -> Results:
    with opened.results_lock:
        opened.results[query] = results
        while len(opened.results) > RESULTS_CACHE_SIZE:
            opened.results.popitem(last=False)
    return results


def _check(query: Query) -> None:
    if query.sort not in SORTS:
        raise QueryError(f"unknown sort '{query.sort}' (expected one of {', '.join(SORTS)})")
    if query.page < 1:
        raise QueryError("page must be 1 or more")
    if not 1 <= query.page_size <= MAX_PAGE_SIZE:
        raise QueryError(f"page size must be between 1 and {MAX_PAGE_SIZE}")
    for name, _ in query.filters:
        if name not in FACETS:
            raise QueryError(f"unknown filter '{name}' (expected one of {', '.join(FACETS)})")


def _parser(schema: Any) -> MultifieldParser:
    return MultifieldParser(list(SEARCH_FIELDS), schema=schema)


def _run(opened: _Opened, query: Query, understood: Understood) -> Results:
    store, searcher = opened.store, opened.searcher()
    parsed = _parser(opened.ix.schema).parse(understood.text) if understood.text else None
    filters = query.filter_map
    base = _match(opened, searcher, parsed) if parsed is not None else store.alive
    matched = store.filtered(base, filters)
    counts = {f: store.counts(f, matched) for f in FACETS if f not in filters}
    for name in filters:  # disjunctive counts: a facet's own filter does not narrow its counts
        counts[name] = store.counts(name, store.filtered(base, filters, skip=name))
    total = int(np.count_nonzero(matched))
    start = (query.page - 1) * query.page_size
    page, scores = _page(searcher, store, parsed, matched, query, start)
    terms = _highlight_terms(searcher, parsed)
    hits = tuple(_hit(searcher, d, query.sort, scores.get(d), terms) for d in page)
    suggestion = None
    if total == 0 and query.text and not CJK.search(query.text):
        within = store.filtered(store.alive, filters) if filters else None
        suggestion = _suggest(searcher, opened, query.text, within)
    expansions = tuple(
        {"text": e.text, "vocabulary": e.vocabulary, "id": e.term_id, "label": e.label}
        for e in understood.expansions
    )
    facets = _facets(counts, filters, opened, searcher)
    return Results(
        query, hits, total, facets, suggestion, understood.text, expansions, None, opened.generation
    )


def _match(opened: _Opened, searcher: Any, node: Any) -> Any:
    """Documents matching a parsed query, as a mask.

    Terms and AND/OR/NOT are evaluated with NumPy over posting lists cached per generation
    (a word's postings are read once); phrases, wildcards and ranges go to Whoosh.
    """
    store = opened.store
    if isinstance(node, wq.Term):
        return store.mask_of(_postings(opened, searcher, node.fieldname, node.text))
    if isinstance(node, wq.And):
        mask = store.alive.copy()
        for child in node.subqueries:
            mask &= _match(opened, searcher, child)
        return mask
    if isinstance(node, wq.Or) and not node.minmatch:
        mask = np.zeros(store.size, dtype=bool)
        for child in node.subqueries:
            mask |= _match(opened, searcher, child)
        return mask
    if isinstance(node, wq.Not):
        return store.alive & ~_match(opened, searcher, node.query)
    if isinstance(node, wq.AndNot):
        return _match(opened, searcher, node.a) & ~_match(opened, searcher, node.b)
    if node is wq.NullQuery:
        return np.zeros(store.size, dtype=bool)
    return store.mask_of(searcher.docs_for_query(node))


POSTINGS_CACHE_SIZE = 20_000


def _postings(opened: _Opened, searcher: Any, field: str, text: Any) -> Any:
    key = (field, text)
    cached = opened.postings.get(key)
    if cached is None:
        try:
            cached = np.fromiter(searcher.reader().postings(field, text).all_ids(), dtype=np.int64)
        except TermNotFound:
            cached = np.zeros(0, dtype=np.int64)
        if len(opened.postings) >= POSTINGS_CACHE_SIZE:
            opened.postings.clear()
        opened.postings[key] = cached
    return cached


def _page(
    searcher: Any, store: FacetStore, parsed: Any, matched: Any, query: Query, start: int
) -> tuple[list[int], dict[int, float]]:
    """Doc numbers of the requested page, and scores when sorting by relevance."""
    if query.sort == "relevance" and parsed is not None:
        allowed = set(np.flatnonzero(matched).tolist())
        results = searcher.search(parsed, limit=start + query.page_size, filter=allowed)
        top = [(hit.docnum, hit.score) for hit in results[start : start + query.page_size]]
        return [d for d, _ in top], dict(top)
    order = store.ordered(matched, "year" if query.sort == "year" else "evidence")
    return order[start : start + query.page_size].tolist(), {}


def _highlight_terms(searcher: Any, parsed: Any) -> frozenset[str]:
    """Analysed query words of the text field, to mark in summaries."""
    if parsed is None:
        return frozenset()
    terms = parsed.existing_terms(searcher.reader(), phrases=True, expand=True)
    return frozenset(
        text.decode("utf-8") if isinstance(text, bytes) else text for field, text in terms if field == "text"
    )


FRAGMENTER = highlight.ContextFragmenter(maxchars=220, surround=60)


class _SegmentFormatter(highlight.Formatter):
    """Marks matches with control characters; _segments() splits them into Segments."""

    between = "\x1e"

    def format_token(self, text: str, token: Any, replace: bool = False) -> str:
        return "\x02" + highlight.get_text(text, token, replace) + "\x03"


def _segments(marked: str) -> tuple[tuple[Segment, ...], ...]:
    fragments = []
    for fragment in marked.split("\x1e"):
        pieces = []
        for i, chunk in enumerate(fragment.replace("\x03", "\x02").split("\x02")):
            if chunk:
                pieces.append(Segment(chunk, match=i % 2 == 1))
        if pieces:
            fragments.append(tuple(pieces))
    return tuple(fragments)


def _hit(searcher: Any, docnum: int, sort: str, score: float | None, terms: frozenset[str]) -> Hit:
    stored = dict(searcher.stored_fields(docnum))
    data = stored.pop("data", {}) or {}
    summary = stored.get("summary", "")
    marked = ""
    if terms and summary:
        analyzer = searcher.schema["text"].analyzer
        marked = highlight.highlight(summary, terms, analyzer, FRAGMENTER, _SegmentFormatter(), top=2)
    return Hit(
        stored["id"],
        stored.get("type", ""),
        stored.get("title", ""),
        summary,
        _segments(marked) if marked else (),
        rank_reason(stored, sort, score),
        score if sort == "relevance" else None,
        stored,
        data,
    )


def rank_reason(stored: Mapping[str, Any], sort: str, score: float | None = None) -> str:
    """One line telling the user why a hit sits where it does."""
    year = stored.get("year") or "year unknown"
    level, cls = stored.get("level", ""), stored.get("class", "")
    if level in LEVEL_LABELS:
        evidence = f"published Level {level}"
    elif level:
        evidence = LEVEL_FACET_LABELS.get(level, level) + " (exact level not verified)"
    elif cls:
        evidence = f"Class {cls} study"
    else:
        evidence = "no level or class"
    if sort == "relevance":
        return f"relevance {score:.1f}; {evidence}; {year}" if score is not None else evidence
    if sort == "year":
        return f"{year}; {evidence}"
    return f"{evidence}; {year}"


def _facets(
    counts: Mapping[str, Mapping[str, int]],
    filters: Mapping[str, tuple[str, ...]],
    opened: _Opened,
    searcher: Any,
) -> dict[str, list[FacetValue]]:
    out: dict[str, list[FacetValue]] = {}
    labels = opened.labels
    for name in FACETS:
        values = {k: v for k, v in (counts.get(name) or {}).items() if k}
        for selected in filters.get(name, ()):
            values.setdefault(selected, 0)
        items = [
            FacetValue(
                v, _cached_label(labels, name, v, opened.vocab, searcher), n, v in filters.get(name, ())
            )
            for v, n in values.items()
        ]
        key = (lambda f: f.value) if name in ("level", "class") else (lambda f: (-f.count, f.label))
        if name == "year":
            key = lambda f: f.value  # noqa: E731
            items.sort(key=key, reverse=True)
        else:
            items.sort(key=key)
        out[name] = items
    return out


def _cached_label(
    cache: dict[tuple[str, str], str], name: str, value: str, vocab: Vocabularies, searcher: Any
) -> str:
    key = (name, value)
    if key not in cache:
        cache[key] = facet_label(name, value, vocab, searcher)
    return cache[key]


def facet_label(name: str, value: str, vocab: Vocabularies, searcher: Any = None) -> str:
    """Human label of a facet value."""
    if name in FACET_VOCABULARY:
        return vocab.label(FACET_VOCABULARY[name], value)
    if name == "level":
        return LEVEL_FACET_LABELS.get(value, value)
    if name == "class":
        return f"Class {value}"
    if name == "verification":
        try:
            return Verification(value).label
        except ValueError:
            return value
    if name == "type":
        return TYPE_LABELS.get(value, value)
    if name == "guideline" and searcher is not None:
        stored = searcher.document(id=reference_id(value))
        if stored:
            return str((stored.get("data") or {}).get("short") or value)
    return value


class _WordCorrector(spelling.Corrector):
    """Whoosh's list corrector, but a known word stays as it is, and among equally close words
    the one in more documents wins (Whoosh alone would turn 'pain' into 'main')."""

    def __init__(self, frequencies: dict[str, int]) -> None:
        self.frequencies = frequencies
        self.inner = spelling.ListCorrector(sorted(frequencies))

    def suggest(self, text: str, limit: int = 5, maxdist: int = 2, prefix: int = 0) -> list[str]:
        if text in self.frequencies:
            return [text]
        found = list(self.inner._suggestions(text, maxdist, prefix))  # (-distance, word)
        found.sort(key=lambda item: (-item[0], -self.frequencies.get(item[1], 0), item[1]))
        return [word for _, word in found[:limit]]


_SPELLING_PARSER = MultifieldParser(["text", "authors"], schema=idx.spelling_schema())


def _suggest(searcher: Any, opened: _Opened, text: str, within: Any) -> str | None:
    """A corrected query string that finds something, from indexed words and vocabulary names."""
    try:
        parsed = _SPELLING_PARSER.parse(text)
        corrector = _WordCorrector(opened.spelling_words)
        correction = searcher.correct_query(parsed, text, correctors={f: corrector for f in SEARCH_FIELDS})
    except Exception:  # a suggestion is optional; never let it break a search
        log.debug("spelling suggestion failed for %r", text, exc_info=True)
        return None
    if not correction.string or correction.string == text:
        return None
    try:
        rewritten = understand(correction.string, opened.vocab).text
        docs = opened.store.mask_of(searcher.docs_for_query(_parser(opened.ix.schema).parse(rewritten)))
    except QueryError:
        return None
    if within is not None:
        docs &= within
    return correction.string if docs.any() else None


def key_aliases(index_dir: Path) -> dict[str, str]:
    """Old BibTeX key -> current key, as renamed with `tmskb rekey` (read once per generation)."""
    return open_index(index_dir).aliases


def rulesets(index_dir: Path) -> list[dict[str, Any]]:
    """The grading rule sets the current generation was graded with (read once per generation)."""
    return open_index(index_dir).rulesets


def iter_hits(index_dir: Path, query: Query) -> Any:
    """Every hit of a query, page by page (for tables and exports); stops at the first error."""
    page = 1
    while True:
        results = search(index_dir, replace(query, page=page, page_size=MAX_PAGE_SIZE))
        if not results.ok:
            raise QueryError(results.error or "query failed")
        yield from results.hits
        if page >= results.page_count:
            return
        page += 1


def get_document(index_dir: Path, doc_id: str) -> dict[str, Any] | None:
    """The stored fields of one record, reference or page, or None."""
    stored = open_index(index_dir).searcher().document(id=doc_id)
    return dict(stored) if stored else None
