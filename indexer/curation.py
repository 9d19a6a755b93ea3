"""Curation files in kb/curation/: renamed-key aliases and declared non-duplicates."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from .fsio import write_under_lock

NOT_DUPLICATES = Path("curation") / "not-duplicates.yaml"
ALIASES = Path("curation") / "key-aliases.yaml"


def read_aliases(kb_dir: Path) -> dict[str, str]:
    """Old BibTeX key -> current key, for keys renamed with `tmskb rekey`."""
    path = kb_dir / ALIASES
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text("utf-8")) or {}
    return {str(k): str(v) for k, v in (data.get("aliases") or {}).items()}


def read_not_duplicates(kb_dir: Path) -> set[tuple[str, str]]:
    """(candidate identity, existing key) pairs declared different papers."""
    path = kb_dir / NOT_DUPLICATES
    if not path.is_file():
        return set()
    data = yaml.safe_load(path.read_text("utf-8")) or {}
    return {(str(p["new"]), str(p["existing"])) for p in data.get("pairs", [])}


def remember_not_duplicates(kb_dir: Path, pairs: Iterable[tuple[str, str]]) -> None:
    """Add declared pairs to kb/curation/not-duplicates.yaml (atomically).

    Call under the bibliography lock (bibwrite.locked), as `tmskb add` does: it serialises this
    read-modify-write and makes any temporary file left beside the file a killed writer's.
    """
    path = kb_dir / NOT_DUPLICATES
    current = read_not_duplicates(kb_dir) | set(pairs)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "# Pairs a researcher declared to be different papers; `tmskb add` does not raise them again.\n"
    body += yaml.safe_dump(
        {"pairs": [{"new": n, "existing": e} for n, e in sorted(current)]},
        allow_unicode=True,
        sort_keys=False,
    )
    write_under_lock(path, body)
