"""Build or refresh the index of a knowledge base: the orchestration every front uses.

`ensure_index` parses, validates and grades the KB only when its sources changed since the live
generation was built. Records with problems are left out (leftout.partition) and named in the
report and in the generation's pages.json, so a draft never stops a preview; `strict`, and
problems no single record owns, raise ProblemsFound (never exit).

An edit loop that scales: unchanged files come from the parse cache (parsecache.py), and only
the documents an edit can change are built again (`_plan`); the others are kept from the live
generation by their content hash.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import documents, kbversion, leftout, parsecache, pipeline
from . import index as idx
from .errors import ProblemsFound
from .fields import FACETS, reference_id
from .models import Knowledge, Question, Recommendation, Record, Reference, Scale, Study, Verdict
from .parsecache import ParseCache, collector_paused
from .records import NOT_RECORDS
from .settings import Settings
from .validate import cited_keys

# Documents built on every build: few, and each gathers data from across the KB (a question
# page shows every verdict and study on it).
ALWAYS_REBUILT = (Question, Verdict, Knowledge, Scale)


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
            return _ensure(settings, cache, force, strict, progress, on_total)
        finally:
            if cache is not None:
                cache.commit()


def _ensure(
    settings: Settings,
    cache: ParseCache | None,
    force: bool,
    strict: bool,
    progress: Callable[[int], None] | None,
    on_total: Callable[[int], None] | None,
) -> idx.BuildReport | None:
    hashes = cache.hashes(_sources(settings, cache)) if cache is not None else None
    fingerprint = pipeline.fingerprint(settings, hashes)
    if not force and idx.is_current(settings.index_dir, fingerprint):
        return None
    loaded = pipeline.load(settings, cache=cache)
    if loaded.problems and strict:
        raise ProblemsFound(loaded.problems)
    kb, left_out = leftout.partition(loaded)
    known, sources = _bib_extras(cache, settings, loaded.references)  # duplicates: all of them
    extra = documents.index_extras(kb, known=known, sources=sources)
    extra[idx.PAGES]["left_out"] = [item.as_json() for item in left_out]
    graph = _graph(kb, cache, settings, hashes or {}) if cache is not None else None
    plan = _plan(cache, graph, settings) if cache is not None and graph is not None and not force else None
    built: list[tuple[str, str, list[str], list[str]]] = []  # what the cache keeps of each document

    def observe(doc: dict[str, Any], words: set[str]) -> None:
        doc_id = doc["id"]
        if graph is None:
            built.append((doc_id, "", [], []))
        else:
            built.append((doc_id, graph.values.get(doc_id, ""), graph.links.get(doc_id, []), sorted(words)))

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
        )
    if cache is not None and graph is not None:
        removed = [] if plan is None else [i for i in cache.nodes() if i not in graph.values]
        meta = {**graph.meta, "generation": report.generation}
        cache.save_nodes(built, removed, meta, replace_all=plan is None)
    stats = cache.stats if cache is not None else parsecache.Stats()
    return replace(
        report, left_out=tuple(left_out), parsed=stats.parsed, parse_reused=stats.reused, documents=len(built)
    )


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


def _sources(settings: Settings, cache: ParseCache) -> list[Path]:
    """pipeline.source_files, with the record files listed once for the whole build."""
    kb_dir = settings.kb_dir
    if not kb_dir.is_dir():
        return pipeline.source_files(settings)
    return [*pipeline.source_files(settings, records=False), *cache.record_files(kb_dir)]


@dataclass
class Graph:
    """What each document of this build is built from and links to."""

    values: dict[str, str]  # document id -> content hash of its own source
    links: dict[str, list[str]]  # document id -> the documents its source links to
    always: set[str]  # documents rebuilt every time (ALWAYS_REBUILT)
    meta: dict[str, str]  # what every document depends on (code, vocabularies, rule sets...)


@dataclass
class Plan:
    """Which documents to build again, and which to keep from generation `base`."""

    affected: set[str]
    reused: dict[str, str]  # document id -> its content hash in `base`
    base: str
    old_words: dict[str, list[str]]


def _graph(kb: pipeline.KB, cache: ParseCache, settings: Settings, hashes: dict[Any, str]) -> Graph | None:
    """The dependency graph of this build's documents; None if a source's hash is unknown."""
    values: dict[str, str] = {}
    links: dict[str, list[str]] = {}
    always: set[str] = set()
    scales = []
    for record in kb.records:
        sha = cache.shas.get(record.path)
        if not sha:
            return None
        values[record.id] = f"{record.path}\0{sha}"
        links[record.id] = _links(record, kb.aliases)
        if isinstance(record, ALWAYS_REBUILT):
            always.add(record.id)
        if isinstance(record, Scale):
            scales.append(values[record.id])
    bib_sha = cache.shas.get(settings.relative(settings.bib_path), "")
    previous = cache.meta("bib") if bib_sha else None
    if bib_sha and previous == bib_sha:  # every entry as it was: the values the last build stored
        known = cache.nodes()
        for key in kb.references:
            doc_id = reference_id(key)
            values[doc_id] = known.get(doc_id) or _digest(kb.references[key])
    else:
        for key, ref in kb.references.items():
            values[reference_id(key)] = _digest(ref)
    shared = hashlib.sha256()
    kb_dir = settings.kb_dir
    shared_dirs = tuple(os.path.join(kb_dir / name, "") for name in NOT_RECORDS)  # a cheap test first
    for part in (
        parsecache.DOCS_VERSION,
        str(idx.SCHEMA_VERSION),
        repr(FACETS.signature()),
        kb.ruleset.id if kb.ruleset else "",
        settings.relative(settings.kb_dir),
        settings.relative(settings.bib_path),
        # vocabularies, rule sets, curation files (aliases): every document may use them
        *sorted(
            f"{p}\0{sha}"
            for p, sha in hashes.items()
            if str(p).startswith(shared_dirs) and p.parent.parent == kb_dir and p.parent.name in NOT_RECORDS
        ),
        *sorted(scales),  # every recommendation shows its level in the guideline's scale
    ):
        shared.update(part.encode() + b"\0")
    return Graph(values, links, always, {"bib": bib_sha, "shared": shared.hexdigest()})


def _digest(value: object) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()


def _links(record: Record, aliases: dict[str, str]) -> list[str]:
    """The documents a record's document shows data of, or that show data of it."""
    out = []
    for _, key in cited_keys(record):
        out += [reference_id(key), reference_id(aliases.get(key, key))]
    if isinstance(record, Recommendation | Verdict):
        out += [*record.linked_studies, record.question or ""]
    if isinstance(record, Question):
        out += record.candidate_studies
    if isinstance(record, Study):
        out += [reference_id(record.reference)]
    return sorted({i for i in out if i})


def _plan(cache: ParseCache, graph: Graph, settings: Settings) -> Plan | None:
    """The documents this build's changes can reach: changed ones, what they link to or are
    linked from, and one step further (a study shows the guideline of each recommendation
    counting it). None when the live generation is not the one the cache describes."""
    live = idx.current_dir(settings.index_dir)
    if live is None or cache.meta("generation") != live.name or cache.meta("shared") != graph.meta["shared"]:
        return None
    manifest = idx.read_manifest(live)
    old_hashes: dict[str, str] = manifest.get("hashes", {})
    known = cache.nodes()
    changed = {i for i, v in graph.values.items() if known.get(i) != v} | (known.keys() - graph.values.keys())
    old = cache.node_details(changed)
    linked_from: dict[str, set[str]] = {}
    for source, targets in graph.links.items():
        for target in targets:
            linked_from.setdefault(target, set()).add(source)

    def near(ids: Iterable[str]) -> set[str]:
        out = set(ids)
        for i in ids:
            out.update(graph.links.get(i, ()), linked_from.get(i, ()), old.get(i, ((), ()))[0])
        return out

    affected = (near(near(changed)) & graph.values.keys()) | graph.always
    reused = {i: old_hashes.get(i, "") for i in graph.values if i not in affected}
    if any(not h for h in reused.values()):
        return None
    replaced = (affected & old_hashes.keys()) | (old_hashes.keys() - graph.values.keys())
    words = {i: w for i, (_, w) in cache.node_details(replaced).items()}
    if replaced - words.keys():
        return None
    return Plan(affected, reused, live.name, words)
