"""Writing references.bib: entries in its layout, appended under its lock, never rewritten.

Existing entries stay byte-for-byte as they were. Every writer of the bibliography (and of the
files `tmskb add` and `tmskb rekey` change with it) holds `locked(bib_path)`, so concurrent
writers serialise, and the leftovers of a killed one can be removed before each write. The lock
sits beside the real file, so knowledge bases sharing one bibliography through symlinks share it.
Programs that do not take the lock (an editor) are met by `update`: the new bytes are made
from a snapshot and swapped in only if the file still holds it (fsio.replace_if_unchanged).
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from .bib import MONTH_MACROS
from .errors import FileChanged, WriteError
from .fsio import GRACE, Snapshot, process_lock, read_snapshot, real_path, replace_if_unchanged, write_error
from .importers import Candidate, Name

T = TypeVar("T")
logger = logging.getLogger(__name__)
ATTEMPTS = 8

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
    """One BibTeX entry in the layout of references.bib (UTF-8, braces, aligned '=').

    A BibTeX import's values are written as the import has them (on one line each); values read
    from other formats are plain text, escaped only where BibTeX needs it.
    """
    fields = entry_values(candidate)
    ordered = [n for n in FIELD_ORDER if fields.get(n)] + sorted(
        n for n in fields if n not in FIELD_ORDER and fields[n] and n not in ("verification", "note")
    )
    ordered += ["verification"] + (["note"] if fields.get("note") else [])
    fields["verification"] = verification
    width = max(len(n) for n in ordered)
    lines = [f"@{candidate.entry_type}{{{key},"]
    for name in ordered:
        value = fields[name]
        if not (name == "month" and value.lower() in MONTH_MACROS):  # a month macro stays a macro
            value = f"{{{value}}}"
        lines.append(f"  {name:<{width}} = {value},")
    lines[-1] = lines[-1].rstrip(",")
    return "\n".join(lines) + "\n}\n"


# The head of an entry: `@type{` (or `@type(`), the key, the comma after it.
ENTRY_HEAD_RE = re.compile(r"^(@\s*[A-Za-z]+\s*[{(]\s*)([^,\s]*)(\s*,)")


def verbatim_entry(key: str, candidate: Candidate, verification: str) -> str | None:
    """A BibTeX import's entry exactly as the file has it, under `key`; None without one.

    Only line ends become LF. A status other than the default `as-cited` (what no field means)
    takes one line before the closing brace. The caller keeps this text only if it reads back
    as the entry format_entry makes (see adding._written_form).
    """
    raw = candidate.raw.replace("\r\n", "\n").replace("\r", "\n").strip()
    head = ENTRY_HEAD_RE.match(raw)
    if head is None or not raw.endswith(("}", ")")):
        return None
    text = raw[: head.start(2)] + key + raw[head.end(2) :]
    if verification != "as-cited":
        inner = text[:-1].rstrip()
        text = f"{inner}{'' if inner.endswith(',') else ','}\n  verification = {{{verification}}}\n{text[-1]}"
    return text + "\n"


def entry_values(candidate: Candidate) -> dict[str, str]:
    """The candidate's fields as BibTeX source text, without enclosing braces."""
    if candidate.bibtex:
        return {name: re.sub(r"\s*\n\s*", " ", value.strip()) for name, value in candidate.bibtex.items()}
    fields = {
        name: _verbatim(value) if name in VERBATIM else _bibtex_value(value, title=name == "title")
        for name, value in candidate.fields.items()
        if value
    }
    for name, people in (("author", candidate.authors), ("editor", candidate.editors)):
        if people:
            fields[name] = " and ".join(_bibtex_name(person) for person in people)
    return fields


SPECIALS = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "&": r"\&",
    "%": r"\%",
    "#": r"\#",
    "$": r"\$",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
SPECIALS_RE = re.compile("|".join(re.escape(c) for c in SPECIALS))


def _escape(text: str) -> str:
    """Plain text as BibTeX that reads back as the same text."""
    return SPECIALS_RE.sub(lambda m: SPECIALS[m.group(0)], " ".join(text.split()))


def _bibtex_value(value: str, title: bool) -> str:
    """Plain text escaped for BibTeX; in titles protect acronyms like {rTMS} from style case changes."""
    value = _escape(value)
    if title:
        value = re.sub(r"(?<!\\)\b(\w*[A-Z]\w*[A-Z0-9]\w*|[a-z]+[A-Z]\w*)\b", r"{\1}", value)
    return value


def _verbatim(value: str) -> str:
    """An address or identifier as it is; braces (never in a real one) percent-encoded to stay balanced."""
    return value.strip().replace("{", "%7B").replace("}", "%7D")


def _bibtex_name(person: Name) -> str:
    """'Last, Jr, First'; a body, or a several-word surname with no first name, in braces as one name."""
    last, first, jr = (_escape(part) for part in (person.last, person.first, person.jr))
    if not first:
        last = f"{last} {jr}".strip()
        several = " " in last and not last[:1].islower()  # 'de la Fontaine' reads right as it is
        return f"{{{last}}}" if person.corporate or several or " and " in f" {last} " else last
    if " and " in f" {last} ":
        last = f"{{{last}}}"
    return ", ".join(part for part in (last, jr, first) if part)


@contextlib.contextmanager
def locked(bib_path: Path) -> Iterator[None]:
    """Exclusive lock beside the bibliography's real file; released by the kernel if the process dies."""
    real = real_path(bib_path)
    lock = real.with_name(real.name + ".lock")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(process_lock(lock))
        except OSError as exc:
            raise write_error(lock, exc, "cannot create or lock it") from exc
        yield


def appended(old: bytes, entries: list[str]) -> bytes:
    """`old` with `entries` after it, separated by one blank line."""
    separator = b"" if not old or old.endswith(b"\n\n") else (b"\n" if old.endswith(b"\n") else b"\n\n")
    return old + separator + "\n".join(entries).encode("utf-8")


def update(bib_path: Path, change: Callable[[Snapshot, bool], tuple[bytes | None, T]]) -> T:
    """Apply `change` to the bibliography's current bytes until it lands on unchanged ones.

    `change(snapshot, committed_before)` returns the new bytes (None: write nothing) and a
    result; before refusing because of what the snapshot holds, it should call `settled`. It is
    called again, on a fresh snapshot, whenever another program changed the file between the
    read and the swap; `committed_before` then says whether an earlier attempt's bytes were in
    place before that program replaced them (so the change may be there already).
    Call under `locked(bib_path)`. Raises WriteError if the file never holds still.
    """
    committed = False
    for attempt in range(ATTEMPTS):
        try:
            snapshot = read_snapshot(bib_path)
            new, result = change(snapshot, committed)
            if new is not None:
                replace_if_unchanged(snapshot, new)
            return result
        except FileChanged as exc:
            logger.info("attempt %d: %s", attempt + 1, exc.reason)
            committed = committed or exc.committed
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
    if committed:  # the last word: our change may have been kept by the other program
        with contextlib.suppress(FileChanged):
            new, result = change(read_snapshot(bib_path), committed)
            if new is None:
                return result
    raise WriteError(
        bib_path,
        f"another program kept changing it while it was being written ({ATTEMPTS} attempts; an editor "
        "saving it?)",
        "Its content is as that program left it"
        + (": check whether the change is in it" if committed else " and nothing was changed")
        + "; save and close it in the editor, then run the command again",
    )


def settled(snapshot: Snapshot) -> None:
    """Raise FileChanged unless the file still holds `snapshot` a moment later.

    For a refusal made from a snapshot: it may be of a file another program was half-way
    through writing in place (a truncated entry), which that program's next write would show.
    """
    time.sleep(GRACE)
    if read_snapshot(snapshot.path) != snapshot:
        raise FileChanged(snapshot.path, "changed while it was being checked")


def append_entries(bib_path: Path, entries: list[str]) -> bytes:
    """Append entries after the existing bytes, atomically; returns the new bytes.

    Call under `locked(bib_path)`.
    """

    def change(snapshot: Snapshot, committed: bool) -> tuple[bytes | None, bytes]:
        if committed and "\n".join(entries).encode("utf-8") in snapshot.data:
            return None, snapshot.data  # an earlier attempt's bytes were kept by the other program
        new = appended(snapshot.data, entries)
        return new, new

    return update(bib_path, change)
