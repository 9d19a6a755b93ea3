"""Writing references.bib: entries in its layout, appended under its lock, never rewritten.

Existing entries stay byte-for-byte as they were. Every writer of the bibliography (and of the
files `tmskb add` and `tmskb rekey` change with it) holds `locked(bib_path)`, so concurrent
writers serialise, and the leftovers of a killed one can be removed before each write.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from .fsio import process_lock, write_under_lock
from .importers import Candidate

FIELD_ORDER = (
    "author",
    "title",
    "journal",
    "booktitle",
    "howpublished",
    "year",
    "month",
    "volume",
    "number",
    "pages",
    "publisher",
    "doi",
    "pmid",
    "pmcid",
    "url",
)
VERBATIM = ("doi", "url", "pmid", "pmcid")


def format_entry(key: str, candidate: Candidate, verification: str) -> str:
    """One BibTeX entry in the layout of references.bib (UTF-8, braces, aligned '=')."""
    fields = dict(candidate.fields)
    if candidate.authors:
        fields["author"] = " and ".join(
            f"{last}, {first}" if first else last for last, first in candidate.authors
        )
    ordered = [n for n in FIELD_ORDER if fields.get(n)] + sorted(
        n for n in fields if n not in FIELD_ORDER and fields[n] and n not in ("verification", "note")
    )
    ordered += ["verification"] + (["note"] if fields.get("note") else [])
    fields["verification"] = verification
    width = max(len(n) for n in ordered)
    lines = [f"@{candidate.entry_type}{{{key},"]
    for name in ordered:
        value = fields[name] if name in VERBATIM else _bibtex_value(fields[name], title=name == "title")
        lines.append(f"  {name:<{width}} = {{{value}}},")
    lines[-1] = lines[-1].rstrip(",")
    return "\n".join(lines) + "\n}\n"


def _bibtex_value(value: str, title: bool) -> str:
    """Escape LaTeX specials and balance braces; in titles protect acronyms like {rTMS}."""
    value = re.sub(r"(?<!\\)([&%#])", r"\\\1", value.replace("{", "").replace("}", ""))
    if title:
        value = re.sub(r"\b(\w*[A-Z]\w*[A-Z0-9]\w*|[a-z]+[A-Z]\w*)\b", r"{\1}", value)
    return value


def locked(bib_path: Path) -> contextlib.AbstractContextManager[None]:
    """Exclusive lock beside the bibliography; released by the kernel if the process dies."""
    return process_lock(bib_path.with_name(bib_path.name + ".lock"))


def append_entries(bib_path: Path, entries: list[str]) -> bytes:
    """Append entries after the existing bytes, atomically; returns the new bytes.

    Call under `locked(bib_path)`.
    """
    old = bib_path.read_bytes()
    separator = b"" if not old or old.endswith(b"\n\n") else (b"\n" if old.endswith(b"\n") else b"\n\n")
    new = old + separator + "\n".join(entries).encode("utf-8")
    write_under_lock(bib_path, new)
    return new
