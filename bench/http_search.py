#!/usr/bin/env python3
"""Benchmark: search latency over HTTP, our JSON API against Datasette on the same documents.

Not a test. Run from the checkout (Datasette and sqlite-utils are bench-only tools):

    .venv/bin/pip install datasette sqlite-utils
    .venv/bin/python bench/http_search.py                         # N = 1000, 10000
    .venv/bin/python bench/http_search.py --sizes 10000 --requests 400 --out bench/out --keep

For each N (indexed records, as bench/index_build.py counts them) the script
  1. writes the synthetic KB with index_build.generate, builds our index with
     ensure_index, and loads the very same documents (documents.build_documents) into a
     SQLite table `records` with an FTS5 index on title, summary, body (porter stemming, as
     our analyzer stems; multi-valued facet fields joined with spaces; when the documents carry
     one combined `text` field instead of `body`, body is that text minus title and summary);
  2. starts `tmskb serve` (gunicorn) and `datasette serve DB` (its defaults) on
     free 127.0.0.1 ports and waits until both answer; both are always stopped at the end;
  3. builds a seeded list of requests (single words and two-word queries in bands of document
     frequency, phrases taken from the text, 1-2 facet filters, sort=year, page=2, a few
     filter-only and misspelled queries) and the equivalent URL for each variant:
        ours                 /api/search?q=...&sort=...&page=...&<facet>=<value>
        datasette-default    /DB/records.json?_search=...&_facet=<all 11>&<col>=<value>&_size=20
        datasette-nosuggest  the same plus &_nosuggest=1 (no facet suggestions: its fastest mode)
     (_size=20 gives Datasette our page size; page 2 uses the `next` token of its page 1;
     sort=year is _sort_desc=year; our evidence/relevance orders have no Datasette peer, so
     Datasette keeps its default order there);
  4. warms each server with 20 other requests, then times every request sequentially over
     one keep-alive connection per server (http.client), wall time including reading the whole
     body, the three variants interleaved per request (their order rotating per request);
  5. prints p50/p95/mean/max, errors, response sizes and ours/Datasette ratios, per query kind,
     our slowest requests re-timed, how the hit counts of the two systems compare, the load
     average around the timed loop, and a hash of indexer/ + app.py (warning if it changed
     during a size: the servers import the code when they start).

Target at N = 10 000: our p95 <= the p95 of the faster Datasette variant (ratio <= 1.0).
Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

warnings.filterwarnings("ignore", category=SyntaxWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

sys.path.insert(0, str(Path(__file__).resolve().parent))

from index_build import RECORDS_PER_EVIDENCE, generate  # noqa: E402

from indexer import documents, pipeline  # noqa: E402
from indexer.build import ensure_index  # noqa: E402
from indexer.fields import FACETS  # noqa: E402
from indexer.querytext import STOP_WORDS  # noqa: E402
from indexer.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SEED = 20240607
WARMUP = 20
PAGE_SIZE = 20  # ours is fixed at 20; Datasette gets _size=20
TARGET_N = 10_000
VARIANTS = ("ours", "datasette-default", "datasette-nosuggest")
SHORT = {"ours": "ours", "datasette-default": "ds-default", "datasette-nosuggest": "ds-nosuggest"}
DB_NAME = "records"
COLUMNS = (
    "id",
    "type",
    "title",
    "summary",
    "body",
    "level",
    "direction",
    "indication",
    "target",
    "side",
    "protocol",
    "class",
    "year",
    "guideline",
    "verification",
)
FILTER_FIELDS = ("level", "type", "indication", "protocol", "class")
# Share of each kind of request in the timed list (the rest, if any, are single words).
MIX = (
    ("word-common", 0.10),
    ("word-medium", 0.09),
    ("word-rare", 0.05),
    ("citation-key", 0.04),
    ("two-words", 0.17),
    ("phrase", 0.07),
    ("filter-1", 0.14),
    ("filter-2", 0.09),
    ("filter-only", 0.03),
    ("sort-year", 0.10),
    ("sort-relevance", 0.03),
    ("page-2", 0.06),
    ("typo", 0.03),
)
WORD = re.compile(r"[^\W\d_][^\W_]{2,}")


# ---------------------------------------------------------------------------------------------
# Data: the synthetic KB, our index, the SQLite database
# ---------------------------------------------------------------------------------------------


def _joined(value: Any) -> str | None:
    if isinstance(value, list):
        return " ".join(value) or None
    return value or None


def _body(doc: dict[str, Any]) -> str:
    """The document's body text. Documents either carry `body`, or one `text` field that is
    title + summary + body joined with spaces (then title and summary are cut off its front)."""
    if "body" in doc:
        return str(doc["body"] or "")
    text = str(doc.get("text") or "")
    for part in (doc.get("title"), doc.get("summary")):
        if part and text.startswith(part):
            text = text[len(part) :].lstrip()
    return text


def _column(doc: dict[str, Any], name: str) -> str | None:
    return _body(doc) or None if name == "body" else _joined(doc.get(name))


def build_sqlite(docs: list[dict[str, Any]], db: Path) -> float:
    """Table `records` with the documents' columns plus an external-content FTS5 index."""
    import sqlite_utils

    db.unlink(missing_ok=True)
    started = time.perf_counter()
    database = sqlite_utils.Database(db)
    rows = [{c: _column(d, c) for c in COLUMNS} for d in docs]
    table = database.table("records")
    table.insert_all(rows, pk="id", columns={c: str for c in COLUMNS}, batch_size=2000)
    table.enable_fts(
        ["title", "summary", "body"],
        create_triggers=False,
        tokenize="porter unicode61 remove_diacritics 2",
    )
    database.conn.commit()
    database.close()
    return time.perf_counter() - started


@dataclass
class Corpus:
    """What the request generator draws from."""

    docs: list[dict[str, Any]]
    df: Counter[str]
    bigrams: list[str]
    facet_values: dict[str, list[str]]  # with repeats: drawing is proportional to frequency


def corpus_of(docs: list[dict[str, Any]]) -> Corpus:
    df: Counter[str] = Counter()
    bigram_pool: list[str] = []
    facet_values: dict[str, list[str]] = {f: [] for f in FILTER_FIELDS}
    for d in docs:
        words: set[str] = set()
        for text in (d.get("title"), d.get("summary"), _body(d)):
            words.update(w.lower() for w in WORD.findall(text or ""))
        df.update(words)
        tokens = re.findall(r"[a-z]{3,}", (d.get("summary") or "").lower())
        for a, b in zip(tokens, tokens[1:], strict=False):
            if a not in STOP_WORDS and b not in STOP_WORDS:
                bigram_pool.append(f"{a} {b}")
        for f in FILTER_FIELDS:
            value = d.get(f)
            for v in value if isinstance(value, list) else [value]:
                if v:
                    facet_values[f].append(v)
    return Corpus(docs, df, bigram_pool, facet_values)


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


@dataclass
class Req:
    kind: str
    q: str = ""
    filters: list[tuple[str, str]] = field(default_factory=list)
    sort: str = "evidence"
    page: int = 1
    ds_next: str | None = None  # Datasette's token for page 2, filled in once its server runs

    def describe(self) -> str:
        parts = [repr(self.q)]
        parts += [f"{k}={v}" for k, v in self.filters]
        if self.sort != "evidence":
            parts.append(f"sort={self.sort}")
        if self.page != 1:
            parts.append(f"page={self.page}")
        return " ".join(parts)

    def ours(self) -> str:
        params: list[tuple[str, str]] = [("q", self.q)]
        if self.sort != "evidence":
            params.append(("sort", self.sort))
        if self.page != 1:
            params.append(("page", str(self.page)))
        params += self.filters
        return "/api/search?" + urlencode(params)

    def datasette(self, nosuggest: bool, page1: bool = False) -> str:
        params: list[tuple[str, str]] = [("_search", self.q)] if self.q else []
        params += [("_facet", f) for f in FACETS.names if f in COLUMNS]  # the same 11 as ours had
        params += self.filters
        params.append(("_size", str(PAGE_SIZE)))
        if self.sort == "year":
            params.append(("_sort_desc", "year"))
        if self.page != 1 and not page1:
            params.append(("_next", self.ds_next or ""))
        if nosuggest:
            params.append(("_nosuggest", "1"))
        return f"/{DB_NAME}/records.json?" + urlencode(params)

    def url(self, variant: str) -> str:
        if variant == "ours":
            return self.ours()
        return self.datasette(nosuggest=variant == "datasette-nosuggest")


def _bands(corpus: Corpus) -> dict[str, list[str]]:
    """Searchable tokens by document frequency. The synthetic text has a small vocabulary, so
    "rare" words are the alphabetic words in <= 2% of documents (at least the 5 rarest), and
    "key" tokens are citation keys (letters and digits, in <= 2 documents: their reference)."""
    n = len(corpus.docs)
    ok = {w: c for w, c in corpus.df.items() if w not in STOP_WORDS}
    alpha = {w: c for w, c in ok.items() if w.isalpha()}
    rare = sorted(w for w, c in alpha.items() if c <= n * 0.02)
    if len(rare) < 5:
        rare = sorted(alpha, key=lambda w: (alpha[w], w))[:5]
    keys = sorted(w for w, c in ok.items() if c <= 2 and not w.isalpha())
    medium = sorted(w for w, c in alpha.items() if n * 0.02 < c <= n * 0.15)
    common = sorted(w for w, c in alpha.items() if c >= n * 0.25)
    return {"rare": rare, "key": keys, "medium": medium, "common": common, "all": sorted(alpha)}


def _typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # swap two letters


def make_requests(corpus: Corpus, count: int, seed: int) -> list[Req]:
    rng = random.Random(seed)
    bands = _bands(corpus)
    bands["text"] = text_words = bands["medium"] + bands["common"]
    decks: dict[str, list[str]] = {}

    def word(band: str) -> str:
        """Drawn without replacement until the band is used up, so repeats are rare."""
        deck = decks.get(band)
        if not deck:
            deck = decks[band] = list(bands[band] or bands["all"])
            rng.shuffle(deck)
        return deck.pop()

    def cooccurring() -> str:
        """Two words of one document's title or summary (mostly a query with hits)."""
        doc = rng.choice(corpus.docs)
        text = f"{doc.get('title') or ''} {doc.get('summary') or ''}".lower()
        words = sorted({w for w in WORD.findall(text) if w.isalpha() and w not in STOP_WORDS})
        if len(words) < 2:
            return f"{word('medium')} {word('common')}"
        a, b = rng.sample(words, 2)
        return f"{a} {b}"

    def filters(k: int) -> list[tuple[str, str]]:
        fields = rng.sample(FILTER_FIELDS, k)
        return [(f, rng.choice(corpus.facet_values[f])) for f in fields]

    def one(kind: str) -> Req:
        if kind == "word-common":
            return Req(kind, word("common"))
        if kind == "word-medium":
            return Req(kind, word("medium"))
        if kind == "word-rare":
            return Req(kind, word("rare"))
        if kind == "citation-key":
            return Req(kind, word("key"))
        if kind == "two-words":
            if rng.random() < 0.6:
                return Req(kind, cooccurring())
            a, b = rng.choice(
                [("common", "medium"), ("medium", "medium"), ("common", "common"), ("rare", "medium")]
            )
            return Req(kind, f"{word(a)} {word(b)}")
        if kind == "phrase":
            return Req(kind, f'"{rng.choice(corpus.bigrams)}"')
        if kind == "filter-1":
            return Req(kind, word("text"), filters(1))
        if kind == "filter-2":
            return Req(kind, word("text"), filters(2))
        if kind == "filter-only":
            return Req(kind, "", filters(rng.randint(1, 2)))
        if kind == "sort-year":
            return Req(kind, word("text"), filters(1) if rng.random() < 0.3 else [], sort="year")
        if kind == "sort-relevance":
            return Req(kind, word("text"), sort="relevance")
        if kind == "page-2":
            return Req(kind, word("common"), sort=rng.choice(["evidence", "evidence", "year"]), page=2)
        if kind == "typo":
            candidates = [w for w in text_words if len(w) >= 6]
            for _ in range(50):
                t = _typo(rng, rng.choice(candidates))
                if t not in corpus.df:
                    return Req(kind, t)
            return Req(kind, "zzqxj")
        raise ValueError(kind)

    kinds: list[str] = []
    for kind, share in MIX:
        kinds += [kind] * max(1, round(count * share))
    while len(kinds) < count:
        kinds.append("word-medium")
    rng.shuffle(kinds)
    return [one(k) for k in kinds[:count]]


# ---------------------------------------------------------------------------------------------
# Servers and HTTP
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    cmd: list[str]
    port: int
    probe: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    started_s: float = 0.0

    def start(self, timeout: float = 180.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TMSKB_")}
        t = time.perf_counter()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
                conn.request("GET", self.probe)
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer on port {self.port} in {timeout:.0f} s")
            time.sleep(0.1)
        self.started_s = time.perf_counter() - t

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Client:
    """One keep-alive HTTP/1.1 connection to one server; reconnects only if the server closes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection(HOST, port, timeout=60)
        self.reconnects = 0

    def get(self, path: str) -> tuple[int, bytes, float]:
        """(status, body, seconds); status 0 and the error as body if it failed twice."""
        for attempt in (1, 2):
            t = time.perf_counter()
            try:
                self.conn.request("GET", path, headers={"Accept": "application/json"})
                resp = self.conn.getresponse()
                body = resp.read()
            except (http.client.HTTPException, ConnectionError) as exc:
                self.conn.close()
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
                self.reconnects += 1
                if attempt == 2:
                    return 0, f"{type(exc).__name__}: {exc}".encode(), time.perf_counter() - t
                continue
            elapsed = time.perf_counter() - t
            if resp.will_close:
                self.conn.close()
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
                self.reconnects += 1
            return resp.status, body, elapsed
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


@dataclass
class Sample:
    status: int
    seconds: float
    size: int
    total: int | None  # hits (ours: total; Datasette: filtered_table_rows_count)
    note: str = ""


@dataclass
class SizeResult:
    n: int
    n_docs: int
    n_studies: int
    n_recs: int
    t_generate: float
    t_index: float
    t_sqlite: float
    db_size: int
    startup: dict[str, float]
    reqs: list[Req]
    samples: dict[str, list[Sample]]
    retimed: list[tuple[int, list[float], list[float], list[float]]]
    reconnects: dict[str, int]
    dropped_page2: int = 0
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before/after the timed loop
    code: tuple[str, str] = ("", "")  # code_state() before generating and after the timed loop


def _parse(variant: str, status: int, body: bytes) -> tuple[int | None, str]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, "not JSON"
    if variant == "ours":
        if status != 200:
            return None, str(data.get("error", ""))[:120]
        return int(data.get("total", 0)), ""
    if status != 200 or data.get("ok") is False or "error" in data and data.get("error"):
        return None, str(data.get("error") or data.get("title") or "")[:120]
    note = "facets timed out: " + ",".join(data["facets_timed_out"]) if data.get("facets_timed_out") else ""
    return data.get("filtered_table_rows_count"), note


def _page2_tokens(reqs: list[Req], ds: Client, corpus: Corpus, seed: int) -> tuple[list[Req], int]:
    """Fill Datasette's `_next` for page-2 requests from its page 1; a query whose page 1 is the
    last page gets another common word (bounded), else the request is dropped."""
    rng = random.Random(seed)
    common = _bands(corpus)["common"] or _bands(corpus)["all"]
    kept, dropped = [], 0
    for r in reqs:
        if r.page == 1:
            kept.append(r)
            continue
        for _ in range(20):
            status, body, _ = ds.get(r.datasette(nosuggest=True, page1=True))
            nxt = json.loads(body).get("next") if status == 200 else None
            if nxt:
                r.ds_next = str(nxt)
                break
            r.q = rng.choice(common)
        if r.ds_next:
            kept.append(r)
        else:
            dropped += 1
    return kept, dropped


def measure(n: int, base: Path, n_requests: int, seed: int) -> SizeResult:
    code_before = code_state()
    root = base / f"kb-{n}"
    evidence = round(n / RECORDS_PER_EVIDENCE)
    t = time.perf_counter()
    gen = generate(root, evidence, REPO / "kb" / "vocab", REPO / "kb" / "rulesets")
    t_generate = time.perf_counter() - t
    settings = Settings.for_root(root, base / f"index-{n}")
    t = time.perf_counter()
    ensure_index(settings, force=True)
    t_index = time.perf_counter() - t
    kb = pipeline.load(settings)
    if kb.problems:
        raise AssertionError(f"{len(kb.problems)} problems in the generated KB, e.g. {kb.problems[0]}")
    docs = documents.build_documents(kb)
    del kb
    db = base / f"{DB_NAME}-{n}" / f"{DB_NAME}.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    t_sqlite = build_sqlite(docs, db)
    print(
        f"[{n}] {len(docs)} documents ({len(gen.studies)} studies, {len(gen.recommendations)} "
        f"recommendations, {len(docs) - len(gen.studies) - len(gen.recommendations)} references); "
        f"generate {t_generate:.1f} s, our index {t_index:.1f} s, SQLite+FTS5 {t_sqlite:.1f} s",
        flush=True,
    )
    corpus = corpus_of(docs)
    del docs
    all_reqs = make_requests(corpus, n_requests + WARMUP, seed + n)
    warm, reqs = all_reqs[:WARMUP], all_reqs[WARMUP:]

    bindir = Path(sys.executable).parent
    ours = Server(
        "tmskb serve",
        [
            str(bindir / "tmskb"),
            "serve",
            "--server",
            os.environ.get("TMSKB_BENCH_SERVER", "waitress"),
            "--root",
            str(root),
            "--index-dir",
            str(settings.index_dir),
            "--host",
            HOST,
            "--port",
            str(port := free_port()),
            "--threads",
            "8",
        ],
        port,
        "/api/search?q=",
        base / f"serve-ours-{n}.log",
    )
    dset = Server(
        "datasette serve",
        [str(bindir / "datasette"), "serve", str(db), "--port", str(port2 := free_port()), "--host", HOST],
        port2,
        "/-/versions.json",
        base / f"serve-datasette-{n}.log",
    )
    clients: dict[str, Client] = {}
    try:
        for server in (ours, dset):
            server.start()
        print(
            f"[{n}] servers up: ours :{ours.port} in {ours.started_s:.1f} s, datasette :{dset.port} in "
            f"{dset.started_s:.1f} s",
            flush=True,
        )
        clients = {"ours": Client(ours.port), "datasette": Client(dset.port)}
        client_of = {
            "ours": clients["ours"],
            "datasette-default": clients["datasette"],
            "datasette-nosuggest": clients["datasette"],
        }
        reqs, dropped = _page2_tokens(reqs, clients["datasette"], corpus, seed + n + 1)
        warm = [w for w in warm if w.page == 1]
        for r in warm:  # not timed; page-2 warm-ups were dropped (no Datasette token)
            for v in VARIANTS:
                client_of[v].get(r.url(v))
        samples: dict[str, list[Sample]] = {v: [] for v in VARIANTS}
        load_before = os.getloadavg()[0]
        for i, r in enumerate(reqs):
            order = VARIANTS[i % 3 :] + VARIANTS[: i % 3]
            for v in order:
                status, body, seconds = client_of[v].get(r.url(v))
                if status == 0:  # no HTTP answer: record it, and stop if the server is gone
                    samples[v].append(Sample(0, seconds, 0, None, body.decode()))
                    server = ours if v == "ours" else dset
                    if server.proc is not None and server.proc.poll() is not None:
                        raise RuntimeError(
                            f"{server.name} died (exit code {server.proc.returncode}) at request {i} "
                            f"{r.describe()}: {body.decode()}\n{server.tail()}"
                        )
                    continue
                total, note = _parse(v, status, body)
                samples[v].append(Sample(status, seconds, len(body), total, note))
        load_after = os.getloadavg()[0]
        code_after = code_state()
        # Diagnostics: our five slowest requests, re-timed 5 times each (all three variants).
        slow = sorted(range(len(reqs)), key=lambda i: -samples["ours"][i].seconds)[:5]
        retimed = []
        for i in slow:
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for _ in range(5):
                for v in VARIANTS:
                    times[v].append(client_of[v].get(reqs[i].url(v))[2])
            retimed.append((i, times["ours"], times["datasette-default"], times["datasette-nosuggest"]))
        reconnects = {k: c.reconnects for k, c in clients.items()}
    finally:
        for c in clients.values():
            c.close()
        for server in (ours, dset):
            server.stop()
    return SizeResult(
        n,
        len(corpus.docs),
        len(gen.studies),
        len(gen.recommendations),
        t_generate,
        t_index,
        t_sqlite,
        db.stat().st_size,
        {"ours": ours.started_s, "datasette": dset.started_s},
        reqs,
        samples,
        retimed,
        reconnects,
        dropped,
        (load_before, load_after),
        (code_before, code_after),
    )


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """Percentile with linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def code_state() -> str:
    """Short hash of the code under test (indexer/, app.py) and when it was last modified: the
    servers import it at start-up, so an edit during a run means a mixed measurement."""
    import hashlib

    files = sorted([REPO / "app.py", *(REPO / "indexer").rglob("*.py"), *(REPO / "indexer").rglob("*.json")])
    digest = hashlib.sha256()
    newest = 0.0
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
            newest = max(newest, path.stat().st_mtime)
    when = datetime.fromtimestamp(newest, UTC).strftime("%H:%M:%S UTC")
    return f"{digest.hexdigest()[:12]} (newest file modified {when})"


def machine_info() -> list[str]:
    from importlib.metadata import version

    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or str(os.cpu_count())
    libs = ", ".join(
        f"{p} {version(p)}"
        for p in ("datasette", "sqlite-utils", "uvicorn", "Whoosh-Reloaded", "Flask", "gunicorn")
    )
    return [
        f"date    : {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"machine : nproc {nproc}, CPU {model}, {platform.system()} {platform.release()}",
        f"load    : {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15-min load average at start)",
        f"python  : {platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        f"versions: {libs}, SQLite {sqlite3.sqlite_version}",
    ]


def report(r: SizeResult) -> None:
    line = "-" * 100
    print()
    print(line)
    print(
        f"N={r.n}: {r.n_docs} indexed records; {len(r.reqs)} timed requests per variant"
        + (f" ({r.dropped_page2} page-2 requests dropped: no page 2 in Datasette)" if r.dropped_page2 else "")
        + f"; SQLite DB {r.db_size / 1024 / 1024:.1f} MiB"
    )
    print(line)
    kinds = Counter(q.kind for q in r.reqs)
    print("request mix: " + ", ".join(f"{k} {kinds[k]}" for k, _ in MIX if kinds[k]))
    head = (
        f"{'variant':<22}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'max ms':>9}{'errors':>8}{'mean size':>11}"
    )
    print(head)
    stats: dict[str, dict[str, float]] = {}
    for v in VARIANTS:
        xs = [s.seconds for s in r.samples[v]]
        errors = sum(1 for s in r.samples[v] if s.status != 200 or s.total is None)
        size = statistics.fmean(s.size for s in r.samples[v])
        stats[v] = {"p50": pct(xs, 50), "p95": pct(xs, 95)}
        print(
            f"{v:<22}{ms(pct(xs, 50)):>9}{ms(pct(xs, 95)):>9}{ms(statistics.fmean(xs)):>9}{ms(max(xs)):>9}"
            f"{errors:>8}{size / 1024:>9.1f} K"
        )
    for v in VARIANTS:
        codes = Counter(s.status for s in r.samples[v] if s.status != 200)
        if codes:
            first = next(i for i, s in enumerate(r.samples[v]) if s.status != 200)
            print(
                f"  {v}: non-200 (0 = no HTTP answer) {dict(codes)}; "
                f"first: {r.reqs[first].describe()} -> {r.samples[v][first].note}"
            )
        timed_out = [i for i, s in enumerate(r.samples[v]) if s.note.startswith("facets timed out")]
        if timed_out:
            print(f"  {v}: {len(timed_out)} responses had facets that timed out (facet_time_limit_ms)")
    for ds in ("datasette-default", "datasette-nosuggest"):
        print(
            f"ratio ours/{ds:<20} p50 {stats['ours']['p50'] / stats[ds]['p50']:.2f}   "
            f"p95 {stats['ours']['p95'] / stats[ds]['p95']:.2f}"
        )
    fastest = min(("datasette-default", "datasette-nosuggest"), key=lambda d: stats[d]["p95"])
    ratio = stats["ours"]["p95"] / stats[fastest]["p95"]
    verdict = "PASS" if ratio <= 1.0 else "FAIL"
    failed = {v: sum(1 for s in r.samples[v] if s.status != 200 or s.total is None) for v in VARIANTS}
    if any(failed.values()):
        verdict = f"INVALID (failed requests: {failed})"
    scope = "target" if r.n == TARGET_N else "(target applies at N=10000)"
    print(
        f"{scope}: our p95 {ms(stats['ours']['p95'])} ms vs fastest Datasette ({fastest}) p95 "
        f"{ms(stats[fastest]['p95'])} ms -> ratio {ratio:.2f}" + (f": {verdict}" if r.n == TARGET_N else "")
    )
    if r.code[0] != r.code[1]:
        print(f"WARNING: the code under test changed during this size: {r.code[0]} -> {r.code[1]}")
    else:
        print(f"code under test: {r.code[0]}")
    print(
        f"servers answered after: ours {r.startup['ours']:.1f} s, datasette {r.startup['datasette']:.1f} s; "
        f"reconnects {r.reconnects}; 1-min load average {r.load[0]:.2f} before, {r.load[1]:.2f} after "
        f"the timed loop (this benchmark alone keeps about 1 process busy)"
    )

    print("\nby kind, p50 / p95 ms:")
    print(
        f"  {'kind':<16}{'n':>4}" + "".join(f"{SHORT[v]:>22}" for v in VARIANTS) + f"{'ours/fastest p50':>18}"
    )
    for kind, _ in MIX:
        idx = [i for i, q in enumerate(r.reqs) if q.kind == kind]
        if not idx:
            continue
        cells, p50s = [], {}
        for v in VARIANTS:
            xs = [r.samples[v][i].seconds for i in idx]
            p50s[v] = pct(xs, 50)
            cells.append(f"{ms(pct(xs, 50))} / {ms(pct(xs, 95))}")
        best = min(p50s["datasette-default"], p50s["datasette-nosuggest"])
        print(
            f"  {kind:<16}{len(idx):>4}"
            + "".join(f"{c:>22}" for c in cells)
            + f"{p50s['ours'] / best:>18.2f}"
        )

    print("\nour 10 slowest requests (ms; hits = our total / Datasette rows):")
    slow = sorted(range(len(r.reqs)), key=lambda i: -r.samples["ours"][i].seconds)[:10]
    for i in slow:
        o, d, s = (r.samples[v][i] for v in VARIANTS)
        print(
            f"  {ms(o.seconds):>7} ours  {ms(d.seconds):>7} ds  {ms(s.seconds):>7} ds-ns  "
            f"hits {o.total}/{d.total}  {o.size / 1024:.0f} K  [{r.reqs[i].kind}] {r.reqs[i].describe()}"
        )
    print("re-timed 5x each, median (min) ms: ours | ds-default | ds-nosuggest")
    for i, ours_t, dd_t, dn_t in r.retimed:
        cells = [f"{ms(statistics.median(t))} ({ms(min(t))})" for t in (ours_t, dd_t, dn_t)]
        print(f"  {' | '.join(cells)}  [{r.reqs[i].kind}] {r.reqs[i].describe()}")

    pairs = [
        (a, b)
        for a, b in (
            (r.samples["ours"][i].total, r.samples["datasette-default"][i].total) for i in range(len(r.reqs))
        )
        if a is not None and b is not None
    ]
    same = sum(1 for a, b in pairs if a == b)
    ratios = [b / a for a, b in pairs if a]
    print(
        f"\nhit counts: equal in {same}/{len(pairs)} requests; Datasette/ours median "
        f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}); "
        f"zero hits: ours {sum(1 for a, _ in pairs if a == 0)}, "
        f"Datasette {sum(1 for _, b in pairs if b == 0)}"
        if ratios
        else "\nhit counts: none comparable"
    )
    print(
        "  (ours also searches authors, expands vocabulary synonyms and matches every value of a "
        "multi-valued field; Datasette's col=value filter matches the space-joined column exactly)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated indexed-record counts")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per variant and size")
    parser.add_argument("--out", type=Path, help="working directory (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    try:
        import datasette  # noqa: F401
        import sqlite_utils  # noqa: F401
    except ImportError:
        sys.exit("needs the bench-only tools: .venv/bin/pip install datasette sqlite-utils")
    if args.out:
        base = args.out.resolve()
        base.mkdir(parents=True, exist_ok=True)
        for child in base.iterdir():
            if child.name.startswith(("index-", "kb-", f"{DB_NAME}-", "serve-")):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    else:
        base = Path(tempfile.mkdtemp(prefix="tmskb-http-bench-"))
    print(f"working directory: {base}", flush=True)
    for line in machine_info():
        print(line)
    print(f"requests: {args.requests} timed + {WARMUP} warm-up per size, seed {args.seed}", flush=True)
    try:
        results = []
        for n in sizes:
            results.append(measure(n, base, args.requests, args.seed))
            report(results[-1])
        print()
        print("summary (ms)  " + "  ".join(f"N={r.n}" for r in results))
        for r in results:
            p95 = {v: pct([s.seconds for s in r.samples[v]], 95) for v in VARIANTS}
            p50 = {v: pct([s.seconds for s in r.samples[v]], 50) for v in VARIANTS}
            print(
                f"  N={r.n:<6} p50 "
                + " ".join(f"{SHORT[v]} {ms(p50[v])}" for v in VARIANTS)
                + " | p95 "
                + " ".join(f"{SHORT[v]} {ms(p95[v])}" for v in VARIANTS)
            )
    finally:
        if args.keep or args.out:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
