"""The minimal web app: search page, JSON API and record pages over the same search()."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import create_app


@pytest.fixture
def client(index_dir: Path):
    return create_app({"TESTING": True, "INDEX_DIR": str(index_dir)}).test_client()


def test_search_page_lists_hits_with_expansion(client) -> None:
    page = client.get("/?q=shingles")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/records/alpha2010test" in html and "Postherpetic neuralgia" in html


def test_api_search_matches_library(client) -> None:
    data = client.get("/api/search?q=fibromyalgia&type=study").get_json()
    assert data["ok"] and [h["id"] for h in data["hits"]] == ["delta2015test"]


def test_malformed_query_is_400_not_500(client) -> None:
    page = client.get("/?q=levle:A")
    assert page.status_code == 400
    assert "unknown field" in page.get_data(as_text=True)
    api = client.get("/api/search?q=levle:A")
    assert api.status_code == 400 and api.get_json() == {
        "ok": False,
        "error": "unknown field 'levle' (did you mean 'level:'?)",
    }


def test_unknown_record_is_404(client) -> None:
    assert client.get("/records/nope").status_code == 404
    assert client.get("/api/records/nope").get_json()["ok"] is False


def test_record_page_and_headers(client) -> None:
    page = client.get("/records/guide2020-np-m1-hf")
    assert page.status_code == 200
    assert "Content-Security-Policy" in page.headers
