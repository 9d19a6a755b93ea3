"""The delta build (indexer/delta.py): after an edit of a clean KB, only the records the edit
can reach are read, and the generation it writes equals a whole build from scratch.

Each scenario edits a copy of a KB, refreshes it as `tmskb index` does, and compares every
document's content hash and every JSON file of the live generation with the same sources
built into an empty index directory without any cache (test_parse_cache.generation_content).
"""

from __future__ import annotations

import random
import re
import shutil
import sys
from pathlib import Path

import pytest
from test_parse_cache import edit, fresh_content, generation_content

from indexer.build import ensure_index
from indexer.index import BuildReport
from indexer.query import Query
from indexer.search import SearchIndex
from indexer.settings import Settings

PROJECT = Path(__file__).parent.parent


def refresh(settings: Settings) -> BuildReport:
    report = ensure_index(settings)
    assert report is not None
    return report


def record_of(settings: Settings, kind: str, n: int = 0) -> Path:
    paths = [
        p for p in sorted(settings.kb_dir.rglob("*.yaml")) if f"\ntype: {kind}\n" in p.read_text("utf-8")
    ]
    return paths[n]


@pytest.fixture
def bundled(tmp_path: Path) -> Settings:
    """The bundled KB: questions, verdicts, scales and background pages linking across it."""
    root = tmp_path / "bundled"
    shutil.copytree(PROJECT / "kb", root / "kb")
    shutil.copy(PROJECT / "references.bib", root / "references.bib")
    settings = Settings.for_root(root, tmp_path / "index")
    assert refresh(settings).full
    return settings


def flip_result(path: Path) -> None:
    """A study's result (and its arms') from positive to negative or back: levels change."""
    text = path.read_text("utf-8")
    old, new = (
        ("result: positive", "result: negative")
        if "result: positive" in text
        else ("result: negative", "result: positive")
    )
    assert old in text, path
    path.write_text(text.replace(old, new), "utf-8")


@pytest.mark.parametrize(
    "change",
    [
        "study-summary",
        "study-result",
        "recommendation-statement",
        "recommendation-unlinks-a-study",
        "question-title",
        "verdict-summary",
        "knowledge-title",
    ],
)
def test_a_delta_of_the_bundled_kb_equals_a_whole_build(
    bundled: Settings, tmp_path: Path, change: str
) -> None:
    kind = change.split("-")[0]
    if change == "study-result":
        path = next(
            p
            for p in sorted((bundled.kb_dir / "studies").glob("*.yaml"))
            if "result: positive" in p.read_text("utf-8")
        )
        flip_result(path)
    elif change == "recommendation-unlinks-a-study":
        path = bundled.kb_dir / "recommendations" / "lefaucheur2014-np-m1-hf.yaml"
        edit(path, "candidate_studies: [lefaucheur2001neuroreport, ", "candidate_studies: [")
    elif kind in ("question", "knowledge"):
        path = record_of(bundled, kind)
        edit(path, "\ntitle: ", "\ntitle: Edited by the delta test ")
    else:
        path = record_of(bundled, kind)
        field = {"study": "summary", "recommendation": "statement", "verdict": "statement"}[kind]
        text = path.read_text("utf-8")
        marker = f"\n{field}: >\n" if f"\n{field}: >\n" in text else f'\n{field}: "'
        replacement = f"{marker}  Deltatestword.\n" if marker.endswith(">\n") else f"{marker}Deltatestword. "
        edit(path, marker, replacement)
    report = refresh(bundled)
    assert report.delta and report.parsed == 1 and not report.full
    assert generation_content(bundled.index_dir) == fresh_content(bundled.root, tmp_path)


def test_a_delta_reads_only_what_the_edit_reaches(tmp_path: Path) -> None:
    """A generated KB of 1,200 records, without questions: an edited study's neighbourhood is
    a few dozen records; ten edits in a row (results flipped, text changed, a study relinked)
    each equal a whole build, and each is searchable at once."""
    sys.path.insert(0, str(PROJECT / "bench"))
    try:
        from index_build import RECORDS_PER_EVIDENCE, generate
    finally:
        sys.path.remove(str(PROJECT / "bench"))
    root = tmp_path / "generated"
    gen = generate(
        root, round(1200 / RECORDS_PER_EVIDENCE), PROJECT / "kb" / "vocab", PROJECT / "kb" / "rulesets"
    )
    settings = Settings.for_root(root, tmp_path / "index")
    total = refresh(settings).records_read
    rng = random.Random(7)
    for n in range(10):
        study = root / "kb" / "studies" / f"{rng.choice(gen.studies)}.yaml"
        while n % 3 == 0 and not re.search(r"result: (positive|negative)", study.read_text("utf-8")):
            study = root / "kb" / "studies" / f"{rng.choice(gen.studies)}.yaml"
        word = f"deltaword{'abcdefghij'[n]}x"
        if n % 3 == 0:
            flip_result(study)
        edit(study, "\nsummary: ", f"\nsummary: {word} ")
        report = refresh(settings)
        assert report.delta and report.parsed == 1 and report.added == report.deleted == 0
        assert report.records_read < total / 5, (report.records_read, total)
        assert generation_content(settings.index_dir) == fresh_content(root, tmp_path)
        hits = SearchIndex(settings.index_dir).search(Query.make(text=word), cache=False).hits
        assert [h.id for h in hits] == [study.stem]


def test_a_record_with_problems_goes_the_whole_way_and_the_fix_returns_to_deltas(
    bundled: Settings, tmp_path: Path
) -> None:
    study = record_of(bundled, "study", 3)
    text = study.read_text("utf-8")
    study.write_text(text.replace("\ntype: study\n", "\ntype: study\nclass_of_its_own: 7\n"), "utf-8")
    report = refresh(bundled)
    assert not report.delta and study.stem in [item.id for item in report.left_out]
    assert generation_content(bundled.index_dir) == fresh_content(bundled.root, tmp_path)
    study.write_text(text, "utf-8")
    report = refresh(bundled)  # the last build was not clean: a whole build puts it back
    assert not report.delta and not report.left_out
    edit(study, "\nsummary: >\n", "\nsummary: >\n  Mended.\n")
    report = refresh(bundled)
    assert report.delta
    assert generation_content(bundled.index_dir) == fresh_content(bundled.root, tmp_path)


@pytest.mark.parametrize("change", ["id", "new-file", "removed", "vocabulary", "bibliography", "scale"])
def test_changes_beyond_record_content_make_a_whole_build(
    bundled: Settings, tmp_path: Path, change: str
) -> None:
    study = record_of(bundled, "study", 2)
    if change == "id":
        edit(study, f"\nid: {study.stem}\n", f"\nid: {study.stem}-renamed\n")
    elif change == "new-file":
        shutil.copy(study, study.with_name("copied-study.yaml"))
        edit(study.with_name("copied-study.yaml"), f"\nid: {study.stem}\n", "\nid: copied-study\n")
    elif change == "removed":
        study.unlink()
    elif change == "vocabulary":
        edit(sorted((bundled.kb_dir / "vocab").glob("*.yaml"))[0], "label: ", "label: Delta-test ")
    elif change == "bibliography":
        edit(bundled.bib_path, "title", "title = {Delta test title},\n  oldtitle")
    else:
        edit(record_of(bundled, "scale"), "\nname: ", "\nname: Delta test ")
    report = refresh(bundled)
    assert not report.delta
    assert generation_content(bundled.index_dir) == fresh_content(bundled.root, tmp_path)
