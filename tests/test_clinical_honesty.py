"""Walks every page, API answer and export of the bundled KB and checks the clinical rules:

- no study whose counted result is negative, null or unreported is labelled or counted as
  supporting, anywhere;
- every computed class or level that is or rests on a lower bound says so, and every computed
  value names its rule set;
- a curator's candidate link is never presented as a source's own study.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from indexer import export as ex
from indexer.build import ensure_index
from indexer.query import Query
from indexer.search import SearchIndex
from indexer.settings import Settings
from indexer.web import create_app

PROJECT = Path(__file__).parent.parent
SECTION = re.compile(r'<section class="study-group group-(?P<group>[\w-]+)"(?P<body>.*?)</section>', re.S)
LINK = re.compile(r'href="/records/([^"]+)"')


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = Settings.for_root(PROJECT, tmp_path_factory.mktemp("honesty") / "index")
    ensure_index(settings)
    return settings.index_dir


@pytest.fixture(scope="module")
def client(bundled: Path):
    return create_app({"INDEX_DIR": str(bundled), "TESTING": True}).test_client()


def _all(bundled: Path, kind: str) -> list[Any]:
    return list(SearchIndex(bundled).iter_hits(Query.make("", {"type": [kind]})))


def _studies_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    return list(data.get("studies") or [])


def _assert_groups_honest(studies: list[dict[str, Any]], where: str) -> None:
    assert studies is not None
    for study in studies:
        if study["group"] == "supporting":
            assert study["result"] == "positive", (where, study["id"], study["result"])
        if study["result"] in ("negative", None, "inconclusive", "mixed"):
            assert study["group"] != "supporting", (where, study["id"])


def test_every_linked_study_is_grouped_by_its_counted_result(bundled: Path) -> None:
    checked = 0
    for kind in ("recommendation", "verdict", "question"):
        for hit in _all(bundled, kind):
            studies = _studies_of(hit.data)
            _assert_groups_honest(studies, hit.id)
            checked += len(studies)
    assert checked > 50  # the bundled KB links many studies: the walk is not vacuous


def test_pages_list_only_positive_studies_as_supporting(bundled: Path, client) -> None:
    pages = 0
    for kind in ("recommendation", "verdict", "question"):
        for hit in _all(bundled, kind):
            url = f"/questions/{hit.id}" if kind == "question" else f"/records/{hit.id}"
            html = client.get(url).get_data(as_text=True)
            results = {s["id"]: s["result"] for s in _studies_of(hit.data)}
            for section in SECTION.finditer(html):
                linked = LINK.findall(section.group("body"))
                if section.group("group") == "supporting":
                    assert all(results.get(sid) == "positive" for sid in linked), (url, linked)
                else:
                    assert all(results.get(sid) != "positive" for sid in linked), (url, linked)
            assert "Supporting studies" not in html  # the old heading that listed every link
            pages += 1
    assert pages >= 40


def test_api_answers_and_evidence_exports_count_by_direction(bundled: Path, client) -> None:
    for hit in _all(bundled, "question"):
        body = client.get(f"/api/questions/{hit.id}").get_json()
        _assert_groups_honest(body["question"]["data"]["studies"], hit.id)
    groups = client.get("/api/evidence").get_json()["groups"]
    for row in (r for g in groups for r in g["rows"]):
        positive = sum(s["result"] == "positive" for s in row["studies"])
        assert row["studies_by_direction"]["supporting"] == positive, row["id"]
        assert sum(row["supporting_by_class"].values()) == positive, row["id"]
    rows = json.loads(b"".join(ex.export_bytes(bundled, Query.make(), "json", "evidence")))
    by_id = {h.id: h.data for k in ("recommendation", "verdict") for h in _all(bundled, k)}
    for row in rows:
        positive = sum(s["result"] == "positive" for s in _studies_of(by_id[row["id"]]))
        assert row["studies_supporting"] == positive, row["id"]
    csv_rows = list(
        csv.DictReader(
            io.StringIO(b"".join(ex.export_bytes(bundled, Query.make(), "csv", "evidence")).decode())
        )
    )
    assert [int(r["studies_supporting"]) for r in csv_rows] == [r["studies_supporting"] for r in rows]


def test_every_lower_bound_says_so(bundled: Path, client) -> None:
    bounds = [h for h in _all(bundled, "study") if (h.data.get("class") or {}).get("certain") is False]
    assert bounds  # 30+ computed classes are lower bounds in the bundled KB
    for hit in bounds:
        cls = hit.data["class"]["cls"]
        page = client.get(f"/records/{hit.id}").get_data(as_text=True)
        assert "lowest the reported facts allow" in page, hit.id
        assert hit.fields["class"] == f"{cls}+", hit.id  # the facet value marks the bound
    search = client.get("/?type=study").get_data(as_text=True)
    for label in re.findall(r'<label for="f-class-\d+">([^<]*)<', search):
        value = label.strip()
        assert value.startswith("Class") and ("+" not in value)
    assert "Class III or better (computed lower bound)" in search
    records = json.loads(b"".join(ex.export_bytes(bundled, Query.make("", {"type": ["study"]}), "json")))
    for row in records:
        if row["class"] and row["class_basis"] == "computed":
            assert row["class_ruleset"], row["id"]
            certain = next(h for h in bounds + _all(bundled, "study") if h.id == row["id"]).data["class"][
                "certain"
            ]
            assert row["class_lower_bound"] is (not certain), row["id"]
    markdown = b"".join(ex.export_bytes(bundled, Query.make(), "markdown", "evidence")).decode()
    latex = b"".join(ex.export_bytes(bundled, Query.make(), "latex", "evidence")).decode()
    for text in (markdown, latex):
        assert "lower bound" in text and "lefaucheur2014-as-cited" in text


def test_every_computed_level_names_its_rule_set_and_its_bounds(bundled: Path) -> None:
    for table in ("records", "evidence"):
        for row in ex.rows(bundled, Query.make(), table):
            if row.get("computed_level"):
                assert row["level_ruleset"], row["id"]
                assert row["computed_level_rests_on_lower_bounds"] in (True, False), row["id"]
    for hit in _all(bundled, "question"):
        computed = hit.data.get("computed")
        if computed and computed.get("level"):
            assert computed["ruleset"] and "rests_on_lower_bounds" in computed


def test_candidates_are_never_shown_as_the_sources_studies(bundled: Path, client) -> None:
    results = SearchIndex(bundled).search(Query.make("", {"type": ["study"]}))
    assert results.facets["guideline"] == []  # no study is counted by a source in the bundled KB
    for hit in _all(bundled, "study"):
        page = client.get(f"/records/{hit.id}").get_data(as_text=True)
        assert 'id="counted-by"' not in page, hit.id
        if hit.data.get("candidate_for"):
            assert "not verified" in page, hit.id
    records = list(ex.rows(bundled, Query.make("", {"type": ["study"]})))
    assert all(row["guideline"] == [] for row in records)
    for hit in _all(bundled, "recommendation"):
        page = client.get(f"/records/{hit.id}").get_data(as_text=True)
        if hit.data.get("studies"):
            assert "link-counted" not in page and "link-candidate" in page, hit.id


def test_a_counted_link_is_shown_as_the_sources_own(tmp_path: Path) -> None:
    """The positive path: a link the source itself counts reaches the facet, the page and exports."""
    root = tmp_path / "kb"
    shutil.copytree(Path(__file__).parent / "data" / "kb", root)
    rec = root / "kb" / "recommendations" / "guide2020-np-m1-hf.yaml"
    text = rec.read_text("utf-8")
    rec.write_text(
        text.replace("counted_studies: []", "counted_studies: [{study: alpha2010test, location: Table 2}]"),
        "utf-8",
    )
    settings = Settings.for_root(root, tmp_path / "index")
    ensure_index(settings)
    index = SearchIndex(settings.index_dir)
    facet = index.search(Query.make("", {"type": ["study"]})).facets["guideline"]
    assert [(v.value, v.count) for v in facet] == [("guide2020test", 1)]
    client = create_app({"INDEX_DIR": str(settings.index_dir)}).test_client()
    page = client.get("/records/alpha2010test").get_data(as_text=True)
    assert 'id="counted-by"' in page and "(Table 2)" in page
    rec_page = client.get("/records/guide2020-np-m1-hf").get_data(as_text=True)
    assert "counted by" in rec_page and "Table 2" in rec_page
    rows = {r["id"]: r for r in ex.rows(index, Query.make("", {"type": ["study"]}))}
    assert rows["alpha2010test"]["guideline"] == ["guide2020test"]
    assert all(r["guideline"] == [] for i, r in rows.items() if i != "alpha2010test")


def test_every_record_url_still_resolves(bundled: Path, client) -> None:
    """Record URLs of every study, recommendation, reference and page still work; a question's
    /records/ URL moves (301) to its question page."""
    index = SearchIndex(bundled)
    seen = 0
    for kind in ("study", "recommendation", "reference", "knowledge", "verdict", "scale"):
        for hit in index.iter_hits(Query.make("", {"type": [kind]})):
            assert client.get(f"/records/{hit.id}").status_code == 200, hit.id
            seen += 1
    assert seen > 130
    for hit in _all(bundled, "question"):
        moved = client.get(f"/records/{hit.id}")
        assert moved.status_code == 301 and moved.headers["Location"].endswith(f"/questions/{hit.id}")
        assert client.get(f"/questions/{hit.id}").status_code == 200
