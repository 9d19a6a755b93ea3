"""Regression tests for the defects found while redesigning the seams (issue: one field registry).

Numbers follow the issue's list; 3 and 4 (file modes, stale temporary files) are in test_fsio.py
and test_add.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer import index as idx
from indexer.api import open_kb
from indexer.cli import cli
from indexer.errors import ProblemsFound
from indexer.settings import Settings, resolve_settings
from indexer.web import create_app

PROJECT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data"


def _class_i(kb) -> set[str]:
    results = kb.search(type="study", **{"class": "I"}, page_size=100)
    assert results.ok
    return {h.id for h in results.hits}


def test_1_an_edited_rule_set_is_used_in_the_same_process(kb_root: Path, tmp_path: Path) -> None:
    kb = open_kb(kb_root, tmp_path / "index", build=True)
    assert _class_i(kb), "the test KB needs a Class I study"
    rules = kb_root / "kb" / "rulesets" / "lefaucheur2014-as-cited.yaml"
    text = rules.read_text("utf-8")
    assert "active_patients: {min: 25}, has_flaws: false}" in text
    rules.write_text(
        text.replace(
            "active_patients: {min: 25}, has_flaws: false}", "active_patients: {min: 5000}, has_flaws: false}"
        ),
        "utf-8",
    )
    kb = open_kb(kb_root, tmp_path / "index", build=True)
    assert _class_i(kb) == set()  # graded with the new rules, not a cache of the old ones


def test_2_a_damaged_vocabulary_file_is_a_503_not_a_500(index_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "index"
    shutil.copytree(index_dir, broken, symlinks=True)
    generation = idx.current_dir(broken)
    assert generation is not None
    (generation / idx.VOCAB).write_text("{not json", "utf-8")
    client = create_app({"INDEX_DIR": str(broken)}).test_client()
    for url in ("/?q=pain", "/api/search?q=pain", "/evidence", "/search.csv?q=pain"):
        response = client.get(url)
        assert response.status_code == 503, url
        assert "tmskb index --force" in response.get_data(as_text=True)
    assert str(broken) not in client.get("/api/search").get_json()["error"]  # no server path shown


def test_5_exports_do_not_fill_the_result_cache(index_dir: Path) -> None:
    kb = open_kb(index_dir=index_dir)
    kb.search("pain")  # open the generation and cache one interactive query
    cache = kb.index.generation().cache
    cached = list(cache)
    rows = list(kb.rows(""))
    assert len(rows) > 1
    b"".join(kb.export_bytes("csv", "pain"))
    list(kb.rows("", table="evidence"))
    assert list(kb.index.generation().cache) == cached


def test_6_the_library_raises_problems_instead_of_exiting(tmp_path: Path) -> None:
    root = tmp_path / "broken"
    shutil.copytree(DATA / "broken", root)
    with pytest.raises(ProblemsFound) as caught:
        open_kb(root, tmp_path / "index", build=True)
    assert len(caught.value.problems) > 5
    assert all(p.path and p.line >= 1 for p in caught.value.problems)


def test_7_an_empty_index_dir_variable_counts_as_unset(
    kb_root: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner
) -> None:
    assert (
        resolve_settings(kb_root, environ={"TMSKB_INDEX_DIR": ""}).index_dir
        == (kb_root / "instance" / "index").resolve()
    )
    assert (
        resolve_settings(environ={"TMSKB_ROOT": str(kb_root), "TMSKB_INDEX_DIR": "  "}).index_dir
        == (kb_root / "instance" / "index").resolve()
    )
    bundled = resolve_settings(PROJECT).index_dir
    mtime = (bundled / idx.CURRENT).lstat().st_mtime_ns if (bundled / idx.CURRENT).is_symlink() else None
    monkeypatch.setenv("TMSKB_INDEX_DIR", "")
    result = runner.invoke(cli, ["index", "--root", str(kb_root)])
    assert result.exit_code == 0, result.output
    assert idx.current_dir(kb_root / "instance" / "index") is not None
    after = (bundled / idx.CURRENT).lstat().st_mtime_ns if (bundled / idx.CURRENT).is_symlink() else None
    assert after == mtime  # the bundled KB's index was not touched


def _tmskb() -> list[str]:
    return [sys.executable, "-m", "indexer"]


def test_8_a_closed_pipe_ends_an_export_quietly(index_dir: Path) -> None:
    """`tmskb export ... | head` used to end with 'Error: [Errno 32] Broken pipe'."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, 1031, 4096)  # F_SETPIPE_SZ: a small pipe, so the export outgrows it
    proc = subprocess.Popen(
        [*_tmskb(), "export", "", "--format", "jsonl", "--index-dir", str(index_dir)],
        stdout=write_end,
        stderr=subprocess.PIPE,
        cwd=PROJECT,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        assert reader.read(100)  # like `head -c 100`, then the reader goes away
    _, stderr = proc.communicate(timeout=60)
    assert b"Broken pipe" not in stderr and b"Traceback" not in stderr, stderr
    assert proc.returncode == 141


def test_8_a_bad_filter_or_a_typo_exports_nothing_and_fails(
    index_dir: Path, runner: CliRunner, tmp_path
) -> None:
    out = tmp_path / "out.csv"
    where = ["--index-dir", str(index_dir), "--output", str(out)]
    result = runner.invoke(cli, ["export", "", "--level", "Z", "--format", "csv", *where])
    assert result.exit_code == 1 and "'Z' is not a level value" in result.output
    # A typo with a correction exports the corrected search, like the page (issue 14); a word
    # nothing matches and nothing corrects still fails before anything is written.
    result = runner.invoke(cli, ["export", "xqzvwk", "--format", "csv", *where])
    assert result.exit_code == 1 and "no records match" in result.output
    assert not out.exists()
    result = runner.invoke(cli, ["export", "xqzvwk", "--format", "csv", "--allow-empty", *where])
    assert result.exit_code == 0 and out.read_text("utf-8").count("\n") == 1  # the header only


def test_the_json_shape_is_versioned(index_dir: Path, runner: CliRunner) -> None:
    client = create_app({"INDEX_DIR": str(index_dir)}).test_client()
    api = client.get("/api/search?q=pain").get_json()
    result = runner.invoke(cli, ["search", "pain", "--format", "json", "--index-dir", str(index_dir)])
    cli_json = json.loads(result.output)
    assert api["version"] == cli_json["version"] == 1
    assert set(api) == set(cli_json)
    assert api["total"] == cli_json["total"]


def test_settings_precedence_is_one_order(tmp_path: Path) -> None:
    env = {"TMSKB_ROOT": str(tmp_path / "env-root"), "TMSKB_INDEX_DIR": str(tmp_path / "env-index")}
    assert resolve_settings(environ=env).root == (tmp_path / "env-root").resolve()
    assert resolve_settings(environ=env).index_dir == (tmp_path / "env-index").resolve()
    explicit = resolve_settings(tmp_path / "opt-root", tmp_path / "opt-index", environ=env)
    assert explicit.root == (tmp_path / "opt-root").resolve()
    assert explicit.index_dir == (tmp_path / "opt-index").resolve()
    assert explicit.bib_path == (tmp_path / "opt-root" / "references.bib").resolve()
    app = create_app({"INDEX_DIR": str(tmp_path / "config-index")})
    assert app.extensions["tmskb"].index.index_dir == tmp_path / "config-index"
    assert Settings.for_root(tmp_path).index_dir == (tmp_path / "instance" / "index").resolve()
