"""Per-app state: the search handle and the formatted-citation cache (in app.extensions)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from flask import current_app
from markupsafe import Markup

from ..fields import REFERENCE_PREFIX
from ..query import Query, parse_params
from ..search import SearchIndex

CITATIONS_CACHE_SIZE = 2048


class WebState:
    """What the views share: one SearchIndex, and citations formatted once per reference.

    Citations are formatted with citeproc-py on the first view of a reference in a process and
    kept per index generation; formatting them all at index time would cost ~11 ms per
    reference (measured), i.e. more than the whole rest of a 10k-record build.
    """

    def __init__(self, index_dir: Path, budget_ms: int | None = None) -> None:
        self.index = SearchIndex(index_dir, budget_ms=budget_ms)
        self._citations: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def citations(self, reference_doc: dict[str, Any]) -> dict[str, Markup]:
        """Vancouver and APA citations of a stored reference document."""
        from ..citations import format_reference

        key = (self.index.generation().name, str(reference_doc.get("id", "")))
        with self._lock:
            cached = self._citations.get(key)
        if cached is None:
            cached = format_reference(reference_doc.get("data") or {})
            with self._lock:
                self._citations[key] = cached
                while len(self._citations) > CITATIONS_CACHE_SIZE:
                    self._citations.popitem(last=False)
        return {style: Markup(html) for style, html in cached.items()}

    def reference(self, key: str) -> dict[str, Any] | None:
        return self.index.document(REFERENCE_PREFIX + key)


def state() -> WebState:
    found: WebState = current_app.extensions["tmskb"]
    return found


def current_query() -> Query:
    """The request's search parameters, read the way the CLI and the API read theirs."""
    from flask import request

    return parse_params(request.args)
