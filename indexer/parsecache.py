"""A persistent cache of parsed source files, so an edit re-parses only what changed.

It lives beside the index generations, in `<index_dir>/parse-cache.sqlite`, and holds:

* `stamps`: per source file its size, mtime, ctime and inode with the sha256 of its bytes, so an
  unchanged file is not even read again (as git's index does). A stamp taken within a second or
  so of the file's last change is not trusted next time (the file may change again within the
  same clock tick), so that file is hashed again.
* `parsed`: per record file and for references.bib, the parse result (record, problems) keyed by
  the file's path and content hash and by `CODE_VERSION`, a hash of the parsing code itself.
* `nodes` and `meta`: what the last build indexed from each record and reference (its content
  hash, what it links to, the spelling words of its document), for build.py to re-build only the
  documents an edit can change (see `affected`). They describe one generation, named in `meta`;
  a generation built by anything else (`tmskb add`) makes build.py rebuild every document.

A cached result is only used when path, content hash and code version all match, so it equals
a fresh parse. Any failure to read or write the cache (a damaged file, a full disk) is logged
and the build goes on without it: the cache can only make a build faster, never wrong.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import multiprocessing
import os
import pickle
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import bib, records
from .models import Problem, Reference

log = logging.getLogger(__name__)

FILENAME = "parse-cache.sqlite"
PACKAGE = Path(__file__).resolve().parent
_P = TypeVar("_P", str, Path)  # a file named by its text or its Path: hashes keeps what it is given
RACY_NS = 2_000_000_000  # a file changed this recently may change again unseen within one tick
MEMO_RECENT_MAX = 500  # results kept beside a memo before the whole memo is written again


def _code_version(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256(f"{sys.version}\0{pickle.HIGHEST_PROTOCOL}".encode())
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


# What a parse result depends on: the parsers and the models they build (and the schemas).
CODE_VERSION = _code_version(
    [
        *(PACKAGE / name for name in ("bib.py", "records.py", "schema.py", "yamlio.py", "models.py")),
        PACKAGE / "parsecache.py",
        *(PACKAGE / "schemas").glob("*.json"),
    ]
)
# What an index document depends on: any indexer code (documents, grading, vocabularies...).
DOCS_VERSION = _code_version([*PACKAGE.glob("*.py"), *(PACKAGE / "schemas").glob("*.json")])


@dataclass
class Stats:
    """What the cache saved during one build (shown in the build report)."""

    parsed: int = 0  # files parsed (cache misses), references.bib included
    reused: int = 0  # files whose cached parse was used
    hashed: int = 0  # files read to hash them (stamp missing, changed or too recent)


class Database:
    """The cache's SQLite file. Any error is logged once; from then on reads find nothing and
    writes are dropped, and commit() rolls back: a cache that fails only costs time."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self.connection = connection
        self.failed = False
        self.damaged = False  # not a database, or a malformed one (not merely locked)

    def _fail(self, exc: Exception) -> None:
        if not self.failed:
            log.warning("parse cache %s not used: %s", self.path, exc)
        self.failed = True
        self.damaged = self.damaged or _damaged(exc)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.failed:
            return []
        try:
            return self.connection.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            self._fail(exc)
            return []

    def write(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.write_many(sql, [params])

    def write_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self.failed:
            return
        try:
            self.connection.executemany(sql, rows)
        except sqlite3.Error as exc:
            self._fail(exc)

    def commit(self) -> bool:
        """True if everything written since the last commit is now on disk."""
        try:
            if not self.failed:
                self.connection.commit()
                return True
            self.connection.rollback()
        except sqlite3.Error as exc:
            self._fail(exc)
            with contextlib.suppress(sqlite3.Error):
                self.connection.rollback()
        return False

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.connection.close()


@dataclass
class ParseCache:
    """An open cache; `None` everywhere it is optional means "build without a cache"."""

    path: Path
    db: Database
    stats: Stats = field(default_factory=Stats)
    _stamps: dict[str, tuple[int, int, int, int, str]] = field(default_factory=dict)
    _new_stamps: dict[str, tuple[int, int, int, int, str]] = field(default_factory=dict)
    _hashes: dict[str, str] = field(default_factory=dict)  # absolute path -> sha256 (this build)
    shas: dict[str, str] = field(default_factory=dict)  # shown path -> sha256 of each file parsed
    _nodes: dict[str, str] | None = None
    _listed: dict[str, list[str]] = field(default_factory=dict)
    _files: dict[str, list[Path]] = field(default_factory=dict)

    # -- file hashes ---------------------------------------------------------------------------

    def record_paths(self, kb_dir: Path) -> list[str]:
        """records.record_paths, listed once per build (the fingerprint and the parse need it)."""
        key = str(kb_dir)
        if key not in self._listed:
            self._listed[key] = records.record_paths(kb_dir)
        return self._listed[key]

    def record_files(self, kb_dir: Path) -> list[Path]:
        """records.record_files, as Paths (made once per build, and only when a file is read)."""
        key = str(kb_dir)
        if key not in self._files:
            self._files[key] = list(records.as_paths(self.record_paths(kb_dir)))
        return self._files[key]

    def hashes(self, paths: Iterable[_P]) -> dict[_P, str]:
        """sha256 of each existing file ('' for a missing one), reading only changed files."""
        if not self._stamps:
            self._stamps = {
                row[0]: row[1:]
                for row in self.db.query("SELECT path, size, mtime, ctime, ino, sha FROM stamps")
            }
        stamps, known = self._stamps, self._hashes
        out: dict[_P, str] = {}
        now = time.time_ns()
        for path in paths:  # a tight loop: an edit at 100k records stats every file
            key = str(path)
            sha = known.get(key)
            if sha is None:
                try:
                    st = os.stat(key)
                except OSError:
                    out[path] = ""
                    continue
                stamp = stamps.get(key)
                if (
                    stamp is not None
                    and stamp[0] == st.st_size
                    and stamp[1] == st.st_mtime_ns
                    and stamp[2] == st.st_ctime_ns
                    and stamp[3] == st.st_ino
                ):
                    sha = stamp[4]
                else:
                    try:
                        sha = hashlib.sha256(Path(key).read_bytes()).hexdigest()
                    except OSError:
                        out[path] = ""
                        continue
                    self.stats.hashed += 1
                    self._remember(key, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino), sha, now)
                known[key] = sha
            out[path] = sha
        return out

    def _remember(self, key: str, sig: tuple[int, int, int, int], sha: str, now: int) -> None:
        # A racy stamp (the file changed just now) is stored with an impossible size, so the
        # next build hashes the file again instead of trusting a clock tick.
        racy = now - max(sig[1], sig[2]) < RACY_NS
        self._new_stamps[key] = (-1 if racy else sig[0], *sig[1:], sha)

    def learn(self, path: Path, sig: os.stat_result, data: bytes) -> str:
        """Record the hash of bytes just read (stat taken before reading) and return it."""
        sha = hashlib.sha256(data).hexdigest()
        key = str(path)
        self._hashes[key] = sha
        self._remember(key, (sig.st_size, sig.st_mtime_ns, sig.st_ctime_ns, sig.st_ino), sha, time.time_ns())
        return sha

    # -- parse results -------------------------------------------------------------------------

    def cached(self, keys: Iterable[str]) -> dict[str, tuple[str, bytes]]:
        """key -> (sha, pickled result) of the cached parses of the current code version."""
        wanted = set(keys)
        if not wanted:
            return {}
        # One range scan of the primary key: the record files' keys sit together, apart from
        # references.bib's result and the memos (tens of MB at 100k records, read elsewhere).
        rows = self.db.query(
            "SELECT key, sha, value FROM parsed WHERE key BETWEEN ? AND ? AND code = ? AND sha != ''",
            (min(wanted), max(wanted), CODE_VERSION),
        )
        return {key: (sha, value) for key, sha, value in rows if key in wanted}

    def cached_sha(self, key: str) -> str:
        """The content hash of a cached parse of the current code version ('' if none), without
        reading the result."""
        rows = self.db.query("SELECT sha FROM parsed WHERE key = ? AND code = ?", (key, CODE_VERSION))
        return str(rows[0][0]) if rows else ""

    def cached_exact(self, keys: Iterable[str]) -> dict[str, tuple[str, bytes]]:
        """cached() of a few keys scattered over the table (a range scan would read it all)."""
        rows = self._rows_in(
            "SELECT key, sha, value FROM parsed WHERE code = ? AND sha != '' AND key IN ({})",
            (CODE_VERSION,),
            keys,
        )
        return {key: (sha, value) for key, sha, value in rows}

    def _rows_in(self, sql: str, params: tuple[Any, ...], keys: Iterable[str]) -> list[tuple[Any, ...]]:
        """Rows of `sql` whose `IN ({})` holds each of `keys`, asked 500 at a time (SQLite's
        limit on bound parameters)."""
        wanted = sorted(set(keys))
        out: list[tuple[Any, ...]] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            out += self.db.query(sql.format(",".join("?" * len(chunk))), (*params, *chunk))
        return out

    def store(self, items: list[tuple[str, str, bytes]]) -> None:
        """Remember parse results (key, sha, pickled value)."""
        self.db.write_many(
            "INSERT OR REPLACE INTO parsed(key, sha, code, value) VALUES (?, ?, ?, ?)",
            [(key, sha, CODE_VERSION, value) for key, sha, value in items],
        )

    # -- what the last build indexed -------------------------------------------------------------

    def meta(self, name: str) -> str | None:
        rows = self.db.query("SELECT value FROM meta WHERE key = ?", (name,))
        return str(rows[0][0]) if rows else None

    def nodes(self) -> dict[str, str]:
        """Document id -> the content hash of its own source, as of the last build."""
        if self._nodes is None:
            self._nodes = dict(self.db.query("SELECT id, value FROM nodes"))  # TEXT columns: str
        return self._nodes

    def all_links(self) -> dict[str, list[str]]:
        """Document id -> what its source linked to, as of the last build (documents that link)."""
        rows = self.db.query("SELECT id, links FROM nodes WHERE links != ''")
        return {str(i): links.split("\n") for i, links in rows}

    def node_details(self, ids: Iterable[str]) -> dict[str, tuple[list[str], list[str]]]:
        """Document id -> (what its source linked to, its spelling words), for these ids."""
        rows = self._rows_in("SELECT id, links, words FROM nodes WHERE id IN ({})", (), ids)
        return {
            doc_id: (links.split("\n") if links else [], words.split(" ") if words else [])
            for doc_id, links, words in rows
        }

    def save_nodes(
        self,
        rows: list[tuple[str, str, list[str], str]],
        removed: Iterable[str],
        meta: dict[str, str],
        *,
        replace_all: bool,
    ) -> None:
        """Store (id, value, links, words) of rebuilt documents (words as index.words_text
        gives them), forget removed ones, set meta."""
        self._nodes = None
        if replace_all:
            self.db.write("DELETE FROM nodes")
        self.db.write_many("DELETE FROM nodes WHERE id = ?", [(i,) for i in removed])
        self.db.write_many(
            "INSERT OR REPLACE INTO nodes(id, value, links, words) VALUES (?, ?, ?, ?)",
            [(i, v, "\n".join(links), words) for i, v, links, words in rows],
        )
        self.db.write_many("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", list(meta.items()))

    def forget_nodes(self) -> None:
        """The last build's documents are no longer known (the next build rebuilds them all)."""
        self.db.write("DELETE FROM meta WHERE key = 'generation'")

    @contextlib.contextmanager
    def memo(self, name: str, *depends: object) -> Iterator[FileMemo]:
        """Results of a pure function of one source file and `depends` (and of the indexer's
        code), by file and content hash; what is computed meanwhile is stored on leaving."""
        parts = "\0".join(repr(d) for d in (DOCS_VERSION, *depends))
        key = f"{name}\0" + hashlib.sha256(parts.encode()).hexdigest()
        delta_key = f"{key}\0recent"
        base: dict[str, tuple[str, Any]] = {}
        recent: dict[str, tuple[str, Any]] = {}
        with collector_paused(), contextlib.suppress(Exception):  # a damaged entry: compute them all
            for row_key, blob in self.db.query(
                "SELECT key, value FROM parsed WHERE key IN (?, ?)", (key, delta_key)
            ):
                if row_key == key:
                    base = _loads(blob)
                else:
                    recent = _loads(blob)
        memo = FileMemo(self.shas, {**base, **recent})
        yield memo
        if memo.computed:
            self._store_memo(name, key, base, recent, memo)

    def _store_memo(
        self,
        name: str,
        key: str,
        base: dict[str, tuple[str, Any]],
        recent: dict[str, tuple[str, Any]],
        memo: FileMemo,
    ) -> None:
        """Write what a memo computed. A few results (an edit) go to a small row beside the
        whole memo, instead of writing the whole again (tens of MB at 100k records); the whole
        is written again, without the files no longer seen, once that row holds many."""
        recent = {**recent, **memo.computed}
        if base and len(recent) <= MEMO_RECENT_MAX:
            rows = [(f"{key}\0recent", recent)]
        else:
            kept = {path: value for path, value in {**base, **recent}.items() if path in memo.seen}
            rows = [(key, kept)]
            # one memo per name: those of other code, rules or vocabularies would only pile up
            self.db.write("DELETE FROM parsed WHERE key > ? AND key < ?", (f"{name}\0", f"{name}\1"))
        self.db.write_many(
            "INSERT OR REPLACE INTO parsed(key, sha, code, value) VALUES (?, '', ?, ?)",
            [(k, CODE_VERSION, pickle.dumps(v, pickle.HIGHEST_PROTOCOL)) for k, v in rows],
        )

    def commit(self) -> None:
        """Write what this build learnt (stamps included): all of it, or on any error nothing.
        Results of other versions of the code are dropped: they can never be used again."""
        self.db.write("DELETE FROM parsed WHERE code != ?", (CODE_VERSION,))
        self.db.write_many(
            "INSERT OR REPLACE INTO stamps(path, size, mtime, ctime, ino, sha) VALUES (?, ?, ?, ?, ?, ?)",
            [(k, *v) for k, v in self._new_stamps.items()],
        )
        if self.db.commit():
            self._stamps.update(self._new_stamps)
        self._new_stamps.clear()

    def close(self) -> None:
        self.db.close()


@dataclass
class FileMemo:
    """Results by source file, reused while the file's content hash is the one they were for."""

    shas: dict[str, str]
    known: dict[str, tuple[str, Any]]
    computed: dict[str, tuple[str, Any]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    def get(self, path: str, compute: Callable[[], Any], also: Iterable[str] = ()) -> Any:
        """The result for the file shown as `path` (and the files shown as `also`, if it depends
        on them too): remembered if they are unchanged, else `compute()`d."""
        self.seen.add(path)
        sha = self.shas.get(path, "")
        for other in also:
            other_sha = self.shas.get(other, "")
            sha = f"{sha} {other}:{other_sha}" if sha and other_sha else ""
        hit = self.known.get(path)
        if sha and hit is not None and hit[0] == sha:
            return hit[1]
        value = compute()
        if sha:
            self.computed[path] = (sha, value)
        return value


SCHEMA = """
CREATE TABLE IF NOT EXISTS stamps(path TEXT PRIMARY KEY, size INT, mtime INT, ctime INT, ino INT, sha TEXT);
CREATE TABLE IF NOT EXISTS parsed(key TEXT PRIMARY KEY, sha TEXT, code TEXT, value BLOB);
CREATE TABLE IF NOT EXISTS nodes(id TEXT PRIMARY KEY, value TEXT, links TEXT, words TEXT);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
"""


@contextlib.contextmanager
def opened(index_dir: Path) -> Iterator[ParseCache | None]:
    """The cache of this index directory (created if missing), or None if it cannot be used."""
    path = index_dir / FILENAME
    cache: ParseCache | None = None
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=60)
        connection.executescript(SCHEMA)
        cache = ParseCache(path, Database(path, connection))
    except (OSError, sqlite3.Error) as exc:
        log.warning("parse cache %s not used: %s", path, exc)
        if _damaged(exc):  # start a new one next time
            with contextlib.suppress(OSError):
                path.unlink()
    try:
        yield cache
    finally:
        if cache is not None:
            cache.close()
            if cache.db.damaged:
                with contextlib.suppress(OSError):
                    path.unlink()


def _damaged(exc: Exception) -> bool:
    """A file that is no database, or a malformed one; a locked or read-only one is not."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)


def _loads(blob: bytes) -> Any:
    return pickle.loads(blob)


def load_result(blob: bytes) -> records.FileResult:
    """A cached read_record_file result (from cached or cached_exact)."""
    result: records.FileResult = pickle.loads(blob)
    return result


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic GC paused: unpickling many small objects triggers it over and over (about 3x
    slower), and a build's millions of long-lived objects, with few cycles, made building the
    documents take 32 s instead of 16 s at 100k records. Cycles left are collected later."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


PARALLEL_MIN = 2000  # cache misses worth a pool of parser processes (start-up about 0.1 s)
CHUNK = 250


def parse_sources(
    cache: ParseCache | None, bib_path: Path, shown_bib: str, kb_dir: Path, shown_root: Path
) -> tuple[tuple[dict[str, Reference], list[Problem]], records.ParsedRecords]:
    """parse_bib and read_records together: with many cache misses (a cold build) both run in a
    pool of processes, one per core, the bibliography beside the first record files."""
    if cache is None:
        return bib.parse_bib(bib_path, shown_bib), records.read_records(kb_dir, shown_root)
    paths = cache.record_files(kb_dir)
    shown = records.shown_paths(paths, shown_root)
    keys = [f"{s}\0{p}" for s, p in zip(shown, paths, strict=True)]
    hits = cache.cached(keys)
    # Only a file with a cache entry needs its hash now (a cold build has none): a miss is
    # hashed from the very bytes its parse reads.
    hashes = cache.hashes([p for p, k in zip(paths, keys, strict=True) if k in hits])
    found: dict[Path, records.FileResult] = {}
    with collector_paused():
        for path, name, key in zip(paths, shown, keys, strict=True):
            hit = hits.get(key)
            sha = hashes.get(path, "")
            if hit is not None and sha and hit[0] == sha:
                try:
                    found[path] = _loads(hit[1])
                    cache.stats.reused += 1
                    cache.shas[name] = sha
                except Exception as exc:  # a damaged entry is a miss, never a wrong result
                    log.warning("parse cache entry %s unreadable: %s", name, exc)
        misses = [(str(p), n, k) for p, n, k in zip(paths, shown, keys, strict=True) if p not in found]
        cores = os.cpu_count() or 1
        if len(misses) >= PARALLEL_MIN and cores > 1 and "fork" in multiprocessing.get_all_start_methods():
            bib_result = _parse_in_pool(cache, misses, found, bib_path, shown_bib, min(cores, 4))
        else:
            bib_result = parse_bib(cache, bib_path, shown_bib)
            for path_s, name, key in misses:
                parsed = _parse_one(path_s, name)
                _take(cache, parsed, path_s, name, key, found)
    return bib_result, records.collect((p, found[p]) for p in paths)


def parse_files(cache: ParseCache, items: Iterable[tuple[Path, str]]) -> dict[Path, records.FileResult]:
    """read_record_file of a few record files (path, shown path), from the cache when their bytes
    are unchanged, else parsed and cached (the delta build's changed files)."""
    items = list(items)
    keys = {path: f"{shown}\0{path}" for path, shown in items}
    hashes = cache.hashes([path for path, _ in items])
    hits = cache.cached_exact(keys.values())
    found: dict[Path, records.FileResult] = {}
    with collector_paused():
        for path, shown in items:
            hit, sha = hits.get(keys[path]), hashes.get(path, "")
            if hit is not None and sha and hit[0] == sha:
                with contextlib.suppress(Exception):  # a damaged entry is a miss
                    found[path] = _loads(hit[1])
                    cache.stats.reused += 1
                    cache.shas[shown] = sha
                    continue
            _take(cache, _parse_one(str(path), shown), str(path), shown, keys[path], found)
    return found


def _take(
    cache: ParseCache,
    parsed: tuple[tuple[int, int, int, int] | None, str, bytes],
    path_s: str,
    name: str,
    key: str,
    found: dict[Path, records.FileResult],
    rows: list[tuple[str, str, bytes]] | None = None,
) -> None:
    """Keep one fresh parse (stat before reading, sha256 of the bytes parsed, pickled result);
    its cache row goes into `rows` when given (stored by the caller, many in one statement)."""
    sig, sha, blob = parsed
    cache.stats.parsed += 1
    found[Path(path_s)] = _loads(blob)
    cache.shas[name] = sha
    if sig is not None and sha:
        cache._hashes[path_s] = sha
        cache._remember(path_s, sig, sha, time.time_ns())
        if rows is None:
            cache.store([(key, sha, blob)])
        else:
            rows.append((key, sha, blob))


def _parse_one(path_s: str, shown: str) -> tuple[tuple[int, int, int, int] | None, str, bytes]:
    """Parse one record file from the bytes hashed, so the cache never pairs a hash with other
    content: (stat signature, sha256, pickled read_record_file result)."""
    path = Path(path_s)
    try:
        st = os.stat(path)
        data = path.read_bytes()
    except OSError:
        return None, "", pickle.dumps(records.read_record_file(path, shown), pickle.HIGHEST_PROTOCOL)
    result = records.read_record_bytes(data, path.stem, shown)
    sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    return sig, hashlib.sha256(data).hexdigest(), pickle.dumps(result, pickle.HIGHEST_PROTOCOL)


def _parse_chunk(items: list[tuple[str, str]]) -> list[tuple[tuple[int, int, int, int] | None, str, bytes]]:
    gc.disable()  # a short-lived worker: collecting cycles would only cost time
    return [_parse_one(path_s, shown) for path_s, shown in items]


def _parse_bib_job(path_s: str, shown: str) -> tuple[str, bytes, str]:
    """bib.parse_bib in a worker: (sha256 before, pickled result, sha256 after)."""
    gc.disable()
    path = Path(path_s)
    before = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    result = bib.parse_bib(path, shown)
    after = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    return before, pickle.dumps(result, pickle.HIGHEST_PROTOCOL), after


def _parse_in_pool(
    cache: ParseCache,
    misses: list[tuple[str, str, str]],
    found: dict[Path, records.FileResult],
    bib_path: Path,
    shown_bib: str,
    processes: int,
) -> tuple[dict[str, Reference], list[Problem]]:
    key = f"{shown_bib}\0{bib_path}"
    sha = cache.hashes([bib_path]).get(bib_path, "")
    hit = cache.cached([key]).get(key) if sha else None
    chunks = [misses[i : i + CHUNK] for i in range(0, len(misses), CHUNK)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        bib_job = None
        if hit is None or hit[0] != sha:  # the slow one first, beside the record files
            bib_job = pool.apply_async(_parse_bib_job, (str(bib_path), shown_bib))
        jobs = [pool.apply_async(_parse_chunk, ([(p, n) for p, n, _ in chunk],)) for chunk in chunks]
        for chunk, job in zip(chunks, jobs, strict=True):
            rows: list[tuple[str, str, bytes]] = []
            for (path_s, name, k), parsed in zip(chunk, job.get(), strict=True):
                _take(cache, parsed, path_s, name, k, found, rows)
            cache.store(rows)
        if bib_job is None:
            return parse_bib(cache, bib_path, shown_bib)
        before, blob, after = bib_job.get()
    cache.stats.parsed += 1
    cache.shas[shown_bib] = before if before == after == sha else ""
    value: tuple[dict[str, Reference], list[Problem]] = _loads(blob)
    if before == after == sha:
        cache.store([(key, sha, blob)])
        _keep_bib(cache, key, sha, value)
    return value


_Bibliography = tuple[dict[str, Reference], list[Problem]]
# The last bibliography this process read into a cache, by code version, cache file and entry
# key, with the hash of its bytes: an edit in a long-running process (tmskb serve, a script's
# loop) takes it from here instead of unpickling every reference again (0.2 s at 46k references).
_LAST_BIB: dict[str, tuple[str, _Bibliography]] = {}


def _bib_key(cache: ParseCache, key: str) -> str:
    return f"{CODE_VERSION}\0{cache.path}\0{key}"


def _copy(value: _Bibliography) -> _Bibliography:
    """Callers add to the problem list (the references are frozen): each gets its own."""
    return dict(value[0]), list(value[1])


def _keep_bib(cache: ParseCache, key: str, sha: str, value: _Bibliography) -> None:
    _LAST_BIB.clear()
    if sha:
        _LAST_BIB[_bib_key(cache, key)] = (sha, _copy(value))


def _kept_bib(cache: ParseCache, key: str, sha: str) -> _Bibliography | None:
    """A copy of the kept bibliography if its bytes are those hashed now and the cache still
    holds the entry it stands for."""
    kept = _LAST_BIB.get(_bib_key(cache, key))
    if kept is None or not sha or kept[0] != sha or cache.cached_sha(key) != sha:
        return None
    return _copy(kept[1])


def parse_bib(cache: ParseCache | None, path: Path, shown: str) -> tuple[dict[str, Reference], list[Problem]]:
    """bib.parse_bib, cached by the file's content hash."""
    if cache is None:
        return bib.parse_bib(path, shown)
    key = f"{shown}\0{path}"
    sha = cache.shas[shown] = cache.hashes([path]).get(path, "")
    kept = _kept_bib(cache, key, sha)
    if kept is not None:
        cache.stats.reused += 1
        return kept
    hit = cache.cached([key]).get(key) if sha else None
    if hit is not None and hit[0] == sha:
        with collector_paused():
            try:
                value: tuple[dict[str, Reference], list[Problem]] = _loads(hit[1])
                cache.stats.reused += 1
                _keep_bib(cache, key, sha, value)
                return value
            except Exception as exc:
                log.warning("parse cache entry %s unreadable: %s", shown, exc)
    cache.stats.parsed += 1
    result = bib.parse_bib(path, shown)
    # bib.parse_bib reads the file itself: keep its result only if the bytes did not change.
    try:
        after = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return result
    if after == sha:
        cache.store([(key, sha, pickle.dumps(result, pickle.HIGHEST_PROTOCOL))])
        _keep_bib(cache, key, sha, result)
    else:  # changed while parsed: whatever was parsed, its hash is not known
        cache.shas[shown] = ""
    return result
