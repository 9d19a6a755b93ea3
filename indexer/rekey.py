"""`tmskb rekey`: rename a BibTeX key in references.bib and every record citing it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .bib import parse_bib
from .bibwrite import locked
from .curation import ALIASES, read_aliases
from .fsio import write_under_lock
from .keys import KEY_PATTERN
from .records import parse_records
from .settings import Settings
from .validate import cited_keys

ALIASES_HEADER = "# Old BibTeX keys renamed with `tmskb rekey`: links and citations to them still resolve.\n"


def rekey(settings: Settings, old: str, new: str) -> list[str]:
    """Rename a BibTeX key in references.bib and every record citing it; keep `old` as an alias.

    Returns the files changed. Raises ValueError with a user-facing message when it cannot.
    """
    if not KEY_PATTERN.fullmatch(new):
        raise ValueError(f"'{new}' is not a usable key (letters, digits and :._+- only)")
    with locked(settings.bib_path):
        references, _ = parse_bib(settings.bib_path, settings.relative(settings.bib_path))
        if old not in references:
            raise ValueError(f"'{old}' is not in references.bib")
        if new.lower() in {k.lower() for k in references}:
            raise ValueError(f"'{new}' is already in references.bib")
        text = settings.bib_path.read_text("utf-8")
        pattern = re.compile(r"(@\w+\s*[{(]\s*)" + re.escape(old) + r"(\s*,)")
        if len(pattern.findall(text)) != 1:
            raise ValueError(f"cannot find the entry header of '{old}' exactly once")
        changed = {settings.bib_path: pattern.sub(lambda m: m.group(1) + new + m.group(2), text)}
        changed.update(_renamed_citations(settings, old, new, changed))
        aliases = {**read_aliases(settings.kb_dir), old: new}
        aliases = {k: (new if v == old else v) for k, v in aliases.items()}
        changed[settings.kb_dir / ALIASES] = ALIASES_HEADER + yaml.safe_dump(
            {"aliases": aliases}, sort_keys=True
        )
        for path, content in changed.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_under_lock(path, content.encode("utf-8"))
    return [settings.relative(p) for p in changed]


def _renamed_citations(settings: Settings, old: str, new: str, changed: dict[Path, str]) -> dict[Path, str]:
    """The new text of each record citing `old`, with only the citing lines changed."""
    out: dict[Path, str] = {}
    records, _, _ = parse_records(settings.kb_dir, settings.root)
    for record in records:
        lines = sorted({record.line_of(f) for f, key in cited_keys(record) if key == old})
        if lines:
            path = settings.root / record.path
            body = out.get(path, changed.get(path, path.read_text("utf-8"))).split("\n")
            for line in lines:
                body[line - 1] = re.sub(rf"(?<![\w.-]){re.escape(old)}(?![\w.-])", new, body[line - 1])
            out[path] = "\n".join(body)
    return out
