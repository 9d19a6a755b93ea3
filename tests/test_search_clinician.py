"""Search as clinicians type it (issue 14, items 2-6), on the bundled KB: typos run their
correction, field words without syntax are filters, identifiers find their record first, authors
are family names with the first author first, and the vocabulary knows the terms (and says where
each comes from). Relevance as a whole is measured by bench/relevance.py (tests/test_relevance.py).
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from conftest import PROJECT, build

from indexer.documents import author_keys
from indexer.models import Author
from indexer.query import Query, parse_params, results_json
from indexer.querytext import edit_distance, understand
from indexer.search import SearchIndex
from indexer.settings import Settings
from indexer.web import create_app


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> SearchIndex:
    settings = Settings.for_root(PROJECT, tmp_path_factory.mktemp("clinician") / "index")
    build(settings)
    return SearchIndex(settings.index_dir)


@pytest.fixture(scope="module")
def client(index: SearchIndex) -> Any:
    return create_app({"TESTING": True, "INDEX_DIR": str(index.index_dir)}).test_client()


def search(index: SearchIndex, text: str, **params: str) -> Any:
    results = index.search(parse_params({"q": text, **params}))
    assert results.ok, results.error
    return results


def ids(index: SearchIndex, text: str, **params: str) -> list[str]:
    return [h.id for h in search(index, text, page_size="100", **params).hits]


def readings(results: Any, vocabulary: str) -> list[tuple[str, str]]:
    return [(e["text"], e["id"]) for e in results.expansions if e["vocabulary"] == vocabulary]


# -- 2. typos ---------------------------------------------------------------------------------

CORRECTIONS = [
    ("neuropathc pian", "neuropathic pain"),  # a whole vocabulary name, not 'neuropathic gian'
    ("depresion", "depression"),
    ("fibromyalga", "fibromyalgia"),
    ("phantom limp pain", "phantom limb pain"),  # a real word inside a misspelt name
    ("complex regional pain syndrom", "complex regional pain syndrome"),
    ("Lefauchuer guidelines", "Lefaucheur guidelines"),  # an author's name, with its capital
    ("(neuropathc pian) AND M1", "(neuropathic pain) AND M1"),  # syntax and correct words kept
]


@pytest.mark.parametrize(("typed", "corrected"), CORRECTIONS)
def test_a_query_that_finds_nothing_runs_its_correction(
    index: SearchIndex, typed: str, corrected: str
) -> None:
    """PubMed's behaviour: the corrected search runs at once and says so; the query (and so
    every link of the page) keeps the text as typed."""
    results = search(index, typed)
    assert (results.corrected_from, results.corrected_to) == (typed, corrected)
    assert results.query.text == typed and results.suggestion is None
    assert readings(results, "spelling") == [(typed, corrected)]
    assert [h.id for h in results.hits] == [h.id for h in search(index, corrected).hits]
    assert results.total > 0


@pytest.mark.parametrize(("typed", "corrected"), CORRECTIONS[:3])
def test_nocorrect_runs_the_text_as_typed(index: SearchIndex, typed: str, corrected: str) -> None:
    results = search(index, typed, nocorrect="1")
    assert results.total == 0 and results.corrected_to is None
    assert results.suggestion == corrected


@pytest.mark.parametrize("text", ["pain", "M1 neuropathic pain", "Mhalla", "depression 2020", "zona"])
def test_a_query_that_finds_something_is_never_corrected(index: SearchIndex, text: str) -> None:
    results = search(index, text)
    assert results.total > 0 and results.corrected_to is None and results.suggestion is None


def test_a_correct_word_is_never_corrected(index: SearchIndex) -> None:
    opened = index.generation()
    for word in ("pain", "m1", "s2", "h1", "rtms", "zona", "mc"):
        assert opened.known_word(word), word
    assert opened.correct("pian") == "pain"  # one swap; 'gian' is as close but rarer
    assert opened.correct("m1 pian") == "m1 pain"


@pytest.mark.parametrize("text", ["doi:", "PMID:", '"neuropathc pian"', "xqzvwk"])
def test_syntax_and_phrases_are_never_corrected(index: SearchIndex, text: str) -> None:
    results = search(index, text)
    assert results.corrected_to is None


def test_the_page_says_showing_results_for_and_links_to_the_text_as_typed(client: Any) -> None:
    page = client.get("/?q=neuropathc+pian").get_data(as_text=True)
    shown = re.search(r'<p id="corrected"[^>]*>(.*?)</p>', page, re.S)
    assert shown is not None
    text = " ".join(re.sub(r"<[^>]+>", "", shown.group(1)).split())
    assert text == "Showing results for neuropathic pain; search instead for neuropathc pian"
    link = re.search(r'id="search-instead" href="([^"]+)"', page)
    assert link is not None and link.group(1).replace("&amp;", "&") == "/?q=neuropathc+pian&nocorrect=1"
    as_typed = client.get(link.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert 'id="corrected"' not in as_typed and "0 results" in as_typed
    assert 'Did you mean <a href="/?q=neuropathic+pain">neuropathic pain</a>?' in as_typed


def test_the_json_api_and_the_download_follow_the_correction(client: Any, index: SearchIndex) -> None:
    body = client.get("/api/search?q=depresion").get_json()
    assert (body["corrected_from"], body["corrected_to"]) == ("depresion", "depression")
    assert body["query"]["text"] == "depresion" and body["query"]["nocorrect"] is False
    same = results_json(search(index, "depresion"))
    assert {k: v for k, v in body.items() if k in same} == same
    rows = csv.reader(io.StringIO(client.get("/search.csv?q=depresion").get_data(as_text=True)))
    assert [row[0].lstrip("'") for row in list(rows)[1:]] == ids(index, "depression")
    as_typed = client.get("/api/search?q=depresion&nocorrect=1").get_json()
    assert as_typed["total"] == 0 and as_typed["suggestion"] == "depression"


def test_damerau_distance_counts_a_swap_as_one_edit() -> None:
    assert edit_distance("pian", "pain") == 1
    assert edit_distance("neuropathc pian", "neuropathic pain") == 2
    assert edit_distance("abc", "xyz", limit=1) == 2  # stops past the limit


# -- 3. field words without syntax ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fielded"),
    [
        ("level A", "level:A"),
        ("Level B depression", "level:B depression"),
        ("class II studies fibromyalgia", "class:II type:study fibromyalgia"),
        ("class 2 H-coil", "class:II H-coil"),
        ("2015-2020 neuropathic pain", "year:[2015 TO 2020] neuropathic pain"),
        ("neuropathic pain since 2019", "neuropathic pain year:[2019 TO 9999]"),
        ("Lefaucheur 2004", "Lefaucheur year:2004"),
        ("third-line", 'grade:"line-of-therapy:third-line"'),
        ("GRADE low certainty", 'grade:"grade-certainty:low"'),
    ],
)
def test_field_words_are_filters(index: SearchIndex, text: str, fielded: str) -> None:
    """`level A` finds what `level:A` finds (the 5 Level A records, not the words)."""
    results = search(index, text, page_size="100")
    assert readings(results, "filter")
    assert {h.id for h in results.hits} == set(ids(index, fielded)) and results.total


def test_each_field_word_means_what_it_says(index: SearchIndex) -> None:
    assert {h.fields["level"] for h in search(index, "level A", page_size="100").hits} == {"A"}
    assert search(index, "level A").total == search(index, "", level="A").total == 5
    studies = search(index, "class II studies fibromyalgia", page_size="100").hits
    assert studies and all(h.type == "study" and h.fields["class"] == "II" for h in studies)
    years = [int(h.fields["year"]) for h in search(index, "since 2019", page_size="100").hits]
    assert years and min(years) >= 2019
    cochrane = ids(index, "Cochrane")  # Cochrane DOIs: the review, its verdict and the scale read in it
    assert set(cochrane) == {"@oconnell2018noninvasive", "oconnell2018-chronic-pain-rtms", "grade-certainty"}
    reviews = search(index, "meta-analysis postherpetic neuralgia", page_size="100").hits
    assert reviews and {h.type for h in reviews} <= {"verdict", "reference"}
    rcts = search(index, "RCT", page_size="100").hits
    assert rcts and {h.data["record"]["design"] for h in rcts} <= {"parallel-rct", "crossover-rct"}


def test_words_that_only_look_like_field_words_stay_words(index: SearchIndex) -> None:
    assert not readings(search(index, "2000 patients"), "filter")  # a number before a unit
    assert not readings(search(index, "high quality evidence depression"), "filter")  # no GRADE
    assert readings(search(index, "low certainty"), "filter") == [
        ("low certainty", 'grade:"grade-certainty:low"')
    ]
    assert readings(search(index, "10 Hz M1"), "protocols")[0] == ("10 Hz", "hf-rtms")


def test_year_ranges_also_with_syntax(index: SearchIndex) -> None:
    spelled = set(ids(index, "2015-2020"))
    assert spelled == set(ids(index, "year:2015..2020")) == set(ids(index, "year:[2015 TO 2020]"))
    assert set(ids(index, "since 2019")) == set(ids(index, "year:>=2019"))


def test_literal_searches_the_words_and_the_page_offers_it(client: Any, index: SearchIndex) -> None:
    words = search(index, "level A", literal="1")
    assert not readings(words, "filter") and words.total > search(index, "level A").total
    page = client.get("/?q=level+A").get_data(as_text=True)
    assert "“level A” → Level A" in page
    link = re.search(r'id="search-words" href="([^"]+)"', page)
    assert link is not None and link.group(1).replace("&amp;", "&") == "/?q=level+A&literal=1"
    literal = client.get(link.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert f"{words.total} results" in literal and 'id="search-words"' not in literal


# -- 4. identifiers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("10.1016/j.pain.2013.03.016", ["@hosomi2013pain", "hosomi2013pain"]),
        ("doi:10.1016/j.pain.2013.03.016", ["@hosomi2013pain", "hosomi2013pain"]),
        ("https://doi.org/10.1111/pme.12832", ["@ma2015painmed", "ma2015painmed"]),
        ("10.1002/EJP.864", ["@ayache2016analgesic", "ayache2016analgesic"]),
        ("PMID: 31593002", ["@hosomi2020randomized", "hosomi2020randomized"]),
        ("pmid:31593002", ["@hosomi2020randomized", "hosomi2020randomized"]),
        ("31593002", ["@hosomi2020randomized", "hosomi2020randomized"]),
        ("https://pubmed.ncbi.nlm.nih.gov/31593002/", ["@hosomi2020randomized", "hosomi2020randomized"]),
        ("PMC4969102", ["@malavera2016jpain", "malavera2016jpain"]),
        ("pmcid:PMC4949003", ["@finnerup2016neuropathic"]),
        ("andreobadia2008neurology", ["@andreobadia2008neurology", "andreobadia2008neurology"]),
        ("@attal2021repetitive", ["@attal2021repetitive", "attal2021repetitive"]),
        ("CD008208", ["@oconnell2018noninvasive", "oconnell2018-chronic-pain-rtms"]),
    ],
)
def test_an_identifier_finds_its_reference_then_the_records_citing_it(
    index: SearchIndex, text: str, first: list[str]
) -> None:
    results = search(index, text)
    assert [h.id for h in results.hits[: len(first)]] == first
    assert readings(results, "identifier")


def test_a_guideline_doi_finds_the_guideline_then_its_recommendations(index: SearchIndex) -> None:
    found = search(index, "10.1016/j.clinph.2019.11.002", page_size="100").hits
    assert found[0].id == "@lefaucheur2020guidelines"
    assert {h.type for h in found[1:]} == {"recommendation"}
    assert all(h.fields["guideline"] == "lefaucheur2020guidelines" for h in found[1:])


def test_urls_are_never_unknown_fields(index: SearchIndex) -> None:
    assert search(index, "https://example.com/rtms:x").total == 0  # searched as words


# -- 5. authors -------------------------------------------------------------------------------


def test_author_is_a_family_name_never_a_given_name(index: SearchIndex) -> None:
    """`author:thomas` found 29 guideline recommendations (a co-author's given name is Thomas)."""
    found = search(index, "author:thomas", page_size="100").hits
    assert [h.id for h in found] == ["thomas2024effects", "@thomas2024effects"]
    assert search(index, "author:nathalie").total == 0  # André-Obadia's given name
    assert search(index, "Nathalie", nocorrect="1").total == 0


@pytest.mark.parametrize(
    "text", ["André-Obadia", "andre-obadia", "Andre Obadia", "André-Obadia N", 'author:"andre-obadia n"']
)
def test_accents_hyphens_and_initials(index: SearchIndex, text: str) -> None:
    """Her own papers first (the study record stands for a paper), newest first."""
    first = ids(index, text)[:4]
    assert first == [
        "andreobadia2014life",
        "andreobadia2011pain",
        "andreobadia2008neurology",
        "andreobadia2006clinph",
    ]


def test_the_first_author_comes_first(index: SearchIndex) -> None:
    """Lefaucheur's own papers (his guidelines among them) before the records drawn from them,
    and before the papers he co-wrote."""
    found = search(index, "Lefaucheur", page_size="100").hits
    assert [h.id for h in found[:2]] == ["@lefaucheur2020guidelines", "@lefaucheur2014guidelines"]
    firsts = [h for h in found if h.type in ("study", "reference")][:6]
    assert all(h.data.get("authors", [{}])[0].get("last", "Lefaucheur") == "Lefaucheur" for h in firsts)
    assert ids(index, "Lefaucheur 2004")[:1] == ["lefaucheur2004jnnp"]


def test_author_keys_fold_accents_and_keep_initials() -> None:
    keys = author_keys(Author(last="André-Obadia", first="Nathalie"))
    assert keys == ["andreobadia", "andre", "obadia", "andreobadia_n"]
    assert author_keys(Author(last="Lefaucheur", first="Jean-Pascal")) == [
        "lefaucheur",
        "lefaucheur_j",
        "lefaucheur_jp",
    ]


def test_a_lower_case_word_inside_a_sentence_is_not_read_as_a_name(index: SearchIndex) -> None:
    assert not readings(search(index, "short sessions rTMS"), "author")
    assert readings(search(index, "Short"), "author") == [("Short", "short")]


# -- 6. vocabulary ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "vocabulary", "term"),
    [
        ("nTMS", "targeting", "navigated"),
        ("navigated TMS", "targeting", "navigated"),
        ("neuronavigation", "targeting", "navigated"),
        ("robotic navigation", "targeting", "robotic"),
        ("deep TMS", "protocols", "deep-tms"),
        ("deep TMS", "coils", "h-coil"),
        ("H-coil", "coils", "h-coil"),
        ("theta burst", "protocols", "tbs"),
        ("TBS", "protocols", "tbs"),
        ("iTBS", "protocols", "itbs"),
        ("cTBS", "protocols", "ctbs"),
        ("sciatica", "indications", "radiculopathy"),
        ("sciatique", "indications", "radiculopathy"),
        ("坐骨神經痛", "indications", "radiculopathy"),
        ("douleur membre fantome", "indications", "phantom-limb-pain"),  # small words left out
        ("帶狀皰疹後神經痛", "indications", "postherpetic-neuralgia"),
        ("pain after stroke", "indications", "central-post-stroke-pain"),
    ],
)
def test_the_vocabulary_knows_the_term(index: SearchIndex, text: str, vocabulary: str, term: str) -> None:
    results = search(index, text)
    assert (vocabulary, term) in [(e["vocabulary"], e["id"]) for e in results.expansions]
    assert results.total > 0


def test_theta_burst_covers_itbs_and_ctbs(index: SearchIndex) -> None:
    vocab = index.vocab()
    assert (
        vocab.ancestors("protocols", "itbs")[0] == "tbs" and vocab.ancestors("protocols", "ctbs")[0] == "tbs"
    )
    assert "kim2020effects" in ids(index, "theta burst")[:5]


def test_chinese_reads_the_longest_names_only(index: SearchIndex) -> None:
    read = understand("三叉神經痛", index.vocab())
    assert [e.term_id for e in read.expansions] == ["trigeminal-neuralgia"]


def test_every_term_named_by_the_issue_says_where_it_comes_from() -> None:
    named = {
        "targeting": ["navigated", "robotic"],
        "coils": ["h-coil"],
        "protocols": ["tbs", "itbs", "ctbs", "deep-tms"],
        "indications": ["postherpetic-neuralgia", "central-post-stroke-pain", "phantom-limb-pain"],
    }
    for vocabulary, term_ids in named.items():
        data = yaml.safe_load((PROJECT / "kb" / "vocab" / f"{vocabulary}.yaml").read_text("utf-8"))
        terms = {t["id"]: t for t in data["terms"]}
        for term_id in term_ids:
            source = terms[term_id].get("source")
            assert source, f"{vocabulary}/{term_id} has no source"
            languages = set(terms[term_id].get("synonyms", {}))
            if isinstance(source, dict):
                assert languages <= set(source), f"{vocabulary}/{term_id}: a language without a source"


# -- questions and order ----------------------------------------------------------------------


def test_question_words_are_dropped_only_from_questions(index: SearchIndex) -> None:
    asked = search(index, "does rTMS work for sciatica")
    assert "work" not in asked.understood and "does" not in asked.understood
    assert ids(index, "does rTMS work for sciatica")[:2] == ["elsheikh2023effect", "attal2016pain"]
    assert "work" in search(index, "rTMS work", nocorrect="1").understood  # not a question: required
    sentence = search(index, "rTMS for sciatica: does it work?")  # a question mark, a colon
    assert ("sciatica", "radiculopathy") in readings(sentence, "indications") and sentence.total


def test_a_condition_s_own_records_come_before_its_broader_answers(index: SearchIndex) -> None:
    hits = search(index, "sciatica").hits
    kinds = ["own" if not h.note else "broader" for h in hits]
    assert kinds[:3] == ["own"] * 3 and "broader" in kinds
    assert hits[3].note.startswith("covers neuropathic pain in general")
    assert ids(index, "is rTMS effective for neuropathic pain")[0] == "np-rtms"  # rTMS in general


# -- malformed queries ------------------------------------------------------------------------

ODD = [
    "doi:",
    "pmid:",
    "author:",
    'author:"',
    "PMID:",
    "https://",
    "level",
    "class",
    "since",
    "2015-",
    "x ANDNOT ANDNOT y",
    "a ANDMAYBE ANDNOT b",
    "@",
    "10.",
    "PMC",
    "how",
    "does",
    "level Z",
    "class V",
]


@pytest.mark.parametrize("text", ODD)
def test_odd_queries_never_fail(index: SearchIndex, client: Any, text: str) -> None:
    results = index.search(Query.make(text))
    assert results.ok or results.error
    for path in ("/", "/api/search", "/search.csv"):
        assert client.get(f"{path}?{urlencode({'q': text})}").status_code in (200, 400), path
