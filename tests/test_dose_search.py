"""Searching by dose on the bundled KB: numeric ranges, navigation words, and dose questions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import PROJECT, build

from indexer import api
from indexer.cli import cli
from indexer.query import parse_params
from indexer.search import SearchIndex
from indexer.settings import Settings
from indexer.web import create_app


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = Settings.for_root(PROJECT, tmp_path_factory.mktemp("dose") / "index")
    build(settings)
    return settings.index_dir


def _hits(index: Path, text: str, **params: str) -> list[Any]:
    results = SearchIndex(index).search(parse_params({"q": text, "page_size": "100", **params}))
    assert results.ok, results.error
    return list(results.hits)


def _arms(hit: Any) -> list[dict[str, Any]]:
    return list((hit.data.get("dose") or {}).get("arms") or [])


def test_sessions_at_least_ten_in_neuropathic_pain(index: Path) -> None:
    hits = _hits(index, "sessions:>=10 neuropathic pain")
    assert len(hits) >= 5
    for hit in hits:
        assert hit.type == "study"
        assert any((a["sessions"] or 0) >= 10 for a in _arms(hit)), hit.id
    ids = {h.id for h in hits}
    assert "attal2021repetitive" in ids  # 15 sessions
    assert "khedr2005jnnp" not in ids  # 5 sessions


@pytest.mark.parametrize(
    ("text", "key", "check"),
    [
        ("frequency:10", "frequency_hz", lambda v: v == 10),
        ("frequency:>=5", "frequency_hz", lambda v: v >= 5),
        ("frequency:<1.5", "frequency_hz", lambda v: v < 1.5),
        ("pulses:[1000 TO 3000]", "pulses_per_session", lambda v: 1000 <= v <= 3000),
        ("sessions:<5", "sessions", lambda v: v < 5),
        ("sessions:5..10", "sessions", lambda v: 5 <= v <= 10),
        ("total_pulses:>40000", "total_pulses", lambda v: v > 40000),
        ("intensity:>=100", "intensity_percent", lambda v: v >= 100),
    ],
)
def test_numeric_dose_queries_match_an_arm_in_range(index: Path, text: str, key: str, check: Any) -> None:
    hits = _hits(index, text)
    assert hits, text
    for hit in hits:
        values = [a[key] for a in _arms(hit) if a[key] is not None]
        assert any(check(v) for v in values), (text, hit.id, values)


@pytest.mark.parametrize("text", ["navigated", "nTMS", "neuronavigation", "navigated TMS"])
def test_navigation_words_find_the_navigated_studies(index: Path, text: str) -> None:
    navigated = {h.id for h in _hits(index, "", navigated="yes")}
    assert len(navigated) >= 10
    found = {h.id for h in _hits(index, text)}
    assert navigated <= found, navigated - found


def test_how_many_sessions_answers_with_studies_and_their_dose(index: Path) -> None:
    results = SearchIndex(index).search(parse_params({"q": "how many sessions rTMS neuropathic pain"}))
    assert results.ok and results.total >= 10
    assert dict(results.query.filters).get("type") == ("study",)  # shown as a removable filter
    assert any(e["vocabulary"] == "dose" for e in results.expansions)
    assert all(h.type == "study" and _arms(h) for h in results.hits)
    assert sum(1 for h in results.hits if any(a["sessions"] for a in _arms(h))) >= 10
    page = (
        create_app({"TESTING": True, "INDEX_DIR": str(index)})
        .test_client()
        .get("/?q=how+many+sessions+rTMS+neuropathic+pain")
    )
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and html.count('class="hit-dose"') >= 10
    assert "pulses ×" in html and "sessions" in html


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("frequency:abc", "is not a number or a range"),
        ("sessions:10..5", "the lower bound is above the upper one"),
        ("sessions:lots", "is not a sessions value"),
    ],
)
def test_bad_dose_values_are_clear_errors_on_every_front(index: Path, text: str, message: str) -> None:
    results = SearchIndex(index).search(parse_params({"q": text}))
    assert not results.ok and message in (results.error or "")
    response = (
        create_app({"TESTING": True, "INDEX_DIR": str(index)})
        .test_client()
        .get("/api/search", query_string={"q": text})
    )
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    cli_result = CliRunner().invoke(cli, ["search", text, "--index-dir", str(index)])
    assert cli_result.exit_code == 1 and message in cli_result.output
    assert message in (api.open_kb(index_dir=index).search(text).error or "")


def test_dose_numbers_are_the_same_on_every_front(index: Path) -> None:
    text = "sessions:>=10 neuropathic pain"
    total = SearchIndex(index).search(parse_params({"q": text})).total
    client = create_app({"TESTING": True, "INDEX_DIR": str(index)}).test_client()
    assert client.get("/api/search", query_string={"q": text}).get_json()["total"] == total
    out = CliRunner().invoke(cli, ["search", text, "--index-dir", str(index), "--format", "json"]).output
    assert f'"total": {total}' in out
    assert api.open_kb(index_dir=index).search(text).total == total
