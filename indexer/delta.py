"""The delta build: one record edited, only what it can reach is read again.

A whole build reads every record (from the parse cache when unchanged), checks and grades
them all, and then re-builds only the documents the edit can change (depgraph.plan). At 100k
records the reading alone takes seconds. When the last build was clean and an edit changed
only the content of a few record files (no file added or removed, no id or type changed, the
bibliography, vocabularies, rule sets, curation files and scales as they were), the problems
of every other record are the same as last time: the delta build then

* parses the changed files and checks them against the last build's ids (validate.problems_of);
* takes the dependency graph from the last build (parsecache `nodes`), with the changed
  records' new links;
* loads from the parse cache only the records within HOPS links of the documents to re-build
  (and of those rebuilt every time: questions, verdicts, knowledge pages, scales), with every
  reference, grades them and builds the documents from that part of the KB.

Anything else (a problem, a new file, a changed id, many changed files, a cache entry
missing) returns None, and build.py makes the whole build, which reports what it finds. The
delta's documents equal the whole build's (tests/test_delta.py compares every document).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import depgraph, parsecache, pipeline, records
from . import index as idx
from .models import Record, Scale
from .parsecache import ParseCache
from .rulesets import RuleSet
from .settings import Settings
from .validate import problems_of
from .vocab import Vocabularies

DELTA_MAX = 64  # changed record files a delta build takes; more make the whole build
# Links followed from each document to re-build to gather what it is made of: a question's
# document shows its recommendations (1), their studies (2) and those studies' references (3).
HOPS = 3


@dataclass
class Delta:
    """The part of the KB the documents to re-build are made of, and the build's graph."""

    kb: pipeline.KB
    graph: depgraph.Graph
    plan: depgraph.Plan


def listing_digest(paths: Iterable[str]) -> str:
    """Which record files there are (a file added, removed or renamed changes it)."""
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()


def prepare(settings: Settings, cache: ParseCache, hashes: Mapping[str, str]) -> Delta | None:
    """The delta of this build, or None when the whole build is needed (see the module doc)."""
    live = idx.current_dir(settings.index_dir)
    if cache.meta("clean") != "1" or live is None or cache.meta("generation") != live.name:
        return None
    paths = cache.record_paths(settings.kb_dir)
    bib_sha = hashes.get(str(settings.bib_path), "")
    if cache.meta("listing") != listing_digest(paths) or not bib_sha or cache.meta("bib") != bib_sha:
        return None
    kinds = _kinds(cache)
    found = _changed(settings, cache, kinds, paths, hashes) if kinds is not None else None
    if kinds is None or not found:
        return None
    changed, shown_of = found
    result = _delta(settings, cache, hashes, kinds, changed, shown_of)
    if result is not None:  # every unchanged file's cached parse stood, read or not
        cache.stats.reused = len(shown_of) - cache.stats.parsed + 1  # + references.bib
    return result


def _kinds(cache: ParseCache) -> dict[str, str] | None:
    """Record id -> type, of the last build's records."""
    try:
        kinds = json.loads(cache.meta("kinds") or "null")
    except ValueError:
        return None
    return kinds if isinstance(kinds, dict) else None


def _changed(
    settings: Settings,
    cache: ParseCache,
    kinds: Mapping[str, str],
    paths: list[str],
    hashes: Mapping[str, str],
) -> tuple[dict[str, tuple[str, str]], dict[str, str]] | None:
    """Changed record files (path -> (shown path, id last time)), and every record file by its
    shown path; None when a file is not the last build's or too many changed."""
    nodes = cache.nodes()
    unchanged = {nodes.get(doc_id, ""): doc_id for doc_id in kinds}  # "shown\0sha" as last built
    changed: dict[str, tuple[str, str]] = {}
    shown_of: dict[str, str] = {}
    for path, shown in zip(paths, records.shown_paths(paths, settings.root), strict=True):
        shown_of[shown] = path
        if f"{shown}\0{hashes.get(path, '')}" not in unchanged:
            changed[path] = (shown, "")
            if len(changed) > DELTA_MAX:
                return None
    ids = {value.partition("\0")[0]: doc_id for value, doc_id in unchanged.items()}
    for path, (shown, _) in changed.items():
        if shown not in ids or not hashes.get(path):  # not a file of the last build, or gone
            return None
        changed[path] = (shown, ids[shown])
    return changed, shown_of


def _delta(
    settings: Settings,
    cache: ParseCache,
    hashes: Mapping[str, str],
    kinds: dict[str, str],
    changed: dict[str, tuple[str, str]],
    shown_of: dict[str, str],
) -> Delta | None:
    edited = _parse_changed(cache, changed, kinds)
    shared = _shared(settings)
    if edited is None or shared is None:
        return None
    vocab, rulesets, aliases = shared
    ruleset = pipeline.choose_ruleset(rulesets, None)
    scales = [cache.nodes()[i] for i, kind in kinds.items() if kind == "scale"]
    digest = depgraph.shared_digest(settings, ruleset.id if ruleset else "", hashes, scales)
    if digest != cache.meta("shared"):
        return None
    bib_shown = settings.relative(settings.bib_path)
    references, problems = parsecache.parse_bib(cache, settings.bib_path, bib_shown)
    if problems:
        return None
    graph = _graph(cache, kinds, edited, aliases, digest)
    back = depgraph.linked_from(graph.links)
    plan = depgraph.plan(cache, graph, settings, back)
    if plan is None:
        return None
    wanted = _reach(plan.affected | graph.always, graph.links, back) & kinds.keys()
    wanted |= {i for i, kind in kinds.items() if kind == "scale"}
    part = _load(cache, wanted, edited, shown_of)
    if part is None:
        return None
    order = {shown: n for n, shown in enumerate(shown_of)}
    kb = pipeline.KB(
        settings,
        references,
        sorted(part, key=lambda r: order[r.path]),
        vocab,
        rulesets,
        [],
        aliases=aliases,
    )
    scale_records = {r.id: r for r in part if isinstance(r, Scale)}
    if problems_of(edited, references, vocab, aliases, kinds, scale_records):
        return None  # the whole build reports them and leaves the record out
    kb.ruleset = ruleset
    if ruleset is not None:
        pipeline.grade(kb, ruleset)
    return Delta(kb, graph, plan)


def _parse_changed(
    cache: ParseCache, changed: dict[str, tuple[str, str]], kinds: Mapping[str, str]
) -> list[Record] | None:
    """The changed records; None if one has a problem, another id or type, or is a scale."""
    paths = {text: Path(text) for text in changed}
    results = parsecache.parse_files(cache, [(paths[text], shown) for text, (shown, _) in changed.items()])
    out = []
    for text, (_, old_id) in changed.items():
        record, problems, repaired = results[paths[text]]
        if record is None or problems or repaired is not None or record.id != old_id:
            return None
        kind = depgraph.record_kind(record)
        if kind != kinds.get(old_id) or kind == "scale":
            return None
        out.append(record)
    return out


def _shared(settings: Settings) -> tuple[Vocabularies, dict[str, RuleSet], dict[str, str]] | None:
    """Vocabularies, rule sets and aliases, as pipeline.load reads them; None on a problem."""
    vocab, rulesets, aliases, problems = pipeline.load_shared(settings)
    return None if problems else (vocab, rulesets, aliases)


def _graph(
    cache: ParseCache, kinds: Mapping[str, str], edited: list[Record], aliases: Mapping[str, str], shared: str
) -> depgraph.Graph:
    """The last build's graph, with the edited records' new content hashes and links."""
    values = dict(cache.nodes())
    links = cache.all_links()
    for record in edited:
        values[record.id] = f"{record.path}\0{cache.shas[record.path]}"
        links[record.id] = depgraph.record_links(record, aliases)
    always = {i for i, kind in kinds.items() if kind in depgraph.ALWAYS_KINDS}
    return depgraph.Graph(values, links, always, {"bib": cache.meta("bib") or "", "shared": shared})


def _reach(start: set[str], links: Mapping[str, list[str]], back: Mapping[str, set[str]]) -> set[str]:
    """Documents within HOPS links of `start`, either way."""
    seen, frontier = set(start), set(start)
    for _ in range(HOPS):
        step: set[str] = set()
        for i in frontier:
            step.update(links.get(i, ()), back.get(i, ()))
        frontier = step - seen
        seen |= frontier
    return seen


def _load(
    cache: ParseCache, wanted: set[str], edited: list[Record], shown_of: Mapping[str, str]
) -> list[Record] | None:
    """The wanted records: the edited ones as parsed, the others from the parse cache."""
    nodes = cache.nodes()
    by_id = {r.id: r for r in edited}
    keys: dict[str, tuple[str, str]] = {}  # cache key -> (shown path, sha)
    for doc_id in wanted - by_id.keys():
        shown, _, sha = nodes[doc_id].partition("\0")
        keys[f"{shown}\0{shown_of[shown]}"] = (shown, sha)
    hits = cache.cached_exact(keys)
    out = list(by_id.values())
    with parsecache.collector_paused():
        for key, (shown, sha) in keys.items():
            hit = hits.get(key)
            if hit is None or hit[0] != sha:
                return None
            try:
                record, problems, repaired = parsecache.load_result(hit[1])
            except Exception:  # a damaged entry: the whole build parses the file again
                return None
            if record is None or problems or repaired is not None:
                return None
            cache.shas[shown] = sha
            out.append(record)
    return out
