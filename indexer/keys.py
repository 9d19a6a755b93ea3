"""BibTeX keys: ASCII folding and the `<surname><year><word>` pattern of new keys."""

from __future__ import annotations

import re
import unicodedata

from .importers import Candidate

STOP_WORDS = frozenset("a an and are as at by for from in into is of on or the to with".split())


# The documented shape of a key (docs/kb-format.md, *Citation keys*): lower-case ASCII surname,
# four-digit year, a word; an import's own key is kept only when it has this shape.
DOCUMENTED_KEY = re.compile(r"[a-z][a-z0-9]*[0-9]{4}[a-z0-9]*")


def fits_pattern(key: str) -> bool:
    """True if `key` has the documented shape, and so is also a valid study id."""
    return DOCUMENTED_KEY.fullmatch(key) is not None


def ascii_fold(text: str) -> str:
    """'André-Obadia' -> 'andreobadia': lower-case ASCII letters and digits only."""
    decomposed = unicodedata.normalize("NFKD", text)
    return re.sub(r"[^a-z0-9]", "", "".join(c for c in decomposed if not unicodedata.combining(c)).lower())


def make_key(candidate: Candidate, taken: set[str]) -> str:
    """<first author (else editor) surname><year><first significant title word, else venue word>,
    a/b/c on clashes."""
    people = candidate.authors or candidate.editors
    surname = ascii_fold(people[0].last) if people else "anon"
    year = candidate.fields.get("year", "nd")
    words = [ascii_fold(w) for w in re.findall(r"[^\W_]+", candidate.fields.get("title", ""))]
    words = [w for w in words if w and w not in STOP_WORDS]
    if not words:
        venue = next(
            (candidate.fields[f] for f in ("journal", "booktitle", "howpublished") if f in candidate.fields),
            "",
        )
        words = [w for w in (ascii_fold(v) for v in venue.split()) if len(w) > 2] or ["ref"]
    base = f"{surname or 'anon'}{year}{words[0]}"
    lowered = {k.lower() for k in taken}
    key, suffix = base, 0
    while key.lower() in lowered:
        key = base + "abcdefghijklmnopqrstuvwxyz"[suffix % 26] * (suffix // 26 + 1)
        suffix += 1
    return key
