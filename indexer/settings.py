"""Where the knowledge base and the index live.

One function, `resolve_settings`, with one precedence order for every front (CLI, web app,
indexer.api, tests): for each setting, an explicit value (a command-line option, a config key,
a keyword argument) wins; else its environment variable, when set to a non-empty value; else the
default derived from the KB root.

    setting          explicit        environment            default
    root             --root          TMSKB_ROOT             the current directory if it holds a KB,
                                                            else this checkout
    kb_dir           -               TMSKB_KB_DIR           <root>/kb
    bib_path         -               TMSKB_BIB              <root>/references.bib
    index_dir        --index-dir     TMSKB_INDEX_DIR        <root>/instance/index
    query_budget_ms  QUERY_BUDGET_MS TMSKB_QUERY_BUDGET_MS  2000 milliseconds (0: no limit)
                     (web config)

The query budget is the time one search may take (matching, wildcard expansion, facet counts,
ranking; for exports and tables, finding and ordering their hits) before it is stopped with a
QueryTooExpensive error asking for a narrower query.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_QUERY_BUDGET_MS = 2000

log = logging.getLogger(__name__)


def _default_root() -> Path:
    """The current directory if it holds a KB, else the checkout this package lives in."""
    cwd = Path.cwd()
    if (cwd / "references.bib").is_file() and (cwd / "kb").is_dir():
        return cwd
    return PACKAGE_ROOT


@dataclass(frozen=True)
class Settings:
    """Paths of one knowledge base and its index, and the time budget of one query."""

    root: Path
    kb_dir: Path
    bib_path: Path
    index_dir: Path
    query_budget_ms: int = DEFAULT_QUERY_BUDGET_MS

    @classmethod
    def for_root(cls, root: Path, index_dir: Path | None = None) -> Settings:
        """Settings for a KB laid out as root/references.bib + root/kb/ (no environment)."""
        root = Path(root).resolve()
        index = Path(index_dir) if index_dir is not None else root / "instance" / "index"
        return cls(root, root / "kb", root / "references.bib", index.resolve())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        return resolve_settings(environ=environ)

    def relative(self, path: Path) -> str:
        """Path as shown in messages: relative to the KB root when inside it."""
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)


def resolve_settings(
    root: str | Path | None = None,
    index_dir: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    query_budget_ms: int | None = None,
) -> Settings:
    """Settings by the precedence order in this module's docstring."""
    env = os.environ if environ is None else environ

    def from_env(name: str) -> Path | None:
        value = env.get(name, "")
        return Path(value).resolve() if value.strip() else None

    base = Path(root).resolve() if root is not None else from_env("TMSKB_ROOT") or _default_root()
    index = Path(index_dir).resolve() if index_dir is not None else from_env("TMSKB_INDEX_DIR")
    return Settings(
        base,
        from_env("TMSKB_KB_DIR") or base / "kb",
        from_env("TMSKB_BIB") or base / "references.bib",
        index or (base / "instance" / "index").resolve(),
        query_budget_ms if query_budget_ms is not None else _budget_from(env),
    )


def _budget_from(env: Mapping[str, str]) -> int:
    """TMSKB_QUERY_BUDGET_MS as a number of milliseconds; the default (logged) if it is not one."""
    value = env.get("TMSKB_QUERY_BUDGET_MS", "").strip()
    if not value:
        return DEFAULT_QUERY_BUDGET_MS
    if value.isascii() and value.isdigit():
        return int(value)
    log.warning(
        "TMSKB_QUERY_BUDGET_MS=%r is not a whole number of milliseconds; using %d",
        value,
        DEFAULT_QUERY_BUDGET_MS,
    )
    return DEFAULT_QUERY_BUDGET_MS
