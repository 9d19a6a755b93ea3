"""The parse cache and incremental rebuilds: a cached build must equal a fresh one.

Every scenario edits a copy of the test KB, refreshes its index through ensure_index (the path
`tmskb index` takes, with the cache under the index directory), then builds the same sources
into an empty index directory with no cache, and compares the two generations: every
document's content hash (manifest.json) and every JSON file stored beside the index. What was
parsed is counted from the build report.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from indexer import index as idx
from indexer import parsecache
from indexer.build import ensure_index
from indexer.query import Query
from indexer.search import SearchIndex
from indexer.settings import Settings

DATA = Path(__file__).parent / "data"
PROJECT = Path(__file__).parent.parent
VOLATILE = ("built", "generation", "generation_number")


def generation_content(index_dir: Path) -> dict[str, object]:
    """The JSON files of the live generation, without what differs between any two builds."""
    live = idx.current_dir(index_dir)
    assert live is not None
    out: dict[str, object] = {}
    for path in sorted(live.glob("*.json")):
        data = json.loads(path.read_text("utf-8"))
        if path.name == idx.MANIFEST:
            data = {k: v for k, v in data.items() if k not in VOLATILE}
        out[path.name] = data
    return out


def fresh_content(root: Path, tmp_path: Path) -> dict[str, object]:
    """The same sources built from scratch, with no cache (the cache file is removed after)."""
    fresh = tmp_path / "fresh-index"
    shutil.rmtree(fresh, ignore_errors=True)
    report = ensure_index(Settings.for_root(root, fresh))
    assert report is not None and report.parse_reused == 0
    return generation_content(fresh)


@pytest.fixture
def built(settings: Settings) -> Settings:
    report = ensure_index(settings)
    assert report is not None and report.full
    return settings


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text("utf-8")
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1), "utf-8")


def a_study(settings: Settings) -> Path:
    return next(
        p for p in sorted(settings.kb_dir.rglob("*.yaml")) if "\ntype: study\n" in p.read_text("utf-8")
    )


def record_files(settings: Settings) -> int:
    from indexer.records import record_files as files

    return len(list(files(settings.kb_dir)))


def test_cold_build_parses_everything_and_a_forced_rebuild_nothing(built: Settings, tmp_path: Path) -> None:
    report = ensure_index(built, force=True)
    assert report is not None and report.full
    assert (report.parsed, report.parse_reused) == (0, record_files(built) + 1)  # + references.bib
    assert generation_content(built.index_dir) == fresh_content(built.root, tmp_path)


def test_editing_one_study_reparses_only_that_file(built: Settings, tmp_path: Path) -> None:
    study = a_study(built)
    edit(study, '\nsummary: "', '\nsummary: "Zebrafishword seen in the cache test. ')
    report = ensure_index(built)
    assert report is not None and not report.full
    assert report.parsed == 1 and report.parse_reused == record_files(built)
    assert (report.added, report.updated, report.deleted) == (0, 1, 0)
    assert report.documents < report.unchanged  # only what the edit can reach was rebuilt
    assert generation_content(built.index_dir) == fresh_content(built.root, tmp_path)
    results = SearchIndex(built.index_dir).search(Query.make(text="zebrafishword"), cache=False)
    assert [h.id for h in results.hits] == [study.stem]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param("recommendation", id="recommendation_links_another_study"),
        pytest.param("bib", id="reference_title_edited"),
        pytest.param("remove", id="study_removed"),
        pytest.param("broken", id="record_with_problems_left_out"),
        pytest.param("vocab", id="vocabulary_edited"),
    ],
)
def test_incremental_build_equals_fresh_build(built: Settings, tmp_path: Path, change: str) -> None:
    files = sorted(built.kb_dir.rglob("*.yaml"))
    if change == "recommendation":
        rec = next(p for p in files if "\ntype: recommendation\n" in p.read_text("utf-8"))
        edit(rec, "\nstatement:", "\nnotes: relinked in the cache test\nstatement:")
    elif change == "bib":
        edit(
            built.bib_path,
            "title",
            "title = {Cache test title},\n  oldtitle",
        )
    elif change == "remove":
        a_study(built).unlink()
    elif change == "broken":
        edit(a_study(built), "\ntype: study\n", "\ntype: study\nclass_of_its_own: 7\n")
    else:
        vocab = sorted((built.kb_dir / "vocab").glob("*.yaml"))[0]
        edit(vocab, "label: ", "label: Cache-test ")
    report = ensure_index(built)
    assert report is not None
    assert report.parsed == (1 if change in ("recommendation", "bib", "broken") else 0)
    assert generation_content(built.index_dir) == fresh_content(built.root, tmp_path)


def test_a_bibliography_edited_and_restored_in_one_process_is_indexed_as_it_is_each_time(
    built: Settings, tmp_path: Path
) -> None:
    """The process keeps the last bibliography it read (parsecache._LAST_BIB) only for the bytes
    it was read from: edited, restored, edited again in one process, each build equals a fresh
    build of the file as it is then, and a study edit in between keeps the edited titles."""
    original = built.bib_path.read_bytes()
    edit(built.bib_path, "title", "title = {Kept bibliography test},\n  oldtitle")
    edited = built.bib_path.read_bytes()
    for data in (edited, original, edited):
        built.bib_path.write_bytes(data)
        assert ensure_index(built) is not None
        assert generation_content(built.index_dir) == fresh_content(built.root, tmp_path)
    edit(a_study(built), '\nsummary: "', '\nsummary: "Edited beside the kept bibliography. ')
    report = ensure_index(built)
    assert report is not None and report.delta
    content = generation_content(built.index_dir)
    assert content == fresh_content(built.root, tmp_path)
    assert "Kept bibliography test" in json.dumps(content)


def test_a_bibliography_another_process_indexed_is_not_taken_from_this_ones_memory(
    built: Settings, tmp_path: Path
) -> None:
    """This process keeps the bibliography it read; another process then edits references.bib
    and indexes it (the cache now holds the new text). The next edit here reads the new text."""
    import subprocess
    import sys

    edit(built.bib_path, "title", "title = {Indexed by another process},\n  oldtitle")
    script = (
        "import sys; from pathlib import Path; from indexer.build import ensure_index; "
        "from indexer.settings import Settings; "
        "ensure_index(Settings.for_root(Path(sys.argv[1]), Path(sys.argv[2])))"
    )
    subprocess.run([sys.executable, "-c", script, str(built.root), str(built.index_dir)], check=True)
    edit(a_study(built), '\nsummary: "', '\nsummary: "Edited after the other process. ')
    report = ensure_index(built)
    assert report is not None and report.delta
    content = generation_content(built.index_dir)
    assert content == fresh_content(built.root, tmp_path)


def test_a_file_rewritten_with_the_same_size_and_mtime_is_parsed_again(
    built: Settings, tmp_path: Path
) -> None:
    study = a_study(built)
    before = study.stat()
    text = study.read_text("utf-8")
    index = text.index("\nsummary: ") + len("\nsummary: ") + 5
    study.write_text(text[:index] + ("X" if text[index] != "X" else "Y") + text[index + 1 :], "utf-8")
    os.utime(study, ns=(before.st_atime_ns, before.st_mtime_ns))  # as some copy tools do
    assert study.stat().st_size == before.st_size and study.stat().st_mtime_ns == before.st_mtime_ns
    report = ensure_index(built)
    assert report is not None and report.parsed == 1  # the inode's change time gave it away
    assert generation_content(built.index_dir) == fresh_content(built.root, tmp_path)


def test_parses_of_another_code_version_are_not_used(built: Settings) -> None:
    with sqlite3.connect(built.index_dir / parsecache.FILENAME) as db:
        db.execute("UPDATE parsed SET code = 'some older parser'")
    report = ensure_index(built, force=True)
    assert report is not None and report.parsed == record_files(built) + 1 and report.parse_reused == 0


def test_a_damaged_cache_file_is_replaced_and_the_build_goes_on(built: Settings, tmp_path: Path) -> None:
    (built.index_dir / parsecache.FILENAME).write_bytes(b"not a database" * 100)
    report = ensure_index(built, force=True)
    assert report is not None and report.full
    assert generation_content(built.index_dir) == fresh_content(built.root, tmp_path)
    assert ensure_index(built, force=True) is not None  # and the next build has a cache again


def test_strict_still_refuses_and_problems_are_still_named(built: Settings) -> None:
    from indexer.errors import ProblemsFound

    study = a_study(built)
    edit(study, "\ntype: study\n", "\ntype: study\nclass_of_its_own: 7\n")
    with pytest.raises(ProblemsFound):
        ensure_index(built, strict=True)
    report = ensure_index(built)  # from the cache this time: the same problem is named
    assert report is not None and report.parsed == 0
    assert study.stem in [item.id for item in report.left_out]


@pytest.mark.parametrize("kind", ["study", "recommendation", "question", "verdict"])
def test_bundled_kb_edits_equal_fresh_builds(tmp_path: Path, kind: str) -> None:
    """The bundled KB has questions, verdicts, scales and background pages linking across it."""
    root = tmp_path / "bundled"
    shutil.copytree(PROJECT / "kb", root / "kb")
    shutil.copy(PROJECT / "references.bib", root / "references.bib")
    settings = Settings.for_root(root, tmp_path / "index")
    assert ensure_index(settings) is not None
    path = next(
        p for p in sorted(settings.kb_dir.rglob("*.yaml")) if f"\ntype: {kind}\n" in p.read_text("utf-8")
    )
    if kind == "question":
        edit(path, '\ntitle: "', '\ntitle: "Edited by the cache test: ')
    else:
        field = "summary" if kind == "study" else "statement"
        edit(path, f"\n{field}: >\n", f"\n{field}: >\n  Edited by the cache test.\n")
    report = ensure_index(settings)
    assert report is not None and report.parsed == 1 and not report.full
    assert generation_content(settings.index_dir) == fresh_content(root, tmp_path)


def test_a_refresh_leaves_no_knowledge_base_for_the_cyclic_collector(built: Settings) -> None:
    """Whoosh's FileStorage.create kept an exception whose traceback held every caller's frame,
    so each build's whole KB survived until the cyclic GC ran (1.9 s at 100k records)."""
    import gc

    from indexer.pipeline import KB

    study = next((built.kb_dir / "studies").glob("*.yaml"))
    study.write_text(study.read_text("utf-8") + "\n# edited\n", "utf-8")
    gc.collect()
    gc.disable()
    try:
        report = ensure_index(built)
        assert report is not None and not report.full
        left = [o for o in gc.get_objects() if isinstance(o, KB)]
    finally:
        gc.enable()
    assert left == []


def test_an_edit_writes_its_memo_results_beside_the_memo_and_many_rewrite_it(
    built: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 100k records a memo is tens of MB: one edit must not write all of it again (in a
    whole build: the delta build of a clean KB does not read the memos at all)."""
    from indexer import delta

    monkeypatch.setattr(delta, "DELTA_MAX", 0)

    def memo_rows() -> dict[str, int]:
        with sqlite3.connect(built.index_dir / parsecache.FILENAME) as db:
            rows = db.execute("SELECT key, length(value) FROM parsed WHERE sha = ''").fetchall()
        return {
            key.split("\0")[0] + ("+recent" if key.endswith("\0recent") else ""): size for key, size in rows
        }

    before = memo_rows()
    assert "checks" in before and "classes" in before and "checks+recent" not in before
    study = a_study(built)
    edit(study, "\nsummary: ", "\nsummary: First memo edit. ")
    assert ensure_index(built) is not None
    after = memo_rows()
    assert after["checks"] == before["checks"] and after["classes"] == before["classes"]  # not rewritten
    assert "checks+recent" in after and "classes+recent" in after
    assert generation_content(built.index_dir) == fresh_content(built.root, tmp_path)

    monkeypatch.setattr(parsecache, "MEMO_RECENT_MAX", 0)  # the next edit rewrites each memo
    edit(study, "\nsummary: ", "\nsummary: Second memo edit. ")
    assert ensure_index(built) is not None
    again = memo_rows()
    assert "checks+recent" not in again and "classes+recent" not in again
    assert sorted(again) == sorted(before)  # one memo per name: nothing piles up
    assert generation_content(built.index_dir) == fresh_content(built.root, tmp_path)


def test_results_of_other_code_versions_are_dropped(built: Settings) -> None:
    with sqlite3.connect(built.index_dir / parsecache.FILENAME) as db:
        db.execute("UPDATE parsed SET code = 'some older parser'")
    assert ensure_index(built, force=True) is not None
    with sqlite3.connect(built.index_dir / parsecache.FILENAME) as db:
        codes = {code for (code,) in db.execute("SELECT DISTINCT code FROM parsed")}
    assert codes == {parsecache.CODE_VERSION}


def test_records_read_from_the_cache_equal_fresh_ones_and_defer_their_text(built: Settings) -> None:
    import pickle

    from indexer.models import Study
    from indexer.records import read_record_file

    path = a_study(built)
    fresh = read_record_file(path, str(path))[0]
    assert isinstance(fresh, Study)
    back = pickle.loads(pickle.dumps(fresh))
    assert "summary" not in back.__dict__ and back.path == fresh.path  # eager fields only
    assert back.summary == fresh.summary and "summary" in back.__dict__  # read on first access
    assert back == fresh and hash(back) == hash(fresh) and repr(back) == repr(fresh)
    twice = pickle.loads(pickle.dumps(pickle.loads(pickle.dumps(fresh))))  # pickled while deferred
    assert twice == fresh and twice.line_of("summary") == fresh.line_of("summary")
    assert not hasattr(back, "no_such_field")


def test_record_files_lists_what_rglob_lists(tmp_path: Path) -> None:
    from indexer.records import record_files as files

    kb = tmp_path / "kb"
    for rel in ("studies/b.yaml", "studies/a.yaml", "studies/deep/er/c.yaml", "Z.yaml", "studies/n.yml"):
        (kb / rel).parent.mkdir(parents=True, exist_ok=True)
        (kb / rel).write_text("id: x\n")
    (kb / "vocab").mkdir()
    (kb / "vocab" / "v.yaml").write_text("x: 1\n")
    (kb / "odd.yaml").mkdir()  # a directory named like a record file, as rglob lists it
    (kb / "odd.yaml" / "inner.yaml").write_text("id: y\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "linked.yaml").write_text("id: z\n")
    (kb / "link").symlink_to(outside, target_is_directory=True)  # not followed, as rglob
    (kb / "file-link.yaml").symlink_to(outside / "linked.yaml")
    expected = [
        p for p in sorted(kb.rglob("*.yaml"), key=lambda p: p.parts) if p.parts[len(kb.parts)] != "vocab"
    ]
    assert list(files(kb)) == expected
    assert kb / "studies" / "deep" / "er" / "c.yaml" in expected and kb / "file-link.yaml" in expected


def test_a_cold_or_forced_build_hashes_what_it_parsed_and_the_next_run_is_a_no_op(
    settings: Settings,
) -> None:
    """Without a generation to compare with (or with --force) the fingerprint is taken from the
    hashes of the bytes parsed, not from a pass of its own: it must equal what the next run,
    stat-based, computes from the same files."""
    first = ensure_index(settings)
    assert first is not None and first.full
    assert ensure_index(settings) is None
    assert ensure_index(settings, force=True) is not None
    assert ensure_index(settings) is None
    live = idx.current_dir(settings.index_dir)
    assert live is not None
    from indexer import pipeline

    assert idx.read_manifest(live)["fingerprint"] == pipeline.fingerprint(settings)  # read, not cached
