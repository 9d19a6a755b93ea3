"""The web app through Flask's test client: pages, JSON API, errors and headers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import create_app

PAGES = [
    "/",
    "/?q=shingles",
    "/?q=pain&type=study&sort=year",
    "/evidence",
    "/evidence?level=B",
    "/about/levels",
    "/records/guide2020-np-m1-hf",
    "/records/alpha2010test",
    "/records/@alpha2010test",
]


@pytest.fixture
def client(index_dir: Path):
    return create_app({"TESTING": True, "INDEX_DIR": str(index_dir)}).test_client()


@pytest.mark.parametrize("url", PAGES)
def test_pages_render_with_security_headers(client, url: str) -> None:
    page = client.get(url)
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"
    html = page.get_data(as_text=True)
    assert '<main id="main"' in html and "<script>" not in html  # no inline scripts (CSP)


def test_search_page_lists_hits_with_expansion(client) -> None:
    html = client.get("/?q=shingles").get_data(as_text=True)
    assert "/records/alpha2010test" in html and "Postherpetic neuralgia" in html
    assert "Ranked here: Class I study; 2010" in html


def test_facet_links_keep_the_query(client) -> None:
    html = client.get("/?q=pain&type=study").get_data(as_text=True)
    assert 'name="type" value="study" id="f-type-1" checked' in html
    assert 'href="/?q=pain"' in html  # removing the only filter keeps the words


def test_api_search_matches_library(client) -> None:
    data = client.get("/api/search?q=fibromyalgia&type=study").get_json()
    assert data["ok"] and [h["id"] for h in data["hits"]] == ["delta2015test"]
    assert {f["value"] for f in data["facets"]["type"]} >= {"study", "recommendation"}


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/api/search?q=levle:A", 400, "unknown field 'levle' (did you mean 'level:'?)"),
        (
            "/api/search?q=pain&sort=random",
            400,
            "unknown sort 'random' (expected one of evidence, relevance, year)",
        ),
        ("/api/records/nope", 404, "No record with id 'nope'"),
        ("/api/records/@nope", 404, "No reference with key 'nope'"),
        ("/api/evidence?q=levle:A", 400, "unknown field 'levle' (did you mean 'level:'?)"),
        (
            "/api/nothing-here",
            404,
            "The requested URL was not found on the server. If you entered the URL manually "
            "please check your spelling and try again.",
        ),
    ],
)
def test_api_errors_have_one_shape(client, url: str, status: int, message: str) -> None:
    response = client.get(url)
    assert response.status_code == status
    assert response.get_json() == {"version": 1, "ok": False, "error": message}  # shapes are versioned


def test_malformed_query_page_is_400_and_usable(client) -> None:
    page = client.get("/?q=levle:A")
    assert page.status_code == 400
    html = page.get_data(as_text=True)
    assert "unknown field" in html and 'id="q"' in html


def test_unknown_record_page_is_404(client) -> None:
    page = client.get("/records/nope")
    assert page.status_code == 404
    assert "No record with id &#39;nope&#39;" in page.get_data(as_text=True)


def test_recommendation_page_shows_published_and_computed_levels(client) -> None:
    html = client.get("/records/guide2020-np-m1-hf").get_data(as_text=True)
    assert 'id="published-level"' in html and 'id="computed-level"' in html
    assert "lefaucheur2014-as-cited" in html and ">agree<" in html
    assert 'id="cite-vancouver"' in html and 'id="cite-apa"' in html
    assert "https://doi.org/10.1000/test.2020.1" in html


def test_reference_page_has_bibtex_and_pubmed_link(client) -> None:
    html = client.get("/records/@alpha2010test").get_data(as_text=True)
    assert "@article{alpha2010test," in html
    assert 'href="https://pubmed.ncbi.nlm.nih.gov/100001/"' in html


def test_evidence_api_groups_rows(client) -> None:
    data = client.get("/api/evidence").get_json()
    assert [g["label"] for g in data["groups"]] == ["Neuropathic pain", "Depression", "Fibromyalgia"]
    first = data["groups"][0]["rows"][0]
    assert (first["level"], first["supporting_by_class"], first["computed_level"]) == ("A", {"I": 2}, "A")
    assert first["studies_by_direction"]["supporting"] == 2 and first["computed_lower_bound"] is False


def test_openapi_describes_every_api_route(client) -> None:
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.1")
    app_routes = {r.rule for r in client.application.url_map.iter_rules() if r.rule.startswith("/api/")}
    documented = {p.replace("{id}", "<path:doc_id>") for p in spec["paths"]} | {"/api/openapi.json"}
    assert app_routes == documented


def test_request_size_is_limited(client) -> None:
    assert client.application.config["MAX_CONTENT_LENGTH"] == 64 * 1024
    response = client.post("/api/search", data="x" * (65 * 1024))
    assert response.status_code in (405, 413)
    assert json.loads(response.get_data(as_text=True))["ok"] is False
