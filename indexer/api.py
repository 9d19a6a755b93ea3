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
A bad query raises indexer.errors.ExportError before anything is produced; every error the
library raises on purpose is an indexer.errors.KBError.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import export as ex
from .answers import answers
from .build import ensure_index
from .query import DEFAULT_PAGE_SIZE, Query, Results, parse_params
from .search import SearchIndex
from .settings import Settings, resolve_settings

__all__ = ["KB", "open_kb"]


def _query(
    text: str,
    sort: str,
    filters: dict[str, str | Iterable[str]],
    page: int = 1,
    size: int = DEFAULT_PAGE_SIZE,
) -> Query:
    """The same parameter reader as the web and the CLI (comma-separated values split)."""
    params: dict[str, Any] = {"q": text, "sort": sort, "page": str(page), "page_size": str(size)}
    for name, values in filters.items():
        params[name] = [values] if isinstance(values, str) else list(values)
    return parse_params(params)


@dataclass(frozen=True)
class KB:
    """An opened knowledge base index."""

    settings: Settings
    index: SearchIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = SearchIndex(self.settings.index_dir, budget_ms=self.settings.query_budget_ms)
        object.__setattr__(self, "index", index)

    @property
    def index_dir(self) -> Path:
        return self.settings.index_dir

    def search(
        self,
        text: str = "",
        *,
        sort: str = "evidence",
        page: int = 1,
        page_size: int = DEFAULT_PAGE_SIZE,
        **filters: Any,
    ) -> Results:
        """One page of results (check `.ok` / `.error`)."""
        return self.index.search(_query(text, sort, filters, page, page_size))

    def answers(self, text: str = "", **filters: Any) -> list[dict[str, Any]]:
        """The question cards the search page shows first (empty unless the query names a condition)."""
        return answers(self.index, self.index.search(_query(text, "evidence", filters)))

    def rows(
        self, text: str = "", *, table: str = "records", sort: str = "evidence", **filters: Any
    ) -> Iterator[dict[str, Any]]:
        """Exported rows as dicts (multi-valued columns as lists), streamed."""
        query = _query(text, sort, filters)
        ex.check(self.index, query, "json", table)
        return ex.rows(self.index, query, table)

    def export(
        self, fmt: str, text: str = "", *, table: str = "records", sort: str = "evidence", **filters: Any
    ) -> Iterator[str | bytes]:
        """The export in format `fmt` (see indexer.export.FORMATS), as a stream of chunks."""
        return ex.export(self.index, _query(text, sort, filters), fmt, table)

    def export_bytes(
        self, fmt: str, text: str = "", *, table: str = "records", sort: str = "evidence", **filters: Any
    ) -> Iterator[bytes]:
        """export() encoded as UTF-8 bytes."""
        return ex.export_bytes(self.index, _query(text, sort, filters), fmt, table)

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
        """Export to a file atomically (temporary file in the same directory, then rename)."""
        chunks = self.export(fmt, text, table=table, sort=sort, **filters)
        ex.write_atomic(Path(path), chunks)
        return Path(path)


def open_kb(
    root: str | Path | None = None,
    index_dir: str | Path | None = None,
    *,
    build: bool = False,
    query_budget_ms: int | None = None,
) -> KB:
    """The KB at `root` (default: TMSKB_ROOT or the current settings) with its index.

    With build=True the index is built or refreshed first; a KB with problems raises
    indexer.errors.ProblemsFound (its .problems list them). Otherwise a missing index raises
    indexer.errors.IndexMissing on first use. `query_budget_ms` is the time one query may take
    (default TMSKB_QUERY_BUDGET_MS or 2000; 0: no limit).
    """
    settings = resolve_settings(root, index_dir, query_budget_ms=query_budget_ms)
    if build:
        ensure_index(settings, strict=True)
    return KB(settings)
