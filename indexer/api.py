"""A small Python API for scripts: open the knowledge base's index, search it, export from it.

    from indexer.api import open_kb

    kb = open_kb()                                   # TMSKB_ROOT / TMSKB_INDEX_DIR, or the defaults
    results = kb.search("neuropathic pain", level="A")
    for row in kb.rows("shingles", indication="phn"):   # flat records (docs/export.md)
        print(row["id"], row["published_level"])
    kb.write("evidence.csv", "csv", table="evidence", indication=["neuropathic-pain", "depression"])
    for chunk in kb.export("bibtex", "Obadia"):      # a stream of str chunks (bytes for xlsx)
        ...

Filters are the facet names of `tmskb search` (type, level, direction, indication, target, side,
protocol, class, year, guideline, verification); a value may be a string or a list (OR).
A bad query raises indexer.export.ExportError before anything is produced.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import export as ex
from .search import Query, Results, search
from .settings import Settings

__all__ = ["KB", "open_kb"]


def _query(
    text: str, sort: str, filters: dict[str, str | Iterable[str]], page: int = 1, size: int = 20
) -> Query:
    clean = {name: [values] if isinstance(values, str) else list(values) for name, values in filters.items()}
    return Query.make(text, clean, sort, page, size)


@dataclass(frozen=True)
class KB:
    """An opened knowledge base index."""

    settings: Settings

    @property
    def index_dir(self) -> Path:
        return self.settings.index_dir

    def search(
        self, text: str = "", *, sort: str = "evidence", page: int = 1, page_size: int = 20, **filters: Any
    ) -> Results:
        """One page of results (check `.ok` / `.error`)."""
        return search(self.index_dir, _query(text, sort, filters, page, page_size))

    def rows(
        self, text: str = "", *, table: str = "records", sort: str = "evidence", **filters: Any
    ) -> Iterator[dict[str, Any]]:
        """Exported rows as dicts (multi-valued columns as lists), streamed."""
        query = _query(text, sort, filters)
        ex.check(self.index_dir, query, "json", table)
        return ex.rows(self.index_dir, query, table)

    def export(
        self, fmt: str, text: str = "", *, table: str = "records", sort: str = "evidence", **filters: Any
    ) -> Iterator[str | bytes]:
        """The export in format `fmt` (see indexer.export.FORMATS), as a stream of chunks."""
        return ex.export(self.index_dir, _query(text, sort, filters), fmt, table)

    def export_bytes(
        self, fmt: str, text: str = "", *, table: str = "records", sort: str = "evidence", **filters: Any
    ) -> Iterator[bytes]:
        """export() encoded as UTF-8 bytes."""
        return ex.export_bytes(self.index_dir, _query(text, sort, filters), fmt, table)

    def write(
        self,
        path: str | Path,
        fmt: str,
        text: str = "",
        *,
        table: str = "records",
        sort: str = "evidence",
        **filters: Any,
    ) -> Path:
        """Export to a file atomically (temporary file in the same directory, then os.replace)."""
        chunks = self.export(fmt, text, table=table, sort=sort, **filters)
        ex.write_atomic(Path(path), chunks)
        return Path(path)


def open_kb(
    root: str | Path | None = None, index_dir: str | Path | None = None, *, build: bool = False
) -> KB:
    """The KB at `root` (default: TMSKB_ROOT or the current settings) with its index.

    With build=True the index is built or refreshed first (exits like `tmskb index` if the KB has
    problems); otherwise a missing index raises indexer.search.IndexMissing on first use.
    """
    from .cli import ensure_index, make_settings

    settings = make_settings(Path(root) if root else None, Path(index_dir) if index_dir else None)
    if build:
        ensure_index(settings, quiet=True)
    return KB(settings)
