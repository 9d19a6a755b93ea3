"""Build or refresh the index of a knowledge base: the orchestration every front uses.

`ensure_index` parses, validates and grades the KB only when its sources changed since the live
generation was built, and raises ProblemsFound (never exits) when the KB has problems.
"""

from __future__ import annotations

from collections.abc import Callable

from . import documents, pipeline
from . import index as idx
from .errors import ProblemsFound
from .settings import Settings


def ensure_index(
    settings: Settings,
    *,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> idx.BuildReport | None:
    """Build or refresh the index if its sources changed; None when it was already current.

    `on_total` is told the number of documents before writing starts, `progress` is called
    with the number written as writing goes (a progress bar needs both).
    """
    fingerprint = pipeline.fingerprint(settings)
    if not force and idx.is_current(settings.index_dir, fingerprint):
        return None
    kb = pipeline.load(settings)
    if kb.problems:
        raise ProblemsFound(kb.problems)
    docs = documents.build_documents(kb)
    if on_total is not None:
        on_total(len(docs))
    return idx.build_index(
        docs,
        settings.index_dir,
        fingerprint=fingerprint,
        extra=documents.index_extras(kb),
        force=force,
        progress=progress,
    )
