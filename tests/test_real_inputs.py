"""`tmskb add` over every real export in ../shared/real-inputs (see its SOURCES.md).

For each file and each way of running the add, a fresh copy of tests/data/kb receives a real
(written) add; afterwards the KB must pass what `tmskb check`, `tmskb grade` and `tmskb index`
read (pipeline.load, then the index documents). The number of files accepted must not fall
below the floors measured when the robustness work landed. Some files are broken on purpose
(parsers' error paths): they must be reported with a line, never crash, never half-import.

The files are read from the shared directory beside the project (never copied into it); when
it is missing these tests fail, they do not skip.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA

from indexer import documents, pipeline
from indexer.adding import add_references
from indexer.cli import cli
from indexer.settings import Settings


def _real_inputs() -> Path:
    """../shared/real-inputs beside the checkout (TMSKB_REAL_INPUTS overrides; the project machine
    keeps it at /work/shared/real-inputs). Missing means failing tests, never skipped ones."""
    candidates = [Path(os.environ["TMSKB_REAL_INPUTS"])] if os.environ.get("TMSKB_REAL_INPUTS") else []
    candidates += [Path(__file__).parents[2] / "shared" / "real-inputs", Path("/work/shared/real-inputs")]
    return next((c for c in candidates if c.is_dir()), candidates[0])


REAL = _real_inputs()
FILES = sorted(p for p in REAL.rglob("*") if p.is_file() and p.name != "SOURCES.md") if REAL.is_dir() else []
MODES: dict[str, dict[str, Any]] = {
    "tmskb add": {},
    "tmskb add --skip-bad": {"skip_bad": True},
    "tmskb add --skip-bad --force": {"skip_bad": True, "force": True},
}
# Files accepted per mode, measured 2026-12-02 on the 98 files (before this work: 42 accepted by a
# plain add, 7 of which left a KB that `tmskb check` rejects). Raise a floor when more pass.
FLOORS = {"tmskb add": 48, "tmskb add --skip-bad": 54, "tmskb add --skip-bad --force": 62}


@dataclass
class Outcome:
    name: str
    added: int
    skipped: int
    refused: int
    problems: list[str]
    check: list[str]  # what `tmskb check` reports after the add (must stay empty)


def run(path: Path, where: Path, options: dict[str, Any]) -> Outcome:
    root = where / "kb"
    shutil.copytree(DATA / "kb", root)
    settings = Settings.for_root(root, where / "index")
    name = str(path.relative_to(REAL))
    report = add_references(settings, [(name, path.read_bytes())], **options)
    check: list[str] = []
    if report.written:
        kb = pipeline.load(settings)
        check = [str(p) for p in kb.problems]
        if not check:
            docs = documents.build_documents(kb)  # what `tmskb index --force` indexes
            assert {d["id"] for d in docs} >= {f"@{key}" for key, _ in report.added} or docs
    elif not (report.problems or report.refused or report.skipped):
        check = ["nothing added and no reason given"]
    return Outcome(
        name,
        len(report.added) if report.written else 0,
        len({(p.path, p.line) for p in report.skipped}),
        len(report.refused),
        [str(p) for p in report.problems],
        check,
    )


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Outcome]]:
    assert REAL.is_dir(), f"{REAL} is missing: clone the shared inputs beside the project"
    found: dict[str, list[Outcome]] = {}
    for mode, options in MODES.items():
        base = tmp_path_factory.mktemp(mode.replace(" ", "_").replace("-", ""))
        found[mode] = [run(path, base / str(i), options) for i, path in enumerate(FILES)]
    return found


def test_the_real_inputs_are_there() -> None:
    assert REAL.is_dir(), f"{REAL} is missing: clone the shared inputs beside the project"
    assert (REAL / "SOURCES.md").is_file()
    assert len(FILES) >= 98, f"expected the 98 files listed in SOURCES.md, found {len(FILES)}"


@pytest.mark.parametrize("mode", MODES)
def test_no_successful_add_leaves_a_kb_that_check_rejects(outcomes, mode: str) -> None:
    broken = [f"{o.name}: {o.check[0]}" for o in outcomes[mode] if o.check]
    assert broken == []


@pytest.mark.parametrize("mode", MODES)
def test_accepted_files_do_not_fall_below_the_floor(outcomes, mode: str, capsys) -> None:
    """The figures are printed (past pytest's capture); files not accepted, with why, under -s."""
    results = outcomes[mode]
    accepted = [o for o in results if o.added]
    with capsys.disabled():
        print(
            f"\n{mode}: {len(accepted)}/{len(results)} real files accepted (floor {FLOORS[mode]}), "
            f"{sum(o.added for o in results)} entries added, {sum(o.skipped for o in results)} skipped, "
            f"{sum(1 for o in results if o.refused)} files refused as suspected duplicates, "
            f"{sum(1 for o in results if o.check)} left a KB that tmskb check rejects"
        )
    for outcome in results:
        if not outcome.added:
            why = outcome.problems or [f"{outcome.skipped} entries skipped, {outcome.refused} duplicates"]
            print(f"  not accepted: {outcome.name}: {why[0]}")
    assert len(accepted) >= FLOORS[mode]


def test_files_broken_on_purpose_are_reported_with_a_line(outcomes) -> None:
    results = {o.name: o for o in outcomes["tmskb add"]}
    expected = {
        "bib/python-bibtexparser__gbk_test.bib": ":1: not UTF-8: byte bf at column 10",
        "bib/jabref__encoding-windows-1252-but-utf-8-declared--decoding-fails.bib": ":4: not UTF-8: byte a0",
        "ris/jabref__RisImporterCorrupted.ris": ":2: 'JF' line outside a record",
        # A record runs to its ER (as rispy and JabRef read it): nine TY lines before it are one record.
        "ris/jabref__RisImporterTest1.ris": ":3: 'TY' line inside the record of line 2: its 'ER  - ' line",
        "medline/jabref__MedlinePlainImporterStringOutOfBounds.txt": ":3: not a MEDLINE line: 'SO  invalid",
    }
    for name, message in expected.items():
        assert any(p.startswith(name + message) for p in results[name].problems), results[name].problems


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("bib/jabref__crossref.bib", 4),
        ("bib/jabref__Chocolate.bib", 15),
        ("bib/pybtex__data_cyrillic.bib", 5),
        ("ris/jabref__RisImporterTest3.ris", 1),
        ("ris/jabref__RisImporterTest4b.ris", 1),
        ("ris/rispy__example_bom.ris", 0),
        ("ris/rispy__example_wos.ris", 2),
        ("medline/nbib__pmc_medlars.txt", 5),
        ("medline/nbib__pubmed-balloongui-set.nbib", 75),
    ],
)
def test_files_that_broke_the_kb_or_were_refused_before(outcomes, name: str, keys: int) -> None:
    """Each once left a KB `tmskb check` rejected (or was refused for a reason now fixed)."""
    outcome = next(o for o in outcomes["tmskb add"] if o.name == name)
    assert (outcome.added, outcome.check) == (keys, []), outcome.problems


def test_the_cli_adds_a_real_export_and_the_kb_still_checks_and_indexes(runner, settings: Settings) -> None:
    args = ["--root", str(settings.root), "--index-dir", str(settings.index_dir)]
    for name in (
        "bib/jabref__crossref.bib",
        "ris/jabref__RisImporterTest3.ris",
        "medline/nbib__pmc_medlars.txt",
    ):
        result = runner.invoke(cli, ["add", str(REAL / name), *args])
        assert result.exit_code == 0, result.output
        assert "searchable now" in result.output or "index refreshed" in result.output
    assert runner.invoke(cli, ["check", "--root", str(settings.root)]).exit_code == 0
    assert runner.invoke(cli, ["grade", "--root", str(settings.root)]).exit_code == 0
    indexed = runner.invoke(cli, ["index", "--force", *args])
    assert indexed.exit_code == 0, indexed.output
