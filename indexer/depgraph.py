"""What each index document is built from and links to, and which documents an edit can change.

build.py stores this graph in the parse cache (parsecache `nodes` and `meta`) with each build;
the next build compares it with the sources to re-build only the documents an edit can reach
(`plan`), and delta.py uses it to load only the records those documents are made from.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from . import index as idx
from . import parsecache
from .fields import FACETS, reference_id
from .models import Knowledge, Question, Recommendation, Record, Reference, Scale, Study, Verdict
from .parsecache import ParseCache
from .records import NOT_RECORDS
from .settings import Settings
from .validate import cited_keys

# Documents built on every build: few, and each gathers data from across the KB (a question
# page shows every verdict and study on it).
ALWAYS_REBUILT = (Question, Verdict, Knowledge, Scale)
ALWAYS_KINDS = frozenset(kind.__name__.lower() for kind in ALWAYS_REBUILT)


def record_kind(record: Record) -> str:
    """A record's type as its file names it (`type: study`)."""
    return type(record).__name__.lower()


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


def graph(
    records: Iterable[Record],
    references: Mapping[str, Reference],
    aliases: Mapping[str, str],
    ruleset_id: str,
    cache: ParseCache,
    settings: Settings,
    hashes: Mapping[str, str],
) -> Graph | None:
    """The dependency graph of this build's documents; None if a source's hash is unknown."""
    values: dict[str, str] = {}
    links: dict[str, list[str]] = {}
    always: set[str] = set()
    scales = []
    for record in records:
        sha = cache.shas.get(record.path)
        if not sha:
            return None
        values[record.id] = f"{record.path}\0{sha}"
        links[record.id] = record_links(record, aliases)
        if isinstance(record, ALWAYS_REBUILT):
            always.add(record.id)
        if isinstance(record, Scale):
            scales.append(values[record.id])
    bib_sha = cache.shas.get(settings.relative(settings.bib_path), "")
    previous = cache.meta("bib") if bib_sha else None
    if bib_sha and previous == bib_sha:  # every entry as it was: the values the last build stored
        known = cache.nodes()
        for key in references:
            doc_id = reference_id(key)
            values[doc_id] = known.get(doc_id) or digest(references[key])
    else:
        for key, ref in references.items():
            values[reference_id(key)] = digest(ref)
    shared = shared_digest(settings, ruleset_id, hashes, scales)
    return Graph(values, links, always, {"bib": bib_sha, "shared": shared})


def shared_digest(
    settings: Settings, ruleset_id: str, hashes: Mapping[str, str], scales: Iterable[str]
) -> str:
    """What every document depends on: the indexer's code and schema, the default rule set,
    the vocabularies, rule sets and curation files, and the scales ("path\\0sha" of each)."""
    shared = hashlib.sha256()
    kb_dir = settings.kb_dir
    shared_dirs = tuple(os.path.join(kb_dir / name, "") for name in NOT_RECORDS)
    for part in (
        parsecache.DOCS_VERSION,
        str(idx.SCHEMA_VERSION),
        repr(FACETS.signature()),
        ruleset_id,
        settings.relative(settings.kb_dir),
        settings.relative(settings.bib_path),
        *sorted(
            f"{p}\0{sha}"
            for p, sha in hashes.items()
            if p.startswith(shared_dirs)  # a cheap test first, then: right inside one of them
            and os.path.join(os.path.dirname(p), "") in shared_dirs
        ),
        *sorted(scales),  # every recommendation shows its level in the guideline's scale
    ):
        shared.update(part.encode() + b"\0")
    return shared.hexdigest()


def digest(value: object) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()


def record_links(record: Record, aliases: Mapping[str, str]) -> list[str]:
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


def linked_from(links: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """Document id -> the documents whose sources link to it."""
    out: dict[str, set[str]] = {}
    for source, targets in links.items():
        for target in targets:
            out.setdefault(target, set()).add(source)
    return out


def plan(
    cache: ParseCache,
    graph: Graph,
    settings: Settings,
    back: Mapping[str, Iterable[str]] | None = None,
) -> Plan | None:
    """The documents this build's changes can reach: changed ones, what they link to or are
    linked from, and one step further (a study shows the guideline of each recommendation
    counting it). None when the live generation is not the one the cache describes.
    `back` is linked_from(graph.links), if the caller has it already."""
    live = idx.current_dir(settings.index_dir)
    if live is None or cache.meta("generation") != live.name or cache.meta("shared") != graph.meta["shared"]:
        return None
    manifest = idx.read_manifest(live)
    old_hashes: dict[str, str] = manifest.get("hashes", {})
    known = cache.nodes()
    changed = {i for i, v in graph.values.items() if known.get(i) != v} | (known.keys() - graph.values.keys())
    old = cache.node_details(changed)
    linked = linked_from(graph.links) if back is None else back

    def near(ids: Iterable[str]) -> set[str]:
        out = set(ids)
        for i in ids:
            out.update(graph.links.get(i, ()), linked.get(i, ()), old.get(i, ((), ()))[0])
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
