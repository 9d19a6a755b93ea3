"""CSL-JSON imports (Zotero's "CSL JSON" export): mapping to BibTeX, bad input, duplicates, a round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bibtexparser
import pytest
from conftest import build

from indexer import pipeline
from indexer.cli import cli
from indexer.importers import Candidate, Name, detect_format, read_candidates
from indexer.search import Query, search
from indexer.settings import Settings

# Three items as Zotero 7 writes them (Export Library... > CSL JSON): ids are Zotero URIs, numbers
# may be numbers, the Extra field comes out as `note`, tags as one `keyword` string.
ZOTERO: list[dict[str, Any]] = [
    {
        "id": "http://zotero.org/users/local/AbCdEf/items/QW3RTY7U",
        "type": "article-journal",
        "title": "Navigated <i>rTMS</i> of the motor cortex in chronic neuropathic pain",
        "container-title": "Test Journal of Pain",
        "page": "211-219",
        "volume": "14",
        "issue": 2,
        "abstract": "Forty patients received twelve sessions; the quokka scale improved.",
        "DOI": "https://doi.org/10.9999/TJP.2022.211",
        "ISSN": "1234-5678",
        "note": "PMID: 35550001\nPMCID: PMC9000001",
        "keyword": "neuropathic pain; neuronavigation; transcranial magnetic stimulation",
        "language": "en",
        "author": [
            {"family": "Ortega", "given": "Lucía"},
            {"family": "Berg", "given": "Ruud", "non-dropping-particle": "van den"},
        ],
        "issued": {"date-parts": [["2022", 4, 15]]},
    },
    {
        "id": "http://zotero.org/users/local/AbCdEf/items/ZX8CVB2N",
        "type": "chapter",
        "title": "Cortical stimulation for pain",
        "container-title": "Handbook of Test Neuromodulation",
        "publisher": "Test Press",
        "publisher-place": "Lyon",
        "page": "45–67",
        "ISBN": "978-0-00-000000-2",
        "abstract": "A chapter on stimulation targets, with a narwhal as an example.",
        "keyword": "motor cortex",
        "author": [{"family": "Keller", "given": "Anna"}],
        "editor": [{"family": "Moreau", "given": "Paul"}],
        "issued": {"date-parts": [[2021]]},
    },
    {
        "id": "whoguide2019",
        "type": "report",
        "title": "Guidance on non-invasive brain stimulation",
        "publisher": "World Test Organization",
        "number": "WTO-7",
        "author": [{"literal": "World Test Organization Working Group"}],
        "issued": {"raw": "2019-11"},
    },
]


def one(item: dict[str, Any], name: str = "export.json") -> Candidate:
    candidates, problems = read_candidates(json.dumps([item], indent=2), name)
    assert problems == [] and len(candidates) == 1
    return candidates[0]


def add(runner, settings: Settings, *args: str):
    return runner.invoke(
        cli, ["add", *args, "--root", str(settings.root), "--index-dir", str(settings.index_dir)]
    )


# -- mapping -----------------------------------------------------------------------------------


def test_a_zotero_journal_article_becomes_a_bibtex_article() -> None:
    candidate = one(ZOTERO[0])
    assert candidate.entry_type == "article"
    assert candidate.fields == {
        "title": "Navigated rTMS of the motor cortex in chronic neuropathic pain",  # rich-text tags dropped
        "journal": "Test Journal of Pain",
        "year": "2022",
        "month": "apr",
        "volume": "14",
        "number": "2",
        "pages": "211--219",
        "doi": "10.9999/tjp.2022.211",  # no resolver, lower case, as the other readers
        "pmid": "35550001",  # from Zotero's Extra field
        "pmcid": "PMC9000001",
        "issn": "1234-5678",
        "abstract": "Forty patients received twelve sessions; the quokka scale improved.",
        "keywords": "neuropathic pain; neuronavigation; transcranial magnetic stimulation",
        "language": "en",
        "note": "PMID: 35550001 PMCID: PMC9000001",
    }
    assert candidate.authors == [Name("Ortega", "Lucía"), Name("van den Berg", "Ruud")]
    assert candidate.given_key is None  # a Zotero URI is not a usable BibTeX key


@pytest.mark.parametrize(
    ("csl", "bibtex", "venue"),
    [
        pytest.param("article-journal", "article", "journal", id="article-journal"),
        pytest.param("article-magazine", "article", "journal", id="article-magazine"),
        pytest.param("chapter", "incollection", "booktitle", id="chapter"),
        pytest.param("paper-conference", "inproceedings", "booktitle", id="paper-conference"),
        pytest.param("webpage", "misc", "howpublished", id="webpage"),
        pytest.param("dataset", "misc", "howpublished", id="dataset"),
        pytest.param("article", "article", "journal", id="preprint_with_a_venue"),
    ],
)
def test_types_and_their_container(csl: str, bibtex: str, venue: str) -> None:
    candidate = one({"type": csl, "title": "T", "container-title": "The Venue", "issued": "2020"})
    assert (candidate.entry_type, candidate.fields[venue]) == (bibtex, "The Venue")


@pytest.mark.parametrize(
    ("item", "entry_type", "expected"),
    [
        pytest.param(
            {"type": "book", "publisher": "P", "publisher-place": "Paris", "edition": 2},
            "book",
            {"publisher": "P", "address": "Paris", "edition": "2"},
            id="book",
        ),
        pytest.param(
            {"type": "report", "publisher": "Agency", "number": "TR-1"},
            "techreport",
            {"institution": "Agency", "number": "TR-1"},
            id="report",
        ),
        pytest.param(
            {"type": "thesis", "publisher": "Univ", "genre": "PhD thesis"},
            "phdthesis",
            {"school": "Univ", "type": "PhD thesis"},
            id="thesis",
        ),
        pytest.param(
            {"type": "thesis", "publisher": "Univ", "genre": "Master's thesis"},
            "mastersthesis",
            {"school": "Univ"},
            id="masters_thesis",
        ),
        pytest.param({"type": "article"}, "misc", {}, id="preprint_without_a_venue"),
        pytest.param({"type": "legal_case"}, "misc", {}, id="other_types_are_misc"),
        pytest.param(
            {"type": "paper-conference", "event-title": "Test Congress"},
            "inproceedings",
            {"booktitle": "Test Congress"},
            id="conference_named_by_its_event",
        ),
    ],
)
def test_type_specific_fields(item: dict[str, Any], entry_type: str, expected: dict[str, str]) -> None:
    candidate = one({"title": "T", "issued": "2020", **item})
    assert candidate.entry_type == entry_type
    assert expected.items() <= candidate.fields.items()


@pytest.mark.parametrize(
    ("author", "name"),
    [
        pytest.param(
            {"family": "Gogh", "given": "Vincent", "non-dropping-particle": "van"},
            Name("van Gogh", "Vincent"),
            id="non_dropping_particle",
        ),
        pytest.param(
            {"family": "Fontaine", "given": "Jean", "dropping-particle": "de la"},
            Name("de la Fontaine", "Jean"),
            id="dropping_particle",
        ),
        pytest.param(
            {"family": "King", "given": "Martin Luther", "suffix": "Jr."},
            Name("King", "Martin Luther", "Jr."),
            id="suffix",
        ),
        pytest.param(
            {"literal": "NeuPSIG Working Group"},
            Name("NeuPSIG Working Group", corporate=True),
            id="literal_is_corporate",
        ),
        pytest.param({"family": "Plato"}, Name("Plato"), id="family_only"),
    ],
)
def test_names(author: dict[str, str], name: Name) -> None:
    assert one({"type": "book", "title": "T", "issued": "2020", "author": [author]}).authors == [name]


def test_a_literal_name_is_written_braced_as_one_name(runner, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "group.json"
    path.write_text(json.dumps([ZOTERO[2]]))
    result = add(runner, settings, str(path), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "+  author       = {{World Test Organization Working Group}}," in result.output
    assert "+  institution  = {World Test Organization}," in result.output
    assert "Would add 1 reference(s): whoguide2019" in result.output  # its own id kept as the key


@pytest.mark.parametrize(
    ("issued", "year", "month"),
    [
        pytest.param({"date-parts": [[2019, 11, 3]]}, "2019", "nov", id="date_parts"),
        pytest.param({"date-parts": [["2019", "2"]]}, "2019", "feb", id="date_parts_as_strings"),
        pytest.param({"date-parts": [[2019], [2020]]}, "2019", None, id="range_takes_the_start"),
        pytest.param({"raw": "2019-05-01"}, "2019", "may", id="raw"),
        pytest.param({"literal": "Spring 2019"}, "2019", None, id="literal"),
        pytest.param("2019-07", "2019", "jul", id="edtf_string"),
        pytest.param([{"date-parts": [[2019, 1]]}], "2019", "jan", id="old_citeproc_list"),
    ],
)
def test_dates(issued: Any, year: str, month: str | None) -> None:
    fields = one({"type": "book", "title": "T", "issued": issued}).fields
    assert (fields.get("year"), fields.get("month")) == (year, month)


@pytest.mark.parametrize(
    ("item", "key"),
    [
        pytest.param({"id": "smith2020pain"}, "smith2020pain", id="id"),
        pytest.param({"id": "x", "citation-key": "smith2020rtms"}, "smith2020rtms", id="citation_key_wins"),
        pytest.param({"id": 17}, None, id="numeric_id"),
        pytest.param({"id": "7513302/ABCD1234"}, None, id="zotero_local_id"),
    ],
)
def test_the_given_key(item: dict[str, Any], key: str | None) -> None:
    assert one({"type": "book", "title": "T", "issued": "2020", **item}).given_key == key


def test_keywords_given_as_a_list_are_joined_with_semicolons() -> None:
    item = {"type": "book", "title": "T", "issued": "2020", "keyword": ["Pain, Intractable", "rTMS", "rTMS"]}
    assert one(item).fields["keywords"] == "Pain, Intractable; rTMS"


def test_a_single_object_and_the_items_variant_are_read() -> None:
    single, problems = read_candidates(json.dumps(ZOTERO[1]), "one.json")
    assert problems == [] and [c.fields["title"] for c in single] == ["Cortical stimulation for pain"]
    wrapped, problems = read_candidates(json.dumps({"items": ZOTERO}, indent=1), "items.json")
    assert problems == [] and [c.entry_type for c in wrapped] == ["article", "incollection", "techreport"]


def test_each_item_knows_the_line_it_starts_on() -> None:
    text = json.dumps(ZOTERO, indent=2)
    starts = [n for n, line in enumerate(text.splitlines(), start=1) if line == "  {"]
    candidates, _ = read_candidates(text, "export.json")
    assert [c.line for c in candidates] == starts
    wrapped, _ = read_candidates('{"items": [\n\n  {"type": "book"}]}', "items.json")
    assert [c.line for c in wrapped] == [3]


@pytest.mark.parametrize(
    ("text", "name", "fmt"),
    [
        pytest.param('[{"type": "book"}]', "export.txt", "csljson", id="by_content"),
        pytest.param('\ufeff\n  {"type": "book"}', "export.txt", "csljson", id="one_object_after_a_bom"),
        pytest.param("", "My Library.json", "csljson", id="by_extension"),
        pytest.param("@article{x,}", "export.json", "bibtex", id="content_wins"),
    ],
)
def test_format_detection(text: str, name: str, fmt: str) -> None:
    assert detect_format(text, name) == fmt


@pytest.mark.parametrize("option", ["csljson", "csl-json"])
def test_the_format_option(runner, settings: Settings, tmp_path: Path, option: str) -> None:
    path = tmp_path / "export.txt"
    path.write_text(json.dumps(ZOTERO[2]))
    result = add(runner, settings, str(path), "--format", option, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Would add 1 reference(s): whoguide2019" in result.output


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            '[\n  {"type": "book",\n   "title": "T",}\n]',
            "bad.json:3: not valid JSON: Expecting property name enclosed in double quotes at column 17 "
            "(CSL-JSON is an array of items, as Zotero's Export > CSL JSON writes it)",
            id="bad_json",
        ),
        pytest.param(
            '[{"type": "book", "title": "T", "issued": "2020"}',
            "bad.json:1: not valid JSON: Expecting ',' delimiter at column 50",
            id="truncated",
        ),
        pytest.param(
            "42",
            "bad.json:1: not CSL-JSON: expected an array of items or one item, found a number",
            id="a_number",
        ),
        pytest.param(
            '{"name": "a package.json"}', "bad.json:1: not CSL-JSON: expected an array", id="other_json"
        ),
        pytest.param("[]", "bad.json:1: no CSL-JSON items found", id="empty"),
        pytest.param(
            '[\n  "just a string"\n]',
            "bad.json:2: item 1: not a CSL-JSON item: expected an object, found a string",
            id="not_an_object",
        ),
        pytest.param(
            '[{"type": "book", "title": "A", "issued": "2020", "author": [{"family": "A"}]},\n'
            ' {"id": "ITEM-2", "type": "book", "issued": "2020"}]',
            'bad.json:2: item 2 (ITEM-2): title: CSL-JSON item has no title (add "title": "...")',
            id="no_title",
        ),
        pytest.param(
            '[{"id": "ITEM-1", "title": "T", "issued": "2020"}]',
            'bad.json:1: item 1 (ITEM-1): type: CSL-JSON item has no type (add "type": "article-journal"',
            id="no_type",
        ),
        pytest.param(
            '[{"id": 7, "type": "book", "title": ["T"], "issued": "2020"}]',
            'bad.json:1: item 1 (7): title: expected text, found an array (write "title": "...")',
            id="title_not_text",
        ),
        pytest.param(
            '[{"type": "book", "title": "T", "issued": "2020", "author": ["Smith, J"]}]',
            "bad.json:1: item 1: author: expected name objects, found a string",
            id="author_not_an_object",
        ),
        pytest.param(
            '[{"type": "article-journal", "title": "T", "issued": "2020", "author": [{"family": "A"}]}]',
            "bad.json:1: a2020t: journal: missing required field (add journal = {...} to this @article)",
            id="validated_before_writing",
        ),
    ],
)
def test_bad_input_is_one_problem_with_file_line_and_item(
    runner, settings: Settings, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    before = settings.bib_path.read_bytes()
    result = add(runner, settings, str(path))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # never a traceback
    assert message in result.stderr.replace(str(tmp_path) + "/", ""), result.stderr
    assert "Traceback" not in result.output
    assert settings.bib_path.read_bytes() == before


def test_skip_bad_adds_the_good_items(runner, settings: Settings, tmp_path: Path) -> None:
    items = [ZOTERO[2], {"id": "broken", "type": "book"}]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(items, indent=2))
    result = add(runner, settings, str(path), "--skip-bad")
    assert result.exit_code == 1, result.output  # the good item is in; the broken one failed
    assert "mixed.json: 1 imported, 0 skipped as suspected duplicate(s), 1 failed" in result.stderr
    assert "whoguide2019" in settings.bib_path.read_text() and "broken" not in settings.bib_path.read_text()


# -- duplicates --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        pytest.param(
            {"DOI": "https://doi.org/10.1000/TEST.2020.1"}, "same DOI 10.1000/test.2020.1", id="doi"
        ),
        pytest.param({"title": "Test guideline on rTMS."}, "same first author, year and title", id="title"),
    ],
)
def test_an_existing_reference_is_caught_as_a_duplicate(
    runner, settings: Settings, tmp_path: Path, item: dict[str, Any], reason: str
) -> None:
    paper = {
        "type": "article-journal",
        "title": "Another title entirely",
        "container-title": "Test Journal of Neurophysiology",
        "author": [{"family": "Guidewriter", "given": "Anna"}],
        "issued": {"date-parts": [[2020]]},
        **item,
    }
    path = tmp_path / "dup.json"
    path.write_text(json.dumps([paper]))
    before = settings.bib_path.read_bytes()
    result = add(runner, settings, str(path))
    assert result.exit_code == 1
    assert "suspected duplicate of guide2020test" in result.stderr and reason in result.stderr
    assert settings.bib_path.read_bytes() == before


# -- round trip --------------------------------------------------------------------------------


def test_a_zotero_export_round_trips_through_tmskb_add(runner, settings: Settings, tmp_path: Path) -> None:
    build(settings)
    path = tmp_path / "My Library.json"
    path.write_text(json.dumps(ZOTERO, indent=2, ensure_ascii=False), "utf-8")
    result = add(runner, settings, str(path), "--verification", "abstract")
    assert result.exit_code == 0, result.output
    assert "Added 3 reference(s): ortega2022navigated, keller2021cortical, whoguide2019" in result.output

    kb = pipeline.load(settings)
    assert kb.problems == []
    refs = kb.references
    article, chapter = refs["ortega2022navigated"], refs["keller2021cortical"]
    assert article.fields["abstract"] == ZOTERO[0]["abstract"]
    assert article.fields["keywords"] == ZOTERO[0]["keyword"]
    assert [f"{a.von} {a.last}".strip() for a in article.authors] == ["Ortega", "van den Berg"]
    assert (article.doi, article.pmid, article.pmcid) == ("10.9999/tjp.2022.211", "35550001", "PMC9000001")
    assert chapter.entry_type == "incollection"
    assert chapter.fields["booktitle"] == "Handbook of Test Neuromodulation"
    assert chapter.fields["pages"] == "45–67"  # written '45--67', read back as an en dash
    assert chapter.fields["keywords"] == "motor cortex" and "narwhal" in chapter.fields["abstract"]
    assert refs["whoguide2019"].entry_type == "techreport"
    written = bibtexparser.parse_string(settings.bib_path.read_text())
    assert not written.failed_blocks

    hits = search(settings.index_dir, Query.make("quokka")).hits  # a word only in an abstract
    assert [h.id for h in hits] == ["@ortega2022navigated"]
