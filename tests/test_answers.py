"""Answer first: a query that names a condition opens with its questions' verdict panels."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PROJECT, build

from indexer import api
from indexer.answers import answers
from indexer.query import parse_params
from indexer.search import SearchIndex
from indexer.settings import Settings
from indexer.web import create_app


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = Settings.for_root(PROJECT, tmp_path_factory.mktemp("answers") / "index")
    build(settings)
    return settings.index_dir


def _cards(index: Path, **params: str) -> list[dict]:
    search = SearchIndex(index)
    return answers(search, search.search(parse_params(params)))


def test_a_condition_opens_with_its_question_and_every_source_in_its_own_scale(index: Path) -> None:
    cards = _cards(index, q="shingles")
    assert cards and cards[0]["question"] == "phn-rtms"
    lines = {line["verdict"]: line for line in cards[0]["lines"]}
    assert {"dai2024-phn-rtms", "abbas2025-phn-rtms"} <= set(lines)
    assert lines["dai2024-phn-rtms"]["covers"] is None  # the condition's own verdict
    assert "SMD -1.52" in (lines["dai2024-phn-rtms"]["effect"] or "")
    broader = lines["soliman2025-np-rtms"]
    assert broader["covers"] and "postherpetic neuralgia is one of its kinds" in broader["covers"]
    assert {g["scale"] for g in broader["grades"]} == {
        "Strength of recommendation (strong / weak)",
        "Line of therapy (first, second, third line)",
    }


def test_a_condition_and_protocol_reach_the_question_with_four_sources(index: Path) -> None:
    cards = _cards(index, q="high frequency rTMS motor cortex neuropathic pain")
    first = cards[0]
    assert first["question"] == "np-hf-rtms-m1"
    own = {line["source"] for line in first["lines"] if not line["covers"]}
    assert {
        "Lefaucheur et al. 2014",
        "Lefaucheur et al. 2020",
        "Moisset et al. 2020",
        "Gatzinsky et al. 2020",
    } <= own
    levels = {g["label"] for line in first["lines"] for g in line["grades"]}
    assert "Level A (definite efficacy)" in levels


def test_no_condition_no_cards_and_only_on_the_first_page(index: Path) -> None:
    assert _cards(index, q="motor cortex") == []
    assert _cards(index, q="", indication="postherpetic-neuralgia")[0]["question"] == "phn-rtms"
    client = create_app({"TESTING": True, "INDEX_DIR": str(index)}).test_client()
    first = client.get("/?q=neuropathic+pain").get_data(as_text=True)
    assert 'id="answers"' in first and first.index('id="answers"') < first.index('id="results"')
    assert 'id="answers"' not in client.get("/?q=neuropathic+pain&page=2").get_data(as_text=True)
    assert 'id="answers"' not in client.get("/?q=motor+cortex").get_data(as_text=True)


def test_the_python_and_json_apis_give_the_same_cards(index: Path) -> None:
    cards = _cards(index, q="shingles")
    assert api.open_kb(index_dir=index).answers("shingles") == cards
    client = create_app({"TESTING": True, "INDEX_DIR": str(index)}).test_client()
    body = client.get("/api/search?q=shingles").get_json()
    assert body["answers"] == cards and body["hits"]  # answers beside the hits
    assert client.get("/api/search?q=motor+cortex").get_json()["answers"] == []
