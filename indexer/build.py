"""Build or refresh the index of a knowledge base: the orchestration every front uses.

`ensure_index` parses, validates and grades the KB only when its sources changed since the live
generation was built. Records with problems are left out (leftout.partition) and named in the
report and in the generation's pages.json, so a draft never stops a preview; `strict`, and
problems no single record owns, raise ProblemsFound (never exit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from . import documents, leftout, pipeline
from . import index as idx
from .errors import ProblemsFound
from .settings import Settings


def ensure_index(
    settings: Settings,
    *,
    force: bool = False,
    strict: bool = False,
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
    loaded = pipeline.load(settings)
    if loaded.problems and strict:
        raise ProblemsFound(loaded.problems)
    kb, left_out = leftout.partition(loaded)
    docs = documents.build_documents(kb)
    if on_total is not None:
        on_total(len(docs))
    extra = documents.index_extras(kb)
    extra[idx.KNOWN] = documents.known_references(loaded.references.values())  # duplicates: all of them
    extra[idx.PAGES]["left_out"] = [item.as_json() for item in left_out]
    report = idx.build_index(
        docs, settings.index_dir, fingerprint=fingerprint, extra=extra, force=force, progress=progress
    )
    return replace(report, left_out=tuple(left_out))
