"""`tmskb add` on real-world inputs: one test per failure class of issue 15, with small inline files.

Each test either reads an input the way `tmskb add` does and asserts what it becomes, or adds it
to a copy of tests/data/kb and asserts that `tmskb check` (pipeline.load) still accepts the KB.
"""

from __future__ import annotations

import codecs

import pytest

from indexer import pipeline
from indexer.adding import AddReport, add_references, format_entry
from indexer.bib import parse_bib_text, read_source
from indexer.cli import cli
from indexer.importers import Candidate, Name, detect_format, person, read_candidates
from indexer.settings import Settings


def added(settings: Settings, name: str, text: str | bytes, **options: object) -> AddReport:
    """Add one import file's text to the KB; the KB must pass `tmskb check` whatever happened."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    report = add_references(settings, [(name, data)], **options)  # type: ignore[arg-type]
    assert pipeline.load(settings).problems == []
    return report


def entry(settings: Settings, key: str) -> str:
    """The text of one entry of the KB's references.bib."""
    text = settings.bib_path.read_text("utf-8")
    start = text.rindex("@", 0, text.index(f"{{{key},"))
    end = text.find("\n@", start)
    return text[start : end if end >= 0 else len(text)].rstrip("\n") + "\n"


def reference(settings: Settings, key: str):
    return pipeline.load(settings).references[key]


# -- the worst class: a successful add that leaves a KB `tmskb check` rejects -------------------


def test_an_entry_that_check_would_reject_is_never_written(settings: Settings, monkeypatch) -> None:
    """The add parses what it is about to write with the checker's parser first."""
    import indexer.adding as adding

    real = adding.format_entry
    monkeypatch.setattr(adding, "format_entry", lambda *a: real(*a).replace("  journal ", "  jour nal "))
    before = settings.bib_path.read_bytes()
    text = "@article{ok2020x, author = {Doe, Jo}, title = {T}, journal = {J}, year = {2020}}"
    report = added(settings, "in.bib", text)
    assert not report.written and settings.bib_path.read_bytes() == before
    assert [str(p) for p in report.problems][0].startswith("in.bib:1: ok2020x: ")


def test_a_ris_article_without_a_journal_is_refused_before_writing(settings: Settings) -> None:
    before = settings.bib_path.read_bytes()
    report = added(settings, "a.ris", "TY  - JOUR\nAU  - Doe, Jo\nTI  - No venue\nPY  - 2020\nER  - \n")
    assert [str(p) for p in report.problems] == [
        "a.ris:1: doe2020no: journal: missing required field (add journal = {...} to this @article)"
    ]
    assert settings.bib_path.read_bytes() == before


@pytest.mark.parametrize("field", ["editor", "translator"])
def test_editors_and_translators_are_written_as_names(settings: Settings, field: str) -> None:
    text = (
        f"@book{{b2020x, author = {{Doe, Jo}}, {field} = {{Len Bass and Lago, Patricia}},"
        " title = {A book}, publisher = {P}, year = {2020}}"
    )
    assert added(settings, "in.bib", text).written
    assert f"{field} = {{Len Bass and Lago, Patricia}}," in entry(settings, "b2020x")  # as written
    assert reference(settings, "b2020x").fields[field] == "Bass L and Lago P"


def test_a_crossref_child_with_editors_in_its_parent(settings: Settings) -> None:
    text = (
        "@inproceedings{c2015x, author = {Olaf Zimmermann}, title = {Guidance}, crossref = {p2015},"
        " pages = {85--94}}\n"
        "@proceedings{p2015, editor = {Len Bass and Patricia Lago}, title = {{WICSA} 2015},"
        " publisher = {{IEEE}}, year = {2015}}\n"
    )
    assert added(settings, "in.bib", text).written
    child = entry(settings, "c2015x")
    assert (
        "booktitle    = {{WICSA} 2015}," in child and "editor       = {Len Bass and Patricia Lago}," in child
    )
    assert "crossref" not in child  # resolved: the entry stands on its own
    assert reference(settings, "c2015x").fields["year"] == "2015"


# -- reading BibTeX: the shared parser -----------------------------------------------------------


@pytest.mark.parametrize("name", ["Author", "AUTHOR"])
def test_capitalised_field_names_keep_their_authors(settings: Settings, name: str) -> None:
    text = (
        f"@ARTICLE{{k2020x,\n  {name} = {{Fenz, Stefan}},\n  Title = {{T}},\n  JOURNAL = {{J}},\n"
        "  Year = {2020}\n}"
    )
    assert added(settings, "in.bib", text).written
    assert [a.last for a in reference(settings, "k2020x").authors] == ["Fenz"]


def test_braced_corporate_names_stay_one_author(settings: Settings) -> None:
    text = (
        "@article{who2020x, author = {{{World Health Organization}} and {The {TMS} Group} and Doe, Jo},"
        " title = {Report}, journal = {J}, year = {2020}}"
    )
    assert added(settings, "in.bib", text).written
    assert "{{World Health Organization}} and {The {TMS} Group} and Doe, Jo" in entry(settings, "who2020x")
    lasts = [a.last for a in reference(settings, "who2020x").authors]
    assert lasts == ["World Health Organization", "The TMS Group", "Doe"]


def test_name_suffixes_are_kept(settings: Settings) -> None:
    text = (
        "@article{s2020x, author = {Smith, Jr., John and Gates, III, William Henry}, title = {T},"
        " journal = {J}, year = {2020}}"
    )
    assert added(settings, "in.bib", text).written
    authors = reference(settings, "s2020x").authors
    assert [(a.last, a.jr, a.first) for a in authors] == [
        ("Smith", "Jr.", "John"),
        ("Gates", "III", "William Henry"),
    ]


def test_url_doi_and_file_are_not_latex_decoded() -> None:
    text = (
        "@misc{u2020x, author = {Doe, Jo}, title = {Page}, year = {2020}, verification = {abstract},"
        " url = {https://example.org/~jo/pain--2}, file = {:a~b--c.pdf:PDF}, doi = {10.1000/a--b~c}}"
    )
    references, problems = parse_bib_text(text, "t.bib")
    assert problems == []
    fields = references["u2020x"].fields
    assert (fields["url"], fields["file"], fields["doi"]) == (
        "https://example.org/~jo/pain--2",
        ":a~b--c.pdf:PDF",
        "10.1000/a--b~c",
    )


def test_href_is_read_as_its_text_and_a_percent_is_not_a_comment() -> None:
    text = (
        "@misc{h2020x, author = {Doe, Jo}, year = {2020}, verification = {abstract},\n"
        "  title = {50% of patients},\n"
        "  howpublished = {\\href{https://example.org/a_b%20c}{Example site}}}"
    )
    references, problems = parse_bib_text(text, "t.bib")
    assert problems == []
    assert references["h2020x"].fields["howpublished"] == "Example site"
    assert references["h2020x"].title == "50% of patients"


def test_problem_lines_after_a_backslash_at_the_end_of_a_line() -> None:
    text = (
        "@article{a2020x,\n  author = {Doe, Jo},\n  abstract = {First line \\\\\n  second line},\n"
        "  journal = {J},\n  year = {2020},\n  verification = {checked}\n}\n"
    )
    _, problems = parse_bib_text(text, "t.bib")
    assert [(p.line, p.field) for p in problems] == [(7, "verification")]


def test_a_non_utf8_byte_in_references_bib_is_one_problem_at_its_line(runner, settings: Settings) -> None:
    with settings.bib_path.open("ab") as handle:
        handle.write(
            b"\n@article{zed2020x,\n  author = {M\xfcller, Hans},\n  title = {T},\n  journal = {J},\n"
            b"  year = {2020},\n  verification = {abstract}\n}\n"
        )
    line = settings.bib_path.read_bytes().split(b"\n").index(b"  author = {M\xfcller, Hans},") + 1
    result = runner.invoke(cli, ["check", "--root", str(settings.root)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"references.bib:{line}: not UTF-8: byte fc at column 14 (invalid start byte) "
        "(save the file as UTF-8; the character is shown as \ufffd until then)",
        "1 problem in 1 file",
    ]


def test_title_protection_and_math_braces_are_kept(settings: Settings) -> None:
    text = (
        "@article{p2020x, author = {Doe, Jo}, journal = {J}, year = {2020},"
        " title = {Motor cortex {rTMS} in {Parkinson} disease: $\\mathrm{T}_{2}$ maps}}"
    )
    assert added(settings, "in.bib", text).written
    assert "title = {Motor cortex {rTMS} in {Parkinson} disease: $\\mathrm{T}_{2}$ maps}}" in entry(
        settings, "p2020x"
    )
    assert (
        reference(settings, "p2020x").title
        == "Motor cortex rTMS in Parkinson disease: $\\mathrm{T}_{2}$ maps"
    )


def test_an_import_keeps_its_own_text(settings: Settings) -> None:
    """No LaTeX decoding, dash or macro rewriting: what the file says is what is written."""
    text = (
        '@article{o2020x,\n  author = {M{\\"u}ller, Hans},\n  title = {Pain---relief in 2014--2018,\n'
        "    a ``review''},\n  journal = {J},\n  year = {2020},\n  month = mar,\n  pages = {1--9}\n}"
    )
    assert added(settings, "in.bib", text).written
    assert entry(settings, "o2020x") == text + "\n"  # byte for byte, line breaks included


def test_biblatex_fields_map_to_bibtex(settings: Settings) -> None:
    text = (
        "@Article{Corti_2009, author = {Corti, Roberto}, date = {2009-03}, journaltitle = {Circulation},"
        " title = {Cocoa and Cardiovascular Health}, location = {Dallas}}"
    )
    report = added(settings, "in.bib", text)
    assert report.written and report.renamed == [("Corti_2009", "corti2009cocoa")]  # not the key shape
    assert report.rewritten == ["corti2009cocoa"]  # biblatex names: not written as the file has it
    written = entry(settings, "corti2009cocoa")
    assert "journal      = {Circulation}," in written and "journaltitle" not in written
    assert "year         = {2009}," in written and "date         = {2009-03}," in written
    assert "address      = {Dallas}," in written


def test_string_macros_and_concatenation_are_resolved(settings: Settings) -> None:
    text = (
        '@string{lancet = "The Lancet"}\n@STRING{sup = { Supplement}}\n'
        '@article{m2020x, author = {Doe, Jo}, title = "A " # {test}, journal = lancet # sup # " 2",'
        " year = 2020, month = jan}"
    )
    assert added(settings, "in.bib", text).written
    written = entry(settings, "m2020x")
    assert "journal      = {The Lancet Supplement 2}," in written and "title        = {A test}," in written
    assert "year         = {2020}," in written and "month        = jan," in written


def test_an_undefined_macro_is_still_a_problem() -> None:
    _, problems = parse_bib_text("@article{m2020x, journal = lancet # { 2}, year = 2020}", "t.bib")
    assert any(p.reason == "undefined macro 'lancet'" for p in problems)


def test_entries_without_a_key_get_one(settings: Settings) -> None:
    text = (
        "@article{,\n  author = {Doe, Jo},\n  title = {Keyless entry from EndNote},\n  journal = {J},\n"
        "  year = {2021}\n}"
    )
    report = added(settings, "in.bib", text)
    assert [key for key, _ in report.added] == ["doe2021keyless"]


@pytest.mark.parametrize(
    "doi",
    [
        "http://doi.acm.org/10.1145/1137627.1137631",
        "https://dx.doi.org/10.1145/1137627.1137631",
        "doi:10.1145/1137627.1137631",
        "https://doi.org/10.1145%2F1137627.1137631",
    ],
)
def test_dois_in_url_form_are_normalised(settings: Settings, doi: str) -> None:
    text = f'@article{{d2020x, author = {{Doe, Jo}}, title = "T", journal = "J", year = 2020, doi = "{doi}"}}'
    assert added(settings, "in.bib", text).written
    assert reference(settings, "d2020x").doi == "10.1145/1137627.1137631"  # read normalised
    assert entry(settings, "d2020x") == text + "\n"  # and written as the file has it


# -- reading RIS and MEDLINE ---------------------------------------------------------------------


def test_a_ris_chapter_gets_its_book_title(settings: Settings) -> None:
    text = (
        "TY  - CHAP\nAU  - Catarina Barata\nTI  - Toward robust analysis\nT2  - Dermoscopy Image Analysis\n"
        "PY  - 2015\nSP  - 1-22\nPB  - CRC Press\nER  - \n"
    )
    assert added(settings, "c.ris", text).written
    written = entry(settings, "barata2015toward")
    assert "@incollection{" in written and "booktitle    = {Dermoscopy Image Analysis}," in written
    assert "pages        = {1--22}," in written and "author       = {Barata, Catarina}," in written


def test_a_ris_book_with_editors_only(settings: Settings) -> None:
    text = "TY  - BOOK\nED  - Robinson, W. F.\nTI  - Clinicopathologic Principles\nPB  - CUP\nPY  - 1988\n"
    text += "ER  -\n"
    report = added(settings, "b.ris", text)
    assert [key for key, _ in report.added] == ["robinson1988clinicopathologic"]
    assert "editor       = {Robinson, W. F.}," in entry(settings, "robinson1988clinicopathologic")


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("Fanning E.", Name("Fanning", "E.")),
        ("Lefaucheur JP", Name("Lefaucheur", "JP")),
        ("Smith JA Jr", Name("Smith", "JA", "Jr")),
        ("Smith, John, Jr.", Name("Smith", "John", "Jr.")),
        ("Smith, John A III", Name("Smith", "John A", "III")),
        ("Catarina Barata", Name("Barata", "Catarina")),
        ("van der Berg, Jan", Name("van der Berg", "Jan")),
        ("World Health Organization", Name("World Health Organization", corporate=True)),
        ("Cochrane Pain Group,", Name("Cochrane Pain Group", corporate=True)),
    ],
)
def test_names_in_tagged_formats(raw: str, name: Name) -> None:
    assert person(raw) == name


def test_vancouver_ris_names_are_written_family_name_first(settings: Settings) -> None:
    text = "TY  - JOUR\nAU  - Fanning E.\nAU  - Lefaucheur JP\nTI  - Vancouver names\nJO  - J\nPY  - 2019\n"
    text += "ER  - \n"
    assert added(settings, "v.ris", text).written
    assert "author       = {Fanning, E. and Lefaucheur, JP}," in entry(settings, "fanning2019vancouver")
    assert [a.last for a in reference(settings, "fanning2019vancouver").authors] == ["Fanning", "Lefaucheur"]


def test_medline_collective_authors_suffixes_and_titles(settings: Settings) -> None:
    text = (
        "PMID- 12345678\nDP  - 2020 Jan\nTI  - Motor cortex stimulation for pain: a\n"
        "      consensus.\nFAU - Smith, John A, Jr\nAU  - Smith JA Jr\nAU  - Doe J\n"
        "CN  - European Academy of Neurology\nJT  - Pain\nVI  - 12\nPG  - 101-9\n"
        "LID - 10.1000/pain.1 [doi]\n"
    )
    assert added(settings, "p.nbib", text).written
    written = entry(settings, "smith2020motor")
    assert "author       = {Smith, Jr, John A and Doe, J and {European Academy of Neurology}}," in written
    assert "title        = {Motor cortex stimulation for pain: a consensus}," in written
    assert "pages        = {101--109}," in written and "doi          = {10.1000/pain.1}," in written
    authors = reference(settings, "smith2020motor").authors
    assert [(a.last, a.jr) for a in authors] == [
        ("Smith", "Jr"),
        ("Doe", ""),
        ("European Academy of Neurology", ""),
    ]


@pytest.mark.parametrize("fmt", ["ris", "medline"])
def test_a_byte_order_mark_is_ignored(settings: Settings, fmt: str) -> None:
    text = {
        "ris": "TY  - JOUR\nAU  - Doe, Jo\nTI  - Byte order marks\nJO  - J\nPY  - 2020\nER  - \n",
        "medline": "PMID- 11111111\nTI  - Byte order marks.\nFAU - Doe, Jo\nJT  - J\nDP  - 2020\n",
    }[fmt]
    data = codecs.BOM_UTF8 + text.encode()
    assert detect_format(data.decode("utf-8"), "export.txt") == fmt
    assert [key for key, _ in added(settings, "export.txt", data).added] == ["doe2020byte"]


def test_utf16_with_a_byte_order_mark_is_read(settings: Settings) -> None:
    data = "@article{u16x, author = {Doe, Jo}, title = {Wide}, journal = {J}, year = {2020}}".encode("utf-16")
    assert added(settings, "wide.bib", data).written


def test_a_pubmed_file_starting_with_pmc_is_medline() -> None:
    text = "\nPMC - PMC6055010\nPMID- 30042925\nDP  - 2018\nTI  - A method.\nFAU - Takeuchi, Yuichi\n"
    text += "JT  - MethodsX\n"
    assert detect_format(text, "pmc.txt") == "medline"
    candidates, problems = read_candidates(text, "pmc.txt")
    assert problems == [] and candidates[0].fields["pmcid"] == "PMC6055010"


def test_ris_text_is_escaped_only_where_bibtex_needs_it(settings: Settings) -> None:
    text = (
        "TY  - JOUR\nAU  - Doe, Jo\nTI  - Escapes: 50% of R&D in rTMS: {x} ~ $5 #1\nJO  - J\nPY  - 2020\n"
        "UR  - https://example.org/~jo/a--b?x=1%202\nER  - \n"
    )
    assert added(settings, "e.ris", text).written
    written = entry(settings, "doe2020escapes")
    assert "url          = {https://example.org/~jo/a--b?x=1%202}," in written
    ref = reference(settings, "doe2020escapes")
    assert ref.fields["url"] == "https://example.org/~jo/a--b?x=1%202"
    assert ref.title == "Escapes: 50% of R&D in rTMS: x ~ $5 #1"


# -- --skip-bad ----------------------------------------------------------------------------------

MIXED = """@article{good2020x, author = {Good, Gil}, title = {A good entry}, journal = {J}, year = {2020}}

@article{nojournal2020x,
  author = {Bad, Bo},
  title  = {No journal},
  year   = {2020}
}

@set{group, entryset = {good2020x}}

@article{also2021good, author = {Also, Al}, title = {Another good one}, journal = {J}, year = {2021}}
"""


def test_one_bad_entry_refuses_the_file_unless_skip_bad(runner, settings: Settings, tmp_path) -> None:
    path = tmp_path / "mixed.bib"
    path.write_text(MIXED)
    before = settings.bib_path.read_bytes()
    args = ["add", str(path), "--root", str(settings.root), "--index-dir", str(settings.index_dir)]
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 1 and "--skip-bad adds the entries without problems" in refused.stderr
    assert settings.bib_path.read_bytes() == before
    result = runner.invoke(cli, [*args, "--skip-bad"])
    assert result.exit_code == 1, result.output  # the good ones are in, but two entries failed
    assert result.stderr.replace(str(tmp_path) + "/", "").splitlines() == [
        "mixed.bib:3: nojournal2020x: journal: missing required field (add journal = {...} to this @article)"
        " [skipped]",
        "mixed.bib:9: group: @set is not a reference (it groups or configures other entries) [skipped]",
        "mixed.bib: 2 imported, 0 skipped as suspected duplicate(s), 2 failed (listed above)",
        "Kept the file's key(s) (they fit the key pattern): good2020x, also2021good",
        "Error: 2 entries failed (listed above)",
    ]
    assert "Added 2 reference(s): good2020x, also2021good" in result.stdout
    assert pipeline.load(settings).problems == []


def test_skip_bad_with_nothing_good_adds_nothing(settings: Settings) -> None:
    before = settings.bib_path.read_bytes()
    report = added(settings, "bad.bib", "@article{x2020, title = {No author}}", skip_bad=True)
    assert not report.written and report.added == [] and report.skipped
    assert settings.bib_path.read_bytes() == before


def test_format_entry_of_a_plain_candidate() -> None:
    candidate = Candidate(
        "article",
        {"title": "Theta-burst {rTMS}", "journal": "J & K", "year": "2020", "url": "https://x.org/{a}"},
        [Name("Doe", "Jo"), Name("Cochrane Pain Group", corporate=True), Name("Da Silva")],
        "p.ris",
        1,
    )
    text = format_entry("doe2020theta", candidate, "abstract")
    assert "author       = {Doe, Jo and {Cochrane Pain Group} and {Da Silva}}," in text
    assert "title        = {Theta-burst \\{{rTMS}\\}}," in text and "journal      = {J \\& K}," in text
    assert "url          = {https://x.org/%7Ba%7D}," in text
    sources, problems = read_source(text, "t.bib")
    assert problems == [] and sources[0].key == "doe2020theta"
