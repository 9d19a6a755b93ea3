"""The same parameters give the same answer on the web page, the JSON API, the CLI and the Python API.

Each case is a list of (name, value) URL parameters; the CLI gets the same as options (`--level A`),
the Python API as keyword arguments. A case either has a total everywhere (and the totals agree) or
is an error everywhere.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner

from indexer.api import open_kb
from indexer.build import ensure_index
from indexer.cli import cli
from indexer.settings import Settings
from indexer.web import create_app

PROJECT = Path(__file__).parent.parent

CASES: list[list[tuple[str, str]]] = [
    [],
    [("q", "pain")],
    [("q", "neuropathic pain")],
    [("q", "shingles")],
    [("q", "生蛇")],
    [("q", "douleur neuropathique")],
    [("q", '"motor cortex"')],
    [("q", "pain NOT fibromyalgia")],
    [("q", "pain OR depression")],
    [("q", "level:A")],
    [("q", "indication:PHN")],
    [("q", "nosuchwordanywhere")],
    [("level", "A")],
    [("level", "a")],
    [("level", "A"), ("level", "B")],
    [("level", "A,B")],
    [("level", "A, B")],
    [("level", "Z")],
    [("level", "")],
    [("type", "study")],
    [("type", "study,recommendation")],
    [("type", "study"), ("type", "reference")],
    [("type", "nope")],
    [("indication", "phn,crps")],
    [("indication", "phn"), ("indication", "crps")],
    [("indication", "PHN")],
    [("indication", "shingles")],
    [("indication", "neuropathic-pain")],
    [("indication", "nosuchthing")],
    [("indication", "")],
    [("class", "II")],
    [("class", "ii,iii")],
    [("class", "V")],
    [("year", "2020")],
    [("year", "2014,2020")],
    [("year", "twenty")],
    [("verification", "abstract")],
    [("verification", "as-cited,full-text")],
    [("direction", "efficacy")],
    [("q", "pain"), ("type", "study"), ("class", "III")],
    [("q", "rTMS"), ("level", "A,B"), ("indication", "neuropathic-pain")],
    [("q", "pain"), ("sort", "year")],
    [("q", "pain"), ("sort", "relevance")],
    [("q", "pain"), ("sort", "random")],
    [("q", "levle:A")],
    [("q", "NOT AND pain")],
    [("q", "pain"), ("page", "2")],
    [("q", "pain"), ("page", "0")],
    [("q", "pain"), ("page", "abc")],
    [("q", "pain"), ("page_size", "5")],
    [("q", "pain"), ("page_size", "500")],
    # the caps on filter values (issue 17): 50 per filter, 100 in one request
    [("year", str(1900 + i)) for i in range(50)],
    [("year", str(1900 + i)) for i in range(51)],
    [("year", ",".join(str(1900 + i) for i in range(51)))],
    [("year", str(1900 + i)) for i in range(50)] + [("guideline", f"g{i}") for i in range(50)],
    [("year", str(1900 + i)) for i in range(50)]
    + [("guideline", f"g{i}") for i in range(50)]
    + [("source", "s")],
    # issue 14: typos run their correction, field words are filters, identifiers, authors
    [("q", "neuropathc pian")],
    [("q", "depresion")],
    [("q", "depresion"), ("level", "A")],
    [("q", "level A")],
    [("q", "level A neuropathic pain")],
    [("q", "class II studies fibromyalgia")],
    [("q", "neuropathic pain trials since 2019")],
    [("q", "2015-2020")],
    [("q", "Cochrane")],
    [("q", "third-line")],
    [("q", "PMID: 31593002")],
    [("q", "doi:10.1016/j.pain.2013.03.016")],
    [("q", "https://doi.org/10.1111/pme.12832")],
    [("q", "PMC4969102")],
    [("q", "author:thomas")],
    [("q", "André-Obadia N")],
    [("q", "does rTMS work for sciatica")],
    [("q", "x ANDNOT ANDNOT y")],
]
# The flags that switch a reading off (?nocorrect=1, ?literal=1): the web, the API and the Python
# API (the CLI has no option for them yet; a quoted phrase is never corrected or read as a filter).
FLAG_CASES: list[list[tuple[str, str]]] = [
    [("q", "neuropathc pian"), ("nocorrect", "1")],
    [("q", "neuropathc pian"), ("nocorrect", "0")],
    [("q", "level A"), ("literal", "1")],
    [("q", "level A"), ("literal", "true")],
    [("q", "level A neuropathic pain"), ("literal", "1"), ("nocorrect", "1")],
]


def _case_id(case: list[tuple[str, str]]) -> str:
    text = urlencode(case) or "(none)"
    return text if len(text) <= 60 else f"{text[:30]}...({len(case)} params, {text.count('%2C')} commas)"


def _cli_args(case: list[tuple[str, str]]) -> list[str]:
    text = next((v for k, v in case if k == "q"), "")
    args = ["search", text] if text else ["search"]
    for name, value in case:
        if name != "q":
            args += [f"--{name.replace('_', '-')}", value]
    return args


def _web_total(client, case) -> int | None:
    response = client.get("/?" + urlencode(case))
    html = response.get_data(as_text=True)
    if response.status_code == 400:
        assert 'id="query-error"' in html
        return None
    assert response.status_code == 200
    match = re.search(r'id="result-count"[^>]*>\s*(\d+) result', html)
    assert match, html[:500]
    return int(match.group(1))


def _api_total(client, case) -> int | None:
    response = client.get("/api/search?" + urlencode(case))
    body = response.get_json()
    if response.status_code == 400:
        assert body["ok"] is False and body["error"]
        return None
    assert response.status_code == 200 and body["ok"]
    return int(body["total"])


def _cli_total(runner: CliRunner, index_dir: Path, case) -> int | None:
    result = runner.invoke(cli, [*_cli_args(case), "--format", "json", "--index-dir", str(index_dir)])
    if result.exit_code != 0:
        assert result.exit_code in (1, 2) and "Error" in result.output, result.output
        return None
    return int(json.loads(result.output)["total"])


def _python_total(index_dir: Path, case) -> int | None:
    kb = open_kb(index_dir=index_dir)
    filters: dict[str, list[str]] = {}
    text, sort, page, size = "", "evidence", "1", "20"
    for name, value in case:
        if name == "q":
            text = value
        elif name == "sort":
            sort = value
        elif name in ("page", "page_size"):
            page, size = (value, size) if name == "page" else (page, value)
        else:
            filters.setdefault(name, []).append(value)
    from indexer.api import _query

    results = kb.index.search(_query(text, sort, filters, page, size))  # type: ignore[arg-type]
    return results.total if results.ok else None


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled KB's index: real records, vocabulary synonyms in three languages."""
    settings = Settings.for_root(PROJECT, tmp_path_factory.mktemp("parity") / "index")
    ensure_index(settings)
    return settings.index_dir


@pytest.fixture(scope="module")
def client(index_dir: Path):
    return create_app({"INDEX_DIR": str(index_dir), "TESTING": True}).test_client()


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30
    assert any(v == "" for case in CASES for _, v in case)  # empty values
    assert any("," in v for case in CASES for _, v in case)  # comma-separated values
    assert any(len({k for k, _ in c}) < len(c) for c in CASES)  # repeated parameters


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_web_api_cli_and_python_agree(client, index_dir: Path, case) -> None:
    runner = CliRunner()
    totals = {
        "web": _web_total(client, case),
        "api": _api_total(client, case),
        "cli": _cli_total(runner, index_dir, case),
        "python": _python_total(index_dir, case),
    }
    assert len(set(totals.values())) == 1, totals


@pytest.mark.parametrize("case", FLAG_CASES, ids=_case_id)
def test_flags_agree_on_web_api_and_python(client, index_dir: Path, case) -> None:
    totals = {
        "web": _web_total(client, case),
        "api": _api_total(client, case),
        "python": _python_total(index_dir, case),
    }
    assert len(set(totals.values())) == 1, totals


def test_a_correction_is_reported_alike_everywhere(client, index_dir: Path) -> None:
    """'Showing results for neuropathic pain' on the page; corrected_from/corrected_to in the
    JSON of the API and of the CLI and on the Python API's Results."""
    page = client.get("/?q=neuropathc+pian").get_data(as_text=True)
    assert "Showing results for <strong>neuropathic pain</strong>" in page
    api = client.get("/api/search?q=neuropathc+pian").get_json()
    result = CliRunner().invoke(
        cli, ["search", "neuropathc pian", "--format", "json", "--index-dir", str(index_dir)]
    )
    cli_json = json.loads(result.output)
    python = open_kb(index_dir=index_dir).search("neuropathc pian")
    for got in (
        api,
        cli_json,
        {"corrected_from": python.corrected_from, "corrected_to": python.corrected_to},
    ):
        assert (got["corrected_from"], got["corrected_to"]) == ("neuropathc pian", "neuropathic pain")
    assert api["total"] == cli_json["total"] == python.total > 0


def test_comma_separated_values_mean_or_everywhere(client, index_dir: Path) -> None:
    """The bug that started this: `?indication=phn,crps` found 0 on the web and 3 on the CLI."""
    both = _api_total(client, [("indication", "phn,crps")])
    phn = _api_total(client, [("indication", "phn")])
    crps = _api_total(client, [("indication", "crps")])
    assert both is not None and phn is not None and crps is not None
    assert both >= max(phn, crps) > 0


CAPPED = {
    "per filter": (
        [("year", str(1900 + i)) for i in range(51)],
        "too many values for the year filter: 51, at most 50 per filter; "
        "choose fewer values or search for them instead",
    ),
    "per request": (
        [("year", str(1900 + i)) for i in range(50)]
        + [("guideline", f"g{i}") for i in range(50)]
        + [("source", "s")],
        "too many filter values: 101, at most 100 in one request; remove some filters",
    ),
}


@pytest.mark.parametrize("which", CAPPED)
def test_too_many_filter_values_give_the_same_message_everywhere(client, index_dir: Path, which: str) -> None:
    case, message = CAPPED[which]
    page = client.get("/?" + urlencode(case))
    assert page.status_code == 400 and message in page.get_data(as_text=True)
    api = client.get("/api/search?" + urlencode(case))
    assert api.status_code == 400 and api.get_json()["error"] == message
    result = CliRunner().invoke(cli, [*_cli_args(case), "--index-dir", str(index_dir)])
    assert result.exit_code == 1 and f"Error: bad query: {message}" in result.output
    filters: dict[str, Any] = {}
    for name, value in case:
        filters.setdefault(name, []).append(value)
    assert open_kb(index_dir=index_dir).search(**filters).error == message
