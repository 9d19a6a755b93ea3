"""Property-based fuzzing (hypothesis): user and file input never crashes the indexer or the app.

Every property runs FUZZ_EXAMPLES cases (200 unless TMSKB_FUZZ_EXAMPLES says otherwise; the
default runs are derandomized so CI is deterministic, a raised count also explores new inputs):

    TMSKB_FUZZ_EXAMPLES=5000 .venv/bin/pytest -q tests/test_fuzz.py

The `check_*` functions and strategies are also used by bench/fuzz.py (a soak run, not a test).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from indexer import bib, importers, pipeline, records, yamlio
from indexer.export import EXTENSIONS
from indexer.fields import FACETS
from indexer.search import SORTS, Query, Results, search
from indexer.settings import Settings

DATA = Path(__file__).parent / "data"
KB = DATA / "kb"
IMPORT = DATA / "import"

_raised = os.environ.get("TMSKB_FUZZ_EXAMPLES")
FUZZ_EXAMPLES = int(_raised) if _raised else 200
settings.register_profile(
    "tmskb-fuzz",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=not _raised,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
FUZZ = settings(settings.get_profile("tmskb-fuzz"))

# 308: werkzeug's own redirect of a path with "//" (an id starting with "/") to the merged path.
ENGINE_CRASH = "the query could not be run"
OK_STATUSES = {200, 301, 302, 308, 400, 404, 405, 413}

# ---------------------------------------------------------------------------------------------
# Strategies

SYNTAX = [
    "AND",
    "OR",
    "NOT",
    "ANDNOT",
    "ANDMAYBE",
    "TO",
    "(",
    ")",
    '"',
    "'",
    ":",
    "*",
    "?",
    "~",
    "~2",
    "^",
    "^3",
    "[",
    "]",
    "{",
    "}",
    "-",
    "+",
    "\\",
    "/",
    "<",
    ">",
    "=",
    "&",
    "|",
    "!",
    "title:",
    "level:",
    "indication:",
    "condition:",
    "target:",
    "side:",
    "protocol:",
    "year:",
    "class:",
    "type:",
    "id:",
    "author:",
    "concepts:",
    "text:",
    "foo:",
    "_:",
    "Title:",
    "year:[2000 TO 2020]",
    "year:>2010",
]
WORDS = [
    "pain",
    "depression",
    "dlpfc",
    "DLPFC",
    "m1",
    "M1",
    "motor cortex",
    "cortex moteur",
    "rtms",
    "hf-rtms",
    "lf-rtms",
    "10",
    "Hz",
    "postherpetic",
    "neuralgia",
    "fibromyalgia",
    "sham",
    "left",
    "alpha2010test",
    "guide2020-np-m1-hf",
    "2010",
    "A",
    "B",
    "C",
    "I",
    "II",
    "IV",
    "the",
    "of",
    "抑郁",
    "疼痛",
    "経頭蓋",
    "Schmerz",
    "dépression",
    "Ĳ",
    "ﬁ",
    "İ",
    "ß",
    "\u0301",
    "\u200b",
    "\ufeff",
    "\x00",
    "\x1b[0m",
    "%",
    "%00",
    "..",
    "<script>",
    "NaN",
    "-1",
    "9" * 30,
]
SEPARATORS = [" ", "", "  ", "\t", "\n", "\r\n", "\x00", "\u3000", "\xa0"]
SPECIAL_CHARS = "".join(SYNTAX) + "\x00\x01\x07\x1f\x7f\x85\u2028\u2029\ufffe抑郁疼痛éÅ😀𝔘"

token_soup = st.lists(
    st.tuples(st.sampled_from(SYNTAX + WORDS) | st.text(max_size=6), st.sampled_from(SEPARATORS)),
    max_size=25,
).map(lambda parts: "".join(t + s for t, s in parts))
query_text = st.one_of(
    st.text(),
    st.text(alphabet=SPECIAL_CHARS, max_size=60),
    token_soup,
    st.text(alphabet=st.characters(min_codepoint=0x3400, max_codepoint=0x9FFF), max_size=40),
    st.text(min_size=480, max_size=520),  # around querytext.MAX_QUERY_LENGTH
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=12), st.integers(1, 2000)),
)
FACET_VALUES = [
    "A",
    "B",
    "C",
    "below-A",
    "below-B",
    "study",
    "recommendation",
    "reference",
    "knowledge",
    "positive",
    "negative",
    "I",
    "II",
    "2010",
    "2020",
    "pain",
    "depression",
    "m1",
    "dlpfc",
    "left",
    "hf-rtms",
    "guide2020",
    "abstract",
    "full-text",
    "",
]
facet_name = st.sampled_from(FACETS.names) | st.text(max_size=12)
facet_value = st.sampled_from(FACET_VALUES) | st.text(max_size=20)
filters = st.dictionaries(facet_name, st.lists(facet_value, max_size=4), max_size=5)
sort = st.sampled_from(SORTS) | st.text(max_size=12)
page = st.integers(1, 5) | st.integers(-(10**6), 10**6) | st.integers(-(10**30), 10**30)
page_size = st.sampled_from([1, 20, 100]) | st.integers(-5, 500)

direct_queries = st.builds(
    Query,
    text=query_text,
    filters=filters.map(lambda f: tuple((k, tuple(v)) for k, v in f.items())),
    sort=sort,
    page=page,
    page_size=page_size,
)
made_queries = st.builds(
    Query.make, text=query_text, filters=filters, sort=sort, page=page, page_size=page_size
)


page_param = st.integers(-5, 10**9).map(str) | st.text(max_size=8) | st.just("9" * 5000)
url_param_name = st.sampled_from(["q", "sort", "page", *FACETS.names]) | st.text(max_size=10)
url_param_value = st.one_of(query_text, sort, page_param, facet_value)


@st.composite
def from_params_queries(draw: Any) -> Query:
    """Query.from_params over a dict of lists, a dict with scalar q/sort/page, or a MultiDict."""
    params: dict[str, Any] = draw(st.dictionaries(facet_name, st.lists(facet_value, max_size=3), max_size=5))
    for name, strategy in (("q", query_text), ("sort", sort), ("page", page_param)):
        if draw(st.booleans()):
            value = draw(strategy)
            params[name] = draw(st.sampled_from([value, [value], [value, value]]))
    if draw(st.booleans()):
        multi: MultiDict[str, Any] = MultiDict()
        for name, value in params.items():
            for item in [value] if isinstance(value, str) else value:
                multi.add(name, item)
        params = multi
    if draw(st.booleans()):
        params["page_size"] = str(draw(page_size))
    return Query.from_params(params)


queries = st.one_of(direct_queries, made_queries, from_params_queries())

query_string = st.one_of(
    st.lists(st.tuples(url_param_name, url_param_value), max_size=8),
    # Raw query strings: stray separators, bad percent escapes, invalid UTF-8.
    st.text(alphabet="q=&;%+#?/:sort page 0123456789abcdefABCDEFxyz\\\"'", max_size=60).filter(
        lambda s: "#" not in s
    ),
    st.binary(max_size=40).map(lambda b: "q=" + quote(b) + "&page=" + quote(b[:3])),
)
WEB_PATHS = [
    "/",
    "/api/search",
    "/evidence",
    "/api/evidence",
    "/search.csv",
    "/evidence.csv",
    *(f"/search.{ext}" for ext in EXTENSIONS if ext != "csv"),
    "/search.nope",
]
RECORD_IDS = ["alpha2010test", "guide2020-np-m1-hf", "@alpha2010test", "@", "@guide2020", "."]
record_id = st.one_of(
    st.sampled_from(RECORD_IDS),
    st.text(min_size=1, max_size=40),
    st.builds(lambda a, b: a + b, st.sampled_from(RECORD_IDS), st.text(max_size=10)),
    st.text(alphabet="@./\\%?#&:;-_ \x00ab", min_size=1, max_size=20),
)


@st.composite
def mutated(draw: Any, texts: list[str]) -> str:
    """One of `texts` with a few character and line edits (deletions, duplications, insertions)."""
    text = draw(st.sampled_from(texts))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["del", "dup", "ins", "del_line", "dup_line", "swap_lines", "cut"]))
        if op in ("del", "dup", "ins", "cut"):
            i = draw(st.integers(0, max(0, len(text) - 1)))
            if op == "del":
                text = text[:i] + text[i + 1 :]
            elif op == "dup":
                text = text[: i + 1] + text[i:]
            elif op == "ins":
                text = (
                    text[:i]
                    + draw(st.sampled_from(list("{}[]()@,=\"'#%:-\n\t\\ \x00é") + ["\n  "]))
                    + text[i:]
                )
            else:
                text = text[:i]
        else:
            lines = text.splitlines(keepends=True)
            if not lines:
                continue
            i = draw(st.integers(0, len(lines) - 1))
            if op == "del_line":
                del lines[i]
            elif op == "dup_line":
                lines.insert(i, lines[i])
            else:
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
    return text


def _read(paths: Any) -> list[str]:
    return [p.read_text("utf-8") for p in sorted(paths)]


BIB_TEXTS = _read([KB / "references.bib", *IMPORT.glob("*.bib")])
STUDY_TEXTS = _read((KB / "kb" / "studies").glob("*.yaml"))
RECORD_TEXTS = STUDY_TEXTS + _read((KB / "kb" / "recommendations").glob("*.yaml"))
IMPORT_TEXTS = _read(p for p in IMPORT.iterdir() if p.is_file())

BIB_BITS = [
    "@article{",
    "@book{",
    "@string{",
    "@comment{",
    "@preamble{",
    "}",
    "{",
    ",",
    " = ",
    '"',
    "#",
    "author",
    "title",
    "year",
    "doi",
    "\\'e",
    '{\\"o}',
    " and ",
    "\n",
    "%",
]
bib_text = st.one_of(
    st.text(),
    st.binary(max_size=300).map(lambda b: b.decode("utf-8", errors="replace")),
    st.lists(st.sampled_from(BIB_BITS) | st.text(max_size=5), max_size=40).map("".join),
    mutated(BIB_TEXTS),
)
yaml_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)


def _yaml_containers(kids: Any) -> Any:
    keys = st.sampled_from(["id", "type", "arms", "patients", "source", "x"]) | st.text(max_size=8)
    return st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=5)


yaml_data = st.recursive(yaml_scalars, _yaml_containers, max_leaves=15)
record_overrides = st.dictionaries(
    st.sampled_from(
        [
            "id",
            "type",
            "arms",
            "patients",
            "source",
            "flaws",
            "summary",
            "stated_class",
            "design",
            "verification",
            "reference",
            "candidate_studies",
            "level",
            "sections",
        ]
    ),
    yaml_data,
    max_size=3,
)
YAML_BITS = [
    "- ",
    ": ",
    "{",
    "}",
    "[",
    "]",
    "&a ",
    "*a",
    "!!python/object ",
    "!!binary ",
    "? ",
    "|",
    ">",
    "---",
    "...",
    "'",
    '"',
    "#",
    "\n",
    "\n  ",
    "<<: ",
    "%YAML 1.1\n",
    "\t",
    "id",
    "type",
]
yaml_text = st.one_of(
    st.text(),
    st.lists(st.sampled_from(YAML_BITS) | st.text(max_size=4), max_size=30).map("".join),
    yaml_data.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    mutated(RECORD_TEXTS),
    st.builds(
        lambda base, extra: yaml.safe_dump({**yaml.safe_load(base), **extra}, allow_unicode=True),
        st.sampled_from(RECORD_TEXTS),
        record_overrides,
    ),
)
RIS_TAGS = ["TY", "AU", "A1", "TI", "T1", "PY", "Y1", "DO", "SP", "EP", "VL", "ER", "UR", "KW", "XX"]
MEDLINE_TAGS = ["PMID", "TI", "AU", "FAU", "DP", "PG", "VI", "LID", "AID", "PMC", "JT", "TA", "AB"]
record_lines = st.lists(
    st.tuples(
        st.sampled_from(RIS_TAGS + MEDLINE_TAGS),
        st.sampled_from(["  - ", "- ", " - ", "-", "  -"]),
        st.text(max_size=15) | st.sampled_from(["JOUR", "BOOK", "2020", "10.1/x", "1-9", "PMC123"]),
    ),
    max_size=20,
).map(lambda ls: "\n".join(t + s + v for t, s, v in ls))
import_text = st.one_of(st.text(), bib_text, record_lines, mutated(IMPORT_TEXTS))
import_format = st.sampled_from([None, "bibtex", "ris", "medline"])
import_name = st.sampled_from(["fuzz.x", "fuzz.bib", "fuzz.ris", "fuzz.nbib", "fuzz"])

# ---------------------------------------------------------------------------------------------
# Checks (raise AssertionError or the crash itself when a property is broken)


def check_search(index_dir: Path, query: Query) -> Results:
    results = search(index_dir, query)
    assert isinstance(results, Results)
    assert results.ok or isinstance(results.error, str)
    # search() turns an internal exception into this error (and logs it): still a bug to find.
    assert not (results.error or "").startswith(ENGINE_CRASH), (results.error, query)
    return results


def check_web(client: Any, path: str, query: Any = None) -> int:
    response = client.get(path, query_string=query)
    body = response.get_data()  # exports stream: read them to the end
    assert response.status_code in OK_STATUSES, (response.status_code, body[:300])
    assert b"Traceback" not in body
    return response.status_code


def record_url(prefix: str, doc_id: str, keep_slashes: bool) -> str:
    return prefix + quote(doc_id, safe="/@" if keep_slashes else "@")


def check_bib(text: str) -> None:
    references, problems = bib.parse_bib_text(text, "fuzz.bib")
    assert isinstance(references, dict)
    assert all(p.line >= 1 for p in problems), problems


def check_yaml(text: str) -> None:
    try:
        located = yamlio.load(text)
    except yamlio.YamlError as exc:
        assert exc.line >= 1
        return
    record, problems = records.parse_located(located, "fuzz", "fuzz.yaml")
    assert record is None or record.id
    assert all(p.line >= 1 for p in problems), problems


def check_pipeline(root: Path, text: str) -> None:
    """Load the copy of tests/data/kb at `root` with `text` as kb/studies/alpha2010test.yaml."""
    (root / "kb" / "studies" / "alpha2010test.yaml").write_text(text, "utf-8")
    kb = pipeline.load(Settings.for_root(root, root / "index"))
    assert all(p.line >= 1 for p in kb.problems), kb.problems


def check_import(text: str, name: str, fmt: str | None) -> None:
    candidates, problems = importers.read_candidates(text, name, fmt)
    assert isinstance(candidates, list)
    assert all(p.line >= 1 for p in problems), problems
    for candidate in candidates:
        assert candidate.label


# ---------------------------------------------------------------------------------------------
# Properties


@FUZZ
@given(queries)
@example(Query("a" * 10_000))
@example(Query('title:"unclosed'))
@example(Query("((((", (("level", ("A",)),), "year", 10**30, 100))
@example(Query.make("pain", {"no such facet": ["x"], "type": ["", "study"]}, "nope", -1, 0))
def test_search_never_raises(index_dir: Path, query: Query) -> None:
    check_search(index_dir, query)


@pytest.mark.parametrize(
    "text",
    [
        "Ð\U0005ebf4±jÈÓ NOT AND Ð\U0005ebf4±jÈÓ AND",  # found by bench/fuzz.py
        "NOT AND pain",
        "pain NOT OR m1 AND",
        "NOT ANDNOT pain",
        "( NOT AND pain AND )",
        "NOT NOT AND pain",
    ],
)
def test_not_before_an_operator_is_a_query_error(index_dir: Path, text: str) -> None:
    """Whoosh's parser raised IndexError on NOT followed by AND/OR/ANDNOT/ANDMAYBE."""
    results = check_search(index_dir, Query(text))
    assert results.error and "NOT must be followed by" in results.error


@pytest.fixture(scope="module")
def client(index_dir: Path) -> Any:
    from app import create_app

    return create_app({"TESTING": True, "INDEX_DIR": str(index_dir)}).test_client()


@FUZZ
@given(st.sampled_from(WEB_PATHS), query_string)
@example("/", [("page", "0")])
@example("/search.csv", [("q", "year:[2000 TO"), ("level", "Z")])
@example("/", "q=%ff%fe&page=%c0")
def test_web_search_pages_never_fail(client: Any, path: str, query: Any) -> None:
    check_web(client, path, query)


@FUZZ
@given(st.sampled_from(["/records/", "/api/records/"]), record_id, st.booleans())
@example("/records/", "@alpha2010test", False)
@example("/api/records/", "../../etc/passwd", True)
def test_web_record_pages_never_fail(client: Any, prefix: str, doc_id: str, keep_slashes: bool) -> None:
    check_web(client, record_url(prefix, doc_id, keep_slashes))


@pytest.mark.parametrize("page", ["²", "9" * 5000])
def test_from_params_bad_page(client: Any, page: str) -> None:
    """Found by the fuzzer: non-ASCII digits and huge numbers once crashed Query.from_params."""
    check_web(client, "/", [("page", page)])


@FUZZ
@given(bib_text)
@example("@article{x,\n  title = {unclosed\n")
@example("@string{a = a # a}\n@article{k, title = a}")
def test_bib_never_raises(text: str) -> None:
    check_bib(text)


YAML_CRASHERS = [
    "!!binary 0",  # bad base64
    "!!binary \xa0",
    "date: 2020-13-45",  # looks like a timestamp, is not a date
    "at: 2020-01-01 25:00:00",
    "!!int x",
    "!!float x",
    "!!bool maybe",
    "!!timestamp x",
    "x: 0x_",
    "x: " + "9" * 5000,  # int() digit limit
    "x: !!set y",  # constructors of collections applied to a scalar
    "x: !!omap y",
]


@pytest.mark.parametrize("text", YAML_CRASHERS)
def test_yaml_bad_scalar_is_a_yaml_error(text: str) -> None:
    """Found by the fuzzer: scalars PyYAML cannot construct raised ValueError and friends."""
    with pytest.raises(yamlio.YamlError) as caught:
        yamlio.load(text)
    assert caught.value.line == 1


def test_bad_timestamp_in_a_record_is_a_problem(kb_copy: Path) -> None:
    text = (KB / "kb" / "studies" / "alpha2010test.yaml").read_text("utf-8")
    check_pipeline(kb_copy, text.replace("notes: null", "notes: 2020-13-45"))
    kb = pipeline.load(Settings.for_root(kb_copy, kb_copy / "index"))
    assert [(p.line, "2020-13-45" in p.reason) for p in kb.problems] == [(30, True)]


@FUZZ
@given(yaml_text)
@example("id: [a\n")
@example("a: &x 1\nb: *y\n")
@example("? [a, b]\n: c\n")
@example("!!python/object:os.system ls\n")
def test_yaml_records_never_raise(text: str) -> None:
    check_yaml(text)


@pytest.fixture(scope="module")
def kb_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-kb")
    shutil.copytree(KB, root, dirs_exist_ok=True)
    return root


@FUZZ
@given(mutated(STUDY_TEXTS))
def test_pipeline_load_with_mutated_study_never_raises(kb_copy: Path, text: str) -> None:
    check_pipeline(kb_copy, text)


@FUZZ
@given(import_text, import_name, import_format)
@example("TY  - JOUR\nER  - \n", "fuzz.x", "ris")
@example("PMID- \n", "fuzz.x", "medline")
def test_importers_never_raise(text: str, name: str, fmt: str | None) -> None:
    check_import(text, name, fmt)
