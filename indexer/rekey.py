"""`tmskb rekey`: rename a BibTeX key in references.bib and every record citing it.

The records and the alias file are written to temporary files first, so a full disk fails before
anything changes; references.bib is then swapped in only if it still holds the bytes the rename
was made from (bibwrite.update), and the other files follow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from .bib import parse_bib_text
from .bibwrite import locked, settled, update
from .curation import ALIASES, aliases_text, read_aliases
from .fsio import Prepared, Snapshot, prepare_under_lock, write_error
from .keys import ascii_fold, fits_pattern
from .records import read_records
from .settings import Settings
from .validate import cited_keys


def rekey(settings: Settings, old: str, new: str) -> list[str]:
    """Rename a BibTeX key in references.bib and every record citing it; keep `old` as an alias.

    Returns the files changed. Raises ValueError with a user-facing message when it cannot.
    """
    if not fits_pattern(new):  # the shape `tmskb add` gives keys, so the key can be a study id too
        suggestion = ascii_fold(new)
        raise ValueError(
            f"'{new}' is not a usable key: write it as the key pattern has keys (lower-case ASCII "
            "surname, four-digit year, a word, e.g. quesada2018robot)"
            + (f"; did you mean {suggestion}?" if fits_pattern(suggestion) else "")
        )
    bib = settings.bib_path
    pending: list[Prepared] = []

    def change(snapshot: Snapshot, committed: bool) -> tuple[bytes | None, list[str]]:
        _discard(pending)
        text = snapshot.data.decode("utf-8")
        references, _ = parse_bib_text(text, settings.relative(bib))
        renamed = None
        if not (committed and new in references and old not in references):  # else ours was kept
            try:
                renamed = _renamed_bib(text, references, old, new)
            except ValueError:
                settled(snapshot)  # not a refusal made from a half-written file
                raise
        others = _renamed_citations(settings, old, new)
        aliases = {**read_aliases(settings.kb_dir), old: new}
        aliases = {k: (new if v == old else v) for k, v in aliases.items()}
        others[settings.kb_dir / ALIASES] = aliases_text(aliases)
        for path, content in others.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            pending.append(prepare_under_lock(path, content.encode("utf-8")))
        return (renamed.encode("utf-8") if renamed else None), [settings.relative(p) for p in [bib, *others]]

    with locked(bib):
        try:
            changed = update(bib, change)
            for prepared in pending:
                try:
                    prepared.commit()
                except OSError as exc:
                    raise write_error(prepared.target, exc) from exc
        finally:
            _discard(pending)
    return changed


def _renamed_bib(text: str, references: Mapping[str, object], old: str, new: str) -> str:
    """The bibliography with the entry header of `old` renamed; ValueError when it cannot be."""
    if old not in references:
        raise ValueError(f"'{old}' is not in references.bib")
    if new.lower() in {k.lower() for k in references}:
        raise ValueError(f"'{new}' is already in references.bib")
    pattern = re.compile(r"(@\w+\s*[{(]\s*)" + re.escape(old) + r"(\s*,)")
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"cannot find the entry header of '{old}' exactly once")
    return pattern.sub(lambda m: m.group(1) + new + m.group(2), text)


def _discard(pending: list[Prepared]) -> None:
    """Remove the temporary files of writes that were not committed."""
    for prepared in pending:
        if not prepared.committed:
            prepared.tmp.unlink(missing_ok=True)
    pending.clear()


def _renamed_citations(settings: Settings, old: str, new: str) -> dict[Path, str]:
    """The new text of each record citing `old`, with only the citing lines changed."""
    out: dict[Path, str] = {}
    parsed = read_records(settings.kb_dir, settings.root)
    for record in [*parsed.records, *parsed.drafts]:  # drafts (records with problems) too
        lines = sorted({record.line_of(f) for f, key in cited_keys(record) if key == old})
        if lines:
            path = settings.root / record.path
            body = out.get(path, path.read_text("utf-8")).split("\n")
            for line in lines:
                body[line - 1] = re.sub(rf"(?<![\w.-]){re.escape(old)}(?![\w.-])", new, body[line - 1])
            out[path] = "\n".join(body)
    return out
