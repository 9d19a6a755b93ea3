"""BibTeX parsing: LaTeX decoding (fast path == pylatexenc), names, identifiers."""

from __future__ import annotations

import re

import pytest
from bibtexparser.middlewares import LatexDecodingMiddleware
from conftest import PROJECT

from indexer.bib import fast_latex, parse_bib_text

PYLATEXENC = LatexDecodingMiddleware(keep_braced_groups=True)
SAMPLES = [
    r"M{\"u}ller",
    r"Haanp{\"a}{\"a}, Maija",
    r"Amescua-Garc{\'\i}a, C{\'e}sar",
    r"Filipovi{\'c}, Sa{\v{s}}a R.",
    r"Vassal, Fran{\c{c}}ois",
    r"{\AA}ngstr{\"o}m",
    r"Gau\ss",
    r"{\o}re",
    r"2014--2018",
    r"A---B",
    r"Smith \& Jones",
    r"50\% relief",
    r"\"{u}ber",
    r"\v r",
    r"{\L}{\'o}d{\'z}",
    r"Abrah{\~a}o",
    r"\H{o}",
    r"\k{a}",
    r"\u{a}",
    r"\={a}",
    r"\.{z}",
    r"{\ae}on",
    r"a~b",
    r"Garc{\'\i}a-L{\'o}pez, Mar{\'\i}a",
    r"\'{e}t{\'e}",
    r"{\v{S}}ime",
]
BUNDLED_VALUES = re.findall(r"=\s*\{(.*)\},?$", (PROJECT / "references.bib").read_text(), flags=re.M)


@pytest.mark.parametrize("text", SAMPLES + [v for v in BUNDLED_VALUES if "\\" in v])
def test_fast_latex_matches_pylatexenc(text: str) -> None:
    fast = fast_latex(text)
    if fast is not None:  # None means pylatexenc decodes it
        # Exact, braces included: name splitting relies on them being balanced.
        assert fast == PYLATEXENC._transform_python_value_string(text)[0].replace("\xa0", " ")


def test_unusual_latex_falls_back_to_pylatexenc() -> None:
    assert fast_latex(r"\emph{novel}") is None
    refs, _ = parse_bib_text(
        "@article{k2020x, author = {Doe, Jo}, title = {A \\emph{novel} $\\alpha$ test}, journal = {J},"
        " year = {2020}, verification = {abstract}}",
        "t.bib",
    )
    assert refs["k2020x"].title == "A novel $\\alpha$ test"


def test_names_identifiers_and_protected_words() -> None:
    refs, problems = parse_bib_text(
        "@article{a2019x, author = {Garc{\\'\\i}a-L{\\'o}pez, Mar{\\'\\i}a and {The TMS Group} and others},"
        " title = {High-frequency {rTMS}}, journal = {J}, year = {2019}, doi = {https://doi.org/10.1000/ABC.1},"
        " pmid = {123}, verification = {abstract}}",
        "t.bib",
    )
    assert problems == []
    ref = refs["a2019x"]
    assert [a.last for a in ref.authors] == ["García-López", "The TMS Group", "others"]
    assert ref.title == "High-frequency rTMS"
    assert ref.doi == "10.1000/abc.1"
    assert ref.short == "García-López et al. 2019"


def test_unbalanced_braces_in_a_name_are_reported_not_dropped() -> None:
    refs, problems = parse_bib_text(
        "@article{b2019x,\n  author = {Doe, J., Jr., Sr.},\n  journal = {J},\n  year = {2019},\n"
        "  verification = {abstract}\n}\n",
        "t.bib",
    )
    assert "b2019x" not in refs
    assert [str(p) for p in problems] == [
        "t.bib:2: b2019x: author: cannot be read: Cannot split the following name `Doe, J., Jr., Sr.` into "
        "parts: Too many commas (write names as 'Last, First' joined by ' and ')"
    ]
