"""search(): the one query path for the web app, the JSON API, the CLI and exports.

`SearchIndex(index_dir)` is a handle on one index directory: the web app keeps one in
`app.extensions`, scripts get one from indexer.api.open_kb. The module-level functions
(`search(index_dir, query)`, ...) use one handle per directory for callers that have none.
Engine-specific work (matching, ranking, highlighting, spelling) lives in engine.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import kbversion
from .engine import Budget, Generation, Reader
from .errors import IndexMissing, QueryError, QueryTooExpensive
from .facets import Mask
from .fields import FACETS, REFERENCE_PREFIX, SORTS
from .models import LEVEL_LABELS
from .query import MAX_PAGE_SIZE, FacetValue, Hit, Query, Results, check_limits
from .querytext import CJK, TOKEN, Understood, is_plain_word, suggest_names, understand
from .settings import DEFAULT_QUERY_BUDGET_MS
from .vocab import Vocabularies

log = logging.getLogger(__name__)

# The result cache is bounded by entries and by the hits they hold: a hit keeps its stored
# record (7-25 KB in memory, measured), so 4,096 hits are ~60 MB per generation however large
# the pages clients ask for.
RESULTS_CACHE_SIZE = 512
RESULTS_CACHE_HITS = 4096
VERDICT_TYPES = ("question", "recommendation", "verdict")
LABELS_CACHE_SIZE = 4096

__all__ = [
    "IndexMissing",
    "QueryError",
    "QueryTooExpensive",
    "Query",
    "Results",
    "SearchIndex",
    "SORTS",
    "get_document",
    "iter_hits",
    "open_search",
    "search",
]


class SearchIndex:
    """Searches one index directory, following its generations as they are swapped in.

    `budget_ms` is the time one query may take (settings.resolve_settings: TMSKB_QUERY_BUDGET_MS;
    0 for no limit); past it the query stops with QueryTooExpensive."""

    def __init__(self, index_dir: Path, *, budget_ms: int | None = None) -> None:
        self.index_dir = Path(index_dir)
        self.reader = Reader(self.index_dir)
        self.budget_ms = DEFAULT_QUERY_BUDGET_MS if budget_ms is None else budget_ms

    def generation(self) -> Generation:
        return self.reader.generation()

    def search(self, query: Query, *, cache: bool = True) -> Results:
        """Run a query; bad input comes back as Results.error, never as an exception.

        Results are cached per generation (a new generation starts empty) unless `cache` is
        False, as for exports, which read every page once.
        """
        try:
            opened = self.generation()
            query = normalise(query, opened.vocab)
            understood = read(opened, query)
            query = dose_intent(query, understood)
        except QueryError as exc:
            return Results(query, error=str(exc))
        if cache:
            cached = _cached(opened, query)
            if cached is not None:
                return cached
        try:
            results = _run(opened, query, understood, Budget(self.budget_ms))
        except QueryError as exc:
            return Results(query, error=str(exc), generation=opened.name)
        except Exception as exc:  # the engine must never turn a user's query into a crash
            log.exception("search failed for %r", query)
            return Results(
                query, error=f"the query could not be run ({type(exc).__name__})", generation=opened.name
            )
        return _remember(opened, query, results) if cache else results

    def iter_hits(self, query: Query) -> Iterator[Hit]:
        """Every hit of a query in the query's order, for tables and exports; QueryError first.

        One match and one sort for the whole result: no facet counts, highlights or spelling,
        and nothing goes into the result cache (an export reads each hit once). The query budget
        covers finding and ordering the hits (QueryTooExpensive before the first hit); reading
        them costs the same for every query of that many hits and is not limited."""
        opened = self.generation()
        budget = Budget(self.budget_ms)
        query = normalise(replace(query, page=1, page_size=MAX_PAGE_SIZE), opened.vocab)
        understood = read(opened, query)
        query = dose_intent(query, understood)
        parsed = opened.parse(understood.text, budget)
        matched = opened.store.filtered(_base(opened, parsed, budget), query.filter_map)
        if not matched.any() and _correctable(query) and not query.nocorrect:
            correction = _suggest(opened, query, budget)  # as the page does: the same hits
            if correction is not None:
                understood = read(opened, replace(query, text=correction))
                parsed = opened.parse(understood.text, budget)
                matched = opened.store.filtered(_base(opened, parsed, budget), query.filter_map)
        if query.sort == "relevance" and parsed is not None:
            total = int(np.count_nonzero(matched))
            order = [d for d, _ in opened.ranked(parsed, matched, 0, max(total, 1), budget)]
        else:
            order = ordered(opened, matched, understood, query, budget, by_filters=False).tolist()
        return (_hit(opened, d, query.sort, None, frozenset()) for d in order)

    def document(self, doc_id: str) -> dict[str, Any] | None:
        """The stored fields of one record, reference or page, or None."""
        return self.generation().document(doc_id)

    def vocab(self) -> Vocabularies:
        return self.generation().vocab

    def key_aliases(self) -> dict[str, str]:
        """Old BibTeX key -> current key, as renamed with `tmskb rekey`."""
        return self.generation().aliases

    def rulesets(self) -> list[dict[str, Any]]:
        """The grading rule sets the current generation was graded with."""
        return self.generation().rulesets

    def stored_page(self, name: str) -> dict[str, Any] | None:
        """Data of a whole-KB view computed at index time (e.g. 'evidence_map'), if present."""
        page = self.generation().pages.get(name)
        return page if isinstance(page, dict) else None

    def about(self) -> dict[str, Any]:
        """Which knowledge base this index holds: its content fingerprint (short), build time, size,
        and the records left out of it because they have problems."""
        manifest = self.generation().manifest
        fingerprint = str(manifest.get("fingerprint") or "")
        return {
            "version": fingerprint[:12],
            "built": manifest.get("built"),
            "generation": manifest.get("generation"),
            "records": manifest.get("count"),
            "left_out": list(self.generation().pages.get("left_out", [])),  # leftout.LeftOut
            # The KB's release (kb/release.json, published beside the index) and content hash.
            "kb": {**kbversion.read_edition(self.index_dir), "content_hash": f"sha256:{fingerprint}"},
        }


_HANDLES: dict[Path, SearchIndex] = {}
_HANDLES_LOCK = threading.Lock()


def open_search(index_dir: Path) -> SearchIndex:
    """The shared handle of `index_dir` for callers that keep none of their own."""
    key = Path(index_dir).resolve()
    with _HANDLES_LOCK:
        handle = _HANDLES.get(key)
        if handle is None:
            handle = _HANDLES[key] = SearchIndex(key)
        return handle


def as_index(where: SearchIndex | Path) -> SearchIndex:
    """A handle, given a handle or an index directory."""
    return where if isinstance(where, SearchIndex) else open_search(where)


def search(index_dir: Path, query: Query) -> Results:
    return open_search(index_dir).search(query)


def iter_hits(index_dir: Path, query: Query) -> Iterator[Hit]:
    return open_search(index_dir).iter_hits(query)


def get_document(index_dir: Path, doc_id: str) -> dict[str, Any] | None:
    return open_search(index_dir).document(doc_id)


# -- checking --------------------------------------------------------------------------------


def normalise(query: Query, vocab: Vocabularies) -> Query:
    """The query with the number of filter values (query.check_limits), sort, page and every
    filter value checked against the facet registry (closed value sets, vocabularies, value
    patterns); QueryError names the first bad one."""
    check_limits(query)
    if query.sort not in SORTS:
        raise QueryError(f"unknown sort '{query.sort}' (expected one of {', '.join(SORTS)})")
    if query.page < 1:
        raise QueryError("page must be 1 or more")
    if not 1 <= query.page_size <= MAX_PAGE_SIZE:
        raise QueryError(f"page size must be between 1 and {MAX_PAGE_SIZE}")
    filters: dict[str, list[str]] = {}
    for name, values in query.filters:
        facet = FACETS.get(name)
        if facet is None:
            raise QueryError(f"unknown filter '{name}' (expected one of {', '.join(FACETS.names)})")
        filters[name] = [facet.normalise(v, vocab) for v in values]
    return replace(query, text=query.text.strip(), filters=Query.make("", filters).filters)


def _cached(opened: Generation, query: Query) -> Results | None:
    with opened.cache_lock:
        results: Results | None = opened.cache.get(query)
        if results is not None:
            opened.cache.move_to_end(query)
        return results


def _remember(opened: Generation, query: Query, results: Results) -> Results:
    """Cache `results`, evicting the least recently used until both bounds hold."""
    with opened.cache_lock:
        previous = opened.cache.pop(query, None)
        if previous is not None:
            opened.cache_hits -= len(previous.hits)
        opened.cache[query] = results
        opened.cache_hits += len(results.hits)
        while len(opened.cache) > RESULTS_CACHE_SIZE or opened.cache_hits > RESULTS_CACHE_HITS:
            _, evicted = opened.cache.popitem(last=False)
            opened.cache_hits -= len(evicted.hits)
    return results


# -- running ---------------------------------------------------------------------------------


def read(opened: Generation, query: Query) -> Understood:
    """The query text as the engine gets it (querytext.understand with this index's context)."""
    return understand(query.text, opened.vocab, opened.context, literal=query.literal)


def _base(opened: Generation, parsed: Any, budget: Budget) -> Mask:
    return opened.match(parsed, budget) if parsed is not None else opened.store.alive


def _correctable(query: Query) -> bool:
    return bool(query.text) and not CJK.search(query.text)


def _run(
    opened: Generation, query: Query, understood: Understood, budget: Budget, *, correct: bool = True
) -> Results:
    store = opened.store
    text, expansions = understood.text, understood.expansions
    parsed = opened.parse(text, budget)
    filters = query.filter_map
    base = _base(opened, parsed, budget)
    matched = _filtered(opened, base, filters)
    total = int(np.count_nonzero(matched))
    suggestion = None
    if total == 0 and correct and _correctable(query):
        suggestion = _suggest(opened, query, budget)
        if suggestion is not None and not query.nocorrect:
            return _corrected(opened, query, suggestion, budget)
    broader = {**understood.broader, **_broader_of_filters(opened, filters)}
    counts = {name: store.counts(name, matched) for name in FACETS.names if name not in filters}
    for name in filters:  # disjunctive counts: a facet's own filter does not narrow its counts
        budget.check()
        counts[name] = store.counts(name, _filtered(opened, base, filters, skip=name))
    start = (query.page - 1) * query.page_size
    specific = _specific(opened, understood, filters, matched, budget) if broader else None
    page, scores = _page(opened, parsed, matched, query, understood, start, budget)
    budget.check()
    terms = opened.highlight_terms(parsed)
    hits = tuple(
        _hit(opened, d, query.sort, scores.get(d), terms, _covers_note(opened, d, broader, specific))
        for d in page
    )
    shown = tuple(
        {"text": e.text, "vocabulary": e.vocabulary, "id": e.term_id, "label": e.label} for e in expansions
    )
    return Results(
        query, hits, total, _facets(opened, counts, filters), suggestion, text, shown, None, opened.name
    )


def _corrected(opened: Generation, query: Query, correction: str, budget: Budget) -> Results:
    """The results of the corrected text, for the query as typed (its links keep the typo, so
    every page runs the same correction; ?nocorrect=1 runs the text as typed)."""
    corrected = replace(query, text=correction)
    results = _run(opened, corrected, read(opened, corrected), budget, correct=False)
    spelling = {"text": query.text, "vocabulary": "spelling", "id": correction, "label": correction}
    return replace(
        results,
        query=query,
        expansions=(spelling, *results.expansions),
        corrected_from=query.text,
        corrected_to=correction,
    )


def _page(
    opened: Generation,
    parsed: Any,
    matched: Mask,
    query: Query,
    understood: Understood,
    start: int,
    budget: Budget,
) -> tuple[list[int], dict[int, float]]:
    """Doc numbers of the requested page, and scores when sorting by relevance."""
    if query.sort == "relevance" and parsed is not None:
        top = opened.ranked(parsed, matched, start, query.page_size, budget)
        return [d for d, _ in top], dict(top)
    order = ordered(opened, matched, understood, query, budget)
    return order[start : start + query.page_size].tolist(), {}


# -- order: what comes first ------------------------------------------------------------------
#
# Within the query's sort (strongest evidence first, or newest first) documents come in tiers,
# each tier in the sort's order:
#   1. identifiers: the reference a DOI, PMID or key names, then the records drawn from it;
#   2. first authors: their papers newest first (a study record stands for its paper), then the
#      rest they wrote;
#   3. intents: for "how long does it last", the documents about maintenance;
#   4. a condition named: questions on the condition itself (those on the intervention named
#      first), its other answers, answers on narrower conditions, its studies, narrower studies,
#      then answers on broader conditions, nearest first, questions first;
#      vocabulary terms named without a condition: documents having the terms as concepts
#      (not only the words), answers first, spread over the conditions they answer;
#   5. everything else the query matched.
MAX_PAPERS = 300  # first-authored documents told apart by paper (past that: the sort's order)
SPREAD = 2  # answers per condition in each round when answers are spread over conditions

Order = Callable[[Mask], Any]


def ordered(
    opened: Generation,
    matched: Mask,
    understood: Understood,
    query: Query,
    budget: Budget,
    *,
    by_filters: bool = True,
) -> NDArray[np.int64]:
    """Doc numbers of `matched` in the order of the page: tiers (above), each in the query's sort.

    `by_filters`: a condition filter orders like a condition named (the page, whose filter also
    admits the answers on broader conditions); exports, which hold only the condition filtered
    on, keep the sort's order there."""
    store = opened.store
    sort = "year" if query.sort == "year" else "evidence"
    conditions = list(query.filter_map.get("indication", ())) if by_filters else []
    left = matched.copy()
    parts: list[Any] = []
    for tier, order in _tiers(opened, understood, conditions, sort, budget):
        tier = tier & left
        if tier.any():
            left[tier] = False
            parts.append(order(tier) if order else store.ordered(tier, sort))
    parts.append(store.ordered(left, sort))
    return np.concatenate(parts).astype(np.int64)


def _tiers(
    opened: Generation,
    understood: Understood,
    filtered: list[str],
    sort: str,
    budget: Budget,
) -> Iterator[tuple[Mask, Order | None]]:
    store = opened.store
    if understood.identifiers:
        named = opened.match(opened.parse(" OR ".join(understood.identifiers), budget), budget)
        yield named & store.any_of("type", ("reference",)), None
        yield named, None
    if understood.authors:
        firsts = np.zeros(store.size, dtype=bool)
        for key in understood.authors:
            firsts |= opened.term_mask("first_author", key)
        yield firsts, lambda mask: _papers(opened, mask, sort)
    for clause in understood.prefer:
        yield opened.match(opened.parse(clause, budget), budget), None
    yield from _concept_tiers(opened, understood, filtered, sort)


def _papers(opened: Generation, mask: Mask, sort: str) -> Any:
    """An author's papers newest first (the study record of a paper stands for it; a paper
    without one, such as a guideline, is its reference), then the rest (recommendations...)."""
    store = opened.store
    if np.count_nonzero(mask) > MAX_PAPERS:
        return store.ordered(mask, sort)
    studies = mask & store.any_of("type", ("study",))
    summarised = {opened.stored(d)["id"] for d in np.flatnonzero(studies).tolist()}
    papers = studies.copy()
    for d in np.flatnonzero(mask & store.any_of("type", ("reference",))).tolist():
        papers[d] = opened.stored(d)["id"].removeprefix(REFERENCE_PREFIX) not in summarised
    return np.concatenate([store.ordered(papers, "year"), store.ordered(mask & ~papers, sort)])


def _concept_tiers(
    opened: Generation, understood: Understood, filtered: list[str], sort: str
) -> Iterator[tuple[Mask, Order | None]]:
    store = opened.store
    terms = understood.terms
    conditions = _narrowest(opened, [e.term_id for e in terms if e.vocabulary == "indications"])
    conditions += [c for c in filtered if c not in conditions]
    others = [e for e in terms if e.vocabulary != "indications"]
    concept = _concepts_of(opened, others) if others else None
    answers = store.any_of("type", VERDICT_TYPES)
    if not conditions:
        if concept is None:
            return
        if any(e.vocabulary == "targeting" for e in others):  # comparisons of navigated and not
            yield concept & store.any_of("navigated", ("yes",)) & store.any_of("navigated", ("no",)), None
        close = _named_intervention(opened, others)
        yield concept & answers & close, lambda mask: _spread(opened, mask, sort)
        yield concept & close, None
        yield concept & answers, lambda mask: _spread(opened, mask, sort)
        yield concept, None
        return
    questions = store.any_of("type", ("question",))
    close = questions & _named_intervention(opened, others)
    exact = store.any_of("indication", conditions)
    narrow = np.zeros(store.size, dtype=bool)
    for condition in conditions:
        narrow |= opened.term_mask("concepts", condition)
    narrow &= ~exact
    tiers = [exact & close, exact & questions, exact & answers, narrow & answers, exact, narrow]
    ancestors = dict.fromkeys(a for c in conditions for a in opened.vocab.ancestors("indications", c))
    for ancestor in ancestors:
        broad = store.any_of("covers", (ancestor,)) & answers
        tiers += [broad & close, broad & questions, broad]
    for tier in tiers:
        if concept is not None:
            yield tier & concept, None
        yield tier, None


def _narrowest(opened: Generation, conditions: list[str]) -> list[str]:
    """The conditions named, without those that are broader than another one named
    ('脊髓損傷 神經痛' asks about spinal cord injury pain, a neuropathic pain)."""
    broader = {a for c in conditions for a in opened.vocab.ancestors("indications", c)}
    return list(dict.fromkeys(c for c in conditions if c not in broader))


def _concepts_of(opened: Generation, terms: list[Any]) -> Mask:
    """Documents having, for each piece of the query read as vocabulary terms, one of its terms
    as a concept (the words alone do not count)."""
    store = opened.store
    mask = store.alive.copy()
    pieces: dict[str, list[str]] = {}
    for e in terms:
        pieces.setdefault(e.text, []).append(e.term_id)
    for ids in pieces.values():
        either = np.zeros(store.size, dtype=bool)
        for term_id in ids:
            either |= opened.term_mask("concepts", term_id)
        mask &= either
    return mask


def _named_intervention(opened: Generation, terms: list[Any]) -> Mask:
    """Documents whose own protocols and targets are only those the query names (or kinds of
    them): 'is rTMS effective for neuropathic pain' asks first about rTMS in general, 'low
    frequency DLPFC' about LF-rTMS alone (not LF and HF together), 'theta burst' about iTBS and
    cTBS."""
    store = opened.store
    named = {"protocols": "protocol", "targets": "target"}
    wanted = {facet: {e.term_id for e in terms if e.vocabulary == v} for v, facet in named.items()}
    if not any(wanted.values()):
        return np.zeros(store.size, dtype=bool)
    mask = store.alive.copy()
    for vocabulary, facet in named.items():
        ids = wanted[facet]
        if not ids:
            continue
        # Kinds of a term named are that term (iTBS for theta burst, M1 hand area for M1), but
        # not for rTMS itself: every protocol is a kind of it, and naming it asks about rTMS
        # in general.
        roots = {i for i in ids if facet == "protocol" and not opened.vocab.ancestors(vocabulary, i)}
        ids |= {
            t
            for t in opened.vocab.terms.get(vocabulary, {})
            if (ids - roots) & set(opened.vocab.ancestors(vocabulary, t))
        }
        others = [v for v in store.postings.get(facet, {}) if v not in ids]
        mask &= store.any_of(facet, ids) & ~store.any_of(facet, others)
    return mask


def _spread(opened: Generation, mask: Mask, sort: str) -> Any:
    """Answers in the sort's order, but SPREAD per condition in each round, so a query that names
    no condition shows the answers of each condition it matches on its first page."""
    order = opened.store.ordered(mask, sort)
    codes = opened.indication_codes[order].tolist()
    seen: dict[int, int] = {}
    rank: dict[int, int] = {}
    rounds, groups = [], []
    for code in codes:
        seen[code] = seen.get(code, 0) + 1
        rank.setdefault(code, len(rank))
        rounds.append((seen[code] - 1) // SPREAD)
        groups.append(rank[code])
    return order[np.lexsort((np.arange(len(order)), np.array(groups), np.array(rounds)))]


def _broader_of_filters(opened: Generation, filters: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """Broader condition -> the narrower one a condition filter names (indication=PHN)."""
    out: dict[str, str] = {}
    for value in filters.get("indication", ()):
        for broad in opened.vocab.ancestors("indications", value):
            out.setdefault(broad, value)
    return out


def _filtered(
    opened: Generation, base: Mask, filters: Mapping[str, tuple[str, ...]], skip: str | None = None
) -> Mask:
    """Facet filters; a condition filter also admits the questions and verdicts of its broader
    conditions (their `covers` field), which answer it too."""
    store = opened.store
    if skip == "indication" or "indication" not in filters:
        return store.filtered(base, filters, skip=skip)
    rest = store.filtered(base, filters, skip="indication")
    wanted = filters["indication"]
    broad = [b for v in wanted for b in opened.vocab.ancestors("indications", v)]
    return rest & (store.any_of("indication", wanted) | store.any_of("covers", broad))


def _specific(
    opened: Generation,
    understood: Understood,
    filters: Mapping[str, tuple[str, ...]],
    matched: Mask,
    budget: Budget,
) -> Mask:
    """Hits that match the condition as asked (not only through a broader condition)."""
    store = opened.store
    if understood.broader:
        specific_text = understood.specific_text
        node = opened.parse(specific_text, budget)
        mask = opened.match(node, budget) if node is not None else store.alive.copy()
    else:
        mask = store.alive.copy()
    if "indication" in filters:
        mask &= store.any_of("indication", filters["indication"])
    return mask & matched


def _covers_note(opened: Generation, docnum: int, broader: Mapping[str, str], specific: Mask | None) -> str:
    if specific is None or specific[docnum]:
        return ""
    conditions = opened.stored(docnum).get("indication") or ""
    for condition in conditions.split():
        if condition in broader:
            general = opened.vocab.label("indications", condition).lower()
            narrow = opened.vocab.label("indications", broader[condition]).lower()
            return f"covers {general} in general; {narrow} is one of its kinds"
    return ""


def _hit(
    opened: Generation, docnum: int, sort: str, score: float | None, terms: frozenset[str], note: str = ""
) -> Hit:
    stored = opened.stored(docnum)
    data = stored.pop("data", {}) or {}
    summary = stored.get("summary", "")
    return Hit(
        stored["id"],
        stored.get("type", ""),
        stored.get("title", ""),
        summary,
        opened.highlights(summary, terms),
        rank_reason(stored, sort, score, _grade_text(opened, stored)),
        score if sort == "relevance" else None,
        stored,
        data,
        note,
    )


def _grade_text(opened: Generation, stored: Mapping[str, Any]) -> str:
    """'Weak recommendation; Third line' for a verdict, in its own scale's words."""
    if stored.get("type") not in ("verdict", "question"):
        return ""
    labels = opened.labels_of.get("grade", {})
    return "; ".join(labels.get(g, g) for g in (stored.get("grade") or "").split())


def rank_reason(stored: Mapping[str, Any], sort: str, score: float | None = None, grades: str = "") -> str:
    """One line telling the user why a hit sits where it does."""
    year = stored.get("year") or "year unknown"
    level, cls = stored.get("level", ""), stored.get("class", "")
    kind = stored.get("type")
    if kind == "question":
        return "question: every source's verdict, each in its own scale"
    if kind == "verdict":
        evidence = f"{grades or 'grade not read'} (in the source's own scale)"
    elif level in LEVEL_LABELS:
        evidence = f"published Level {level}"
    elif level:
        evidence = FACETS["level"].label(level, None) + " (exact level not verified)"
    elif cls:
        evidence = f"{FACETS['class'].label(cls, None)} study"
    else:
        evidence = "no level or class"
    if sort == "relevance":
        return f"relevance {score:.1f}; {evidence}; {year}" if score is not None else evidence
    if sort == "year":
        return f"{year}; {evidence}"
    return f"{evidence}; {year}"


def _facets(
    opened: Generation, counts: Mapping[str, Mapping[str, int]], filters: Mapping[str, tuple[str, ...]]
) -> dict[str, list[FacetValue]]:
    out: dict[str, list[FacetValue]] = {}
    for facet in FACETS:
        name = facet.name
        values = {k: v for k, v in (counts.get(name) or {}).items() if k}
        for selected in filters.get(name, ()):
            values.setdefault(selected, 0)
        items = [
            FacetValue(v, facet_label(opened, name, v), n, v in filters.get(name, ()))
            for v, n in values.items()
        ]
        items.sort(key=facet.sort_key())
        out[name] = items
    return out


def facet_label(opened: Generation, name: str, value: str) -> str:
    """Human label of a facet value; cached per generation (LRU) for values the index holds."""
    key = (name, value)
    with opened.cache_lock:
        label = opened.labels.get(key)
        if label is not None:
            opened.labels.move_to_end(key)
    if label is not None:
        return label
    facet = FACETS[name]
    label = facet.label(value, opened.vocab)
    if facet.indexed_labels:
        label = opened.labels_of.get(name, {}).get(value, label)
    if value in opened.store.postings.get(name, {}):  # never cache what a client made up
        with opened.cache_lock:
            opened.labels[key] = label
            while len(opened.labels) > LABELS_CACHE_SIZE:
                opened.labels.popitem(last=False)
    return label


def _suggest(opened: Generation, query: Query, budget: Budget) -> str | None:
    """A corrected query text that finds something within the query's filters: misspelt
    vocabulary names replaced as a whole, then other unknown words by the closest frequent word
    (None when there is none, or no time left to look: a correction is optional)."""
    text = query.text
    try:
        named = suggest_names(text, opened.context, opened.known_word)
        correction = _keep_case(text, opened.correct(named, budget) or named)
        if correction.casefold() == text.casefold() or not _same_syntax(text, correction):
            return None
        rewritten = read(opened, replace(query, text=correction)).text
        docs = opened.match(opened.parse(rewritten, budget), budget) if rewritten else None
    except (QueryError, QueryTooExpensive):
        return None
    if docs is None:
        return None
    return correction if _filtered(opened, docs, query.filter_map).any() else None


def _same_syntax(typed: str, corrected: str) -> bool:
    """Only words were corrected (also after a field name: `title:fibromyalga`); field names,
    phrases, operators and brackets are as typed."""
    before, after = TOKEN.findall(typed), TOKEN.findall(corrected)
    return len(before) == len(after) and all(
        old == new or (_word_of(old) is not None and _word_of(old) == _word_of(new))
        for old, new in zip(before, after, strict=True)
    )


def _word_of(token: str) -> str | None:
    """'' for a plain word, 'title' for `title:word`; None for any other token."""
    if is_plain_word(token):
        return ""
    name, _, value = token.partition(":")
    return name.lower() if name.isalpha() and value and is_plain_word(value) else None


def _keep_case(typed: str, corrected: str) -> str:
    """The correction with the capitals of the words as typed ('Lefauchuer' -> 'Lefaucheur')."""
    before, after = typed.split(), corrected.split()
    if len(before) != len(after):
        return corrected
    return " ".join(
        new[:1].upper() + new[1:] if old[:1].isupper() and new[:1].islower() else new
        for old, new in zip(before, after, strict=True)
    )


def dose_intent(query: Query, understood: Understood) -> Query:
    """A question about dose ("how many sessions ...") is answered by studies, each with its dose:
    the type filter says so on the page and can be removed like any other."""
    if query.filter_map.get("type") or not any(e.vocabulary == "dose" for e in understood.expansions):
        return query
    return replace(query, filters=Query.make("", {**query.filter_map, "type": ("study",)}).filters)


def key_aliases(index_dir: Path) -> dict[str, str]:
    return open_search(index_dir).key_aliases()


def rulesets(index_dir: Path) -> list[dict[str, Any]]:
    return open_search(index_dir).rulesets()
