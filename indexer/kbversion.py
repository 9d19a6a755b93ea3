"""Which knowledge base a page, an API answer, an export or a release shows: its version and date.

The curated release metadata is `kb/release.json` (`{"version": "0.1.0", "date": "2026-12-02"}`):
JSON, so that the web workers read it with the standard library (the search path never loads
the YAML stack), and not a record (record files are YAML). The content hash is the fingerprint
of the sources (`pipeline.fingerprint`, which the index manifest stores as `fingerprint`): equal
hashes mean the same references.bib and kb/ files, so a page and a release package can be
compared by it. `tmskb release` (indexer/release.py) records all three in the package.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from .errors import KBError

RELEASE_FILE = "release.json"
VERSION_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")
HASH_ALGORITHM = "sha256"

log = logging.getLogger(__name__)


class ReleaseError(KBError):
    """Release metadata or a release that cannot be made; the message says what to fix."""


@dataclass(frozen=True)
class Edition:
    """A knowledge base's version, release date and content hash (None where unknown)."""

    version: str | None
    date: str | None
    content_hash: str | None = None
    indexed: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The API's `kb` object."""
        return {
            "version": self.version,
            "date": self.date,
            "content_hash": f"{HASH_ALGORITHM}:{self.content_hash}" if self.content_hash else None,
            "indexed": self.indexed,
        }

    def text(self) -> str:
        """'version 0.1.0 of 2026-12-02, content sha256 d8f50cee5edc' (for footers and exports)."""
        parts = [f"version {self.version}" + (f" of {self.date}" if self.date else "")]
        if not self.version:
            parts = ["unreleased version"]
        if self.content_hash:
            parts.append(f"content {HASH_ALGORITHM} {self.content_hash[:12]}")
        return ", ".join(parts)


def check_version(version: str) -> str:
    """The version if it is usable in file names and URLs, else ReleaseError."""
    if not VERSION_PATTERN.fullmatch(version):
        raise ReleaseError(
            f"version '{version}' is not usable (expected letters, digits and . + _ -, e.g. 0.1.0)"
        )
    return version


def check_date(value: str) -> str:
    """The date if it is an ISO date (YYYY-MM-DD), else ReleaseError."""
    try:
        date.fromisoformat(value)
        usable = len(value) == 10  # fromisoformat also takes 20261202
    except ValueError:
        usable = False
    if not usable:
        raise ReleaseError(f"date '{value}' is not an ISO date (expected YYYY-MM-DD, e.g. 2026-12-02)")
    return value


def read_release(kb_dir: Path) -> dict[str, str]:
    """The checked {version, date} of kb/release.json; {} without the file; ReleaseError if bad."""
    path = Path(kb_dir) / RELEASE_FILE
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        raise ReleaseError(f'{path}: expected {{"version": "0.1.0", "date": "YYYY-MM-DD"}}')
    found = {"version": check_version(data["version"])}
    if data.get("date") is not None:
        found["date"] = check_date(str(data["date"]))
    return found


_CACHE: dict[Path, tuple[tuple[int, int], dict[str, str]]] = {}


def served_release(kb_dir: Path) -> dict[str, str]:
    """read_release for the web, re-read only when the file changes; a bad file is logged and
    treated as no release (a page never fails because of it; `tmskb release` reports it)."""
    path = Path(kb_dir) / RELEASE_FILE
    try:
        stat = path.stat()
    except OSError:
        return {}
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        found = read_release(kb_dir)
    except ReleaseError as exc:
        log.warning("%s", exc)
        found = {}
    _CACHE[path] = (stamp, found)
    return found


def edition(kb_dir: Path, manifest: dict[str, Any] | None) -> Edition:
    """The served KB's edition: release metadata from kb_dir, content hash and build time from
    the index generation's manifest (None without an index)."""
    release = served_release(kb_dir)
    manifest = manifest or {}
    return Edition(
        release.get("version"),
        release.get("date"),
        str(manifest.get("fingerprint") or "") or None,
        str(manifest.get("built") or "") or None,
    )


EDITION_FILE = "edition.json"  # in the index directory: the release metadata the index is served with


def publish(kb_dir: Path, index_dir: Path) -> None:
    """Copy kb/release.json's version and date into the index directory (when they differ), so
    the web and the API, which read only the index, show them. A bad release file is logged and
    treated as none here (`tmskb release` reports it)."""
    try:
        found = read_release(kb_dir)
    except ReleaseError as exc:
        log.warning("%s", exc)
        found = {}
    path = Path(index_dir) / EDITION_FILE
    body = json.dumps(found, sort_keys=True) + "\n"
    try:
        if path.read_text("utf-8") == body:
            return
    except OSError:
        pass
    from .fsio import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, body)


def read_edition(index_dir: Path) -> dict[str, str]:
    """The {version, date} published into an index directory ({} when none)."""
    try:
        data = json.loads((Path(index_dir) / EDITION_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in data.items() if k in ("version", "date")} if isinstance(data, dict) else {}
