"""The Whoosh side of search: one opened index generation and everything that reads it.

`Reader(index_dir)` follows the index's CURRENT generation and opens each one once (its
sidecar JSON files, its facet arrays, a searcher per thread, a posting-list cache). A
generation that cannot be read is remembered as broken, so a damaged index answers
IndexMissing at once instead of being retried per request. Besides index.py (the writer) this
is the only module that imports Whoosh, and the only one that uses Whoosh's private parts.

Every method that can take long takes a `Budget`: wildcard expansion (also capped at
MAX_EXPANDED_TERMS words per query), matching, ranking and spelling check it as they go and
stop with QueryTooExpensive once the query's time is spent. Whoosh's own TimeLimitCollector
needs a timer thread or SIGALRM (main thread only), so ranking uses a collector that checks the
budget's deadline instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from whoosh import highlight, spelling
from whoosh import query as wq
from whoosh.codec.whoosh3 import W3LeafMatcher
from whoosh.collectors import FilterCollector, WrappingCollector
from whoosh.columns import NumericColumn
from whoosh.matching import FilterMatcher, ListMatcher
from whoosh.qparser import MultifieldParser
from whoosh.reading import TermNotFound

from . import index as idx
from .errors import IndexMissing, QueryTooExpensive
from .facets import FacetStore, Mask
from .fields import FACETS, SEARCH_FIELDS, SORT_COLUMNS
from .fsio import atomic_write
from .query import Segment
from .querytext import Context, edit_distance
from .vocab import Vocabularies

log = logging.getLogger(__name__)

POSTINGS_CACHE_SIZE = 20_000
FRAGMENTER = highlight.ContextFragmenter(maxchars=220, surround=60)
MAX_EXPANDED_TERMS = 1024  # words all wildcards, prefixes and ranges of one query may stand for


class Budget:
    """The time one query may take; `check()` raises QueryTooExpensive once it is spent.

    `ms` of 0 or None means no limit."""

    def __init__(self, ms: int | None = None) -> None:
        self.ms = ms or 0
        self.deadline = time.monotonic() + self.ms / 1000 if self.ms > 0 else math.inf

    def spent(self) -> bool:
        return time.monotonic() > self.deadline

    def check(self) -> None:
        if self.spent():
            raise QueryTooExpensive(
                f"the query needed more than {self.ms:,} ms and was stopped; narrow it "
                "(whole words instead of wildcards, fewer alternatives, or a filter)"
            )


UNLIMITED = Budget()


@dataclass
class Generation:
    """One opened, immutable index generation."""

    ix: Any
    name: str
    vocab: Vocabularies
    spelling_words: dict[str, int]
    store: FacetStore
    aliases: dict[str, str] = field(default_factory=dict)
    rulesets: list[dict[str, Any]] = field(default_factory=list)
    labels_of: dict[str, dict[str, str]] = field(default_factory=dict)  # labels.json
    pages: dict[str, Any] = field(default_factory=dict)  # pages.json: whole-KB views
    manifest: dict[str, Any] = field(default_factory=dict)  # what was built, when, from what
    postings: dict[tuple[str, Any], Any] = field(default_factory=dict)
    local: threading.local = field(default_factory=threading.local)
    cache: OrderedDict[Any, Any] = field(default_factory=OrderedDict)  # results, LRU
    labels: OrderedDict[Any, str] = field(default_factory=OrderedDict)  # facet labels, LRU
    cache_lock: threading.Lock = field(default_factory=threading.Lock)
    cache_hits: int = 0  # hits held by the cached results (search.py bounds it)
    field_masks: dict[str, Mask] = field(default_factory=dict)  # documents having a word in a field

    @classmethod
    def open(cls, path: Path) -> Generation:
        """Open a generation directory; any failure to read it raises (the Reader reports it)."""
        vocab = Vocabularies.from_json(_json_or(path / idx.VOCAB, {}))
        words = dict(_json_or(path / idx.SPELLING, {}))
        for name, _, _ in vocab.names():
            for word in name.split():
                if word.isalpha():
                    words.setdefault(word, 1)
        ix = idx.open_generation(path)
        return cls(
            ix,
            path.name,
            vocab,
            words,
            facet_store(ix, path.parent / FACET_CACHE),
            aliases=dict(_json_or(path / idx.ALIASES, {})),
            rulesets=list(_json_or(path / idx.RULESETS, [])),
            labels_of=dict(_json_or(path / idx.LABELS, {})),
            pages=dict(_json_or(path / idx.PAGES, {})),
            manifest={k: v for k, v in _json_or(path / idx.MANIFEST, {}).items() if k != "hashes"},
        )

    @cached_property
    def context(self) -> Context:
        """What the query reader needs besides the vocabularies: which words are first authors'
        family names, and the labels of grades (querytext.Context)."""
        return Context(self.vocab, self.is_first_author, self.labels_of.get("grade", {}))

    def is_first_author(self, key: str) -> bool:
        return "first_author" in self.schema and len(self._postings("first_author", key)) > 0

    def known_word(self, word: str) -> bool:
        """A word that is never "corrected": one of the indexed text or of a vocabulary name
        (M1, S2, H1 too), and any word with a digit or of one or two letters."""
        word = word.lower()
        return word in self.spelling_words or word in self._name_words or len(word) < 3 or not word.isalpha()

    @cached_property
    def _name_words(self) -> frozenset[str]:
        return frozenset(w for name, _, _ in self.vocab.names() for w in name.split())

    @cached_property
    def _sorted_words(self) -> list[str]:
        return sorted(self.spelling_words)

    def term_mask(self, fieldname: str, text: str) -> Mask:
        """Documents holding one term of a field."""
        return self.store.mask_of(self._postings(fieldname, text))

    @cached_property
    def indication_codes(self) -> Any:
        """One indication per document as a number (-1: none), for spreading answers over conditions."""
        codes = np.full(self.store.size, -1, dtype=np.int32)
        for i, (_, ids) in enumerate(sorted(self.store.postings.get("indication", {}).items())):
            free = ids[codes[ids] < 0]
            codes[free] = i
        return codes

    @cached_property
    def schema(self) -> Any:
        """The generation's schema, read once (Whoosh's `ix.schema` re-reads the TOC file per call)."""
        return self.ix.schema

    def searcher(self) -> Any:
        """This thread's searcher (Whoosh searchers are not thread-safe; opening one costs ~15 ms)."""
        searcher = getattr(self.local, "searcher", None)
        if searcher is None:
            searcher = self.local.searcher = self.ix.searcher()
        return searcher

    # -- matching ----------------------------------------------------------------------------

    def parse(self, text: str, budget: Budget = UNLIMITED) -> Any:
        """Whoosh's parser over the searchable fields, wildcards expanded; None for an empty query."""
        # A new parser per call: cheap, and nothing is shared between threads.
        if not text:
            return None
        return self.expand(MultifieldParser(list(SEARCH_FIELDS), schema=self.schema).parse(text), budget)

    def expand(self, node: Any, budget: Budget = UNLIMITED) -> Any:
        """The query with every wildcard, prefix and range replaced by the words it matches, so
        matching, ranking and highlighting never expand them again (Whoosh would, each time).

        QueryTooExpensive if they stand for more than MAX_EXPANDED_TERMS words in all, or the
        budget runs out while the lexicon is read."""
        reader = _CheckedReader(self.searcher().reader(), budget)
        words = 0
        patterns: list[str] = []  # as the user wrote them, for the message

        def walk(node: Any) -> Any:
            nonlocal words
            if isinstance(node, wq.Every) and node.fieldname and node.fieldname not in self._countable:
                node = wq.Prefix(node.fieldname, "")  # `id:*`: as many words as the field has
            if not isinstance(node, wq.MultiTerm):
                return node.apply(walk)
            if node.fieldname not in self.schema:
                return wq.NullQuery
            if _pattern(node) not in patterns:
                patterns.append(_pattern(node))
            terms = []
            for btext in node._btexts(reader):
                if words >= MAX_EXPANDED_TERMS:
                    raise QueryTooExpensive(
                        f"{', '.join(patterns)} match{'es' * (len(patterns) == 1)} more than "
                        f"{MAX_EXPANDED_TERMS:,} words; use a longer prefix or fewer wildcards"
                    )
                words += 1
                terms.append(wq.Term(node.fieldname, self.schema[node.fieldname].from_bytes(btext)))
            if not terms:
                return wq.NullQuery
            either = terms[0] if len(terms) == 1 else wq.Or(terms)
            if getattr(node, "constantscore", False):  # Whoosh scores wildcards and ranges flat
                return wq.ConstantScoreQuery(either, node.boost)
            either.boost = node.boost
            return either

        return walk(node)

    @cached_property
    def _countable(self) -> frozenset[str]:
        """Fields whose `field:*` is answered from field lengths or facet arrays, not the lexicon."""
        scored = {name for name in self.schema.names() if self.schema[name].scorable}
        return frozenset(scored | set(self.store.postings))

    def match(self, node: Any, budget: Budget = UNLIMITED) -> Mask:
        """Documents matching a parsed query, as a boolean mask over document numbers.

        Terms and AND/OR/NOT are evaluated with NumPy over posting lists cached per generation
        (a word's postings are read once); phrases and anything else go to Whoosh.
        tests/test_evaluator.py checks this against Whoosh's own matching.
        """
        budget.check()
        store = self.store
        if isinstance(node, wq.Term):
            return store.mask_of(self._postings(node.fieldname, node.text))
        if isinstance(node, wq.And):
            mask = store.alive.copy()
            for child in node.subqueries:
                mask &= self.match(child, budget)
            return mask
        if isinstance(node, wq.Or) and not node.minmatch:
            mask = np.zeros(store.size, dtype=bool)
            for child in node.subqueries:
                mask |= self.match(child, budget)
            return mask
        if isinstance(node, wq.Not):
            return store.alive & ~self.match(node.query, budget)
        if isinstance(node, wq.AndNot):
            return self.match(node.a, budget) & ~self.match(node.b, budget)
        if isinstance(node, wq.ConstantScoreQuery):
            return self.match(node.child, budget)
        if isinstance(node, wq.Every):
            return self.every(node.fieldname).copy() if node.fieldname else store.alive.copy()
        if node is wq.NullQuery:
            return np.zeros(store.size, dtype=bool)
        return store.mask_of(self.searcher().docs_for_query(node))

    def every(self, fieldname: str) -> Mask:
        """Documents with at least one word in a field (`field:*`), found once per generation.

        Whoosh's Every(field) reads every posting of the field on each query (1.6 s at 10k)."""
        mask = self.field_masks.get(fieldname)
        if mask is None:
            store = self.store
            if fieldname in store.postings:
                mask = store.any_of(fieldname, store.postings[fieldname])
            else:
                reader = self.searcher().reader()
                lengths = (reader.doc_field_length(d, fieldname, 0) for d in range(store.size))
                mask = np.fromiter(lengths, dtype=np.int64, count=store.size) > 0
            mask &= store.alive
            self.field_masks[fieldname] = mask
        return mask

    def whoosh_match(self, node: Any) -> Mask:
        """Whoosh's own answer for a parsed query (the reference for the fast evaluator)."""
        return self.store.mask_of(self.searcher().docs_for_query(node))

    def _postings(self, fieldname: str, text: Any) -> Any:
        key = (fieldname, text)
        cached = self.postings.get(key)
        if cached is None:
            try:
                ids = self.searcher().reader().postings(fieldname, text).all_ids()
                cached = np.fromiter(ids, dtype=np.int64)
            except TermNotFound:
                cached = np.zeros(0, dtype=np.int64)
            if len(self.postings) >= POSTINGS_CACHE_SIZE:
                self.postings.clear()
            self.postings[key] = cached
        return cached

    def ranked(
        self, node: Any, matched: Mask, start: int, size: int, budget: Budget = UNLIMITED
    ) -> list[tuple[int, float]]:
        """(doc number, score) of one page by Whoosh's BM25F, restricted to `matched`.

        Documents of `matched` that Whoosh's own matching leaves out (its AndNot is wrong on some
        queries; `NOT field:*` is ranked as NOT *) follow the scored ones, unscored."""
        allowed = set(np.flatnonzero(matched).tolist())
        if start >= len(allowed):
            return []
        searcher = self.searcher()
        # The filter wraps the deadline, as Searcher.collector wraps filters last: FilterCollector
        # does its own loop over the matches and hands on only the allowed documents.
        collector = FilterCollector(_Deadline(searcher.collector(limit=start + size), budget), allowed)
        searcher.search_with_collector(_rankable(node), collector)
        results = collector.results()
        page = [(hit.docnum, hit.score) for hit in results[start : start + size]]
        scored = results.scored_length()
        if scored < min(start + size, len(allowed)):  # Whoosh matched fewer: all are in `results`
            rest = sorted(allowed - {results.docnum(i) for i in range(scored)})
            page += [(d, 0.0) for d in rest[max(0, start - scored) : start + size - scored]]
        return page

    # -- display -----------------------------------------------------------------------------

    def stored(self, docnum: int) -> dict[str, Any]:
        return idx.decode_stored(self.searcher().stored_fields(docnum))

    def document(self, doc_id: str) -> dict[str, Any] | None:
        stored = self.searcher().document(id=doc_id)
        return idx.decode_stored(stored) if stored else None

    def highlight_terms(self, node: Any) -> frozenset[str]:
        """Analysed query words of the text field, to mark in summaries."""
        if node is None:
            return frozenset()
        terms = node.existing_terms(self.searcher().reader(), phrases=True, expand=True)
        return frozenset(
            text.decode("utf-8") if isinstance(text, bytes) else text
            for name, text in terms
            if name == "text"
        )

    def highlights(self, text: str, terms: frozenset[str]) -> tuple[tuple[Segment, ...], ...]:
        """Up to two fragments of `text` with the query's words marked."""
        if not terms or not text:
            return ()
        analyzer = self.schema["text"].analyzer
        marked = highlight.highlight(text, terms, analyzer, FRAGMENTER, _SegmentFormatter(), top=2)
        return _segments(marked) if marked else ()

    # -- spelling ----------------------------------------------------------------------------

    def correct(self, text: str, budget: Budget = UNLIMITED) -> str | None:
        """Whoosh's query correction with our word list; None if nothing changes (or the budget
        runs out: a suggestion is optional)."""
        try:
            parsed = _SPELLING_PARSER.parse(text)
            corrector = _WordCorrector(self.spelling_words, self._sorted_words, self.known_word, budget)
            correctors = {name: corrector for name in SEARCH_FIELDS}
            correction = self.searcher().correct_query(parsed, text, correctors=correctors)
        except Exception:  # a suggestion is optional; never let it break a search
            log.debug("spelling suggestion failed for %r", text, exc_info=True)
            return None
        if not correction.string or correction.string == text:
            return None
        return str(correction.string)


FACET_CACHE = "facet-cache"  # per segment: its facet postings and sort columns (see facet_store)


def facet_store(ix: Any, cache_dir: Path | None = None) -> FacetStore:
    """Facet postings and sort columns of a generation, read once into NumPy arrays.

    Posting lists are read a block at a time (`_term_ids`) and numeric columns as one byte
    string per segment (`_segment_column`): Whoosh's own per-id iterators took about 1 s at 100k
    documents, every time a new generation is opened (after each edit). What each segment
    holds is kept in `cache_dir` by segment id: a Whoosh segment never changes once written
    (deletions are kept apart, in `alive`), so after an edit only the new small segment is read
    (0.3 s -> 0.05 s at 100k documents)."""
    names = [name for name in (*FACETS.names, "covers") if name in ix.schema]
    column_names = sorted({c for keys in SORT_COLUMNS.values() for c in keys})
    with ix.searcher() as searcher:
        reader = searcher.reader()
        size = reader.doc_count_all()
        leaves = list(reader.leaf_readers())
        alive = _alive(leaves, size)
        parts = [_segment_part(leaf, names, column_names, cache_dir) for leaf, _ in leaves]
        if cache_dir is not None and any(part.read for part in parts):
            _prune(cache_dir, leaves)
    postings: dict[str, dict[str, Any]] = {}
    for name in names:
        terms = sorted({term for part in parts for term in part.postings.get(name, {})})
        postings[name] = {term: _term_ids(parts, leaves, name, term, alive) for term in terms}
    columns = {}
    for name in column_names:
        out = np.zeros(size, dtype=np.int32)
        for part, (_, offset) in zip(parts, leaves, strict=True):
            out[offset : offset + len(part.columns[name])] = part.columns[name]
        columns[name] = out
    return FacetStore(size, alive, postings, columns)


@dataclass
class _SegmentPart:
    """One segment's facet postings (its own ids, deleted ones included) and sort columns."""

    signature: str
    postings: dict[str, dict[str, Any]]
    columns: dict[str, Any]
    read: bool = False  # read from the segment now (not from the cache)


def _part_signature(leaf: Any, names: list[str], column_names: list[str]) -> str:
    return repr((idx.SCHEMA_VERSION, FACETS.signature(), names, column_names, leaf.doc_count_all()))


def _segment_part(
    leaf: Any, names: list[str], column_names: list[str], cache_dir: Path | None
) -> _SegmentPart:
    """Read one segment's part, or take it from `cache_dir`; any failure to use the cache
    only costs the time of reading the segment."""
    signature = _part_signature(leaf, names, column_names)
    segment = getattr(leaf, "segment", None)
    segment_id = segment().segment_id() if callable(segment) else None
    path = cache_dir / f"{segment_id}.pickle" if cache_dir is not None and segment_id else None
    if path is not None and path.is_file():
        try:
            with path.open("rb") as handle:
                part = pickle.load(handle)
            if isinstance(part, _SegmentPart) and part.signature == signature:
                part.read = False
                return part
        except Exception as exc:  # a damaged or foreign file: read the segment instead
            log.info("facet cache %s not used: %s", path, exc)
    part = _SegmentPart(
        signature,
        {
            name: {term.decode("utf-8"): _segment_ids(leaf, name, term) for term in leaf.lexicon(name)}
            for name in names
        },
        {name: _segment_column(leaf, name) for name in column_names},
    )
    part.read = True
    if path is not None:
        try:
            path.parent.mkdir(exist_ok=True)
            atomic_write(path, pickle.dumps(part, pickle.HIGHEST_PROTOCOL))
        except OSError as exc:  # a read-only index directory: still served, read each time
            log.info("facet cache %s not written: %s", path, exc)
    return part


def _prune(cache_dir: Path, leaves: list[tuple[Any, int]]) -> None:
    """Remove the parts of segments this generation no longer has (merged or deleted ones).
    A process still serving an older generation only reads its parts again if it reopens."""
    keep = {
        f"{leaf.segment().segment_id()}.pickle"
        for leaf, _ in leaves
        if callable(getattr(leaf, "segment", None))
    }
    with contextlib.suppress(OSError):
        for path in cache_dir.glob("*.pickle"):
            if path.name not in keep:
                with contextlib.suppress(OSError):
                    path.unlink()


def _alive(leaves: list[tuple[Any, int]], size: int) -> Any:
    """True for each document that is not deleted, from each segment's set of deleted ones."""
    alive = np.ones(size, dtype=bool)
    for leaf, offset in leaves:
        deleted = getattr(leaf, "deleted_docs_set", None)
        if deleted is None:  # not a Whoosh 2.7 segment reader: ask it document by document
            alive[offset : offset + leaf.doc_count_all()] = False
            alive[np.fromiter(leaf.all_doc_ids(), dtype=np.int64) + offset] = True
        elif deleted:
            alive[np.fromiter(deleted, dtype=np.int64) + offset] = False
    return alive


def _term_ids(
    parts: list[_SegmentPart], leaves: list[tuple[Any, int]], name: str, term: str, alive: Any
) -> Any:
    """The live documents holding `term` in field `name`, ascending (int32)."""
    found = []
    for part, (_, offset) in zip(parts, leaves, strict=True):
        ids = part.postings.get(name, {}).get(term)
        if ids is not None and len(ids):
            found.append(ids.astype(np.int64) + offset)
    if not found:
        return np.zeros(0, dtype=np.int32)
    ids = np.concatenate(found) if len(found) > 1 else found[0]
    return ids[alive[ids]].astype(np.int32)  # deleted documents out, as Whoosh's own filter does


def _segment_ids(leaf: Any, name: str, term: bytes) -> Any:
    """Every id of `term` in one segment, deleted documents included (int32)."""
    return np.asarray(_leaf_ids(leaf.postings(name, term)), dtype=np.int32)


def _leaf_ids(matcher: Any) -> list[int]:
    """Every id of one segment's posting matcher, deleted documents included: whole blocks of
    Whoosh 2.7's W3LeafMatcher or ListMatcher at once, any other matcher id by id."""
    if isinstance(matcher, FilterMatcher):  # the segment's deletions: `alive` filters them
        matcher = matcher.child
    if isinstance(matcher, W3LeafMatcher):
        out: list[int] = []
        while matcher.is_active():
            if matcher._ids is None:
                matcher._read_ids()
            out.extend(matcher._ids[matcher._i :])
            matcher._next_block()
        return out
    if isinstance(matcher, ListMatcher):
        return list(matcher._ids[matcher._i :])
    return list(matcher.all_ids())


def _segment_column(leaf: Any, name: str) -> Any:
    """A numeric column for every document of one segment (int32): its fixed-size values read
    as one byte string, or value by value for any other kind of column reader."""
    count = leaf.doc_count_all()
    out = np.zeros(count, dtype=np.int32)
    column = leaf.column_reader(name, translate=False)  # a segment without it: its default
    if isinstance(column, NumericColumn.Reader):
        stored = min(column._count, count)
        raw = column._dbfile.get(column._basepos, stored * column._fixedlen)
        out[:stored] = np.frombuffer(raw, dtype=np.dtype(column._typecode).newbyteorder(">"))
        out[stored:] = column._default
    else:  # not a plain numeric column: Whoosh's own reader (translating values)
        translated = leaf.column_reader(name)
        out[:] = [translated[i] for i in range(count)]
    return out


def _json_or(path: Path, default: Any) -> Any:
    return json.loads(path.read_text("utf-8")) if path.is_file() else default


class Reader:
    """Follows one index directory's CURRENT generation; opens each generation once."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = Path(index_dir)
        self._lock = threading.Lock()
        self._current: Generation | None = None
        self._current_path: Path | None = None
        self._broken: dict[Path, str] = {}

    def generation(self) -> Generation:
        """The current generation, opened (IndexMissing if there is none or it is damaged)."""
        path = idx.current_dir(self.index_dir)
        if path is None:
            raise IndexMissing("there is no search index yet; build it with 'tmskb index'")
        with self._lock:
            if self._current is not None and self._current_path == path:
                return self._current
            if path in self._broken:
                raise IndexMissing(self._broken[path])
            try:
                opened = Generation.open(path)
            except Exception as exc:  # a damaged generation: say so once, do not retry per request
                log.error("cannot open index generation %s: %r", path, exc)
                exc.__traceback__ = None  # its frames hold Whoosh's open files; let them go now
                self._broken[path] = (
                    f"the search index cannot be read ({type(exc).__name__}); "
                    "rebuild it with 'tmskb index --force'"
                )
                raise IndexMissing(self._broken[path]) from None
            self._current, self._current_path = opened, path
            return opened


# -- helpers of Generation ---------------------------------------------------------------------


class _CheckedReader:
    """A reader whose term iterators check the budget as they go, so a wildcard scanning a large
    lexicon for a rare pattern stops on time even when it finds nothing."""

    ITERATORS = frozenset({"lexicon", "expand_prefix", "terms_from", "terms_within", "iter_field"})

    def __init__(self, reader: Any, budget: Budget) -> None:
        self._reader, self._budget = reader, budget

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._reader, name)
        if name not in self.ITERATORS:
            return found
        budget = self._budget

        def checked(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for i, item in enumerate(found(*args, **kwargs)):
                if not i % 256:
                    budget.check()
                yield item

        return checked


class _Deadline(WrappingCollector):
    """Hands `child` its matching documents, checking the budget every 256 of them."""

    def __init__(self, child: Any, budget: Budget) -> None:
        super().__init__(child)
        self.budget = budget

    def matches(self) -> Iterator[int]:
        budget = self.budget
        for i, sub_docnum in enumerate(self.child.matches()):
            if not i % 256:
                budget.check()
            yield sub_docnum


def _rankable(node: Any) -> Any:
    """The query for Whoosh's ranking: `field:*` as `*` (matching is ours, and Whoosh's Every
    over one field reads all its postings; the ranked documents are restricted to ours anyway)."""
    if isinstance(node, wq.Every) and node.fieldname:
        return wq.Every(boost=node.boost)
    return node.apply(_rankable)


def _pattern(node: Any) -> str:
    """A wildcard query as the user wrote it: 'p*', 'a?c', 'id:*', '[a TO z]'."""
    if isinstance(node, wq.Prefix):
        text = f"{node.text}*"
    elif isinstance(node, wq.TermRange):
        text = f"[{node.start or ''} TO {node.end or ''}]"
    else:
        text = str(getattr(node, "text", node))
    return f"'{text}'" if node.fieldname in SEARCH_FIELDS else f"'{node.fieldname}:{text}'"


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


class _WordCorrector(spelling.Corrector):
    """Whoosh's list corrector, but a known word stays as it is, a swap of two letters is one
    edit ('pian' is one edit from 'pain', as from 'gian'), and among equally close words the one
    in more documents wins (Whoosh alone would turn 'pain' into 'main', and 'pian' into 'gian')."""

    def __init__(
        self,
        frequencies: dict[str, int],
        words: list[str],
        known: Callable[[str], bool],
        budget: Budget = UNLIMITED,
    ) -> None:
        self.frequencies = frequencies
        self.known = known
        self.budget = budget
        self.inner = spelling.ListCorrector(words)

    def suggest(self, text: str, limit: int = 5, maxdist: int = 2, prefix: int = 0) -> list[str]:
        self.budget.check()  # once per word; correct() gives up quietly when it raises
        if self.known(text):
            return [text]
        found = [word for _, word in self.inner._suggestions(text, maxdist, prefix)]
        scored = [
            (edit_distance(text, word, maxdist), -self.frequencies.get(word, 0), word) for word in found
        ]
        scored.sort()
        return [word for _, _, word in scored[:limit]]


_SPELLING_PARSER = MultifieldParser(list(SEARCH_FIELDS), schema=idx.spelling_schema())
