"""The knowledge base at a git commit, and its per-commit history (changes.History).

A commit's KB is its references.bib and kb/ files, written into a temporary directory with
`git archive` (read-only: no worktree, nothing in .git changes), indexed there exactly as
`tmskb index` does (build.ensure_index, records with problems left out) and read back as
export rows (changes.snapshot). Every commit is graded by the code running now, so a change in
the history is a change in the data, never in the engine.

Snapshots are cached as JSON files keyed by the commit's kb/ tree and references.bib blob ids
and a digest of this package's code, so a history is computed once per new commit.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from . import changes
from .errors import ProblemsFound
from .kbversion import ReleaseError
from .settings import Settings

SNAPSHOT_FORMAT = 1
GIT_TIMEOUT_S = 120


@dataclass(frozen=True)
class Commit:
    sha: str
    date: str  # committer date, ISO 8601
    subject: str


@dataclass(frozen=True)
class Layout:
    """Where the KB's sources sit in the git work tree (paths relative to its top)."""

    top: Path
    root: str
    kb_dir: str
    bib: str


def git(top: Path, *args: str, binary: bool = False) -> str | bytes:
    """Run git in `top`; ReleaseError with git's message if it fails or is not installed."""
    try:
        done = subprocess.run(
            ["git", "-C", str(top), *args], capture_output=True, check=False, timeout=GIT_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReleaseError(f"git {args[0]}: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ReleaseError(f"git {args[0]}: {message[-1] if message else 'failed'}")
    return done.stdout if binary else done.stdout.decode("utf-8", "replace")


def layout(settings: Settings) -> Layout:
    """The KB's place in its git work tree; ReleaseError when it is not in one."""
    top = Path(str(git(settings.root, "rev-parse", "--show-toplevel")).strip()).resolve()

    def inside(path: Path) -> str:
        try:
            return path.resolve().relative_to(top).as_posix() or "."
        except ValueError:
            raise ReleaseError(f"{path} is not inside the git work tree {top}") from None

    return Layout(top, inside(settings.root), inside(settings.kb_dir), inside(settings.bib_path))


def resolve(where: Layout, revision: str) -> Commit:
    """The commit a revision (sha, tag, branch, HEAD~2) names; ReleaseError if none."""
    if not revision or revision.startswith("-"):
        raise ReleaseError(f"'{revision}' is not a git revision")
    sha = str(git(where.top, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")).strip()
    text = str(git(where.top, "show", "-s", "--format=%H%x1f%cI%x1f%s", sha))
    found, day, subject = text.rstrip("\n").split("\x1f", 2)
    return Commit(found, day, subject)


def commits(where: Layout) -> list[Commit]:
    """The commits that changed the KB's sources, oldest first (first parents: merges count once)."""
    text = str(
        git(
            where.top,
            "log",
            "--first-parent",
            "--reverse",
            "--format=%H%x1f%cI%x1f%s%x1e",
            "--",
            where.kb_dir,
            where.bib,
        )
    )
    found = []
    for record in text.split("\x1e"):
        if record.strip():
            sha, day, subject = record.strip("\n").split("\x1f", 2)
            found.append(Commit(sha, day, subject))
    return found


def _present(where: Layout, sha: str) -> list[str]:
    names = str(git(where.top, "ls-tree", "--name-only", sha, "--", where.kb_dir, where.bib))
    return [n for n in names.splitlines() if n]


def materialise(where: Layout, sha: str, dest: Path, index_dir: Path) -> Settings | None:
    """Write the KB sources of a commit under `dest`; None if the commit has no kb/ yet."""
    present = _present(where, sha)
    if where.kb_dir not in present:
        return None
    data = git(where.top, "archive", "--format=tar", sha, "--", *present, binary=True)
    assert isinstance(data, bytes)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")  # no absolute paths, links out of dest or devices
    return Settings(dest / where.root, dest / where.kb_dir, dest / where.bib, index_dir)


def snapshot_at(where: Layout, sha: str) -> changes.Snapshot | None:
    """The KB of a commit, graded by today's code; None if it has no KB or cannot be loaded."""
    from .build import ensure_index
    from .search import SearchIndex

    with tempfile.TemporaryDirectory(prefix="tmskb-at-") as tmp:
        settings = materialise(where, sha, Path(tmp) / "src", Path(tmp) / "index")
        if settings is None:
            return None
        try:
            ensure_index(settings)
        except ProblemsFound:
            return None  # problems no single record owns (e.g. an unreadable references.bib)
        return changes.snapshot(SearchIndex(settings.index_dir))


@cache
def code_digest() -> str:
    """A digest of this package's Python code: cached snapshots are graded by the code."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _cache_key(where: Layout, sha: str) -> str:
    ids = str(git(where.top, "ls-tree", sha, "--", where.kb_dir, where.bib))
    return hashlib.sha256(f"{SNAPSHOT_FORMAT}\0{code_digest()}\0{ids}".encode()).hexdigest()


def cached_snapshot(where: Layout, sha: str, cache_dir: Path | None) -> changes.Snapshot | None:
    """snapshot_at, read from or saved to `cache_dir` (a JSON file per key)."""
    if cache_dir is None:
        return snapshot_at(where, sha)
    path = cache_dir / f"{_cache_key(where, sha)}.json"
    try:
        saved = json.loads(path.read_text("utf-8"))
        return None if saved is None else dict(saved)
    except (OSError, ValueError):
        pass
    found = snapshot_at(where, sha)
    from .fsio import atomic_write

    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(found, ensure_ascii=False))
    return found


def history(
    settings: Settings, cache_dir: Path | None = None, progress: Callable[[int, int], None] | None = None
) -> changes.History:
    """Every commit that changed the KB's sources, with the tracked changes it made.

    The first loadable commit is the baseline (what it holds counts as first seen then). A
    commit whose KB cannot be loaded is listed in `skipped`; the next one carries its changes."""
    where = layout(settings)
    found = commits(where)
    entries: list[changes.Entry] = []
    first_seen: dict[str, str] = {}
    skipped: list[str] = []
    previous: changes.Snapshot | None = None
    for n, commit in enumerate(found, start=1):
        state = cached_snapshot(where, commit.sha, cache_dir)
        if progress is not None:
            progress(n, len(found))
        if state is None:
            skipped.append(commit.sha)
            continue
        for rid in state.keys() - first_seen.keys():
            first_seen[rid] = commit.date
        diff = tuple(changes.compare(previous, state)) if previous is not None else ()
        entries.append(changes.Entry(commit.sha, commit.date, commit.subject, diff, previous is None))
        previous = state
    return changes.History(tuple(entries), first_seen, tuple(skipped))


HISTORY_FILE = "history.json"  # in the index directory, read by the web's /changes page
CACHE_DIR = "history-cache"


def refresh_history(
    settings: Settings, progress: Callable[[int, int], None] | None = None
) -> changes.History:
    """Compute the history (snapshots cached beside the index) and save it for the web."""
    found = history(settings, settings.index_dir / CACHE_DIR, progress)
    changes.write_history(settings.index_dir / HISTORY_FILE, found)
    return found
