"""`tmskb add` keeps abstracts, keywords and MeSH terms: written to references.bib, searchable,
and shown on the reference page, from BibTeX, RIS, MEDLINE and CSL-JSON alike."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DATA, build

from app import create_app
from indexer import pipeline
from indexer.cli import cli
from indexer.search import Query, search
from indexer.settings import Settings

# Each file is one paper; its abstract holds a word no other field has (and its MeSH terms another).
IMPORTS = {
    "paper.bib": """@article{lopez2021burst,
  author     = {L{\\'o}pez, Marta and Ivanova, Olga},
  title      = {Burst stimulation of the motor cortex in phantom limb pain},
  journal    = {Test Journal of Pain},
  year       = {2021},
  abstract   = {Twenty amputees; the axolotl questionnaire improved after 10 sessions.},
  keywords   = {phantom limb pain, theta burst},
  mesh-terms = {Phantom Limb/therapy; Amputees; Pain, Intractable},
}
""",
    "paper.ris": """TY  - JOUR
AU  - Nakamura, Ken
TI  - Deep rTMS of the insula for central post-stroke pain
T2  - Test Journal of Pain
PY  - 2020
AB  - Thirty patients; the pangolin index fell by a third.
KW  - central post-stroke pain
KW  - insula; deep TMS
ER  -
""",
    "paper.nbib": """PMID- 39999001
TI  - Prefrontal rTMS for fibromyalgia pain: a randomised trial.
DP  - 2019 Jun
AB  - Sixty women were randomised; the okapi score improved.
FAU - Rossi, Giulia
AU  - Rossi G
JT  - Test Journal of Rheumatology
OT  - fibromyalgia
OT  - dorsolateral prefrontal cortex
OT  - lemur cohort
MH  - Fibromyalgia/*therapy
MH  - Transcranial Magnetic Stimulation/methods
MH  - Capybaras
""",
    "paper.json": json.dumps(
        [
            {
                "id": "http://zotero.org/users/local/x/items/AAAA1111",
                "type": "article-journal",
                "title": "Low-frequency rTMS for trigeminal neuralgia",
                "container-title": "Test Journal of Pain",
                "author": [{"family": "Dubois", "given": "Claire"}],
                "issued": {"date-parts": [[2018]]},
                "abstract": "Twelve patients; the tapir scale did not change.",
                "keyword": "trigeminal neuralgia; low frequency",
            }
        ]
    ),
}
EXPECTED = {
    "paper.bib": (
        "lopez2021burst",
        "axolotl",
        "phantom limb pain, theta burst",
        "Phantom Limb/therapy; Amputees; Pain, Intractable",
    ),
    "paper.ris": ("nakamura2020deep", "pangolin", "central post-stroke pain; insula; deep TMS", None),
    "paper.nbib": (
        "rossi2019prefrontal",
        "okapi",
        "fibromyalgia; dorsolateral prefrontal cortex; lemur cohort",
        "Fibromyalgia/*therapy; Transcranial Magnetic Stimulation/methods; Capybaras",
    ),
    "paper.json": ("dubois2018low", "tapir", "trigeminal neuralgia; low frequency", None),
}


def add(runner, settings: Settings, *args: str):
    return runner.invoke(
        cli, ["add", *args, "--root", str(settings.root), "--index-dir", str(settings.index_dir)]
    )


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the test KB with the four papers added (one `tmskb add` per format), its index
    current; shared by the tests that only read it."""
    where = tmp_path_factory.mktemp("imported")
    shutil.copytree(DATA / "kb", where / "kb")
    settings = Settings.for_root(where / "kb", where / "index")
    build(settings)
    for name, text in IMPORTS.items():
        path = where / name
        path.write_text(text, "utf-8")
        result = add(CliRunner(), settings, str(path), "--verification", "abstract")
        assert result.exit_code == 0, result.output
    return settings


@pytest.mark.parametrize("name", IMPORTS)
def test_each_format_keeps_abstract_keywords_and_mesh(imported: Settings, name: str) -> None:
    key, word, keywords, mesh = EXPECTED[name]
    kb = pipeline.load(imported)
    assert kb.problems == []
    fields = kb.references[key].fields
    assert word in fields["abstract"]
    assert fields["keywords"] == keywords
    assert fields.get("mesh") == mesh
    assert "mesh-terms" not in fields


@pytest.mark.parametrize("name", IMPORTS)
def test_a_word_only_in_the_abstract_finds_the_reference(imported: Settings, name: str) -> None:
    key, word, _, _ = EXPECTED[name]
    for text in (word, f"abstract:{word}"):
        assert [h.id for h in search(imported.index_dir, Query.make(text)).hits] == [f"@{key}"], text
    assert search(imported.index_dir, Query.make(f"keywords:{word}")).total == 0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param("capybaras", "rossi2019prefrontal", id="word_only_in_mesh"),
        pytest.param("mesh:capybaras", "rossi2019prefrontal", id="mesh_field"),
        pytest.param("amputees", "lopez2021burst", id="word_only_in_bibtex_mesh"),
        pytest.param('keywords:"deep TMS"', "nakamura2020deep", id="ris_keyword_phrase"),
        pytest.param("lemur", "rossi2019prefrontal", id="word_only_in_medline_keywords"),
    ],
)
def test_keywords_and_mesh_terms_are_searchable(imported: Settings, text: str, key: str) -> None:
    assert [h.id for h in search(imported.index_dir, Query.make(text)).hits] == [f"@{key}"]


def test_the_reference_page_shows_them_as_imported(imported: Settings) -> None:
    client = create_app({"TESTING": True, "INDEX_DIR": str(imported.index_dir)}).test_client()
    html = client.get("/records/@rossi2019prefrontal").get_data(as_text=True)
    assert "From the bibliographic record" in html and "not checked by the curators" in html
    assert "<summary>Abstract</summary><p>Sixty women were randomised; the okapi score improved.</p>" in html
    assert "<li>dorsolateral prefrontal cortex</li>" in html
    assert "MeSH terms" in html and "<li>Fibromyalgia/*therapy</li>" in html
    bib = client.get("/records/@lopez2021burst").get_data(as_text=True)
    assert "<li>Pain, Intractable</li>" in bib  # MeSH terms split at ';' only
    assert "<li>phantom limb pain</li><li>theta burst</li>" in bib  # ', ' separated keywords


def test_a_reference_without_them_has_no_empty_section(index_dir: Path) -> None:
    client = create_app({"TESTING": True, "INDEX_DIR": str(index_dir)}).test_client()
    html = client.get("/records/@alpha2010test").get_data(as_text=True)
    assert "Motor cortex stimulation in postherpetic neuralgia" in html
    assert "From the bibliographic record" not in html and "Abstract" not in html


def test_imported_text_is_escaped_on_the_page(runner, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "hostile.ris"
    path.write_text(
        "TY  - JOUR\nAU  - Evil, Eve\nTI  - A hostile record\nT2  - Test Journal\nPY  - 2020\n"
        'AB  - <script>alert("abstract")</script> & more\nKW  - <img src=x onerror=alert(1)>\nER  - \n'
    )
    assert add(runner, settings, str(path)).exit_code == 0
    client = create_app({"TESTING": True, "INDEX_DIR": str(settings.index_dir)}).test_client()
    html = client.get("/records/@evil2020hostile").get_data(as_text=True)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;abstract&#34;)&lt;/script&gt; &amp; more" in html
    assert "<li>&lt;img src=x onerror=alert(1)&gt;</li>" in html


# -- real exports (../shared/real-inputs, read in place) ------------------------------------------


def _real_inputs() -> Path:
    candidates = [Path(os.environ["TMSKB_REAL_INPUTS"])] if os.environ.get("TMSKB_REAL_INPUTS") else []
    candidates += [Path(__file__).parents[2] / "shared" / "real-inputs", Path("/work/shared/real-inputs")]
    return next((c for c in candidates if c.is_dir()), candidates[0])


REAL = _real_inputs()


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        pytest.param(
            "medline/nbib__single.nbib", "mesh", "Brain Ischemia/diagnostic imaging/*surgery", id="mh"
        ),
        pytest.param("medline/nbib__single.nbib", "keywords", "mechanical thrombectomy", id="ot"),
        pytest.param("medline/nbib__single.nbib", "abstract", "BACKGROUND AND PURPOSE: Flow arrest", id="ab"),
        pytest.param("ris/jabref__RisImporterTestScience.ris", "keywords", "Spinodal decomposition", id="kw"),
        pytest.param("ris/rispy__example_full.ris", "abstract", "BACKGROUND: Lorem ipsum", id="n2"),
    ],
)
def test_real_exports_keep_them(runner, settings: Settings, name: str, field: str, value: str) -> None:
    assert REAL.is_dir(), f"{REAL} is missing: clone the shared inputs beside the project"
    before = set(pipeline.load(settings).references)
    result = add(runner, settings, str(REAL / name), "--skip-bad", "--force")
    assert result.exit_code == 0, result.output
    kb = pipeline.load(settings)
    assert kb.problems == []
    added = [kb.references[k] for k in set(kb.references) - before]
    assert any(value in r.fields.get(field, "") for r in added), [r.fields.get(field) for r in added]


def test_a_bibtex_import_is_written_byte_for_byte_with_its_abstract(
    runner, settings: Settings, tmp_path: Path
) -> None:
    """Round trip: the entry in references.bib is the file's entry, only the key line differs
    (the file's key lacks the key shape), and the abstract and keywords are read from it."""
    entry = (
        "@Article{Lopez2021,\n"
        "  author   = {L{\\'o}pez, Marta},\n"
        "  title    = {Burst stimulation -- a {TMS} pilot},\n"
        "  journal  = {Test Journal of Pain},\n"
        "  year     = 2021,\n"
        "  month    = may,\n"
        "  abstract = {Ten patients; the quokka score improved.},\n"
        "  keywords = {phantom limb pain, theta burst}\n"
        "}"
    )
    path = tmp_path / "export.bib"
    path.write_text(f"% Exported by a reference manager\n\n{entry}\n", "utf-8")
    result = add(runner, settings, str(path))
    assert result.exit_code == 0, result.output
    written = entry.replace("@Article{Lopez2021,", "@Article{lopez2021burst,")
    assert f"\n{written}\n" in settings.bib_path.read_text("utf-8")
    fields = pipeline.load(settings).references["lopez2021burst"].fields
    assert "quokka" in fields["abstract"] and fields["keywords"] == "phantom limb pain, theta burst"
