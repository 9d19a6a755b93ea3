"""The fast AND/OR/NOT evaluator (engine.Generation.match) agrees with Whoosh's own matching.

Random queries are built from words that are in the index (and some that are not), fielded
terms, phrases, prefixes and nested groups with AND, OR, NOT and ANDNOT, parsed by Whoosh's
parser as a user's query is, and matched both ways over the bundled KB's index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from whoosh import query as wq

from indexer.build import ensure_index
from indexer.errors import QueryError
from indexer.querytext import understand
from indexer.search import SearchIndex
from indexer.settings import Settings

PROJECT = Path(__file__).parent.parent
EXAMPLES = 600


@pytest.fixture(scope="module")
def generation(tmp_path_factory: pytest.TempPathFactory):
    settings = Settings.for_root(PROJECT, tmp_path_factory.mktemp("evaluator") / "index")
    ensure_index(settings)
    return _Shown(SearchIndex(settings.index_dir).generation())


class _Shown:
    """The generation, with a short repr for hypothesis' failure reports."""

    def __init__(self, generation) -> None:
        self.generation = generation

    def __repr__(self) -> str:
        return f"<generation {self.generation.name}>"

    def __getattr__(self, name: str):
        return getattr(self.generation, name)


WORDS = [
    "pain", "neuropathic", "rtms", "motor", "cortex", "sham", "depression", "fibromyalgia",
    "stimulation", "randomised", "level", "guideline", "dlpfc", "m1", "10", "hz", "patients",
    "lefaucheur", "obadia", "migraine", "stroke", "crps", "trial", "xylophone", "qqqq",
]  # fmt: skip
FIELDED = [
    "concepts:neuropathic-pain", "concepts:m1", "concepts:hf-rtms", "concepts:dlpfc", "level:A",
    "type:study", "type:recommendation", "class:III", "year:2020", "authors:lefaucheur",
    "concepts:nosuchconcept",
]  # fmt: skip
OTHER = ['"motor cortex"', '"neuropathic pain"', '"sham stimulation"', "neuro*", "stim*", "pain~"]

leaf = st.sampled_from(WORDS) | st.sampled_from(FIELDED) | st.sampled_from(OTHER)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(children, st.sampled_from([" AND ", " OR ", " ", " ANDNOT ", " AND NOT "]), children)
    return pair.map(lambda t: f"({t[0]}{t[1]}{t[2]})") | children.map(lambda c: f"NOT {c}")


query_text = st.recursive(leaf, _combine, max_leaves=8)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=query_text)
def test_fast_matching_equals_whoosh(generation, text: str) -> None:
    try:
        rewritten = understand(text, generation.vocab).text  # what search() hands the parser
    except QueryError:
        assume(False)  # refused with a message before any matching (e.g. 'NOT NOT x')
    node = generation.parse(rewritten)
    alive = generation.store.alive
    ours = generation.match(node) & alive
    expected = _oracle(generation, node)
    assert set(np.flatnonzero(ours).tolist()) == expected, text
    if not _has_and_not(node):
        assert np.array_equal(ours, generation.whoosh_match(node) & alive), text


def _oracle(generation, node) -> set[int]:
    """Boolean set semantics over Whoosh's own matching of each leaf (term, phrase, prefix...)."""
    alive = set(np.flatnonzero(generation.store.alive).tolist())
    if isinstance(node, wq.And):
        out = set(alive)
        for child in node.subqueries:
            out &= _oracle(generation, child)
        return out
    if isinstance(node, wq.Or) and not node.minmatch:
        return set().union(*(_oracle(generation, c) for c in node.subqueries))
    if isinstance(node, wq.Not):
        return alive - _oracle(generation, node.query)
    if isinstance(node, wq.AndNot):
        return _oracle(generation, node.a) - _oracle(generation, node.b)
    if node is wq.NullQuery:
        return set()
    return set(generation.searcher().docs_for_query(node)) & alive


def _has_and_not(node) -> bool:
    """Whoosh 2.7's AndNot matcher is wrong on some queries of this index, which the oracle shows:
    '(NOT pain ANDNOT NOT motor)' also returns a document with neither word, and
    '("motor cortex" ANDNOT pain)' returns one that has 'pain'. Only for queries without ANDNOT is
    Whoosh's whole-query answer a reference; every query is checked against the oracle."""
    if isinstance(node, wq.AndNot):
        return True
    children = list(getattr(node, "subqueries", ()) or ())
    children += [getattr(node, name) for name in ("query",) if hasattr(node, name)]
    return any(_has_and_not(c) for c in children)


def test_whoosh_and_not_is_what_the_oracle_corrects(generation) -> None:
    """The two Whoosh answers _has_and_not describes (if Whoosh is ever fixed, this fails and the
    exemption can go)."""
    for text in ("(NOT pain ANDNOT NOT motor)", '("motor cortex" ANDNOT pain)'):
        node = generation.parse(understand(text, generation.vocab).text)
        ours = set(np.flatnonzero(generation.match(node) & generation.store.alive).tolist())
        assert ours == _oracle(generation, node)
        assert ours != set(np.flatnonzero(generation.whoosh_match(node)).tolist())


def test_the_property_is_not_vacuous(generation) -> None:
    """The generated queries match something, and not always everything or nothing."""
    sizes = set()
    for text in ("pain AND sham", "pain OR depression", "NOT pain", "(pain ANDNOT sham)", "xylophone"):
        sizes.add(int(np.count_nonzero(generation.match(generation.parse(text)))))
    assert len(sizes) >= 4 and 0 in sizes
