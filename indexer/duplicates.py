"""Pre-flight duplicate detection for `tmskb add`: same identifier, or same author, year and title."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .importers import Candidate
from .keys import ascii_fold

TITLE_SIMILARITY = 0.92


@dataclass(frozen=True)
class Known:
    """What duplicate detection needs to know about an existing reference."""

    key: str
    doi: str | None
    pmid: str | None
    pmcid: str | None
    title: str
    year: str
    first_author: str
    volume: str = ""  # where in its venue: two items of one column in different issues differ here
    first_page: str = ""


def known_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Known]:
    """Known references from documents.known_references rows (as saved with each index generation)."""
    return [
        Known(
            r["key"],
            r["doi"],
            r["pmid"],
            r["pmcid"],
            r["title"],
            r["year"],
            ascii_fold(r["first_author"]),
            str(r.get("volume") or ""),
            str(r.get("first_page") or ""),
        )
        for r in rows
    ]


def identity(candidate: Candidate) -> str:
    """A stable name for a candidate before it has a key (for the not-duplicates file)."""
    f = candidate.fields
    for name in ("doi", "pmid", "pmcid"):
        if f.get(name):
            return f"{name}:{f[name]}"
    first = ascii_fold(candidate.authors[0][0]) if candidate.authors else ""
    return f"title:{normalise_title(f.get('title', ''))}|{f.get('year', '')}|{first}"


def normalise_title(title: str) -> str:
    """Lower-case ASCII words of a title, without braces or accents, single-spaced."""
    decomposed = unicodedata.normalize("NFKD", title.replace("{", "").replace("}", ""))
    letters = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.findall(r"[a-z0-9]+", letters))


def duplicate_reason(candidate: Candidate, known: Known) -> str | None:
    """Why `candidate` is probably `known`, or None."""
    f = candidate.fields
    for name in ("doi", "pmid", "pmcid"):
        mine, theirs = f.get(name), getattr(known, name)
        if mine and theirs and mine.lower() == theirs.lower():
            return f"same {name.upper()} {mine}"
    for name in ("doi", "pmid"):  # different identifiers of the same kind: different papers
        mine, theirs = f.get(name), getattr(known, name)
        if mine and theirs and mine.lower() != theirs.lower():
            return None
    if _elsewhere(known_of(candidate, ""), known):
        return None  # e.g. a recurring column's "Editorial" in two issues: different items
    first = ascii_fold(candidate.authors[0][0]) if candidate.authors else ""
    if (
        not f.get("title")
        or not known.title
        or f.get("year", "") != known.year
        or first != known.first_author
    ):
        return None
    matcher = difflib.SequenceMatcher(None, normalise_title(f["title"]), normalise_title(known.title))
    if matcher.real_quick_ratio() < TITLE_SIMILARITY or matcher.quick_ratio() < TITLE_SIMILARITY:
        return None
    similarity = matcher.ratio()
    if similarity >= TITLE_SIMILARITY:
        return f"same first author, year and title ({similarity:.0%} alike)"
    return None


def _elsewhere(a: Known, b: Known) -> bool:
    """True if both say where they are in their venue (volume, first page) and the places differ."""
    return any(
        x and y and x.lower() != y.lower() for x, y in ((a.volume, b.volume), (a.first_page, b.first_page))
    )


def find_duplicates(
    candidates: list[Candidate], known: Iterable[Known], not_duplicates: set[tuple[str, str]]
) -> dict[int, list[tuple[str, str]]]:
    """For each candidate (by position), the (existing key, reason) pairs it duplicates.

    Candidates are also checked against each other, so one import cannot add a paper twice.
    Only references sharing an identifier, or the first author and year, are compared (any other
    pair has no reason to be a duplicate), so a large import is not compared pair by pair.
    """
    existing = _Buckets()
    for other in known:
        existing.add(other)
    earlier = _Buckets()
    found: dict[int, list[tuple[str, str]]] = {}
    for i, candidate in enumerate(candidates):
        me = known_of(candidate, "")
        name = identity(candidate)
        hits = []
        for other in existing.near(me):
            if (name, other.key) in not_duplicates:
                continue
            reason = duplicate_reason(candidate, other)
            if reason:
                hits.append((other.key, reason))
        for other in earlier.near(me):
            reason = duplicate_reason(candidate, other)
            if reason:
                hits.append((other.key, reason))
        if hits:
            found[i] = hits
        earlier.add(known_of(candidate, f"#{i + 1} in this import"))
    return found


class _Buckets:
    """Known references by identifier and by (first author, year), in the order they were added."""

    def __init__(self) -> None:
        self._all: list[Known] = []
        self._by: dict[tuple[str, str], list[int]] = {}

    def add(self, known: Known) -> None:
        for bucket in self._buckets(known):
            self._by.setdefault(bucket, []).append(len(self._all))
        self._all.append(known)

    def near(self, known: Known) -> list[Known]:
        """Those that share an identifier or the first author and year with `known`."""
        found = {i for bucket in self._buckets(known) for i in self._by.get(bucket, ())}
        return [self._all[i] for i in sorted(found)]

    @staticmethod
    def _buckets(known: Known) -> list[tuple[str, str]]:
        ids = [
            (n, v.lower()) for n, v in (("doi", known.doi), ("pmid", known.pmid), ("pmcid", known.pmcid)) if v
        ]
        return [*ids, ("person", f"{known.first_author}|{known.year}")]


def known_of(candidate: Candidate, key: str) -> Known:
    """A candidate as a Known reference under `key`, to compare candidates with each other."""
    f = candidate.fields
    first = ascii_fold(candidate.authors[0][0]) if candidate.authors else ""
    first_page = re.split(r"[-\u2013\u2014,]", f.get("pages", ""), maxsplit=1)[0].strip()
    return Known(
        key,
        f.get("doi"),
        f.get("pmid"),
        f.get("pmcid"),
        f.get("title", ""),
        f.get("year", ""),
        first,
        f.get("volume", "").strip(),
        first_page,
    )
