"""Curation files in kb/curation/: renamed-key aliases and declared non-duplicates."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from . import yamlio
from .errors import ProblemsFound
from .fsio import write_under_lock
from .models import Problem

NOT_DUPLICATES = Path("curation") / "not-duplicates.yaml"
ALIASES = Path("curation") / "key-aliases.yaml"
ALIASES_HEADER = (
    "# Old BibTeX keys (renamed with `tmskb rekey`, or an import's own key that `tmskb add`\n"
    "# replaced): links and citations to them still resolve.\n"
)


def _read(kb_dir: Path, name: Path) -> dict[str, Any]:
    """A curation file through the same guarded reader as records (no aliases, bounded nesting)."""
    path = kb_dir / name
    if not path.is_file():
        return {}
    try:
        data = yamlio.load(path.read_text("utf-8")).data or {}
    except yamlio.YamlError as exc:
        problem = Problem(f"kb/{name.as_posix()}", exc.line, path.stem, "", exc.reason, "fix the YAML syntax")
        raise ProblemsFound([problem]) from None
    if not isinstance(data, dict):
        shown = f"kb/{name.as_posix()}"
        raise ProblemsFound([Problem(shown, 1, path.stem, "", "expected a mapping at the top level")])
    return data


def read_aliases(kb_dir: Path) -> dict[str, str]:
    """Old BibTeX key -> current key, for keys renamed with `tmskb rekey`."""
    data = _read(kb_dir, ALIASES)
    return {str(k): str(v) for k, v in (data.get("aliases") or {}).items()}


def read_not_duplicates(kb_dir: Path) -> set[tuple[str, str]]:
    """(candidate identity, existing key) pairs declared different papers."""
    data = _read(kb_dir, NOT_DUPLICATES)
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


def aliases_text(aliases: dict[str, str]) -> str:
    """kb/curation/key-aliases.yaml holding `aliases` (old key -> current key)."""
    return ALIASES_HEADER + yaml.safe_dump({"aliases": aliases}, sort_keys=True)


def remember_aliases(kb_dir: Path, pairs: Iterable[tuple[str, str]]) -> None:
    """Add (old key, new key) pairs to kb/curation/key-aliases.yaml (atomically); call under the
    bibliography lock, as for remember_not_duplicates."""
    path = kb_dir / ALIASES
    aliases = {**read_aliases(kb_dir), **dict(pairs)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_under_lock(path, aliases_text(aliases))
