"""`tmskb add` and `tmskb new`: imports, duplicates, stable keys, safe and concurrent writes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import bibtexparser
import pytest
from conftest import DATA, PROJECT, build

from indexer import index as idx
from indexer import pipeline
from indexer.adding import add_references
from indexer.cli import cli
from indexer.search import Query, search
from indexer.settings import Settings

IMPORTS = DATA / "import"
TMSKB = str(Path(sys.executable).with_name("tmskb"))


def add(runner, settings: Settings, *args: str):
    return runner.invoke(
        cli, ["add", *args, "--root", str(settings.root), "--index-dir", str(settings.index_dir)]
    )


@pytest.mark.parametrize("name", ["paper.bib", "paper.ris", "paper.nbib"])
def test_each_format_adds_a_searchable_reference(runner, settings: Settings, name: str) -> None:
    build(settings)
    result = add(runner, settings, str(IMPORTS / name), "--verification", "abstract")
    assert result.exit_code == 0, result.output
    assert "searchable now" in result.output
    hits = search(settings.index_dir, Query.make("theta burst central")).hits
    assert [h.type for h in hits] == ["reference"]
    assert hits[0].fields["verification"] == "abstract"
    assert idx.is_current(settings.index_dir, pipeline.fingerprint(settings))  # nothing left to re-index


def test_unchanged_entries_stay_byte_identical_on_the_bundled_bibliography(runner, tmp_path: Path) -> None:
    root = tmp_path / "bundled"
    root.mkdir()
    (root / "references.bib").write_bytes((PROJECT / "references.bib").read_bytes())
    os.symlink(PROJECT / "kb", root / "kb")
    settings = Settings.for_root(root, tmp_path / "ix")
    before = (root / "references.bib").read_bytes()
    result = add(runner, settings, str(IMPORTS / "paper.ris"))
    assert result.exit_code == 0, result.output
    after = (root / "references.bib").read_bytes()
    assert after.startswith(before) and len(after) > len(before)
    library = bibtexparser.parse_string(after.decode())
    assert (
        not library.failed_blocks
        and len(library.entries) == len(bibtexparser.parse_string(before.decode()).entries) + 1
    )


@pytest.mark.parametrize(
    ("first", "second", "reason"),
    [
        ("paper.nbib", "paper.bib", "same first author, year and title"),
        ("paper.bib", "paper.ris", "same DOI 10.9999/tjp.2023.11"),
        ("paper.ris", "paper.nbib", "same first author, year and title"),
    ],
)
def test_the_same_paper_is_caught_across_formats(
    runner, settings: Settings, first: str, second: str, reason: str
) -> None:
    assert add(runner, settings, str(IMPORTS / first)).exit_code == 0
    before = settings.bib_path.read_bytes()
    result = add(runner, settings, str(IMPORTS / second))
    assert result.exit_code == 1
    assert "suspected duplicate of garcia2023theta" in result.stderr and reason in result.stderr
    assert settings.bib_path.read_bytes() == before


def test_similar_titles_of_different_papers_are_not_merged(runner, settings: Settings) -> None:
    assert add(runner, settings, str(IMPORTS / "paper.bib")).exit_code == 0
    result = add(runner, settings, str(IMPORTS / "similar.bib"))
    assert result.exit_code == 0, result.output
    assert "x1" in result.output  # an import's own free key is kept


def test_not_duplicate_is_remembered(runner, settings: Settings) -> None:
    assert add(runner, settings, str(IMPORTS / "paper.bib")).exit_code == 0
    assert add(runner, settings, str(IMPORTS / "paper.nbib"), "--not-duplicate").exit_code == 0
    remembered = (settings.kb_dir / "curation" / "not-duplicates.yaml").read_text()
    assert "pmid:38888888" in remembered and "garcia2023theta" in remembered
    assert pipeline.load(settings).problems == []


def test_dry_run_prints_the_entry_and_writes_nothing(runner, settings: Settings) -> None:
    before = settings.bib_path.read_bytes()
    result = add(runner, settings, str(IMPORTS / "paper.nbib"), "--dry-run")
    assert result.exit_code == 0
    assert "Would add 1 reference(s): garcia2023theta" in result.output
    assert "+  pages        = {11--19}," in result.output and "+  pmid         = {38888888}," in result.output
    assert settings.bib_path.read_bytes() == before


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("truncated.ris", "truncated.ris:1: RIS file is truncated or malformed"),
        ("notitle.ris", "notitle.ris:1: Someone 2020: TI: RIS record has no title"),
        ("baddoi.bib", "baddoi.bib:6: bad2020doi: doi: 'doi-not-valid' is not a DOI"),
        (
            "collision.bib",
            "collision.bib:1: alpha2010test: key: key collision: 'alpha2010test' is already in "
            "references.bib",
        ),
        ("notes.txt", "notes.txt:1: not a BibTeX, RIS or MEDLINE file"),
    ],
)
def test_bad_input_is_refused_with_file_line_and_record(
    runner, settings: Settings, name: str, message: str
) -> None:
    before = settings.bib_path.read_bytes()
    result = add(runner, settings, str(IMPORTS / name))
    assert result.exit_code == 1
    assert message in result.stderr.replace(str(IMPORTS) + "/", "")
    assert settings.bib_path.read_bytes() == before


def test_existing_keys_never_change_and_new_keys_follow_the_pattern(runner, settings: Settings) -> None:
    keys_before = [e.key for e in bibtexparser.parse_string(settings.bib_path.read_text()).entries]
    assert add(runner, settings, str(IMPORTS / "paper.nbib")).exit_code == 0
    keys_after = [e.key for e in bibtexparser.parse_string(settings.bib_path.read_text()).entries]
    assert keys_after == [*keys_before, "garcia2023theta"]


def _reference(i: int) -> str:
    return (
        f"@article{{proc2020n{i:02d},\n  author = {{Writer{i:02d}, Wendy}},\n"
        f"  title = {{Concurrent paper number {i}}},\n  journal = {{Test Journal}},\n  year = {{2020}}\n}}\n"
    )


def test_twenty_concurrent_adds_lose_nothing(settings: Settings, tmp_path: Path) -> None:
    build(settings)
    files = []
    for i in range(20):
        path = tmp_path / f"ref{i}.bib"
        path.write_text(_reference(i))
        files.append(path)
    args = ["--root", str(settings.root), "--index-dir", str(settings.index_dir)]
    procs = [
        subprocess.Popen([TMSKB, "add", str(f), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for f in files
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, outputs
    library = bibtexparser.parse_string(settings.bib_path.read_text())
    keys = {e.key for e in library.entries}
    assert {f"proc2020n{i:02d}" for i in range(20)} <= keys and not library.failed_blocks
    assert search(settings.index_dir, Query.make("concurrent paper")).total == 20


def test_a_killed_writer_leaves_the_old_or_the_new_file_and_no_stuck_lock(
    settings: Settings, tmp_path: Path
) -> None:
    build(settings)
    args = ["--root", str(settings.root), "--index-dir", str(settings.index_dir)]
    rng = random.Random(7)
    for attempt in range(8):
        before = settings.bib_path.read_bytes()
        path = tmp_path / f"kill{attempt}.bib"
        path.write_text(_reference(50 + attempt))
        proc = subprocess.Popen(
            [TMSKB, "add", str(path), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = settings.bib_path.read_bytes()
        assert after == before or (after.startswith(before) and after.rstrip().endswith(b"}")), attempt
        assert not bibtexparser.parse_string(after.decode()).failed_blocks
    # The lock died with the writers: a normal add goes through at once, and the index catches up.
    final = tmp_path / "final.bib"
    final.write_text(_reference(99))
    done = subprocess.run([TMSKB, "add", str(final), *args], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # A writer killed between creating and renaming its temporary file leaves it (how often
    # depends on where the kills land); the next add removes such leftovers under the lock.
    assert not list(settings.root.glob(".references.bib.*.tmp"))
    assert search(settings.index_dir, Query.make("concurrent paper number 99")).total == 1


def test_an_add_removes_the_temporary_files_of_killed_writers(runner, settings: Settings) -> None:
    stale = settings.root / ".references.bib.abc123.tmp"  # what a writer killed mid-write leaves
    stale.write_text("@article{half,\n  title = {A write that never fini")
    result = add(runner, settings, str(IMPORTS / "paper.ris"))
    assert result.exit_code == 0, result.output
    assert not stale.exists() and not list(settings.root.glob(".references.bib.*.tmp"))
    assert "garcia2023theta" in settings.bib_path.read_text()


def test_new_skeleton_is_rejected_until_filled_in(runner, settings: Settings) -> None:
    result = runner.invoke(
        cli, ["new", "study", "--ref", "beta2012test", "--id", "beta2012b", "--root", str(settings.root)]
    )
    assert result.exit_code == 0, result.output
    path = settings.kb_dir / "studies" / "beta2012b.yaml"
    text = path.read_text()
    assert text.count("#") > 25  # a comment on every field
    problems = [str(p) for p in pipeline.load(settings).problems]
    assert any("beta2012b: summary: must not be empty" in p for p in problems)
    filled = (
        text.replace("condition: ''", "condition: neuropathic-pain")
        .replace("design: ''", "design: crossover-rct")
        .replace("target: ''", "target: m1")
        .replace("protocol: ''", "protocol: hf-rtms")
        .replace("summary: ''", "summary: Filled in from the abstract.")
        .replace("location: ''", "location: abstract")
    )
    path.write_text(filled)
    assert pipeline.load(settings).problems == []


def test_new_refuses_unknown_keys_and_existing_files(runner, settings: Settings) -> None:
    unknown = runner.invoke(cli, ["new", "study", "--ref", "beta2012tset", "--root", str(settings.root)])
    assert unknown.exit_code == 1 and "did you mean 'beta2012test'?" in unknown.output
    exists = runner.invoke(cli, ["new", "study", "--ref", "beta2012test", "--root", str(settings.root)])
    assert exists.exit_code == 1 and "already exists" in exists.output


def test_added_document_equals_a_full_rebuild(runner, settings: Settings) -> None:
    from indexer import documents

    build(settings)
    assert add(runner, settings, str(IMPORTS / "paper.ris")).exit_code == 0
    generation = idx.current_dir(settings.index_dir)
    assert generation is not None
    manifest = idx.read_manifest(generation)
    rebuilt = {d["id"]: d["hash"] for d in documents.build_documents(pipeline.load(settings))}
    assert manifest["hashes"] == rebuilt


def test_rekey_renames_everywhere_and_keeps_an_alias(runner, settings: Settings) -> None:
    from app import create_app

    build(settings)
    before = settings.bib_path.read_text()
    result = runner.invoke(
        cli,
        [
            "rekey",
            "alpha2010test",
            "alpha2010motor",
            "--root",
            str(settings.root),
            "--index-dir",
            str(settings.index_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    after = settings.bib_path.read_text()
    assert after == before.replace("@article{alpha2010test,", "@article{alpha2010motor,")
    study = (settings.kb_dir / "studies" / "alpha2010test.yaml").read_text()
    assert "reference: alpha2010motor" in study
    recommendation = (settings.kb_dir / "recommendations" / "guide2020-np-m1-hf.yaml").read_text()
    assert "alpha2010test" in recommendation  # a study id, not a BibTeX key: unchanged
    assert pipeline.load(settings).problems == []
    # An old citation written later still resolves, and old links redirect.
    old = settings.kb_dir / "studies" / "beta2012test.yaml"
    old.write_text(old.read_text().replace("reference: beta2012test", "reference: alpha2010test"))
    assert pipeline.load(settings).problems == []
    client = create_app({"TESTING": True, "INDEX_DIR": str(settings.index_dir)}).test_client()
    response = client.get("/records/@alpha2010test")
    assert response.status_code == 301 and response.headers["Location"].endswith("/records/@alpha2010motor")
    assert client.get("/records/@alpha2010motor").status_code == 200


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("nosuch2020x", "free2020x", "'nosuch2020x' is not in references.bib"),
        ("alpha2010test", "beta2012test", "'beta2012test' is already in references.bib"),
        ("alpha2010test", "bad key", "'bad key' is not a usable key"),
        ("alpha2010test", "Alpha2010Motor", "not a usable key: write it as the key pattern has keys"),
        ("alpha2010test", "Alpha2010Motor", "did you mean alpha2010motor?"),
    ],
)
def test_rekey_refuses_with_a_reason(runner, settings: Settings, old: str, new: str, message: str) -> None:
    before = settings.bib_path.read_bytes()
    result = runner.invoke(cli, ["rekey", old, new, "--root", str(settings.root)])
    assert result.exit_code == 1 and message in result.output
    assert settings.bib_path.read_bytes() == before


def test_a_recurring_column_in_two_issues_is_not_a_duplicate(settings: Settings) -> None:
    """Same author, year and title ("Greetings from the Editor") but another volume or first page:
    two items of a periodical, both added; the same item twice is still held back."""
    column = (
        "@article{{price1981greet{n}, author = {{Price, Lynne}}, title = {{Greetings from the Editor}},"
        " journal = {{TUGboat}}, year = {{1981}}, volume = {{{volume}}}, pages = {{{pages}}}}}\n"
    )
    text = column.format(n="a", volume=2, pages="1--2") + column.format(n="b", volume=2, pages="54--55")
    report = add_references(settings, [("columns.bib", text)])
    assert report.written and [k for k, _ in report.added] == ["price1981greeta", "price1981greetb"]
    again = column.format(n="c", volume=2, pages="54--55")
    refused = add_references(settings, [("again.bib", again)])
    assert not refused.written and refused.refused[0][1][0][0] == "price1981greetb"
