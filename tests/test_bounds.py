"""What one request may cost is bounded (issue 17, items 4, 5 and 10).

4. Memory: the label cache is an LRU of values the index holds, the result cache is bounded by
   the hits it keeps (not only by entries: a page of 100 hits keeps ~1.5 MB), workers are
   recycled after a number of requests (and past a memory ceiling).
5. Amplification: filter values are capped per filter and per request (the same 400 on every
   front: tests/test_parity.py), and the "remove filter" links grow linearly with the values.
10. Query cost: wildcards stand for at most MAX_EXPANDED_TERMS words, and a time budget
   (TMSKB_QUERY_BUDGET_MS) stops matching, ranking and the search behind exports, with a
   message asking for a narrower query.

The KB for the cache and wildcard tests is generated (bench/index_build.generate, 1,500
records) once per module; the server tests run `indexer.serving.serve` in a subprocess on a
free 127.0.0.1 port and stop it with SIGTERM.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np
import pytest
from click.testing import CliRunner
from whoosh.qparser import MultifieldParser

from indexer import engine, errors, query, serving
from indexer import search as search_module
from indexer import settings as settings_module
from indexer.api import open_kb
from indexer.build import ensure_index
from indexer.cli import cli
from indexer.fields import SEARCH_FIELDS
from indexer.query import Query, parse_params
from indexer.search import SearchIndex
from indexer.settings import Settings, resolve_settings
from indexer.web import create_app

PROJECT = Path(__file__).parent.parent
HOST = "127.0.0.1"
TOO_MANY_WORDS = "'?*' matches more than 1,024 words; use a longer prefix or fewer wildcards"
OUT_OF_TIME = "the query needed more than 1 ms and was stopped"


@pytest.fixture(scope="module")
def big_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated KB of 1,500 records (synthetic studies, recommendations, references)."""
    sys.path.insert(0, str(PROJECT / "bench"))
    try:
        from index_build import RECORDS_PER_EVIDENCE, generate
    finally:
        sys.path.remove(str(PROJECT / "bench"))
    root = tmp_path_factory.mktemp("bounds") / "kb"
    generate(root, round(1500 / RECORDS_PER_EVIDENCE), PROJECT / "kb" / "vocab", PROJECT / "kb" / "rulesets")
    settings = Settings.for_root(root, root.parent / "index")
    ensure_index(settings)
    return settings.index_dir


# -- 4. memory -------------------------------------------------------------------------------


def test_the_result_cache_is_bounded_by_the_hits_it_keeps(big_index: Path) -> None:
    """Before, 1,024 cached pages of up to 100 hits each: ~1.5 GB per worker (measured 250 KB
    per page of 20 hits on a 10k KB)."""
    index = SearchIndex(big_index)
    queries = [
        Query.make(text, sort=sort, page=page, page_size=100)
        for text in ("", "patients", "stimulation", "pain")
        for sort in ("evidence", "year", "relevance")
        for page in range(1, 8)
    ]
    hits = sum(len(index.search(q).hits) for q in queries)
    assert hits > 2 * 4096  # enough to overflow the bound
    opened = index.generation()
    kept = sum(len(r.hits) for r in opened.cache.values())
    assert kept <= 4096, kept
    assert kept == opened.cache_hits
    assert index.search(queries[-1]) is opened.cache[queries[-1]]  # the newest stays cached


def test_the_label_cache_is_an_lru_of_indexed_values(index_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(search_module, "LABELS_CACHE_SIZE", 3)
    opened = SearchIndex(index_dir).generation()
    opened.labels.clear()
    years = sorted(opened.store.postings["year"])[:4]
    for year in years[:3]:
        search_module.facet_label(opened, "year", year)
    search_module.facet_label(opened, "year", years[0])  # used again: now the most recent
    search_module.facet_label(opened, "year", years[3])
    assert list(opened.labels) == [("year", years[2]), ("year", years[0]), ("year", years[3])]
    for made_up in ("1000", "1001", "1002"):  # values a client made up are never cached
        search_module.facet_label(opened, "year", made_up)
    assert ("year", "1000") not in opened.labels and len(opened.labels) == 3


def test_workers_are_recycled_by_default() -> None:
    settings = serving.options("127.0.0.1", 8000, 2, 4)
    assert settings["max_requests"] == serving.MAX_REQUESTS > 0
    assert 0 < settings["max_requests_jitter"] == serving.MAX_REQUESTS_JITTER < settings["max_requests"]
    assert serving.MAX_WORKER_MEMORY_MB > 0


def test_a_worker_is_replaced_after_max_requests_without_failing_a_request(index_dir, tmp_path) -> None:
    with served(index_dir, tmp_path, workers=1, max_requests=15, max_requests_jitter=0) as (port, master):
        pids, statuses = set(), []
        for i in range(45):
            statuses.append(get(port, f"/api/search?q=pain&page={1 + i % 3}"))
            pids.update(workers_of(master))
        assert statuses == [200] * 45
        assert len(pids) >= 3, pids  # replaced twice at least (a new pid after each 15 requests)


def test_requests_arriving_as_a_worker_retires_are_served_not_reset(index_dir, tmp_path) -> None:
    """A worker replaced every 3 requests, 30 times in a row: a connection it accepted in the turn
    it decided to stop (the client connected again as soon as the last response arrived) is
    served before it exits, never closed with its request unread (a reset, before the fix)."""
    with served(index_dir, tmp_path, workers=1, max_requests=3, max_requests_jitter=0) as (port, master):
        statuses = [get(port, f"/api/search?q=pain&page={1 + i % 3}") for i in range(90)]
    assert [s for s in statuses if s != 200] == []


def test_a_worker_past_the_memory_ceiling_is_replaced(index_dir, tmp_path) -> None:
    with served(index_dir, tmp_path, workers=1, max_memory_mb=1) as (port, master):
        first = set(workers_of(master))
        assert get(port, "/api/search?q=pain") == 200
        deadline = time.monotonic() + 20
        while set(workers_of(master)) <= first and time.monotonic() < deadline:
            time.sleep(0.2)
        assert set(workers_of(master)) - first, "the worker was not replaced"
        assert get(port, "/api/search?q=pain") == 200
    assert "past the 1 MiB limit" in (tmp_path / "server.log").read_text()


# -- 5. amplification ------------------------------------------------------------------------


def test_too_many_values_for_one_filter_are_refused(index_dir: Path) -> None:
    values = [str(1900 + i) for i in range(query.MAX_VALUES_PER_FILTER + 1)]
    results = SearchIndex(index_dir).search(parse_params({"year": values}))
    assert results.error == (
        "too many values for the year filter: 51, at most 50 per filter; "
        "choose fewer values or search for them instead"
    )
    assert SearchIndex(index_dir).search(parse_params({"year": values[:-1]})).ok


def test_too_many_filter_values_in_one_request_are_refused(index_dir: Path) -> None:
    years = [str(1900 + i) for i in range(50)]
    guidelines = [f"made-up-{i}" for i in range(query.MAX_FILTER_VALUES - 50)]
    params = {"year": years, "guideline": guidelines, "source": ["one-more"]}
    results = SearchIndex(index_dir).search(parse_params(params))
    assert results.error == "too many filter values: 101, at most 100 in one request; remove some filters"
    assert SearchIndex(index_dir).search(parse_params({**params, "source": []})).ok


def test_600_filter_values_get_a_small_400_not_a_huge_page(index_dir: Path) -> None:
    """Issue 17: a 6.5 KB request with 600 values answered a 5.5 MB page (and was cached)."""
    client = create_app({"TESTING": True, "INDEX_DIR": str(index_dir)}).test_client()
    params = urlencode([("guideline", f"g{i}") for i in range(600)])
    for url in (f"/?{params}", f"/evidence?{params}", f"/api/search?{params}", f"/search.csv?{params}"):
        response = client.get(url)
        body = response.get_data(as_text=True)
        where = (url[:12], response.status_code, len(body))
        assert response.status_code == 400, where
        assert "too many values for the guideline filter: 600, at most 50 per filter" in body, where
        assert len(body) < 8 * len(params), where


def _chip_params(html: str) -> int:
    """Query parameters in all the page's "remove filter" links together."""
    block = re.search(r'<ul class="active-filters".*?</ul>', html, re.S)
    assert block, "no active filters on the page"
    hrefs = re.findall(r'href="([^"]*)"', block.group(0))
    return sum(len(parse_qsl(urlsplit(h.replace("&amp;", "&")).query)) for h in hrefs)


def test_remove_filter_links_grow_linearly_with_the_filter_values(index_dir: Path) -> None:
    """A link per value repeats the other k-1 values: k * (k-1) parameters. Past
    pages.MAX_VALUE_CHIPS (10) values there is one link per filter instead."""
    client = create_app({"TESTING": True, "INDEX_DIR": str(index_dir)}).test_client()
    for k in (5, 10, 50, 100):
        params = [("guideline", f"g{i}") for i in range(min(k, 50))]
        params += [("year", str(1900 + i)) for i in range(k - len(params))]
        response = client.get("/?" + urlencode(params))
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        if k <= 10:  # few values: one link per value, each keeping the others
            assert _chip_params(html) == k * (k - 1), k
        else:  # one link per filter, each keeping the other filters' values: 9,900 before
            assert _chip_params(html) <= k, k
    # one value at a time can still be removed: each is a ticked box of the filter form
    assert html.count('type="checkbox" name="year" value="19') == 50


# -- 10. query cost --------------------------------------------------------------------------


def test_wildcards_matching_too_many_words_are_refused_everywhere(big_index: Path) -> None:
    index = SearchIndex(big_index)
    assert index.search(parse_params({"q": "?*"})).error == TOO_MANY_WORDS
    with pytest.raises(errors.QueryTooExpensive, match=re.escape(TOO_MANY_WORDS)):
        index.iter_hits(parse_params({"q": "?*"}))
    client = create_app({"TESTING": True, "INDEX_DIR": str(big_index)}).test_client()
    for url in ("/?q=?*", "/evidence?q=?*", "/api/search?q=?*", "/api/evidence?q=?*", "/search.csv?q=?*"):
        response = client.get(url)
        assert response.status_code == 400, url
        assert TOO_MANY_WORDS in response.get_data(as_text=True).replace("&#39;", "'"), url


def test_expanded_wildcards_match_what_whoosh_matches(big_index: Path) -> None:
    """Wildcards are expanded once into their words, and `field:*` is answered from field
    lengths and facet arrays (Whoosh read every posting of the field: 1.6 s for `*` at 10k)."""
    opened = SearchIndex(big_index).generation()
    parser = MultifieldParser(list(SEARCH_FIELDS), schema=opened.schema)
    alive = opened.store.alive
    for text in ("pa*", "stim*", "*", "stim* NOT pain", "authors:*", "level:*", "guideline:*", "id:a*"):
        ours = opened.match(opened.parse(text)) & alive
        assert np.array_equal(ours, opened.whoosh_match(parser.parse(text)) & alive), text


def test_relevance_pages_of_wildcard_queries_are_full(big_index: Path) -> None:
    """Whoosh ranks `field:*` as `*`; under NOT it then ranks nothing, and the matching documents
    it did not rank follow the ranked ones (the page is never short)."""
    index = SearchIndex(big_index)
    for text in ("pa*", "*", "NOT guideline:*", "pain NOT guideline:*"):
        results = index.search(parse_params({"q": text, "sort": "relevance", "page_size": "100"}))
        assert results.ok and results.total > 100, (text, results.error, results.total)
        assert len(results.hits) == 100, text
        second = index.search(parse_params({"q": text, "sort": "relevance", "page": "2", "page_size": "100"}))
        assert not {h.id for h in results.hits} & {h.id for h in second.hits}, text
    assert index.search(parse_params({"q": "*"})).total == index.search(parse_params({})).total


def test_the_time_budget_stops_a_query(big_index: Path) -> None:
    wildcard = parse_params({"q": "p*", "sort": "relevance"})
    assert SearchIndex(big_index, budget_ms=0).search(wildcard).total > 0  # 0: no limit
    stopped = SearchIndex(big_index, budget_ms=1).search(wildcard)
    assert stopped.error is not None and stopped.error.startswith(OUT_OF_TIME)
    assert "narrow it" in stopped.error
    with pytest.raises(errors.QueryTooExpensive, match=OUT_OF_TIME):  # exports: before the first row
        SearchIndex(big_index, budget_ms=1).iter_hits(wildcard)


def test_the_time_budget_answers_the_same_on_every_front(big_index: Path) -> None:
    client = create_app({"TESTING": True, "INDEX_DIR": str(big_index), "QUERY_BUDGET_MS": 1}).test_client()
    for url in ("/", "/api/search", "/evidence", "/api/evidence", "/search.csv", "/evidence.csv"):
        response = client.get(url + "?q=p*&sort=relevance")
        assert response.status_code == 400, url
        assert OUT_OF_TIME in response.get_data(as_text=True), url
    result = CliRunner().invoke(
        cli,
        ["search", "p*", "--sort", "relevance", "--index-dir", str(big_index)],
        env={"TMSKB_QUERY_BUDGET_MS": "1"},
    )
    assert result.exit_code == 1 and f"Error: bad query: {OUT_OF_TIME}" in result.output
    kb = open_kb(index_dir=big_index, query_budget_ms=1)
    assert (kb.search("p*", sort="relevance").error or "").startswith(OUT_OF_TIME)


def test_the_budget_is_a_setting(caplog) -> None:
    assert resolve_settings(environ={}).query_budget_ms == settings_module.DEFAULT_QUERY_BUDGET_MS == 2000
    assert resolve_settings(environ={"TMSKB_QUERY_BUDGET_MS": "250"}).query_budget_ms == 250
    assert resolve_settings(environ={"TMSKB_QUERY_BUDGET_MS": "250"}, query_budget_ms=0).query_budget_ms == 0
    assert resolve_settings(environ={"TMSKB_QUERY_BUDGET_MS": "2s"}).query_budget_ms == 2000
    assert "TMSKB_QUERY_BUDGET_MS='2s' is not a whole number of milliseconds" in caplog.text


def test_spelling_suggestions_give_up_quietly_when_the_budget_is_spent(big_index: Path) -> None:
    """A suggestion is optional: out of time, the search answers without one (Whoosh's
    corrector compares each query word with the whole word list)."""
    opened = SearchIndex(big_index).generation()
    assert opened.correct("stimulaton") == "stimulation"
    spent = engine.Budget(1)
    time.sleep(0.01)
    assert opened.correct("stimulaton", spent) is None


# -- helpers: a real server ------------------------------------------------------------------

SERVER = """
import json, sys
from indexer.serving import serve
from indexer.web import create_app
serve(create_app({"INDEX_DIR": sys.argv[1]}), "127.0.0.1", int(sys.argv[2]), **json.loads(sys.argv[3]))
"""


@contextmanager
def served(index_dir: Path, tmp_path: Path, **options: int) -> Iterator[tuple[int, int]]:
    """indexer.serving.serve(create_app(...)) in a subprocess; yields (port, master pid).

    `options` go to serve(): workers, threads (default 2), max_requests, max_memory_mb..."""
    import json

    options.setdefault("threads", 2)
    options.setdefault("workers", 1)
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = int(sock.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMSKB_")}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join([str(PROJECT), env.get("PYTHONPATH", "")]))
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(index_dir), str(port), json.dumps(options)],
            cwd=PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while get(port, "/api/search?q=", 2) != 200:
            assert process.poll() is None, f"server exited: {log_path.read_text()}"
            assert time.monotonic() < deadline, f"server did not start: {log_path.read_text()}"
            time.sleep(0.1)
        yield port, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    assert "Traceback" not in log_path.read_text(errors="replace")


def get(port: int, path: str, timeout: float = 10) -> int | str:
    """Status (or error name) of one GET on a new connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        conn.close()


def workers_of(master: int) -> list[int]:
    """Pids of the gunicorn master's children (its workers), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                found.append(int(entry))
    return found
