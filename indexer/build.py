"""Build or refresh the index of a knowledge base: the orchestration every front uses.

`ensure_index` parses, validates and grades the KB only when its sources changed since the live
generation was built. Records with problems are left out (leftout.partition) and named in the
report and in the generation's pages.json, so a draft never stops a preview; `strict`, and
problems no single record owns, raise ProblemsFound (never exit).

An edit loop that scales: unchanged files come from the parse cache (parsecache.py), and only
the documents an edit can change are built again (depgraph.plan); the others are kept from the
live generation by their content hash. When the last build was clean and an edit changed only
a few records' content, only what those documents are made of is read (delta.py).
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from . import delta, depgraph, documents, kbversion, leftout, parsecache, pipeline
from . import index as idx
from .errors import ProblemsFound
from .leftout import LeftOut
from .models import Reference
from .parsecache import ParseCache, collector_paused
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
    with the number written as writing goes (a progress bar needs both). `force` rebuilds
    everything from scratch (the parse cache is still used: it is keyed by content).
    kb/release.json's version and date are published into the index directory on every call,
    so a new release shows even when no record changed.
    """
    kbversion.publish(settings.kb_dir, settings.index_dir)
    with parsecache.opened(settings.index_dir) as cache, collector_paused():
        try:
            report = _ensure(settings, cache, force, strict, progress, on_total)
        finally:
            if cache is not None:
                cache.commit()
    if report is not None and not report.delta:  # the whole KB was in memory, and is freed now
        _return_freed_memory()
    return report


def _return_freed_memory() -> None:
    """Hand the heap a whole build freed back to the system (glibc's malloc_trim; elsewhere
    nothing). At 100k records the build leaves over a gigabyte of freed, scattered heap in the
    process, and `tmskb serve`'s next builds ran about 1.5x slower over it (an edit took
    2.0-2.2 s after a full build against 1.4 s in a fresh process; 1.5-1.8 s once trimmed)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _ensure(
    settings: Settings,
    cache: ParseCache | None,
    force: bool,
    strict: bool,
    progress: Callable[[int], None] | None,
    on_total: Callable[[int], None] | None,
    use_delta: bool = True,
) -> idx.BuildReport | None:
    # With no generation to compare with, or --force, the parse hashes each file as it reads
    # it: hashing every file first would read the whole KB twice (1.7 s at 100k records).
    early = cache is None or (not force and idx.current_dir(settings.index_dir) is not None)
    hashes = cache.hashes(_sources(settings, cache)) if cache is not None and early else None
    fingerprint = pipeline.fingerprint(settings, hashes) if early else ""
    if early and not force and idx.is_current(settings.index_dir, fingerprint):
        return None
    part = None
    if cache is not None and use_delta and not force:
        part = delta.prepare(settings, cache, hashes or {})
    if part is not None:
        state = _State(part.kb, [], part.graph, part.plan, is_delta=True, references=part.kb.references)
    else:
        state = _whole(settings, cache, force, strict, hashes)
    if not early:
        fingerprint = pipeline.fingerprint(settings, state.hashes)
    kb, plan, graph = state.kb, state.plan, state.graph
    known, sources = _bib_extras(cache, settings, state.references)
    extra = documents.index_extras(kb, known=known, sources=sources)
    extra[idx.PAGES]["left_out"] = [item.as_json() for item in state.left_out]
    built: list[tuple[str, str, list[str], str]] = []  # what the cache keeps of each document

    def observe(doc_id: str, words: str) -> None:
        if graph is None:
            built.append((doc_id, "", [], ""))
        else:
            built.append((doc_id, graph.values.get(doc_id, ""), graph.links.get(doc_id, []), words))

    report: idx.BuildReport | None = None
    if plan is not None:
        docs = documents.build_documents(kb, only=plan.affected)
        if on_total is not None:
            on_total(len(docs) + len(plan.reused))
        try:
            report = idx.build_index(
                docs,
                settings.index_dir,
                fingerprint=fingerprint,
                extra=extra,
                progress=progress,
                reused=plan.reused,
                base=plan.base,
                old_words=plan.old_words,
                observe=observe,
            )
        except idx.StaleBase:  # another build made a new generation meanwhile: build them all
            if part is not None:  # the delta holds only part of the KB: read it all
                return _ensure(settings, cache, force, strict, progress, on_total, use_delta=False)
            plan = None
            built.clear()
    if plan is None or report is None:
        total = len(kb.references) + len(kb.records)  # one document each
        if on_total is not None:
            on_total(total)
        report = idx.build_index(
            documents.iter_documents(kb),  # each indexed as soon as it is made
            settings.index_dir,
            fingerprint=fingerprint,
            extra=extra,
            force=force,
            progress=progress,
            count=total,
            observe=observe,
            shares=documents.document_shares(kb),
        )
    if cache is not None and graph is not None:
        removed = [] if plan is None else [i for i in cache.nodes() if i not in graph.values]
        meta = {**graph.meta, "generation": report.generation, **state.meta(settings, cache)}
        cache.save_nodes(built, removed, meta, replace_all=plan is None)
    stats = cache.stats if cache is not None else parsecache.Stats()
    return replace(
        report,
        left_out=tuple(state.left_out),
        parsed=stats.parsed,
        parse_reused=stats.reused,
        documents=len(built),
        records_read=len(kb.records),
        delta=state.is_delta,
    )


@dataclass
class _State:
    """What a build indexes: the KB (or, for a delta, the part of it that is read), what was
    left out, and the dependency graph and plan when the parse cache has them."""

    kb: pipeline.KB
    left_out: list[LeftOut]
    graph: depgraph.Graph | None
    plan: depgraph.Plan | None
    is_delta: bool = False
    references: dict[str, Reference] = field(default_factory=dict)  # every one, left out or not
    clean: bool = False  # no problem anywhere: the next build may be a delta
    hashes: dict[str, str] | None = None  # of every source file by its text, for the fingerprint

    def meta(self, settings: Settings, cache: ParseCache) -> dict[str, str]:
        """What delta.prepare compares the next build's sources with (a delta keeps it)."""
        if self.is_delta:
            return {}
        kinds = {r.id: depgraph.record_kind(r) for r in self.kb.records}
        return {
            "clean": "1" if self.clean else "0",
            "listing": delta.listing_digest(cache.record_paths(settings.kb_dir)),
            "kinds": json.dumps(kinds, sort_keys=True),
        }


def _whole(
    settings: Settings, cache: ParseCache | None, force: bool, strict: bool, hashes: dict[str, str] | None
) -> _State:
    """Read, check and grade every source (unchanged files from the parse cache)."""
    loaded = pipeline.load(settings, cache=cache)
    if cache is not None and hashes is None:  # the files just parsed are hashed already
        hashes = cache.hashes(_sources(settings, cache))
    if loaded.problems and strict:
        raise ProblemsFound(loaded.problems)
    kb, left_out = leftout.partition(loaded)
    graph = _graph(kb, cache, settings, hashes or {}) if cache is not None else None
    plan = None
    if cache is not None and graph is not None and not force:
        plan = depgraph.plan(cache, graph, settings)
    clean = not loaded.problems and not left_out
    return _State(kb, left_out, graph, plan, False, loaded.references, clean, hashes)


def _bib_extras(
    cache: ParseCache | None, settings: Settings, references: dict[str, Reference]
) -> tuple[idx.EncodedJSON, dict[str, str]]:
    """The duplicate-detection rows (encoded) and source labels of every reference, computed
    again only when references.bib changed (at 100k records they cost 0.5 s and would read
    every entry, which the parse cache otherwise leaves unread)."""

    def compute() -> tuple[idx.EncodedJSON, dict[str, str]]:
        values = references.values()
        return idx.encode_json(documents.known_references(values)), documents.source_labels(values)

    if cache is None:
        return compute()
    with cache.memo("bib-extras") as known:
        value: tuple[idx.EncodedJSON, dict[str, str]] = known.get(
            settings.relative(settings.bib_path), compute
        )
    return value


def _sources(settings: Settings, cache: ParseCache) -> list[str]:
    """The text of each of pipeline.source_files, with the record files listed once for the
    whole build (and no Path made for each: see records.record_paths)."""
    kb_dir = settings.kb_dir
    if not kb_dir.is_dir():
        return [str(path) for path in pipeline.source_files(settings)]
    return [*map(str, pipeline.source_files(settings, records=False)), *cache.record_paths(kb_dir)]


def _graph(
    kb: pipeline.KB, cache: ParseCache, settings: Settings, hashes: dict[str, str]
) -> depgraph.Graph | None:
    ruleset_id = kb.ruleset.id if kb.ruleset else ""
    return depgraph.graph(kb.records, kb.references, kb.aliases, ruleset_id, cache, settings, hashes)
