"""Exports (indexer/export.py): golden files, character survival, round trips, CLI = web.

Golden files live in tests/golden/ (one per format, bundled KB, query GOLDEN_QUERY). After an
intended change to the export schema, regenerate them and review the diff:

    TMSKB_UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/test_export.py
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import bibtexparser
import jsonschema
import pytest
import rispy
from conftest import PROJECT, build

from app import create_app
from indexer import export as ex
from indexer.api import open_kb
from indexer.cli import cli
from indexer.search import Query
from indexer.settings import Settings

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TMSKB_UPDATE_GOLDEN") == "1"
GOLDEN_QUERY = Query.make("Obadia")  # recommendations, studies and references; accents and {rTMS}
GOLDEN_EVIDENCE = Query.make("", {"indication": ["neuropathic-pain"]})
TEXT_FORMATS = [f for f in ex.FORMATS if not ex.FORMATS[f].binary]

# Minimal CSL-JSON item schema, written from the CSL-JSON specification (csl-data.json).
CSL_NAME = {
    "type": "object",
    "properties": {
        "family": {"type": "string"},
        "given": {"type": "string"},
        "literal": {"type": "string"},
        "non-dropping-particle": {"type": "string"},
        "dropping-particle": {"type": "string"},
        "suffix": {"type": "string"},
    },
    "additionalProperties": False,
}
CSL_DATE = {
    "type": "object",
    "properties": {
        "date-parts": {
            "type": "array",
            "minItems": 1,
            "maxItems": 2,
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": ["integer", "string"]},
            },
        },
        "literal": {"type": "string"},
        "raw": {"type": "string"},
    },
}
CSL_TYPES = [
    "article",
    "article-journal",
    "article-magazine",
    "article-newspaper",
    "book",
    "chapter",
    "dataset",
    "paper-conference",
    "report",
    "thesis",
    "webpage",
]
CSL_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["id", "type"],
        "properties": {
            "id": {"type": ["string", "number"], "minLength": 1},
            "type": {"enum": CSL_TYPES},
            "author": {"type": "array", "items": CSL_NAME},
            "issued": CSL_DATE,
            "title": {"type": "string"},
            "container-title": {"type": "string"},
            "volume": {"type": ["string", "number"]},
            "issue": {"type": ["string", "number"]},
            "page": {"type": ["string", "number"]},
            "DOI": {"type": "string"},
            "PMID": {"type": "string"},
            "PMCID": {"type": "string"},
            "URL": {"type": "string"},
            "publisher": {"type": "string"},
        },
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def bundled_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = Settings.for_root(PROJECT, tmp_path_factory.mktemp("export-bundled") / "index")
    build(settings)
    return settings.index_dir


def text(index_dir: Path, query: Query, fmt: str, table: str = "records") -> str:
    return b"".join(ex.export_bytes(index_dir, query, fmt, table)).decode("utf-8")


@pytest.mark.parametrize("table", ["records", "evidence"])
@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_golden(bundled_index: Path, fmt: str, table: str) -> None:
    query = GOLDEN_QUERY if table == "records" else GOLDEN_EVIDENCE
    got = text(bundled_index, query, fmt, table)
    path = GOLDEN / f"{table}.{ex.FORMATS[fmt].extension}"
    if UPDATE:
        path.write_bytes(got.encode("utf-8"))
    assert path.is_file(), f"missing {path}; run with TMSKB_UPDATE_GOLDEN=1"
    assert got == path.read_bytes().decode("utf-8"), f"{path.name} changed; see this module's docstring"


def test_golden_view_covers_every_record_type_but_knowledge(bundled_index: Path) -> None:
    rows = list(ex.rows(bundled_index, GOLDEN_QUERY))
    assert {r["type"] for r in rows} == {"recommendation", "study", "reference"}


def test_grades_are_always_included(bundled_index: Path) -> None:
    rows = {r["id"]: r for r in ex.rows(bundled_index, GOLDEN_QUERY)}
    rec = rows["lefaucheur2014-np-m1-hf"]
    assert (rec["published_level"], rec["computed_level"], rec["computed_level_status"]) == (
        "A",
        "B",
        "computed",
    )
    assert rec["level_ruleset"] == "lefaucheur2014-as-cited" and rec["verification"]
    study = rows["andreobadia2008neurology"]
    assert (
        study["class"] == "II" and study["class_basis"] in ("stated", "computed") and study["class_ruleset"]
    )
    header = next(csv.reader(io.StringIO(text(bundled_index, GOLDEN_QUERY, "csv"))))
    assert tuple(header) == ex.RECORD_COLUMNS


def test_accents_and_protected_capitals_survive(bundled_index: Path) -> None:
    for fmt in TEXT_FORMATS:
        out = text(bundled_index, GOLDEN_QUERY, fmt)
        assert "rTMS" in out, fmt
        if fmt == "bibtex":
            assert "Andr{\\'e}-Obadia" in out and "({rTMS})" in out  # the raw entry, as stored
        else:
            assert "André-Obadia" in out, fmt


@pytest.fixture(scope="module")
def special_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled KB with CJK text and LaTeX specials in one study summary."""
    root = tmp_path_factory.mktemp("export-special")
    shutil.copy(PROJECT / "references.bib", root / "references.bib")
    shutil.copytree(PROJECT / "kb", root / "kb")
    study = root / "kb" / "studies" / "hosomi2013pain.yaml"
    source = study.read_text("utf-8")
    assert "Seven-centre" in source
    study.write_text(source.replace("Seven-centre", "Seven-centre (生蛇 & 50% p_value)", 1))
    settings = Settings.for_root(root, root / "index")
    build(settings)
    return settings.index_dir


def test_cjk_and_latex_specials(special_index: Path) -> None:
    query = Query.make("", {"type": ["study"]})
    for fmt in ("csv", "tsv", "json", "jsonl", "markdown"):
        assert "(生蛇 & 50% p_value)" in text(special_index, query, fmt), fmt
    latex = text(special_index, Query.make(""), "latex")
    assert latex.count("\\begin{longtable}") == 1 and "\\toprule" in latex and "\\bottomrule" in latex
    summary = ex.latex_escape("(生蛇 & 50% p_value) #1 $5 {x} ~ ^ \\")
    assert summary == (
        "(生蛇 \\& 50\\% p\\_value) \\#1 \\$5 \\{x\\} "
        "\\textasciitilde{} \\textasciicircum{} \\textbackslash{}"
    )
    assert "published\\_level" in latex  # column names are escaped too


def test_latex_escapes_data(special_index: Path) -> None:
    from indexer.export import LATEX_COLUMNS

    assert "citation" in LATEX_COLUMNS["records"]
    out = text(special_index, Query.make("", {"type": ["reference"]}), "latex")
    for line in out.splitlines()[6:-2]:
        body = line.removesuffix(" \\\\")
        assert "%" not in body.replace("\\%", "") and "_" not in body.replace("\\_", ""), line


def test_json_round_trip(bundled_index: Path) -> None:
    for table, query in (("records", GOLDEN_QUERY), ("evidence", GOLDEN_EVIDENCE)):
        rows = list(ex.rows(bundled_index, query, table))
        assert rows
        assert json.loads(text(bundled_index, query, "json", table)) == rows
        lines = text(bundled_index, query, "jsonl", table).splitlines()
        assert [json.loads(line) for line in lines] == rows


def test_csv_round_trip_joins_multiple_values(bundled_index: Path) -> None:
    rows = list(ex.rows(bundled_index, GOLDEN_QUERY))
    parsed = list(csv.DictReader(io.StringIO(text(bundled_index, GOLDEN_QUERY, "csv"), newline="")))
    assert [p["id"] for p in parsed] == [ex.spreadsheet_cell(r["id"]) for r in rows]
    for got, want in zip(parsed, rows, strict=True):
        assert got == {k: ex.spreadsheet_cell(v) for k, v in want.items()}  # '@key ids: see below
    # Multi-valued columns join with '; ' (a multi-arm study's protocols); candidate links are not
    # guidelines, so no study of this query has a guideline any more.
    assert any("; " in p["protocol"] for p in parsed)


def expected_keys(index_dir: Path, query: Query, table: str = "records") -> list[str]:
    keys = [k for row in ex.rows(index_dir, query, table) for k in row["references"]]
    return list(dict.fromkeys(keys))


def test_bibtex_reparses(bundled_index: Path) -> None:
    for table, query in (("records", GOLDEN_QUERY), ("evidence", GOLDEN_EVIDENCE)):
        library = bibtexparser.parse_string(text(bundled_index, query, "bibtex", table))
        assert library.failed_blocks == []
        assert [e.key for e in library.entries] == expected_keys(bundled_index, query, table)


def test_ris_rereads(bundled_index: Path) -> None:
    entries = rispy.loads(text(bundled_index, GOLDEN_QUERY, "ris"))
    assert [e["id"] for e in entries] == expected_keys(bundled_index, GOLDEN_QUERY)
    assert all(e["type_of_reference"] and e.get("year") for e in entries)
    assert "André-Obadia, Nathalie" in entries[0]["authors"]


def test_csljson_is_valid(bundled_index: Path) -> None:
    items = json.loads(text(bundled_index, Query.make(""), "csljson"))
    jsonschema.validate(items, CSL_SCHEMA)
    assert len({i["id"] for i in items}) == len(items) > 50


def test_reference_formats_deduplicate_in_hit_order(bundled_index: Path) -> None:
    keys = expected_keys(bundled_index, GOLDEN_QUERY)
    assert keys[0] == "lefaucheur2014guidelines" and len(keys) == len(set(keys))
    items = json.loads(text(bundled_index, GOLDEN_QUERY, "csljson"))
    assert [i["id"] for i in items] == keys


def test_xlsx(bundled_index: Path) -> None:
    import openpyxl

    data = b"".join(ex.export_bytes(bundled_index, GOLDEN_QUERY, "xlsx"))
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == ex.RECORD_COLUMNS
    assert [v[0] for v in values[1:]] == [r["id"] for r in ex.rows(bundled_index, GOLDEN_QUERY)]


FILTERED = ["--type", "recommendation,study", "--indication", "neuropathic-pain", "--sort", "year"]
FILTERED_URL = "type=recommendation&type=study&indication=neuropathic-pain&sort=year"


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_web_and_cli_are_byte_identical(bundled_index: Path, runner, fmt: str) -> None:
    ext = ex.FORMATS[fmt].extension
    client = create_app({"INDEX_DIR": str(bundled_index), "TESTING": True}).test_client()
    for table, page in (("records", "search"), ("evidence", "evidence")):
        response = client.get(f"/{page}.{ext}?q=rTMS&{FILTERED_URL}")
        assert response.status_code == 200
        assert response.headers["Content-Disposition"] == f'attachment; filename="tmskb-{page}.{ext}"'
        args = ["export", "rTMS", *FILTERED, "--format", fmt, "--table", table]
        result = runner.invoke(cli, [*args, "--index-dir", str(bundled_index)])
        assert result.exit_code == 0, (result.output, result.exception)
        assert result.stdout_bytes == response.data
        assert response.data


def test_cli_output_is_atomic_and_bad_queries_write_nothing(bundled_index: Path, runner, tmp_path) -> None:
    out = tmp_path / "out.csv"
    args = ["--index-dir", str(bundled_index), "--output", str(out)]
    result = runner.invoke(cli, ["export", "Obadia", "--format", "csv", *args])
    assert result.exit_code == 0 and result.stdout_bytes == b""
    assert out.read_bytes().decode("utf-8") == text(bundled_index, GOLDEN_QUERY, "csv")
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary file left
    bad = tmp_path / "bad.csv"
    for query in ("foo:bar", "indication:nosuchthing"):
        args = [query, "--format", "csv", "--index-dir", str(bundled_index), "--output", str(bad)]
        result = runner.invoke(cli, ["export", *args])
        assert result.exit_code == 1 and result.output.startswith("Error: bad query: ")
        result = runner.invoke(cli, ["export", *args[:-2]])
        assert result.exit_code == 1 and result.stdout == "" and result.output.startswith("Error: ")
    for bad_filter in (["--type", "nope"], ["--level", "Z"]):  # defect: exported a header-only file
        where = ["--index-dir", str(bundled_index), "--output", str(bad)]
        result = runner.invoke(cli, ["export", "x", "--format", "csv", *bad_filter, *where])
        assert result.exit_code == 1 and "is not a" in result.output and result.stdout == ""
    assert not bad.exists()
    result = runner.invoke(
        cli, ["export", "x", "--sort", "year", "--format", "csv", "--index-dir", str(tmp_path / "none")]
    )
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    kb = open_kb(index_dir=bundled_index)
    with pytest.raises(ex.ExportError):
        kb.write(bad, "csv", sort="bogus")
    assert not bad.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_web_bad_query_is_a_400_page_for_people_and_json_for_scripts(bundled_index: Path) -> None:
    client = create_app({"INDEX_DIR": str(bundled_index), "TESTING": True}).test_client()
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    for url in ("/search.csv?sort=bogus", "/evidence.bib?sort=bogus", "/search.json?year=1&sort=x"):
        response = client.get(url, headers={"Accept": "application/json"})
        assert response.status_code == 400
        body = response.get_json()
        assert body["ok"] is False and "sort" in body["error"]
        page = client.get(url, headers=browser)  # a download link clicked by a person
        assert page.status_code == 400 and page.mimetype == "text/html"
        assert "unknown sort" in page.get_data(as_text=True) and "Back to search" in page.get_data(
            as_text=True
        )
    assert client.get("/search.exe").status_code == 404


def test_pages_link_to_exports_of_the_current_query(bundled_index: Path) -> None:
    client = create_app({"INDEX_DIR": str(bundled_index), "TESTING": True}).test_client()
    page = client.get("/?q=Obadia&type=study&page=1").get_data(as_text=True)
    assert 'href="/search.csv?q=Obadia&amp;type=study"' in page
    assert 'href="/search.bib?q=Obadia&amp;type=study"' in page
    evidence = client.get("/evidence?indication=neuropathic-pain").get_data(as_text=True)
    assert 'href="/evidence.ris?indication=neuropathic-pain"' in evidence


def test_python_api(bundled_index: Path) -> None:
    kb = open_kb(index_dir=bundled_index)
    results = kb.search("Obadia", type="study")
    assert results.ok and results.total == 4  # André-Obadia 2006, 2008, 2011, 2014
    rows = list(kb.rows("Obadia", type=["study", "reference"]))
    assert {r["type"] for r in rows} == {"study", "reference"}
    assert "".join(str(c) for c in kb.export("csv", "Obadia")) == text(bundled_index, GOLDEN_QUERY, "csv")
    evidence = list(kb.rows(table="evidence", indication="neuropathic-pain"))
    assert evidence and all(r["indication"] == ["neuropathic-pain"] for r in evidence)


# ---------------------------------------------------------------------------------------------
# Spreadsheet safety (docs/export.md, "Opening exports in a spreadsheet") and streaming

# Reference titles as written in references.bib; each reference's row has its title in `title`.
HOSTILE_TITLES = {
    "evilhyperlink2021": '=HYPERLINK("http://evil.example","x")',
    "evilplus2021": "+cmd|' /C calc'!A0",
    "evilminus2021": "-1+2",
    "evilat2021": "@SUM(1+1)*cmd|' /C calc'!A0",
    "eviltab2021": "\t=1+2",
    "evilcr2021": "\r=1+2",
    "evilspace2021": "  =1+2",
    "plainnumber2021": "-0.22",
    "errorvalue2021": "#N/A",
}


def spreadsheet_evaluates(text: str) -> bool:
    """The test's own reading of the OWASP rule: a formula start, also after leading whitespace,
    or a leading tab, CR or NUL; text that is a plain number is a number, not a formula."""
    stripped = text.strip()
    try:
        float(stripped)
        return text[:1] in ("\t", "\r", "\0")
    except ValueError:
        return text[:1] in ("\t", "\r", "\0") or stripped[:1] in ("=", "+", "-", "@")


@pytest.fixture(scope="module")
def hostile_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/data/kb plus one reference per hostile title."""
    root = tmp_path_factory.mktemp("export-hostile")
    shutil.copytree(Path(__file__).parent / "data" / "kb", root, dirs_exist_ok=True)
    entries = "".join(
        f"\n@article{{{key},\n  author = {{Evil, Eve}},\n  title = {{{title}}},\n"
        f"  journal = {{Test Pain}},\n  year = {{2021}},\n  verification = {{abstract}}\n}}\n"
        for key, title in HOSTILE_TITLES.items()
    )
    with (root / "references.bib").open("a", encoding="utf-8", newline="") as bib:
        bib.write(entries)
    settings = Settings.for_root(root, root / "index")
    build(settings)
    return settings.index_dir


HOSTILE_QUERY = Query.make("", {"type": ["reference"]})


def stored_titles(index_dir: Path) -> dict[str, str]:
    """Reference id -> title as the index holds it (the pipeline trims leading whitespace)."""
    titles = {r["id"]: r["title"] for r in ex.rows(index_dir, HOSTILE_QUERY)}
    assert {f"@{k}" for k in HOSTILE_TITLES} <= set(titles)
    return titles


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_csv_and_tsv_neutralise_formulas(hostile_index: Path, fmt: str) -> None:
    out = text(hostile_index, HOSTILE_QUERY, fmt)
    dialect = {"delimiter": ","} if fmt == "csv" else {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    parsed = list(csv.reader(io.StringIO(out, newline=""), **dialect))
    assert tuple(parsed[0]) == ex.RECORD_COLUMNS
    evaluated = [v for row in parsed for v in row if spreadsheet_evaluates(v)]
    assert evaluated == []
    titles = {row[0]: row[2] for row in parsed[1:]}
    for doc_id, title in stored_titles(hostile_index).items():
        assert titles["'" + doc_id] == ("'" + title if spreadsheet_evaluates(title) else title)
    assert titles["'@evilhyperlink2021"] == """'=HYPERLINK("http://evil.example","x")"""
    assert titles["'@evilminus2021"] == "'-1+2" and titles["'@evilspace2021"] == "'=1+2"
    assert titles["'@plainnumber2021"] == "-0.22"  # a number stays as written
    assert titles["'@errorvalue2021"] == "#N/A"
    # The id column too: a reference id starts with '@' (docs/export.md). JSON keeps raw values.
    assert json.loads(text(hostile_index, HOSTILE_QUERY, "json"))[0]["id"].startswith("@")


def test_xlsx_text_is_never_a_formula(hostile_index: Path) -> None:
    import openpyxl

    data = b"".join(ex.export_bytes(hostile_index, HOSTILE_QUERY, "xlsx"))
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    cells = {row[0].value: row for row in sheet.iter_rows(min_row=2)}
    not_text = [
        (c.coordinate, c.value, c.data_type)
        for r in cells.values()
        for c in r
        if c.value is not None and c.data_type != "s"  # (empty strings read back as None)
    ]
    assert not_text == []  # before: the =HYPERLINK title was a formula cell ("f"), "#N/A" an error ("e")
    for doc_id, title in stored_titles(hostile_index).items():
        got = cells[doc_id][2]
        assert got.value == title  # the text itself, unchanged
        marked = spreadsheet_evaluates(title) or title == "#N/A"  # not an error value either
        assert got.data_type == "s" and got.quotePrefix is marked
    link = cells["@evilhyperlink2021"][2]
    assert link.value == '=HYPERLINK("http://evil.example","x")' and link.hyperlink is None
    assert cells["@evilhyperlink2021"][0].quotePrefix  # '@key' ids are marked as text as well


def test_numbers_stay_numbers() -> None:
    """No export column holds a float today (effect sizes are not exported); a writer is given one.

    The usual fix (an apostrophe before every cell starting with '-') would make -0.22 text."""
    import openpyxl

    cols = ("effect", "count", "as_text", "sum", "formula", "listed")
    row = {
        "effect": -0.22,
        "count": -3,
        "as_text": "-0.22",
        "sum": "-1+2",
        "formula": "=1+2",
        "listed": ["-x"],
    }
    csv_out = "".join(ex._TABLE_WRITERS["csv"]([row], cols, "records"))
    assert csv_out.splitlines()[1] == "-0.22,-3,-0.22,'-1+2,'=1+2,'-x"
    tsv_out = "".join(ex._TABLE_WRITERS["tsv"]([row], cols, "records"))
    assert tsv_out.splitlines()[1].split("\t") == ["-0.22", "-3", "-0.22", "'-1+2", "'=1+2", "'-x"]
    data = b"".join(ex._TABLE_WRITERS["xlsx"]([row], cols, "records"))
    got = list(openpyxl.load_workbook(io.BytesIO(data)).active.iter_rows(min_row=2))[0]
    assert [(c.value, c.data_type, c.quotePrefix) for c in got] == [
        (-0.22, "n", False),
        (-3, "n", False),
        ("-0.22", "s", False),
        ("-1+2", "s", True),
        ("=1+2", "s", True),
        ("-x", "s", True),
    ]


def test_xlsx_control_characters_do_not_break_the_download() -> None:
    """openpyxl raises IllegalCharacterError on them, which cut a download off half-way; a title
    read from references.bib or a record can hold one ("\\x07" in a double-quoted YAML string)."""
    import openpyxl

    row = {"title": "Bell \x07 in a title", "summary": "\x00=1+2"}
    data = b"".join(ex._TABLE_WRITERS["xlsx"]([row], ("title", "summary"), "records"))
    got = list(openpyxl.load_workbook(io.BytesIO(data)).active.iter_rows(min_row=2, values_only=True))
    assert got == [("Bell \ufffd in a title", "\ufffd=1+2")]


def test_evidence_counts_are_number_cells(bundled_index: Path) -> None:
    import openpyxl

    data = b"".join(ex.export_bytes(bundled_index, GOLDEN_EVIDENCE, "xlsx", "evidence"))
    rows = list(openpyxl.load_workbook(io.BytesIO(data)).active.iter_rows())
    col = ex.EVIDENCE_COLUMNS.index("studies_supporting")
    assert rows[0][col].value == "studies_supporting" and len(rows) > 1
    assert all(isinstance(r[col].value, int) and r[col].data_type == "n" for r in rows[1:])
    assert any(r[col].value > 0 for r in rows[1:])


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "markdown", "latex"])
def test_text_writers_stream(bundled_index: Path, fmt: str) -> None:
    """The first chunk comes out after at most 200 rows of 10,000 have been read."""
    first = next(ex.rows(bundled_index, GOLDEN_QUERY))
    consumed = 0

    def many() -> Iterator[dict]:
        nonlocal consumed
        for _ in range(10_000):
            consumed += 1
            yield first

    chunks = ex._TABLE_WRITERS[fmt](many(), ex.RECORD_COLUMNS, "records")
    while first["id"] not in next(chunks):
        pass
    assert consumed <= 200


def test_web_download_is_streamed(bundled_index: Path) -> None:
    client = create_app({"INDEX_DIR": str(bundled_index), "TESTING": True}).test_client()
    response = client.get("/search.csv?q=Obadia", buffered=False)
    try:
        assert response.status_code == 200 and response.is_streamed
        assert "Content-Length" not in response.headers
        body = b"".join(response.iter_encoded())
    finally:
        response.close()
    assert body.decode("utf-8") == text(bundled_index, GOLDEN_QUERY, "csv")
