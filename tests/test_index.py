"""`tmskb index`: atomic generations, no-op re-runs, incremental updates of changed records only."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import build

from indexer import index as idx
from indexer.cli import cli
from indexer.search import Query, search
from indexer.settings import Settings

PROJECT = Path(__file__).parent.parent


def test_build_then_noop_then_one_record_update(settings) -> None:
    first = build(settings)
    assert first is not None and first.full and first.added == 12
    started = time.perf_counter()
    assert build(settings) is None  # nothing changed: nothing done
    assert time.perf_counter() - started < 1.0

    study = settings.kb_dir / "studies" / "delta2015test.yaml"
    study.write_text(
        study.read_text().replace(
            "did not change fibromyalgia pain", "did not change fibromyalgia pain or sleep"
        )
    )
    report = build(settings)
    assert report is not None and not report.full
    assert (report.added, report.updated, report.deleted, report.unchanged) == (0, 1, 0, 11)
    hits = search(settings.index_dir, Query.make("sleep")).hits
    assert [h.id for h in hits] == ["delta2015test"]


def test_an_update_keeps_the_json_files_it_leaves_unchanged_and_rewrites_the_others(settings) -> None:
    """An update links the previous generation's files; a JSON file whose content did not
    change is kept as that link (no write), one that changed is written anew."""
    build(settings)
    before = idx.current_dir(settings.index_dir)
    study = settings.kb_dir / "studies" / "delta2015test.yaml"
    study.write_text(study.read_text().replace("fibromyalgia pain", "fibromyalgia pain or sleep", 1))
    vocab = settings.kb_dir / "vocab" / "targets.yaml"
    vocab.write_text(vocab.read_text().replace("(DLPFC)", "(DLPFC, edited)", 1))
    report = build(settings)
    after = idx.current_dir(settings.index_dir)
    assert report is not None and not report.full and before is not None and after is not None
    assert after != before
    for name in (idx.KNOWN, idx.RULESETS, idx.ALIASES):  # the same references, rule sets, aliases
        assert (after / name).read_bytes() == (before / name).read_bytes()
        assert (after / name).stat().st_ino == (before / name).stat().st_ino, name
    assert "DLPFC, edited" in (after / idx.VOCAB).read_text("utf-8")
    assert (after / idx.VOCAB).stat().st_ino != (before / idx.VOCAB).stat().st_ino
    assert "DLPFC, edited" not in (before / idx.VOCAB).read_text("utf-8")  # the old one as it was


def test_deleted_record_leaves_the_index(settings) -> None:
    build(settings)
    (settings.kb_dir / "recommendations" / "guide2020-dep-dlpfc-lf.yaml").unlink()
    report = build(settings)
    assert report is not None and report.deleted == 1
    assert search(settings.index_dir, Query.make("id:guide2020-dep-dlpfc-lf")).total == 0


def test_vocabulary_change_reindexes_the_records_that_use_it(settings) -> None:
    build(settings)
    vocab = settings.kb_dir / "vocab" / "targets.yaml"
    vocab.write_text(
        vocab.read_text().replace(
            "label: Dorsolateral prefrontal cortex (DLPFC)", "label: Dorsolateral prefrontal cortex"
        )
    )
    report = build(settings)
    assert report is not None
    assert report.updated == 4  # two studies and two recommendations at the DLPFC


def test_generations_swap_atomically_and_old_readers_keep_working(settings) -> None:
    build(settings)
    before = idx.current_dir(settings.index_dir)
    assert before is not None and (settings.index_dir / idx.CURRENT).is_symlink()
    opened_before = search(settings.index_dir, Query.make("fibromyalgia"))
    (settings.kb_dir / "studies" / "alpha2010test.yaml").write_text(
        (settings.kb_dir / "studies" / "alpha2010test.yaml").read_text().replace("sham.", "sham, for weeks.")
    )
    build(settings)
    after = idx.current_dir(settings.index_dir)
    assert after is not None and after != before and before.exists()  # previous generation kept
    assert opened_before.total == search(settings.index_dir, Query.make("fibromyalgia")).total
    assert sorted(p.name for p in settings.index_dir.iterdir() if p.name.startswith("gen-")) == sorted(
        [before.name, after.name]
    )


def test_stale_temporary_build_is_cleaned_up(settings) -> None:
    build(settings)
    stale = settings.index_dir / "gen-000099.tmp-12345"
    stale.mkdir()
    (stale / "junk").write_text("half-written")
    build(settings, force=True)
    assert not stale.exists()


def test_index_cli_reports_counts_and_noop(runner, kb_root: Path, tmp_path: Path) -> None:
    args = ["index", "--root", str(kb_root), "--index-dir", str(tmp_path / "ix")]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "full build gen-000001: 12 added" in first.output
    second = runner.invoke(cli, args)
    assert second.exit_code == 0 and "Index is up to date" in second.output


def test_index_location_from_environment(runner, kb_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TMSKB_ROOT", str(kb_root))
    monkeypatch.setenv("TMSKB_INDEX_DIR", str(tmp_path / "env-index"))
    result = runner.invoke(cli, ["index"])
    assert result.exit_code == 0, result.output
    assert idx.current_dir(tmp_path / "env-index") is not None


def test_index_refuses_to_build_from_a_broken_kb(runner, tmp_path: Path) -> None:
    """With --strict; without it the records with problems are left out (tests/test_partial_kb.py)."""
    broken = Path(__file__).parent / "data" / "broken"
    args = ["index", "--strict", "--root", str(broken), "--index-dir", str(tmp_path / "ix")]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    assert not os.path.exists(tmp_path / "ix" / idx.CURRENT)
    partial = runner.invoke(cli, args[:1] + args[2:])
    assert partial.exit_code == 0
    assert "record(s) left out of the index because they have problems" in partial.output


def test_facet_arrays_equal_whooshs_own_readers_after_deletions(settings: Settings, tmp_path: Path) -> None:
    """engine.facet_store reads posting blocks and column bytes directly; on a generation with
    several segments and deleted documents it must give exactly what Whoosh's iterators give."""
    import shutil

    from indexer import engine
    from indexer.build import ensure_index
    from indexer.fields import FACETS, SORT_COLUMNS

    ensure_index(settings)
    live = idx.current_dir(settings.index_dir)
    assert live is not None
    copy = tmp_path / "segments"
    shutil.copytree(live, copy)
    ix = idx.open_generation(copy)
    with ix.searcher() as searcher:
        first = searcher.stored_fields(0)
    writer = ix.writer()  # a second segment, long enough for posting lists of several blocks
    for i in range(300):
        writer.add_document(**{**{k: v for k, v in first.items() if k in ix.schema}, "id": f"copy-{i}"})
    writer.commit(merge=False)
    writer = ix.writer()
    for docnum in (0, 2, 5):
        writer.delete_document(docnum)
    writer.commit(merge=False)
    ix = idx.open_generation(copy)
    cache = tmp_path / "facet-cache"
    for cache_dir in (None, cache, cache):  # read from the segments, then from their cached parts
        _assert_facet_store_equals_whoosh(engine.facet_store(ix, cache_dir), ix)
    with ix.searcher() as searcher:
        leaves = list(searcher.reader().leaf_readers())
    assert len(list(cache.glob("*.pickle"))) == len(leaves)
    names = [n for n in (*FACETS.names, "covers") if n in ix.schema]
    columns = sorted({c for keys in SORT_COLUMNS.values() for c in keys})
    with ix.searcher() as searcher:
        parts = [
            engine._segment_part(leaf, names, columns, cache) for leaf, _ in searcher.reader().leaf_readers()
        ]
    assert not any(part.read for part in parts)  # every segment's part came from the cache
    (cache / sorted(p.name for p in cache.glob("*.pickle"))[0]).write_bytes(b"damaged")
    _assert_facet_store_equals_whoosh(engine.facet_store(ix, cache), ix)  # read again instead
    writer = ix.writer()  # deletions made after a segment's part was cached
    for docnum in (1, 7, 300):
        writer.delete_document(docnum)
    writer.commit(merge=False)
    ix = idx.open_generation(copy)
    _assert_facet_store_equals_whoosh(engine.facet_store(ix, cache), ix)


def _assert_facet_store_equals_whoosh(store: Any, ix: Any) -> None:
    import numpy as np

    from indexer.fields import FACETS, SORT_COLUMNS

    with ix.searcher() as searcher:
        reader = searcher.reader()
        assert reader.has_deletions() and len(list(reader.leaf_readers())) > 1
        assert max(len(ids) for terms in store.postings.values() for ids in terms.values()) > 256
        alive = np.zeros(reader.doc_count_all(), dtype=bool)
        alive[list(reader.all_doc_ids())] = True
        assert np.array_equal(store.alive, alive)
        names = [n for n in (*FACETS.names, "covers") if n in ix.schema]
        assert sorted(store.postings) == sorted(names)
        for name in names:
            expected = {t.decode(): list(reader.postings(name, t).all_ids()) for t in reader.lexicon(name)}
            assert {t: list(ids) for t, ids in store.postings[name].items()} == expected, name
        for name in {c for keys in SORT_COLUMNS.values() for c in keys}:
            column = reader.column_reader(name)
            assert list(store.columns[name]) == [column[i] for i in range(reader.doc_count_all())], name


def test_the_text_analyzer_gives_the_tokens_of_whooshs_own_chain() -> None:
    """index.TextAnalyzer replaces RegexTokenizer | LowercaseFilter | CharsetFilter | StemFilter
    for speed: over the bundled KB's text and hard cases, in every mode, the tokens are equal."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        docs = _bundled_fields(Path(tmp))
    texts = [str(doc.get(name) or "") for doc in docs for name in ("text", "authors")]
    texts += [
        "Créac'h São Paulo naïve ŒUVRE Ærø straße İstanbul",
        "経頭蓋磁気刺激 rTMS 治療 10-Hz M1 (n=20) p<0.05 O'Reilly's",
        "",
        "   ",
        "STIMULATION stimulations Stimulated 3.141 e.g. U.S.A.",
    ]
    ours, theirs = idx.TextAnalyzer(), idx.composed_analyzer()
    modes: list[dict[str, Any]] = [
        {},
        {"positions": True, "chars": True, "keeporiginal": True, "start_pos": 3, "start_char": 7},
        {"mode": "query"},
        {"tokenize": False, "positions": True, "chars": True},
    ]

    def tokens(analyzer: Any, text: str, mode: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (
                t.text,
                getattr(t, "pos", None),
                getattr(t, "startchar", None),
                getattr(t, "endchar", None),
                getattr(t, "original", None),
                t.boost,
                t.stopped,
            )
            for t in analyzer(text, **mode)
        ]

    assert len(texts) > 100
    for text in texts:
        for mode in modes:
            assert tokens(ours, text, mode) == tokens(theirs, text, mode), (text[:80], mode)


def test_field_lengths_read_at_once_equal_whooshs_byte_by_byte_reads(index_dir: Path) -> None:
    """index._read_lengths_at_once: every document's length in every scored field, as the
    writer and BM25 ask for it, equals the byte Whoosh's own column reader returns."""
    from whoosh.codec.whoosh3 import LENGTHS_COLUMN
    from whoosh.util.numeric import byte_to_length

    live = idx.current_dir(index_dir)
    assert live is not None
    ix = idx.open_generation(live)
    checked = 0
    with ix.reader() as reader:
        for segment in reader.leaf_readers() if hasattr(reader, "leaf_readers") else [(reader, 0)]:
            perdoc = segment[0]._perdoc
            for name, field in ix.schema.items():
                if not field.scorable:
                    continue
                if not perdoc.has_column(f"_{name}_len"):  # no document has words in it
                    assert perdoc.doc_field_length(0, name) == 0
                    continue
                column = perdoc.column_reader(f"_{name}_len", LENGTHS_COLUMN)
                for docnum in range(perdoc.doc_count_all()):
                    byte = column[docnum]
                    assert perdoc.doc_field_length(docnum, name) == (byte_to_length(byte) if byte else None)
                    checked += 1
    assert checked >= 12  # every document, in each scored field it has words in


def test_postings_grouped_by_term_come_out_as_whoosh_sorts_them() -> None:
    """index._postings_sorted_by_term: the order a segment's postings are written in equals the
    plain sort Whoosh does, documents added in order or not."""
    import random

    from whoosh.filedb.filestore import RamStorage
    from whoosh.writing import PostingPool

    rng = random.Random(3)
    words = [w.encode() for w in ("stimul", "pain", "m1", "rtms", "sham", "dlpfc", "a", "zz")]
    for shuffled in (False, True):
        pool = PostingPool(RamStorage(), None, limitmb=64)
        items = [
            (field, word, docnum, float(rng.randint(1, 3)), bytes([rng.randint(0, 9)]))
            for docnum in range(300)
            for field in ("authors", "text", "title")
            for word in rng.sample(words, 4)
        ]
        if shuffled:
            rng.shuffle(items)
        for item in items:
            pool.add(item)
        assert list(pool.items()) == sorted(items)


def _bundled_fields(tmp_path: Path) -> list[dict[str, Any]]:
    """The bundled KB's documents, as add_document takes them."""
    from indexer import documents

    return [idx._to_fields(doc) for doc in documents.build_documents(_bundled_kb(tmp_path))]


def _segment_contents(path: Path) -> dict[str, Any]:
    """Everything a reader sees of an index: each field's terms with their postings (document,
    weight, encoded value) and statistics, stored fields, field lengths and column values."""
    from whoosh import index as whoosh_index

    ix = whoosh_index.open_dir(str(path))
    with ix.reader() as reader:
        terms: dict[tuple[str, bytes], Any] = {}
        for field, text in reader.all_terms():
            info = reader.term_info(field, text)
            postings = reader.postings(field, text)
            rows = []
            while postings.is_active():
                # A posting without a value (Existence fields) reads as None from a block and
                # as "" from a term's entry: no value, either way.
                rows.append((postings.id(), postings.weight(), postings.value() or None))
                postings.next()
            stats = (info.weight(), info.doc_frequency(), info.min_length(), info.max_length())
            terms[(field, text)] = (stats, rows)
        schema = ix.schema
        docs = list(range(reader.doc_count_all()))
        return {
            "terms": terms,
            "stored": [reader.stored_fields(d) for d in docs],
            "lengths": {f: [reader.doc_field_length(d, f) for d in docs] for f in schema.scorable_names()},
            "columns": {f: list(reader.column_reader(f)) for f in schema.names() if schema[f].column_type},
        }


def test_documents_added_directly_index_as_whooshs_own_add_document(tmp_path: Path, monkeypatch: Any) -> None:
    """index._add_document_planned and index._postings_written_by_term: over the bundled KB's
    documents and hard cases, the segment written equals the one Whoosh's own add_document and
    segment flush write, term by term, posting by posting, stored field by stored field, and
    its files are the same bytes."""

    from whoosh import index as whoosh_index
    from whoosh.writing import SegmentWriter

    docs = _bundled_fields(tmp_path)
    hard = dict(docs[0], id="hard-case")
    hard.update(
        text="Créac'h ŒUVRE straße İstanbul 経頭蓋磁気刺激 rTMS rtms RTMS 10-Hz pain pain, pain",
        authors="O'Reilly Ærø  Jr.",
        author_keys="Créac'h\tCREACH creach\r\nİSTANBUL  x x",
        identifiers="",
        concepts="a\u00a0b c",
    )
    docs.append(hard)
    # Terms in exactly two blocks, in two blocks and one posting, and in many: the blocks of
    # 128 postings the postings writer fills (past those, every tenth document has no text).
    for n in range(3 * 128 + 5):
        words = ["zzone"] + (["zztwo"] if n < 256 else []) + (["zzthree"] if n < 257 else [])
        doc = dict(docs[n % 40], id=f"many-{n}", text=" ".join(words * (1 + n % 3)))
        if n > 256 and n % 10 == 0:
            del doc["text"]
        docs.append(doc)
    planned, flush = SegmentWriter.add_document, SegmentWriter._flush_segment
    assert getattr(planned, "_planned", False) and getattr(flush, "_by_term", False)

    def write(path: Path) -> dict[str, Any]:
        path.mkdir()
        ix = whoosh_index.create_in(str(path), idx.make_schema())
        writer = ix.writer(codec=idx.codec(), compound=False)
        for doc in docs:
            writer.add_document(**doc)
        writer.commit()
        files = {f.name.partition(".")[2]: f.read_bytes() for f in path.iterdir() if f.suffix != ".toc"}
        return {**_segment_contents(path), "files": files}

    ours = write(tmp_path / "ours")
    monkeypatch.setattr(SegmentWriter, "add_document", planned._whoosh)
    monkeypatch.setattr(SegmentWriter, "_flush_segment", flush._whoosh)
    theirs = write(tmp_path / "theirs")
    assert len(ours["terms"]) > 1000
    assert ours["terms"].keys() == theirs["terms"].keys()
    for key, value in theirs["terms"].items():
        assert ours["terms"][key] == value, key
    postings = {word: len(ours["terms"][("text", word)][1]) for word in (b"zztwo", b"zzthree", b"zzone")}
    assert postings == {b"zztwo": 256, b"zzthree": 257, b"zzone": 3 * 128 + 5 - 13}
    for name in ("stored", "lengths", "columns"):
        assert ours[name] == theirs[name], name
    assert {"pst", "trm"} <= ours["files"].keys()
    assert ours["files"].keys() == theirs["files"].keys()
    for name, data in theirs["files"].items():
        assert ours["files"][name] == data, name


def test_boosted_documents_and_merged_segments_join_whooshs_pool(tmp_path: Path) -> None:
    """A writer whose segment also has postings that went Whoosh's own way (a boosted document,
    a segment merged in) writes all of them: every document is found by its terms."""
    from whoosh import index as whoosh_index
    from whoosh.query import Term

    docs = _bundled_fields(tmp_path)[:60]
    ix = whoosh_index.create_in(str(tmp_path), idx.make_schema())
    for part in (docs[:20], docs[20:40]):  # two segments, merged into the third
        writer = ix.writer(codec=idx.codec())
        for doc in part:
            writer.add_document(**doc)
        writer.commit()
    writer = ix.writer(codec=idx.codec())
    for doc in docs[40:]:
        writer.add_document(**doc)
    writer.add_document(**dict(docs[0], id="boosted", text="boostedword pain", _boost=2.0))
    writer.commit(optimize=True)
    assert len(ix._segments()) == 1  # the two earlier segments were merged into the new one
    with ix.searcher() as searcher:
        for doc in [*docs, {"id": "boosted"}]:
            assert [hit["id"] for hit in searcher.search(Term("id", doc["id"]))] == [doc["id"]]
        assert [hit["id"] for hit in searcher.search(Term("text", "boostedword"))] == ["boosted"]
        assert searcher.doc_count() == len(docs) + 1


def test_single_postings_inlined_read_as_whoosh_writes_them_in_blocks(tmp_path: Path) -> None:
    """index._inlined_postings_written: with the codec of ours, a term in one document keeps its
    posting in the term's entry; a reader sees the same terms, postings and statistics as in
    the segment Whoosh's default codec writes with a block per term."""

    from whoosh import index as whoosh_index
    from whoosh.codec.whoosh3 import W3Codec

    docs = _bundled_fields(tmp_path)

    def write(path: Path, codec: Any) -> Any:
        path.mkdir()
        writer = whoosh_index.create_in(str(path), idx.make_schema()).writer(codec=codec)
        for doc in docs:
            writer.add_document(**doc)
        writer.commit()
        return whoosh_index.open_dir(str(path))

    ours, theirs = write(tmp_path / "ours", idx.codec()), write(tmp_path / "theirs", W3Codec())
    with ours.reader() as reader:
        infos = [reader.term_info(f, t) for f, t in reader.all_terms()]
    inlined = [i for i in infos if i.is_inlined()]
    assert inlined and all(i.doc_frequency() == 1 for i in inlined)
    assert all(i.is_inlined() for i in infos if i.doc_frequency() == 1)
    assert _segment_contents(tmp_path / "ours") == _segment_contents(tmp_path / "theirs")
    from whoosh.qparser import QueryParser

    for text in ("pain", "rtms AND sham", '"motor cortex"', "lefaucheur*", "m1 OR dlpfc"):
        query = QueryParser("text", ours.schema).parse(text)
        found = []
        for ix in (ours, theirs):
            with ix.searcher() as searcher:
                found.append([(hit["id"], round(hit.score, 9)) for hit in searcher.search(query, limit=None)])
        assert found[0] == found[1] and found[0], text


def test_record_files_are_named_as_pathlib_names_them(tmp_path: Path, monkeypatch: Any) -> None:
    """records.record_files fills pathlib's cache of each path's text: it equals the text of
    the same path made by pathlib, from an absolute, a relative, the current and the root
    directory."""
    from indexer import records

    (tmp_path / "kb" / "studies").mkdir(parents=True)
    (tmp_path / "kb" / "studies" / "a.yaml").write_text("id: a\n")
    (tmp_path / "kb" / "b.yaml").write_text("id: b\n")
    monkeypatch.chdir(tmp_path)
    for kb_dir in (tmp_path / "kb", Path("kb"), Path("kb/studies"), Path("."), Path(".") / "kb"):
        listed = list(records.record_files(kb_dir))
        assert listed == sorted(kb_dir.rglob("*.yaml"))
        assert [str(p) for p in listed] == [str(Path(*p.parts)) for p in listed]
    for folder in (Path("/"), Path("."), Path("kb"), tmp_path):
        assert str(records._child(folder, "x.yaml")) == str(Path(str(folder)) / "x.yaml")


def test_documents_of_a_schema_with_vectors_or_spelling_take_whooshs_own_path(tmp_path: Path) -> None:
    """index._add_document_planned leaves to Whoosh what it does not make itself: term vectors
    and separate spelling words are written, and the schema pickled into the index's table of
    contents carries nothing of ours."""
    import pickle

    from whoosh import index as whoosh_index
    from whoosh.analysis import StemmingAnalyzer
    from whoosh.fields import ID, TEXT, Schema

    schema = Schema(
        id=ID(stored=True), body=TEXT(vector=True), spelled=TEXT(analyzer=StemmingAnalyzer(), spelling=True)
    )
    ix = whoosh_index.create_in(str(tmp_path), schema)
    writer = ix.writer()
    writer.add_document(id="a", body="motor cortex stimulation", spelled="stimulations of cortices")
    writer.commit()
    assert "_tmskb" not in repr(pickle.dumps(ix.schema))
    with whoosh_index.open_dir(str(tmp_path)).reader() as reader:
        assert reader.has_vector(0, "body")
        assert sorted(t for t, _ in reader.vector_as("weight", 0, "body")) == [
            "cortex",
            "motor",
            "stimulation",
        ]
        assert "stimulations" in [
            w.decode() if isinstance(w, bytes) else w for w in reader.lexicon("spell_spelled")
        ]


def _contents_by_id(path: Path) -> dict[str, Any]:
    """What _segment_contents reads, over every segment, with each document named by its id
    instead of its number (documents written by several processes are numbered otherwise)."""
    from whoosh import index as whoosh_index

    ix = whoosh_index.open_dir(str(path))
    with ix.reader() as reader:
        ids = {n: fields["id"] for n, fields in reader.iter_docs()}
        terms: dict[tuple[str, bytes], Any] = {}
        for field, text in reader.all_terms():
            info = reader.term_info(field, text)
            postings = reader.postings(field, text)
            rows = []
            while postings.is_active():
                rows.append((ids[postings.id()], postings.weight(), postings.value() or None))
                postings.next()
            stats = (info.weight(), info.doc_frequency(), info.min_length(), info.max_length())
            terms[(field, text)] = (stats, sorted(rows))
        schema = ix.schema
        columns = {f: list(reader.column_reader(f)) for f in schema.names() if schema[f].column_type}
        return {
            "count": reader.doc_count(),
            "terms": terms,
            "stored": {ids[n]: fields for n, fields in reader.iter_docs()},
            "lengths": {
                f: {i: reader.doc_field_length(n, f) for n, i in ids.items()} for f in schema.scorable_names()
            },
            "columns": {f: {i: values[n] for n, i in ids.items()} for f, values in columns.items()},
        }


def _bundled_kb(tmp_path: Path) -> Any:
    """The bundled KB, loaded (from a copy: loading may write beside it)."""
    import shutil

    from indexer import pipeline

    root = tmp_path / "root"
    shutil.copytree(PROJECT / "kb", root / "kb")
    shutil.copy(PROJECT / "references.bib", root / "references.bib")
    return pipeline.load(Settings.for_root(root, root / "index"))


def test_a_build_written_by_several_processes_equals_one_written_by_one(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """index._write_in_processes: each writer process makes its own share of the documents
    (documents.document_shares) and writes them into a segment; the index holds the same terms,
    postings, statistics, stored fields, lengths and columns, and the same manifest, spelling
    words and observed words, as when one process writes them all."""
    from indexer import documents

    kb = _bundled_kb(tmp_path)
    total = len(kb.references) + len(kb.records)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # the processes fork on one core too

    def build_with(threshold: int, out: Path) -> tuple[Any, dict[str, Any], dict[str, str], int]:
        monkeypatch.setattr(idx, "MULTIPROCESS_THRESHOLD", threshold)
        observed: dict[str, str] = {}
        progressed: list[int] = []
        report = idx.build_index(
            documents.iter_documents(kb),
            out,
            fingerprint="f",
            extra={},
            count=total,
            observe=observed.__setitem__,
            progress=progressed.append,
            shares=documents.document_shares(kb),
        )
        generation = idx.current_dir(out)
        assert generation is not None
        manifest = idx.read_manifest(generation)
        spelling = (generation / idx.SPELLING).read_text("utf-8")
        return report, {"hashes": manifest["hashes"], "spelling": spelling}, observed, sum(progressed)

    one, one_files, one_words, one_progress = build_with(10**9, tmp_path / "one")
    many, many_files, many_words, many_progress = build_with(1, tmp_path / "many")
    with idx.open_generation(tmp_path / "many" / idx.CURRENT).reader() as reader:
        assert len(list(reader.leaf_readers())) == idx.WRITER_PROCESSES  # a segment per writer
    assert (one.added, many.added) == (total, total) and one_progress == many_progress == total
    assert many_files == one_files and many_words == one_words and len(one_words) == total
    ours = _contents_by_id(tmp_path / "many" / idx.CURRENT)
    theirs = _contents_by_id(tmp_path / "one" / idx.CURRENT)
    assert ours["count"] == theirs["count"] == total and len(theirs["terms"]) > 1000
    assert ours["terms"].keys() == theirs["terms"].keys()
    for key, value in theirs["terms"].items():
        assert ours["terms"][key] == value, key
    for name in ("stored", "lengths", "columns"):
        assert ours[name] == theirs[name], name


def test_a_failing_writer_process_fails_the_build_and_publishes_nothing(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """An error while one writer process makes or writes its share is raised in the build, with
    that process's traceback in a note; no generation is made current and no temporary one left.
    A document id written by two processes is refused as one written twice by one."""
    from indexer import documents

    kb = _bundled_kb(tmp_path)
    monkeypatch.setattr(idx, "MULTIPROCESS_THRESHOLD", 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    shares = documents.document_shares(kb)

    def failing(k: int, n: int) -> Any:
        for i, doc in enumerate(shares(k, n)):
            if k == 1 and i == 20:
                raise LookupError("no such study: made up for this test")
            yield doc

    out = tmp_path / "index"
    with pytest.raises(LookupError, match="made up for this test") as raised:
        idx.build_index(iter(()), out, fingerprint="f", extra={}, count=10**6, shares=failing)
    assert any("in a writer process" in note and "failing" in note for note in raised.value.__notes__)
    assert idx.current_dir(out) is None and list(out.glob("*.tmp-*")) == []

    def twice(k: int, n: int) -> Any:
        return list(shares(0, n))  # every process writes share 0

    with pytest.raises(ValueError, match="duplicate document ids"):
        idx.build_index(iter(()), out, fingerprint="f", extra={}, count=10**6, shares=twice)
    assert idx.current_dir(out) is None and list(out.glob("*.tmp-*")) == []
