"""The Whoosh index: schema, atomic generations, incremental updates. The only writer.

Layout of an index directory:
    CURRENT -> gen-000042      symlink, replaced atomically (readers resolve it once)
    gen-000042/                a complete Whoosh index + manifest.json + vocab.json
    .lock                      POSIX record lock (lockf) held by the one writer (fsio.process_lock)

A build never touches the generation readers use: it writes a new directory (a copy of the
current one when updating incrementally), then swaps the symlink. A crash leaves at worst a
stale `*.tmp-*` directory, removed by the next build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import gc
import json
import multiprocessing
import os
import re
import shutil
import time
import traceback
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index
from whoosh.analysis import (
    CharsetFilter,
    CompositeAnalyzer,
    IDTokenizer,
    LowercaseFilter,
    RegexTokenizer,
    StemFilter,
    Token,
    Tokenizer,
)
from whoosh.codec.whoosh3 import LENGTHS_COLUMN, W3Codec, W3FieldWriter, W3PerDocReader, W3PostingsWriter
from whoosh.columns import NumericColumn
from whoosh.fields import COLUMN, ID, KEYWORD, STORED, TEXT, FieldType, Schema
from whoosh.filedb.filestore import FileStorage
from whoosh.filedb.structfile import BufferFile
from whoosh.formats import Existence, Frequency, Positions
from whoosh.lang.porter import stem as porter_stem
from whoosh.support.charset import accent_map
from whoosh.system import pack_uint
from whoosh.util.numeric import byte_to_length
from whoosh.writing import PostingPool, SegmentWriter

from .fields import DOSE_NUMBERS, FACETS, FIELDS
from .fsio import atomic_write, process_lock

# Bump whenever the schema or the document layout changes: older generations are then rebuilt.
SCHEMA_VERSION = 16  # 8: dose data; 9: pages.json; 10: numeric dose; 11: map as data; 13: left-out records;
# 14: abstracts and keywords; 15: TextAnalyzer (the same tokens, pickled as another class);
# 16: record data stored as JSON text;
# 12: identifiers, author keys and family names only in `authors`
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
VOCAB = "vocab.json"
RULESETS = "rulesets.json"
KNOWN = "references.json"  # what duplicate detection needs about each reference
ALIASES = "aliases.json"  # old BibTeX key -> current key
LABELS = "labels.json"  # facet -> value -> label, for values only the KB can name (documents.facet_labels)
PAGES = "pages.json"  # data of whole-KB views (the evidence map), computed when the KB is indexed
# Each CJK ideograph is its own token, so Chinese text matches without word segmentation.
TOKEN_PATTERN = r"[\u3400-\u9fff\uf900-\ufaff]|[^\W\u3400-\u9fff\uf900-\ufaff]+(?:[.'][^\W\u3400-\u9fff]+)*"
SPELLING = "spelling.json"
MULTIPROCESS_THRESHOLD = 4000
WORD = re.compile(r"[^\W\d_]{3,}")


def _cache_missing_columns() -> None:
    """Whoosh 2.7 re-checks the disk (os.stat) for a missing length column on every posting
    of an unscored field; the answer cannot change for a segment, so remember it."""
    reader_class = W3PerDocReader
    original = reader_class._cached_reader
    if getattr(original, "_caches_missing", False):
        return

    def cached_reader(self: Any, fieldname: str, column: Any) -> Any:
        missing = self.__dict__.setdefault("_missing_columns", set())
        if fieldname in missing:
            return None
        reader = original(self, fieldname, column)
        if reader is None:
            missing.add(fieldname)
        return reader

    cached_reader._caches_missing = True  # type: ignore[attr-defined]
    reader_class._cached_reader = cached_reader


_cache_missing_columns()


_DECODED_LENGTHS = [byte_to_length(b) for b in range(256)]
_UNUSUAL = object()  # a lengths column that is not the plain one-byte kind


def _length_bytes(reader: Any, fieldname: str) -> Any:
    """The one-byte lengths column of a field (bytes, one per document), None when the field
    has none, or _UNUSUAL; read once per reader."""
    tables = reader.__dict__.setdefault("_length_bytes", {})
    if fieldname not in tables:
        column = reader._cached_reader(f"_{fieldname}_len", LENGTHS_COLUMN)
        if column is None:
            tables[fieldname] = None
        elif type(column) is not NumericColumn.Reader or column._fixedlen != 1:
            tables[fieldname] = _UNUSUAL
        else:
            tables[fieldname] = column._dbfile.get(column._basepos, column._count)
    return tables[fieldname]


def _read_lengths_at_once() -> None:
    """Writing a segment asks W3PerDocReader.doc_field_length for the field length of every
    posting (about 90 per document), each through four calls reading one byte of the lengths
    column: a tenth of the writer processes' time. Read each field's column once instead; any
    column that is not the plain one-byte kind goes the original way."""
    original = W3PerDocReader.doc_field_length
    if getattr(original, "_reads_once", False):
        return
    decoded = _DECODED_LENGTHS

    def doc_field_length(self: Any, docnum: int, fieldname: str, default: Any = 0) -> Any:
        table = _length_bytes(self, fieldname)
        if table is _UNUSUAL or docnum > self._doccount:
            return original(self, docnum, fieldname, default)
        if table is None:
            return default
        lbyte = table[docnum] if docnum < len(table) else 0
        return decoded[lbyte] if lbyte else None  # None, as the original for a zero byte

    doc_field_length._reads_once = True  # type: ignore[attr-defined]
    doc_field_length._whoosh = original  # type: ignore[attr-defined]
    W3PerDocReader.doc_field_length = doc_field_length


_read_lengths_at_once()


def _posting_writes_without_type_checks() -> None:
    """PostingPool.add and W3PostingsWriter.add_posting run once per posting that goes Whoosh's
    way (documents Whoosh adds itself, merged segments; see _postings_written_by_term) and spend
    a third of their time asserting the types of values the writer itself made. The same work
    without the assertions (Whoosh's estimate of a posting's size in memory, 150 bytes plus its
    strings, decides when the pool spills to disk)."""
    if getattr(PostingPool.add, "_unchecked", False):
        return

    def add(self: Any, item: tuple[Any, ...]) -> None:
        self.fieldnames.add(item[0])
        self.currentsize += 150 + len(item[0]) + 2 * len(item[1]) + len(item[4] or b"")
        if self.currentsize > self.limit:
            self.save()
        self.current.append(item)

    def add_posting(self: Any, id_: Any, weight: Any, vbytes: bytes, length: int | None = None) -> None:
        if len(self._ids) >= self._blocklimit:
            self._write_block()
        self._ids.append(id_)
        self._weights.append(weight)
        if weight > self._maxweight:
            self._maxweight = weight
        if vbytes:
            self._values.append(vbytes)
        if length:
            if self._minlength is None or length < self._minlength:
                self._minlength = length
            if length > self._maxlength:
                self._maxlength = length

    add._unchecked = True  # type: ignore[attr-defined]
    PostingPool.add = add
    W3PostingsWriter.add_posting = add_posting


_posting_writes_without_type_checks()


def _postings_sorted_by_term() -> None:
    """A pool's postings are sorted before they are written: Whoosh sorts the whole list of
    (field, term, docnum, weight, value) tuples (a segment with merged or boosted postings; the
    others are kept by term, see _postings_written_by_term). Grouping them by (field, term)
    first and sorting the groups' keys gives the same order (each group is sorted too, already
    in document order) in about half the time."""
    original = PostingPool.items
    if getattr(original, "_grouped", False):
        return

    def items(self: Any, maxfiles: int = 128) -> Any:
        if self.runs:  # spilled to disk: Whoosh merges its sorted runs
            return original(self, maxfiles)
        groups: dict[tuple[Any, Any], list[Any]] = {}
        for item in self.current:
            key = item[:2]
            group = groups.get(key)
            if group is None:
                groups[key] = [item]
            else:
                group.append(item)
        out: list[Any] = []
        for key in sorted(groups):
            group = groups[key]
            if len(group) > 1:
                group.sort()
            out += group
        return out

    items._grouped = True  # type: ignore[attr-defined]
    PostingPool.items = items


_postings_sorted_by_term()


# The postings of the documents a SegmentWriter added through _add_document_planned, by (field,
# term bytes): document numbers, weights, encoded values, each in the order added.
_TermPostings = tuple[array, array, list]


def _terms_of(writer: Any) -> dict[tuple[str, bytes], _TermPostings]:
    terms: dict[tuple[str, bytes], _TermPostings] | None = writer.__dict__.get("_by_term")
    if terms is None:
        terms = writer.__dict__["_by_term"] = {}
    return terms


def _postings_written_by_term() -> None:
    """Whoosh keeps every posting of a segment as a (field, term, document, weight, value) tuple
    in its pool, sorts them all, then hands them one by one to the field writer, which asks for
    the document's field length and appends to its block buffers, three calls per posting
    (4.6M postings per writer process at 100k documents). The postings _add_document_planned
    makes are kept by term instead, each term's documents already in order; writing the segment
    sorts only the terms and fills each block of the postings writer at once, with the same
    statistics Whoosh computes (tests/test_index.py compares the segment files byte by byte).
    Postings that went Whoosh's own way (boosted documents, merged segments) join the pool and
    the whole segment is written Whoosh's way."""
    original = SegmentWriter._flush_segment
    if getattr(original, "_by_term", False):
        return

    def flush(self: Any) -> None:
        terms = self.__dict__.pop("_by_term", None)
        if not terms:
            return original(self)
        pool, fieldwriter = self.pool, self.fieldwriter
        direct = (
            not pool.current
            and not pool.runs
            and type(fieldwriter) is W3FieldWriter
            and self.codec.length_stats
        )
        if not direct:
            add = pool.add
            for (fieldname, tbytes), (docnums, weights, values) in terms.items():
                for item in zip(docnums, weights, values, strict=True):
                    add((fieldname, tbytes, *item))
            return original(self)
        self.perdocwriter.close()
        lengths = self.per_document_reader()
        try:
            _write_terms(fieldwriter, self.schema, lengths, terms)
            fieldwriter.close()
        finally:
            lengths.close()
        return None

    flush._by_term = True  # type: ignore[attr-defined]
    flush._whoosh = original  # type: ignore[attr-defined]
    SegmentWriter._flush_segment = flush


def _write_terms(
    fieldwriter: Any, schema: Any, lengths: Any, terms: dict[tuple[str, bytes], _TermPostings]
) -> None:
    """Every term's postings, in Whoosh's order, through the field writer's own start/finish
    calls; the blocks are those W3PostingsWriter.add_posting would fill one posting at a time."""
    field_name: str | None = None
    field_lengths: list[int] = []
    for key in sorted(terms):
        name, tbytes = key
        if name != field_name:
            if field_name is not None:
                fieldwriter.finish_field()
            fieldwriter.start_field(name, schema[name])
            field_name, field_lengths = name, _field_lengths(lengths, name)
        fieldwriter.start_term(tbytes)
        _fill_blocks(fieldwriter._postwriter, *terms[key], field_lengths)
        fieldwriter.finish_term()
    if field_name is not None:
        fieldwriter.finish_field()


def _field_lengths(lengths: Any, fieldname: str) -> list[int]:
    """Each document's length in the field, 0 for none (what add_postings' lookups give)."""
    count = lengths.doc_count_all()
    table = _length_bytes(lengths, fieldname)
    if table is None:
        return [0] * count
    if table is _UNUSUAL:
        whoosh = getattr(W3PerDocReader.doc_field_length, "_whoosh", W3PerDocReader.doc_field_length)
        return [whoosh(lengths, d, fieldname, 0) or 0 for d in range(count)]
    decoded = _DECODED_LENGTHS
    return [decoded[b] for b in table] + [0] * (count - len(table))


def _fill_blocks(writer: Any, docnums: array, weights: array, values: list, lengths: list[int]) -> None:
    """One term's postings into a W3PostingsWriter: each full block written as soon as the next
    posting comes (add_posting's rule), the last one left to finish_postings."""
    limit = writer._blocklimit
    total = len(docnums)
    for start in range(0, total, limit):
        if start:
            writer._write_block()
        ids = docnums[start : start + limit]
        block_weights = weights[start : start + limit]
        found = [n for n in (lengths[d] for d in ids) if n]
        heaviest = max(block_weights)
        writer._ids = ids
        writer._weights = array("f", block_weights)
        writer._values = [v for v in values[start : start + limit] if v]
        writer._maxweight = heaviest if heaviest > 0 else 0
        writer._minlength = min(found) if found else None
        writer._maxlength = max(found) if found else 0


_postings_written_by_term()


_SPACE_PATTERN = r"[^ \t\r\n]+"  # Whoosh's SpaceSeparatedTokenizer, KEYWORD fields' tokenizer


def _index_mode(field: Any) -> str:
    """How _add_document_planned indexes a field: "text" (Positions of a TextAnalyzer),
    "keyword" and "words" (Frequency of space-separated words, lowercased or as they are),
    "id" (Existence of the whole value) or "whoosh" (the field's own index(), for anything
    else)."""
    fmt, ana = field.format, field.analyzer
    if not field.indexed or type(field).index is not FieldType.index:
        return "whoosh"
    if type(fmt) is Positions and isinstance(ana, TextAnalyzer):
        return "text"
    items = list(ana.items) if isinstance(ana, CompositeAnalyzer) else [ana]
    kinds = [type(i) for i in items]
    if type(fmt) is Frequency and kinds in ([RegexTokenizer, LowercaseFilter], [RegexTokenizer]):
        tokenizer = items[0]
        if tokenizer.expression.pattern == _SPACE_PATTERN and not tokenizer.gaps:
            return "keyword" if len(kinds) == 2 else "words"
    if type(fmt) is Existence and kinds == [IDTokenizer]:
        return "id"
    return "whoosh"


_PLANS: dict[int, tuple[Any, dict[str, tuple[Any, str, Any]] | None]] = {}  # id(schema) -> (schema, plan)


def _plan(schema: Any) -> dict[str, tuple[Any, str, Any]] | None:
    """field name -> (field, index mode, column type), worked out once per schema object (kept
    here, not on the schema, which Whoosh pickles into every index's table of contents). None
    when a field has term vectors or a separate spelling field, which only Whoosh's own
    add_document writes."""
    known = _PLANS.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    plan: dict[str, tuple[Any, str, Any]] | None = {
        name: (f, _index_mode(f) if f.indexed else "", f.column_type) for name, f in schema.items()
    }
    if any(f.vector or f.separate_spelling() for _, f in schema.items()):
        plan = None
    if len(_PLANS) >= 16:
        _PLANS.clear()
    _PLANS[id(schema)] = (schema, plan)
    return plan


def _postings(  # noqa: PLR0911 - one return per index mode
    field: Any, mode: str, value: Any
) -> Iterable[tuple[bytes, int, float, bytes]]:
    """(term bytes, frequency, weight, value bytes) of one field value, as field.index(value)
    gives them for the modes _index_mode recognises."""
    if mode == "whoosh" or not isinstance(value, str):  # Whoosh multiplies by the boost, 1.0
        return [(t, n, w * 1.0, v) for t, n, w, v in field.index(value)]
    fb = field.format.field_boost
    if mode == "id":
        return [(value.encode("utf-8"), 1, fb, b"")]
    if mode in ("keyword", "words"):
        freqs: dict[str, int] = {}
        for word in _SPACE_RE.findall(value.lower() if mode == "keyword" else value):
            freqs[word] = freqs.get(word, 0) + 1
        return [(w.encode("utf-8"), n, float(n) * fb, pack_uint(n)) for w, n in freqs.items()]
    encode = field.format.encode
    poses = field.analyzer.positions(value)
    return [(w.encode("utf-8"), len(p), float(len(p)) * fb, encode(p)) for w, p in poses.items()]


_SPACE_RE = re.compile(_SPACE_PATTERN)


def _add_document_planned() -> None:
    """SegmentWriter.add_document runs once per document and, per field, goes through
    field.index, the format's word_values and the analyzer's token objects: at 100k documents
    about half of the writer processes' time. The same postings, lengths, stored values and
    column values, made directly for the fields of this schema (tests/test_index.py compares
    the segments written both ways). Documents with boosts ("_" fields) and any field kind
    not recognised take Whoosh's own path."""
    original = SegmentWriter.add_document
    if getattr(original, "_planned", False):
        return

    def add_document(self: Any, **fields: Any) -> None:
        plan = _plan(self.schema)
        if plan is None or any(name.startswith("_") or name not in plan for name in fields):
            return original(self, **fields)  # boosts, an unknown field (Whoosh says which), vectors
        self._check_state()
        perdoc, docnum = self.perdocwriter, self.docnum
        by_term = _terms_of(self)
        perdoc.start_doc(docnum)
        try:
            for name in sorted(fields):
                value = fields[name]
                if value is None:
                    continue
                field, mode, column = plan[name]
                length = 0
                if mode:
                    scorable = field.scorable
                    for tbytes, freq, weight, vbytes in _postings(field, mode, value):
                        if scorable:
                            length += freq
                        postings = by_term.get((name, tbytes))
                        if postings is None:
                            postings = by_term[(name, tbytes)] = (array("I"), array("d"), [])
                        postings[0].append(docnum)
                        postings[1].append(weight)
                        postings[2].append(vbytes)
                perdoc.add_field(name, field, value if field.stored else None, length)
                if column:
                    perdoc.add_column_value(name, column, field.to_column_value(value))
        except Exception:
            perdoc.cancel_doc()
            raise
        perdoc.finish_doc()
        self._added = True
        self.docnum += 1
        return None

    add_document._planned = True  # type: ignore[attr-defined]
    add_document._whoosh = original  # type: ignore[attr-defined]
    SegmentWriter.add_document = add_document


_add_document_planned()


INLINE_LIMIT = 2  # postings lists shorter than this are kept in the term's entry (the codec's inlinelimit)


def _inlined_postings_written() -> None:
    """Whoosh 2.7's W3PostingsWriter.finish_postings calls `terminfo.set_inline`, a method
    W3TermInfo names `set_inlined`, so its codec cannot inline the postings of rare terms
    (the default limit of 1 never does). With the call fixed and a limit of 2, a term found in
    one document keeps its posting in the term's entry, which the reader already reads
    (W3Codec.postings_reader): no block with its own header, pickle and zlib stream for each
    of the hundreds of thousands of identifiers, author keys and rare words."""
    if getattr(W3PostingsWriter.finish_postings, "_fixed", False):
        return

    def finish_postings(self: Any) -> Any:
        terminfo = self._terminfo
        if not self.written() and len(self) < self._inlinelimit:
            terminfo.add_block(self)
            terminfo.set_inlined(self._ids, self._weights, self._values)
        else:
            if self._ids:
                self._write_block(last=True)
            terminfo.set_extent(self._startoffset, self._postfile.tell() - self._startoffset)
        self._terminfo = None
        return terminfo

    finish_postings._fixed = True  # type: ignore[attr-defined]
    W3PostingsWriter.finish_postings = finish_postings


_inlined_postings_written()


def codec() -> W3Codec:
    """The codec every writer of ours uses: Whoosh's own, inlining single postings."""
    return W3Codec(inlinelimit=INLINE_LIMIT)


def _create_without_keeping_frames() -> None:
    """Whoosh 2.7's FileStorage.create keeps the EEXIST it ignores in a local (`e =
    sys.exc_info()[1]`): exception, traceback and frame then form a cycle holding every caller's
    frame, so a build's whole knowledge base (1.3M objects at 100k records) lived on until the
    cyclic GC ran, which took 1.9 s. Same behaviour, without the stored exception."""
    original = FileStorage.create
    if getattr(original, "_keeps_no_frames", False):
        return

    def create(self: Any) -> Any:
        dirpath = os.path.abspath(self.folder)
        with contextlib.suppress(FileExistsError):
            os.makedirs(dirpath, exist_ok=True)
        if not os.path.isdir(dirpath):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", dirpath)
        return self

    create._keeps_no_frames = True  # type: ignore[attr-defined]
    FileStorage.create = create


_create_without_keeping_frames()


class BufferReader:
    """A read-only file over a buffer that copies only what is read. Whoosh's BufferFile wraps
    each file of a memory-mapped segment in BytesIO(buffer), which copies the whole buffer: 10 ms
    per terms file at 100k documents, 0.14 s to open a generation (and again in every update)."""

    def __init__(self, buffer: Any) -> None:
        self._view = memoryview(buffer).cast("B")
        self._pos = 0

    def read(self, size: int | None = -1) -> bytes:
        start, length = self._pos, len(self._view)
        end = length if size is None or size < 0 else min(length, start + size)
        self._pos = max(start, end)
        return self._view[start:end].tobytes()

    def readinto(self, target: Any) -> int:
        data = self.read(len(memoryview(target)))
        memoryview(target).cast("B")[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        limit = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        out = bytearray()
        while self._pos < limit:
            chunk = self._view[self._pos : min(limit, self._pos + 256)].tobytes()
            cut = chunk.find(b"\n")
            if cut >= 0:
                out += chunk[: cut + 1]
                self._pos += cut + 1
                break
            out += chunk
            self._pos += len(chunk)
        return bytes(out)

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        """The buffer belongs to the segment's storage, which closes it."""


def _read_segments_without_copying() -> None:
    """BufferFile with a BufferReader instead of a copy of its whole buffer in a BytesIO."""
    original = BufferFile.__init__
    if getattr(original, "_copies_nothing", False):
        return

    def init(self: Any, buf: Any, name: Any = None, onclose: Any = None) -> None:
        original(self, b"", name, onclose)
        self._buf = buf
        self.file = BufferReader(buf)

    init._copies_nothing = True  # type: ignore[attr-defined]
    BufferFile.__init__ = init


_read_segments_without_copying()


def doc_words(doc: dict[str, Any]) -> set[str]:
    """The distinct words of one document's searchable text, as "did you mean" counts them."""
    return {w.lower() for name in ("text", "authors") for w in WORD.findall(doc.get(name) or "")}


def words_text(words: Iterable[str]) -> str:
    """A document's spelling words as one sorted, space-separated text: how the parse cache
    keeps them, and what a writer process sends back (unpickling 50k sets of words took 1.6 s
    in the parent at 100k documents, the same words as text 0.08 s)."""
    return " ".join(sorted(words))


def spelling_words(docs: list[dict[str, Any]]) -> dict[str, int]:
    """Every word of the searchable text with the number of documents holding it ("did you mean")."""
    counts: dict[str, int] = {}
    for doc in docs:
        for word in doc_words(doc):
            counts[word] = counts.get(word, 0) + 1
    return dict(sorted(counts.items()))


class StaleBase(Exception):
    """build_index(reused=...) found no current generation the reused documents are in."""


def analyzer() -> Any:
    """Words, lower-cased, accent-folded, stemmed; no stop words so phrases stay exact."""
    return TextAnalyzer(TOKEN_PATTERN)


def composed_analyzer() -> Any:
    """What TextAnalyzer does, as a chain of Whoosh's own tokenizer and filters (its reference)."""
    return RegexTokenizer(TOKEN_PATTERN) | LowercaseFilter() | CharsetFilter(accent_map) | StemFilter()


class TextAnalyzer(Tokenizer):
    """RegexTokenizer | LowercaseFilter | CharsetFilter(accent_map) | StemFilter in one loop.

    The same tokens as composed_analyzer() (tests/test_index.py compares them over the bundled
    KB's text), at a fraction of the cost: one generator instead of four per token, no accent
    folding of ASCII words (accent_map leaves lower-case ASCII as it is), and stems remembered
    in a dict instead of Whoosh's LFU cache. Indexing runs it over every word of every document:
    at 100k documents it took a quarter of the writer processes' time."""

    is_morph = True  # it stems, as StemFilter says of itself
    STEMS_MAX = 200_000  # distinct words remembered before the memo starts again

    def __init__(self, expression: str = TOKEN_PATTERN) -> None:
        self.expression = re.compile(expression)
        self._stems: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:  # pickled in the index's schema: without the memo
        return {"expression": self.expression}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.expression = state["expression"]
        self._stems = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextAnalyzer) and self.expression.pattern == other.expression.pattern

    def __hash__(self) -> int:
        return hash(self.expression.pattern)

    def _fold(self, word: str) -> str:
        text = word.lower()
        if not text.isascii():
            text = text.translate(accent_map)
        stem = self._stems.get(text)
        if stem is None:
            if len(self._stems) >= self.STEMS_MAX:
                self._stems.clear()
            stem = self._stems[text] = porter_stem(text)
        return stem

    def positions(self, value: str) -> dict[str, list[int]]:
        """Each word's positions in `value`, in order of first appearance: what indexing a
        value with positions takes from the tokens __call__ yields, without making them."""
        poses: dict[str, list[int]] = {}
        fold = self._fold
        for pos, match in enumerate(self.expression.finditer(value)):
            word = fold(match.group(0))
            known = poses.get(word)
            if known is None:
                poses[word] = [pos]
            else:
                known.append(pos)
        return poses

    def __call__(  # noqa: PLR0913 - Whoosh's tokenizer protocol
        self,
        value: str,
        positions: bool = False,
        chars: bool = False,
        keeporiginal: bool = False,
        removestops: bool = True,
        start_pos: int = 0,
        start_char: int = 0,
        tokenize: bool = True,
        mode: str = "",
        **kwargs: Any,
    ) -> Iterator[Token]:
        token = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        if not tokenize:
            token.original = value
            token.text = self._fold(value)
            token.boost = 1.0
            if positions:
                token.pos = start_pos
            if chars:
                token.startchar, token.endchar = start_char, start_char + len(value)
            yield token
            return
        fold = self._fold
        for pos, match in enumerate(self.expression.finditer(value)):
            word = match.group(0)
            token.text = fold(word)
            token.boost = 1.0
            if keeporiginal:
                token.original = word
            token.stopped = False
            if positions:
                token.pos = start_pos + pos
            if chars:
                token.startchar, token.endchar = start_char + match.start(), start_char + match.end()
            yield token


def spelling_schema() -> Schema:
    """The searchable fields without stemming: "did you mean" compares whole words, not stems."""
    words = RegexTokenizer(TOKEN_PATTERN) | LowercaseFilter() | CharsetFilter(accent_map)
    return Schema(text=TEXT(analyzer=words), authors=TEXT(analyzer=words))


def make_schema() -> Schema:
    """The Whoosh schema of the field registry (indexer/fields.py): stored fields for display,
    one analysed text field, keyword fields for facets, numeric columns for sorting."""
    text = analyzer()
    kinds: dict[str, Any] = {
        "id": lambda f: ID(stored=True, unique=True),
        "text": lambda f: TEXT(analyzer=text),
        "stored": lambda f: STORED(),
        "keyword": lambda f: KEYWORD(lowercase=True, scorable=False),
        "column": lambda f: COLUMN(NumericColumn(f.column_type)),
    }
    fields: dict[str, Any] = {f.name: kinds[f.kind](f) for f in FIELDS}
    for facet in FACETS:
        fields[facet.name] = (
            KEYWORD(stored=True, scorable=False) if facet.multi else ID(stored=True, sortable=True)
        )
    return Schema(**fields)


@dataclass(frozen=True)
class BuildReport:
    """What a build did."""

    generation: str
    added: int
    updated: int
    deleted: int
    unchanged: int
    full: bool
    seconds: float
    left_out: tuple[Any, ...] = ()  # leftout.LeftOut: records with problems, not indexed
    parsed: int = 0  # source files parsed (the others came from the parse cache)
    parse_reused: int = 0  # source files whose cached parse was used
    documents: int = 0  # documents built (the others were kept from the previous generation)
    records_read: int = 0  # records read into memory to build them (all of them, unless a delta)
    delta: bool = False  # built from the records the edit can reach only (indexer/delta.py)

    @property
    def changed(self) -> int:
        return self.added + self.updated + self.deleted


def current_dir(index_dir: Path) -> Path | None:
    """The generation readers should open, or None if there is no index yet."""
    link = index_dir / CURRENT
    try:
        target = link.resolve(strict=True)
    except (FileNotFoundError, RuntimeError, OSError):
        return None
    return target if (target / MANIFEST).is_file() else None


_MANIFESTS: dict[str, tuple[tuple[int, ...], dict[str, Any]]] = {}  # path -> (stat, manifest)


def left_out(index_dir: Path) -> list[dict[str, Any]]:
    """The records the live generation leaves out (leftout.LeftOut.as_json, from pages.json),
    read without opening the index; [] when there is none."""
    live = current_dir(index_dir)
    try:
        pages = json.loads((live / PAGES).read_text("utf-8")) if live is not None else {}
    except (OSError, ValueError):
        return []
    return list(pages.get("left_out") or []) if isinstance(pages, dict) else []


def read_manifest(generation: Path) -> dict[str, Any]:
    """A generation's manifest.json (one build reads the live one three times, 8 MB of
    content hashes at 100k documents: it is parsed once per file version)."""
    path = generation / MANIFEST
    st = path.stat()
    sig = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    known = _MANIFESTS.get(str(path))
    if known is None or known[0] != sig:
        known = (sig, dict(json.loads(path.read_text("utf-8"))))
        if len(_MANIFESTS) >= 4:
            _MANIFESTS.clear()
        _MANIFESTS[str(path)] = known
    manifest = dict(known[1])
    if isinstance(manifest.get("hashes"), dict):
        manifest["hashes"] = dict(manifest["hashes"])  # callers get their own copy
    return manifest


def is_current(index_dir: Path, fingerprint: str) -> bool:
    """True if the live index was built from exactly these sources with this schema."""
    generation = current_dir(index_dir)
    if generation is None:
        return False
    manifest = read_manifest(generation)
    return _same_layout(manifest) and manifest.get("fingerprint") == fingerprint


def _same_layout(manifest: dict[str, Any]) -> bool:
    """Built with this schema version and these registry fields (else it must be rebuilt)."""
    return manifest.get("schema") == SCHEMA_VERSION and manifest.get("fields") == FACETS.signature()


def writer_lock(index_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Serialise index builds; a killed build never blocks the next."""
    return process_lock(index_dir / ".lock")


def build_index(
    docs: Iterable[dict[str, Any]],
    index_dir: Path,
    *,
    fingerprint: str,
    extra: dict[str, Any],
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    reused: Mapping[str, str] | None = None,
    base: str | None = None,
    old_words: Mapping[str, Iterable[str]] | None = None,
    count: int | None = None,
    observe: Callable[[str, str], None] | None = None,
    shares: Callable[[int, int], Iterable[dict[str, Any]]] | None = None,
) -> BuildReport:
    """Write `docs` into a new generation and make it current.

    Reuses the current generation when the schema is unchanged, re-indexing only documents
    whose content hash changed; `force` rebuilds from scratch. A full build indexes `docs` as
    they come (an iterator of `count` documents, say, built meanwhile).

    `reused` (id -> content hash) are documents of generation `base` (the current one) kept as
    they are without being passed in `docs`; `old_words` then gives the spelling words
    (doc_words) of every document of `base` that is replaced or removed. Raises StaleBase when
    `base` is no longer the current generation or does not hold all of them. `observe` is
    called with the id of each document written and its spelling words (words_text).

    `shares(k, n)`, when given, makes share k of n of the same documents as `docs`: a full
    build of many documents then makes and writes each share in a writer process of its own
    (forked from this one), and `docs` is not read.
    """
    started = time.perf_counter()
    with writer_lock(index_dir):
        _remove_stale(index_dir)
        previous = current_dir(index_dir)
        manifest = read_manifest(previous) if previous else {}
        full = force or previous is None or not _same_layout(manifest)
        old_hashes: dict[str, str] = manifest.get("hashes", {})
        if reused is not None:
            stale = full or previous is None or previous.name != base
            if stale or any(old_hashes.get(i) != h for i, h in reused.items()):
                raise StaleBase(base)
        number = int(manifest.get("generation_number", 0)) + 1
        name = f"gen-{number:06d}"
        tmp = index_dir / f"{name}.tmp-{os.getpid()}"
        try:
            if full:
                hashes, words, counts = _write_full(docs, tmp, progress, count, observe, shares)
            else:
                assert previous is not None
                docs = list(docs)
                hashes = _hashes(docs, reused or {})
                sets = [doc_words(d) for d in docs]
                copy_generation(previous, tmp)
                counts = _write_changes(docs, tmp, old_hashes, progress, hashes)
                if reused is None:
                    words = _counted(sets)
                else:
                    removed = [i for i in old_hashes if i not in hashes]
                    words = _spelling_delta(tmp, docs, sets, old_hashes, removed, old_words or {})
                for doc, found in zip(docs, sets, strict=True):
                    if observe is not None:
                        observe(doc["id"], words_text(found))
            _write_json(
                tmp / MANIFEST,
                {
                    "schema": SCHEMA_VERSION,
                    "fields": FACETS.signature(),
                    "fingerprint": fingerprint,
                    "generation": name,
                    "generation_number": number,
                    "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "count": len(hashes),
                    "hashes": hashes,
                },
            )
            # An update's copy links the previous generation's files: one left as it was is kept.
            _write_json(tmp / SPELLING, words, keep_same=not full)
            for filename, payload in extra.items():
                _write_json(tmp / filename, payload, keep_same=not full)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _publish(index_dir, tmp, name, previous)
    return BuildReport(name, *counts, full=full, seconds=time.perf_counter() - started)


def _hashes(docs: list[dict[str, Any]], reused: Mapping[str, str]) -> dict[str, str]:
    """id -> content hash of every document; ValueError if two share an id."""
    hashes = dict(reused)
    for doc in docs:
        if doc["id"] in hashes:
            raise ValueError(f"duplicate document ids: {[doc['id']]}")
        hashes[doc["id"]] = doc["hash"]
    return hashes


def _counted(sets: Iterable[set[str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for words in sets:
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    return dict(sorted(counts.items()))


def _spelling_delta(
    tmp: Path,
    docs: list[dict[str, Any]],
    sets: list[set[str]],
    old_ids: Mapping[str, str],
    removed: list[str],
    old_words: Mapping[str, Iterable[str]],
) -> dict[str, int]:
    """The generation's word counts with the words of replaced and removed documents taken out
    and those of `docs` put in: what spelling_words of all documents would give."""
    counts: dict[str, int] = json.loads((tmp / SPELLING).read_text("utf-8"))
    for doc_id in [*(d["id"] for d in docs if d["id"] in old_ids), *removed]:
        if doc_id not in old_words:
            raise StaleBase(f"no spelling words of {doc_id}")
        for word in old_words[doc_id]:
            counts[word] = counts.get(word, 0) - 1
    for words in sets:
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    return dict(sorted((w, n) for w, n in counts.items() if n > 0))


def copy_generation(previous: Path, tmp: Path) -> None:
    """A copy of a generation to update: hard links where possible. Whoosh never writes into an
    existing file (new segments and TOCs get new names, the TOC is renamed into place) and our
    JSON files are replaced by rename, so the previous generation stays as it was."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(previous, tmp, copy_function=link)


def _publish(index_dir: Path, tmp: Path, name: str, previous: Path | None) -> None:
    """Make a finished temporary generation current; keep the previous one for open readers."""
    os.rename(tmp, index_dir / name)
    _swap(index_dir, name)
    _remove_old(index_dir, keep={name, previous.name if previous else ""})


def known_rows(index_dir: Path) -> list[dict[str, Any]] | None:
    """What duplicate detection needs about each reference (documents.known_references), as
    saved with the current generation; None when there is no generation or it has none."""
    generation = current_dir(index_dir)
    return known_rows_of(generation) if generation is not None else None


def known_rows_of(generation: Path) -> list[dict[str, Any]] | None:
    path = generation / KNOWN
    return list(json.loads(path.read_text("utf-8"))) if path.is_file() else None


def add_documents(
    docs: list[dict[str, Any]], index_dir: Path, *, fingerprint: str, known: list[dict[str, Any]]
) -> BuildReport | None:
    """Add documents to a copy of the current generation and make it current.

    For writes that change nothing else (a new reference): no re-parse, no full build. `known`
    are the new references' rows for duplicate detection, appended to the generation's. Returns
    None when there is no current index of this schema (build one instead).
    """
    started = time.perf_counter()
    with writer_lock(index_dir):
        _remove_stale(index_dir)
        previous = current_dir(index_dir)
        manifest = read_manifest(previous) if previous else {}
        if previous is None or not _same_layout(manifest):
            return None
        number = int(manifest["generation_number"]) + 1
        name = f"gen-{number:06d}"
        tmp = index_dir / f"{name}.tmp-{os.getpid()}"
        copy_generation(previous, tmp)
        writer = whoosh_index.open_dir(str(tmp)).writer(codec=codec())
        for doc in docs:
            writer.update_document(**_to_fields(doc))
        writer.commit(merge=False)
        hashes = {**manifest["hashes"], **{d["id"]: d["hash"] for d in docs}}
        manifest.update(
            fingerprint=fingerprint,
            generation=name,
            generation_number=number,
            count=len(hashes),
            hashes=hashes,
            built=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        _write_json(tmp / MANIFEST, manifest)
        words = json.loads((tmp / SPELLING).read_text("utf-8")) if (tmp / SPELLING).is_file() else {}
        for word, count in spelling_words(docs).items():
            words[word] = words.get(word, 0) + count
        _write_json(tmp / SPELLING, words)
        _write_json(tmp / KNOWN, [*(known_rows_of(tmp) or []), *known])
        _publish(index_dir, tmp, name, previous)
    return BuildReport(
        name, len(docs), 0, 0, len(hashes) - len(docs), full=False, seconds=time.perf_counter() - started
    )


STORED_JSON = "data"  # the stored field holding each document's record data, stored as JSON text
_UNSTORED = frozenset(f.name for f in FIELDS if f.kind in ("text", "keyword"))


class StoredData(dict[str, Any]):
    """A document's record data with `text`, its JSON as stored: documents.content_hash
    encodes it once, for the hash and for the index (at 100k documents, 3 s of a full build)."""

    __slots__ = ("text",)
    text: str


def encode_stored(data: Any) -> str:
    """The stored field's JSON text of a document's record data."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _to_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """A document as Whoosh's add_document takes it. The record data is stored as JSON text
    (decode_stored reads it back): the writer processes unpickle a string in 13 us where the
    nested dict took 90 us, at 100k documents 8 s of a full build. Empty fields that are not
    stored are left out (indexing nothing still costs a pass through the analyzer)."""
    fields = {k: v for k, v in doc.items() if k != "hash"}
    for facet in FACETS:
        fields.setdefault(facet.name, [] if facet.multi else "")
    keywords = [f.name for f in FIELDS if f.kind == "keyword"]
    for name in dict.fromkeys((*FACETS.multi_valued, *keywords, *(d.field for d in DOSE_NUMBERS))):
        fields[name] = " ".join(fields.get(name) or [])
    if STORED_JSON in fields:
        data = fields[STORED_JSON]
        fields[STORED_JSON] = data.text if isinstance(data, StoredData) else encode_stored(data)
    return {k: v for k, v in fields.items() if v != "" or k not in _UNSTORED}


def decode_stored(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A document's stored fields as they were given to _to_fields (the record data decoded)."""
    out = dict(stored)
    value = out.get(STORED_JSON)
    if isinstance(value, str):
        out[STORED_JSON] = json.loads(value)
    return out


def _write_full(
    docs: Iterable[dict[str, Any]],
    path: Path,
    progress: Callable[[int], None] | None,
    count: int | None,
    observe: Callable[[str, str], None] | None,
    shares: Callable[[int, int], Iterable[dict[str, Any]]] | None = None,
) -> tuple[dict[str, str], dict[str, int], tuple[int, int, int, int]]:
    """Index every document into a new Whoosh index: (hashes, spelling words, counts)."""
    path.mkdir(parents=True)
    ix = whoosh_index.create_in(str(path), make_schema())
    size = len(docs) if isinstance(docs, Sized) else (count or 0)
    # Measured (bench/index_build.py, 2 cores): at 10k documents two writer processes take
    # 5.5 s against 9.3 s for one; below a few thousand their start-up cost outweighs the gain.
    # A process gets a pool large enough not to spill runs to disk.
    procs = min(WRITER_PROCESSES, os.cpu_count() or 1) if size >= MULTIPROCESS_THRESHOLD else 1
    # The writer processes are forked from this one, with the KB in memory: frozen, those
    # objects are never walked by their cyclic collectors (nor their pages copied for it).
    gc.freeze()
    try:
        if procs > 1:
            if shares is None:
                listed = docs if isinstance(docs, list) else list(docs)
                shares = functools.partial(_every_nth, listed)
            parts = _write_in_processes(ix, shares, procs, progress, observe is not None)
        else:
            parts = [_write_in_this_process(ix, docs, progress)]
    finally:
        gc.unfreeze()
    hashes: dict[str, str] = {}
    counts: dict[str, int] = {}
    for part in parts:
        twice = part.hashes.keys() & hashes.keys()
        if twice:
            raise ValueError(f"duplicate document ids: {sorted(twice)[:1]}")
        hashes.update(part.hashes)
        for word, n in part.counts.items():
            counts[word] = counts.get(word, 0) + n
        if observe is not None:
            for doc_id, words in part.words:
                observe(doc_id, words)
    return hashes, dict(sorted(counts.items())), (len(hashes), 0, 0, 0)


WRITER_PROCESSES = 2  # a full build's writer processes (at most one per core)


@dataclass
class _Written:
    """What one writer made of its documents: id -> content hash, spelling word counts, the
    spelling words of each document (when the build observes them) and the segment."""

    hashes: dict[str, str] = dataclasses.field(default_factory=dict)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    words: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (id, words_text)
    segment: Any = None


def _every_nth(docs: list[dict[str, Any]], k: int, n: int) -> list[dict[str, Any]]:
    return docs[k::n]


def _add_all(writer: Any, docs: Iterable[dict[str, Any]], tick: Callable[[], None], keep: bool) -> _Written:
    out = _Written()
    hashes, counts = out.hashes, out.counts
    for doc in docs:
        doc_id = doc["id"]
        if doc_id in hashes:
            raise ValueError(f"duplicate document ids: {[doc_id]}")
        hashes[doc_id] = doc["hash"]
        words = doc_words(doc)
        for word in words:
            counts[word] = counts.get(word, 0) + 1
        if keep:
            out.words.append((doc_id, words_text(words)))
        writer.add_document(**_to_fields(doc))
        tick()
    return out


def _write_in_this_process(
    ix: Any, docs: Iterable[dict[str, Any]], progress: Callable[[int], None] | None
) -> _Written:
    writer = ix.writer(limitmb=1024, codec=codec())
    try:
        written = _add_all(writer, docs, (lambda: progress(1)) if progress else (lambda: None), True)
    except BaseException:
        writer.cancel()
        raise
    writer.commit()
    return written


def _write_in_processes(
    ix: Any,
    shares: Callable[[int, int], Iterable[dict[str, Any]]],
    n: int,
    progress: Callable[[int], None] | None,
    keep_words: bool,
) -> list[_Written]:
    """Share k of n documents (made by shares(k, n)) written into a segment of its own by
    each of n forked processes at once; this process then commits the segments together.
    The documents are built in the process that writes them: building them here and sending
    them to Whoosh's multi-process writer took a third of the build in this process alone,
    while the writers waited or shared its cores, and pickled every document twice."""
    context = multiprocessing.get_context("fork")
    writer = ix.writer(codec=codec())  # holds the index's lock; its own segment stays empty
    workers: list[tuple[Any, Any, Any]] = []
    try:
        for k in range(n):
            receive, send = context.Pipe(duplex=False)
            done = context.RawValue("q", 0)
            worker = context.Process(
                target=_writer_process, args=(ix, shares, k, n, send, done, keep_words), daemon=True
            )
            worker.start()
            send.close()
            workers.append((worker, receive, done))
        parts = _collect(workers, progress)
    except BaseException:
        for worker, _, _ in workers:
            if worker.is_alive():
                worker.kill()
        writer.cancel()
        raise
    finally:
        for worker, receive, _ in workers:
            worker.join()
            receive.close()
    writer._close_segment()  # as Whoosh's own multi-process writer commits (MpWriter._commit)
    writer._commit_toc([part.segment for part in parts if part.segment is not None])
    writer._finish()
    return parts


def _collect(workers: list[tuple[Any, Any, Any]], progress: Callable[[int], None] | None) -> list[_Written]:
    """Each writer process's result, in share order, reporting progress as they go."""
    results: dict[int, _Written] = {}
    shown = 0
    while len(results) < len(workers):
        for k, (worker, receive, _) in enumerate(workers):
            if k in results or not receive.poll(0.05):
                continue
            try:
                status, value = receive.recv()
            except EOFError:
                raise RuntimeError(
                    f"a writer process stopped without a result (exit code {worker.exitcode})"
                ) from None
            if status != "ok":
                raise value
            results[k] = value
        if progress is not None:
            now = sum(done.value for _, _, done in workers)
            if now > shown:
                progress(now - shown)
                shown = now
    return [results[k] for k in range(len(workers))]


def _writer_process(
    ix: Any,
    shares: Callable[[int, int], Iterable[dict[str, Any]]],
    k: int,
    n: int,
    send: Any,
    done: Any,
    keep_words: bool,
) -> None:
    """One forked writer: its share of the documents into a segment; the result to the parent."""
    gc.disable()  # short-lived, with the whole KB frozen in memory: collecting would only cost time

    def tick() -> None:
        done.value += 1

    try:
        writer = SegmentWriter(ix, _lk=False, limitmb=1024, codec=codec())
        written = _add_all(writer, shares(k, n), tick, keep_words)
        if writer._added:
            written.segment = writer._finalize_segment()
        else:
            writer._close_segment()
        send.send(("ok", written))
    except BaseException as exc:  # the parent raises it, with this process's traceback
        exc.add_note("in a writer process:\n" + "".join(traceback.format_exception(exc)))
        try:
            send.send(("error", exc))
        except Exception:  # not picklable: its text then
            send.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        send.close()


def _write_changes(
    docs: list[dict[str, Any]],
    path: Path,
    old: dict[str, str],
    progress: Callable[[int], None] | None,
    hashes: Mapping[str, str],
) -> tuple[int, int, int, int]:
    """Re-index the documents whose hash changed; `hashes` are all documents of the new generation."""
    ix = whoosh_index.open_dir(str(path))
    changed = [d for d in docs if old.get(d["id"]) != d["hash"]]
    removed = [i for i in old if i not in hashes]
    writer = ix.writer(codec=codec())
    for doc_id in removed:
        writer.delete_by_term("id", doc_id)
    for doc in changed:
        writer.update_document(**_to_fields(doc))
        if progress:
            progress(1)
    if progress:
        progress(len(hashes) - len(changed))
    writer.commit()
    added = sum(1 for d in changed if d["id"] not in old)
    return added, len(changed) - added, len(removed), len(hashes) - len(changed)


class EncodedJSON(str):
    """A payload already encoded as JSON text (build.py keeps large ones between builds)."""


def encode_json(payload: Any) -> EncodedJSON:
    return EncodedJSON(json.dumps(payload, ensure_ascii=False))


def _write_json(path: Path, payload: Any, keep_same: bool = False) -> None:
    """Write a payload as JSON; with keep_same, a file that already holds it is left alone (an
    edit at 100k records would write and fsync 18 MB of unchanged references and labels)."""
    data = (payload if isinstance(payload, EncodedJSON) else encode_json(payload)).encode("utf-8")
    if keep_same:
        with contextlib.suppress(OSError):
            if os.stat(path).st_size == len(data) and path.read_bytes() == data:
                return
    atomic_write(path, data)


def _swap(index_dir: Path, name: str) -> None:
    link = index_dir / f"{CURRENT}.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(name)
    os.replace(link, index_dir / CURRENT)
    fd = os.open(index_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale(index_dir: Path) -> None:
    """Remove leftovers of builds that were killed (we hold the lock, so none is running)."""
    for path in index_dir.glob("*.tmp-*"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _remove_old(index_dir: Path, keep: set[str]) -> None:
    """Keep the new and the previous generation (readers may still hold the previous one)."""
    for path in index_dir.glob("gen-*"):
        if path.name not in keep and ".tmp-" not in path.name:
            shutil.rmtree(path, ignore_errors=True)


def open_generation(generation: Path) -> Any:
    """Open one generation's Whoosh index for reading."""
    return whoosh_index.open_dir(str(generation))
