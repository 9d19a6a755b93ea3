"""HTTP behaviour of the API and the pages: page sizes, versions, validators and 304s, CORS, the
favicon, and the OpenAPI document that states them (indexer/web/__init__.py, indexer/web/api.py)."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, build

import indexer.web as web
from app import create_app
from indexer.query import DEFAULT_PAGE_SIZE, JSON_VERSION, MAX_PAGE_SIZE
from indexer.search import SearchIndex
from indexer.settings import Settings


@pytest.fixture(scope="module")
def bundled_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled KB: more records than the largest page."""
    settings = Settings.for_root(PROJECT, tmp_path_factory.mktemp("api-bundled") / "index")
    build(settings)
    return settings.index_dir


@pytest.fixture
def client(bundled_index: Path) -> Any:
    return create_app({"TESTING": True, "INDEX_DIR": str(bundled_index)}).test_client()


# -- page_size ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, DEFAULT_PAGE_SIZE, 50, MAX_PAGE_SIZE])
def test_page_size_is_honoured_up_to_the_maximum(client, size: int) -> None:
    data = client.get(f"/api/search?page_size={size}").get_json()
    assert data["total"] > MAX_PAGE_SIZE  # so a page of 100 is really 100 hits
    assert data["query"]["page_size"] == size and len(data["hits"]) == size
    assert data["page_count"] == math.ceil(data["total"] / size)
    last = client.get(f"/api/search?page_size={size}&page={data['page_count']}").get_json()
    assert len(last["hits"]) == data["total"] - size * (data["page_count"] - 1)


def test_page_size_defaults_and_refuses_more_than_the_maximum(client) -> None:
    assert len(client.get("/api/search").get_json()["hits"]) == DEFAULT_PAGE_SIZE
    for size in (MAX_PAGE_SIZE + 1, 0, -1, "x"):
        response = client.get(f"/api/search?page_size={size}")
        assert response.status_code == 400
        assert response.get_json() == {
            "version": 1,
            "ok": False,
            "error": f"page size must be between 1 and {MAX_PAGE_SIZE}",
        }
    spec = client.get("/api/openapi.json").get_json()
    (param,) = [p for p in spec["paths"]["/api/search"]["get"]["parameters"] if p.get("name") == "page_size"]
    assert (param["schema"]["maximum"], param["schema"]["default"]) == (MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE)


# -- versions ---------------------------------------------------------------------------------

API_ANSWERS = [
    "/api/search?q=pain",
    "/api/records/lefaucheur2014-np-m1-hf",
    "/api/records/@lefaucheur2014guidelines",
    "/api/questions/np-hf-rtms-m1",
    "/api/evidence?indication=neuropathic-pain",
]


@pytest.mark.parametrize("url", API_ANSWERS)
def test_every_api_answer_has_a_version(client, url: str) -> None:
    data = client.get(url).get_json()
    assert data["ok"] is True and data["version"] == JSON_VERSION


def test_openapi_documents_the_version_and_the_validators(client) -> None:
    spec = client.get("/api/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    for path, ops in spec["paths"].items():
        op = ops["get"]
        answer = op["responses"]["200"]
        schema = answer["content"]["application/json"]["schema"]
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        assert "version" in schema["required"] and "version" in schema["properties"], path
        assert set(answer["headers"]) == {
            "ETag",
            "Last-Modified",
            "Cache-Control",
            "Access-Control-Allow-Origin",
        }
        assert "304" in op["responses"], path
        headers = {p["name"]: p for p in op["parameters"] if p["in"] == "header"}
        assert set(headers) == {"If-None-Match", "If-Modified-Since"}, path


# -- ETag, Last-Modified and 304 ----------------------------------------------------------------

CONDITIONAL = [
    *API_ANSWERS,
    "/api/openapi.json",
    "/",
    "/?q=pain&type=study",
    "/evidence",
    "/questions/np-hf-rtms-m1",
]


@pytest.mark.parametrize("url", CONDITIONAL)
def test_validators_and_304(client, bundled_index: Path, url: str) -> None:
    first = client.get(url)
    assert first.status_code == 200 and first.data
    etag = first.headers["ETag"]
    assert etag.startswith('W/"') and first.headers["Cache-Control"] == "no-cache"
    built = datetime.strptime(SearchIndex(bundled_index).about()["built"], "%Y-%m-%dT%H:%M:%S%z")
    modified = parsedate_to_datetime(first.headers["Last-Modified"])
    if url.startswith("/api/"):
        assert modified == built
    else:  # pages state today's date in their printable views
        assert modified >= built and modified.date() >= date.today() - timedelta(days=1)
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    assert client.get(url, headers={"If-Modified-Since": first.headers["Last-Modified"]}).status_code == 304
    later = format_datetime(modified + timedelta(days=1), usegmt=True)
    assert client.get(url, headers={"If-Modified-Since": later}).status_code == 304
    earlier = format_datetime(modified - timedelta(seconds=1), usegmt=True)
    assert client.get(url, headers={"If-Modified-Since": earlier}).status_code == 200
    stale = client.get(url, headers={"If-None-Match": 'W/"not-this-one"'})
    assert stale.status_code == 200 and stale.data == first.data
    assert client.head(url, headers={"If-None-Match": etag}).status_code == 304


def test_etag_depends_on_the_query(client) -> None:
    tags = {
        client.get(url).headers["ETag"] for url in ("/api/search?q=pain", "/api/search?q=depression", "/")
    }
    assert len(tags) == 3
    assert (
        client.get("/api/search?q=pain").headers["ETag"] == client.get("/api/search?q=pain").headers["ETag"]
    )


def test_page_etag_changes_with_the_date(client, monkeypatch: pytest.MonkeyPatch) -> None:
    today = client.get("/questions/np-hf-rtms-m1")

    class Tomorrow(date):
        @classmethod
        def today(cls) -> Tomorrow:
            return cls.fromordinal(date.today().toordinal() + 1)

    monkeypatch.setattr(web, "date", Tomorrow)
    tomorrow = client.get("/questions/np-hf-rtms-m1", headers={"If-None-Match": today.headers["ETag"]})
    assert tomorrow.status_code == 200 and tomorrow.headers["ETag"] != today.headers["ETag"]
    api = "/api/questions/np-hf-rtms-m1"  # the API states no date: same tag
    assert client.get(api).headers["ETag"] == client.get(api).headers["ETag"]


def test_a_new_index_generation_changes_the_validators(settings: Settings) -> None:
    build(settings)
    client = create_app({"TESTING": True, "INDEX_DIR": str(settings.index_dir)}).test_client()
    url = "/api/search?q=postherpetic"
    before = client.get(url)
    study = settings.kb_dir / "studies" / "alpha2010test.yaml"
    study.write_text(
        study.read_text("utf-8").replace("more than sham", "more than sham stimulation"), "utf-8"
    )
    build(settings)
    after = client.get(url, headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200 and after.headers["ETag"] != before.headers["ETag"]
    assert after.get_json()["generation"] != before.get_json()["generation"]


@pytest.mark.parametrize(
    "url",
    ["/api/search?q=levle:A", "/api/records/nope", "/api/questions/nope", "/?q=levle:A", "/records/nope"],
)
def test_errors_have_no_validators_and_no_cors(client, url: str) -> None:
    response = client.get(url)
    assert response.status_code in (400, 404)
    for header in ("ETag", "Last-Modified", "Access-Control-Allow-Origin"):
        assert header not in response.headers, (url, header)


def test_without_an_index_answers_carry_no_validators(tmp_path: Path) -> None:
    client = create_app({"TESTING": True, "INDEX_DIR": str(tmp_path / "none")}).test_client()
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and "ETag" not in response.headers
    assert client.get("/api/search").status_code == 503


# -- CORS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [*API_ANSWERS, "/api/openapi.json"])
def test_api_gets_allow_any_origin(client, url: str) -> None:
    response = client.get(url, headers={"Origin": "https://elsewhere.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Expose-Headers"] == "ETag"
    assert "Access-Control-Allow-Credentials" not in response.headers
    cached = client.get(url, headers={"If-None-Match": response.headers["ETag"]})
    assert cached.status_code == 304 and cached.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("url", ["/", "/evidence", "/records/lefaucheur2014-np-m1-hf", "/search.csv?q=pain"])
def test_pages_and_downloads_do_not_allow_other_origins(client, url: str) -> None:
    response = client.get(url, headers={"Origin": "https://elsewhere.example"})
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers


def test_only_reads_get_cors(client) -> None:
    response = client.post("/api/search", headers={"Origin": "https://elsewhere.example"})
    assert response.status_code == 405 and "Access-Control-Allow-Origin" not in response.headers


# -- favicon ------------------------------------------------------------------------------------


def test_favicon_is_an_icon(client) -> None:
    response = client.get("/favicon.ico")
    body = response.get_data()
    response.close()  # a static file: its handle is closed with the response
    assert response.status_code == 200
    assert response.mimetype in ("image/vnd.microsoft.icon", "image/x-icon")
    assert body[:4] == b"\x00\x00\x01\x00"  # ICO header: reserved 0, type 1 (icon)
    assert body == (PROJECT / "static" / "favicon.ico").read_bytes()
    assert response.headers["X-Content-Type-Options"] == "nosniff"
