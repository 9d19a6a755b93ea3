"""Interface languages (indexer/web/i18n.py): catalogues complete, no English left in templates.

Three checks that fail on an untranslated string, each in its own way:
- every string `pybabel extract` finds (babel.cfg: templates and indexer/web) has a non-empty,
  placeholder-consistent translation in the French and the Hong Kong Chinese catalogues, and the
  compiled .mo files say the same as the .po files;
- no template has English text outside _() / {% trans %} (text between tags, the attributes
  people read, and string literals inside Jinja expressions);
- every page of the bundled knowledge base, rendered in fr and in zh-Hant, shows none of the
  catalogue's English sentences, while the English page does show them.
"""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from conftest import PROJECT
from flask import Flask
from flask.testing import FlaskClient

from indexer import dose, fields, questions
from indexer.models import Verification
from indexer.settings import Settings
from indexer.web import create_app, i18n

TEMPLATES = PROJECT / "templates"
TRANSLATIONS = PROJECT / "translations"
LOCALES = ("fr", "zh_Hant_HK")
# Words that are the same in every language: names, formats, identifiers, units.
NOT_WORDS = {
    "TMS", "Evidence", "KB", "BibTeX", "DOI", "PubMed", "PMC", "Vancouver", "NLM", "APA", "7th",
    "Hz", "rTMS", "doi", "CSV", "JSON", "API", "OpenAPI", "tmskb", "check", "MeSH",
}  # fmt: skip
READ_ATTRIBUTES = ("title", "aria-label", "placeholder", "alt", "data-label", "summary")


def extracted() -> list[Any]:
    """What `pybabel extract -F babel.cfg -k N_` finds: (file, line, message, comments, context)."""
    method_map = [("indexer/web/**.py", "python"), ("templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None, "lazy_gettext": None}
    return [
        (path, *rest)
        for path, *rest in extract_from_dir(str(PROJECT), method_map, keywords=keywords)
        if path.startswith(("indexer", "templates"))
    ]


def catalogue(locale: str) -> Catalog:
    with open(TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po", "rb") as po:
        return read_po(po, locale=locale)


# -- the catalogues --------------------------------------------------------------------------


@pytest.mark.parametrize("locale", LOCALES)
def test_every_extracted_string_is_translated(locale: str) -> None:
    cat = catalogue(locale)
    untranslated = []
    for path, lineno, message, _comments, _context in extracted():
        key = message[0] if isinstance(message, tuple) else message
        entry = cat.get(key)
        strings = (
            [
                str(s or "")
                for s in (entry.string if isinstance(entry.string, list | tuple) else [entry.string])
            ]
            if entry
            else []
        )
        if entry is None or entry.fuzzy or not all(s.strip() for s in strings):
            untranslated.append(f"{path}:{lineno}: {key!r}")
    assert not untranslated, f"{len(untranslated)} strings without a {locale} translation:\n" + "\n".join(
        untranslated
    )


@pytest.mark.parametrize("locale", LOCALES)
def test_translations_keep_placeholders_and_the_mo_file_is_current(locale: str) -> None:
    cat = catalogue(locale)
    problems = [f"{m.id!r}: {e}" for m in cat if m.id for e in m.check(cat)]
    assert not problems, "\n".join(problems)
    with open(TRANSLATIONS / locale / "LC_MESSAGES" / "messages.mo", "rb") as mo:
        compiled = read_mo(mo)

    def same(a: Any, b: Any) -> bool:
        return (tuple(a) if isinstance(a, list | tuple) else a) == (
            tuple(b) if isinstance(b, list | tuple) else b
        )

    stale = [m.id for m in cat if m.id and not (compiled.get(m.id) and same(compiled[m.id].string, m.string))]
    assert not stale, f"run pybabel compile -d translations: {len(stale)} entries differ, e.g. {stale[:3]}"


def test_library_labels_are_declared_for_translation() -> None:
    """Labels the library makes in English and the pages show go through the `tr` filter, which
    can only translate what indexer/web/i18n.py declares: a new label must be added there."""
    shown = [*fields.TYPE_LABELS.values(), *(v.label for v in Verification)]
    shown += [v.description for v in Verification]
    for facet in fields.FACETS:
        shown.append(facet.title)
        if not facet.vocabulary:
            shown += [facet.labels.get(v, v) for v in facet.values or ()]
    shown += [*dose.STATE_LABELS.values(), *questions.KIND_LABELS.values()]
    shown += [*questions.DIRECTION_LABELS.values(), *questions.GROUP_LABELS.values()]
    shown += list(questions.COMPARISON_COLUMNS.values())
    missing = sorted(set(shown) - set(i18n.LIBRARY_LABELS))
    assert not missing, f"add to LIBRARY_LABELS in indexer/web/i18n.py: {missing}"


# -- the templates ---------------------------------------------------------------------------

JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.S)
TRANS_BLOCK = re.compile(r"\{%-?\s*trans\b.*?\{%-?\s*endtrans\s*-?%\}", re.S)
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
TRANSLATED_LITERAL = re.compile(
    r"""\b(?:_|gettext|ngettext)\(\s*(?:'[^']*'|"(?:[^"\\]|\\.)*")(?:\s*,\s*(?:'[^']*'|"[^"]*"))?"""
)
LITERAL = re.compile(r"""'([^']*)'|"((?:[^"\\]|\\.)*)\"""")
ENGLISH = re.compile(r"(?<!\w)[A-Za-z]{2,}")


def english_words(text: str) -> list[str]:
    return [w for w in ENGLISH.findall(text) if w not in NOT_WORDS]


def untranslated_in(source: str) -> list[str]:
    """English words a template shows without _(): text, read attributes, Jinja literals."""
    source = TRANS_BLOCK.sub(" ", JINJA_COMMENT.sub(" ", source))
    found = []
    for block in JINJA.findall(source):
        for literal in LITERAL.finditer(TRANSLATED_LITERAL.sub(" ", block)):
            text = literal.group(1) if literal.group(1) is not None else literal.group(2)
            if re.search(r"[A-Za-z]{2,}\W+[A-Za-z]{2,}", text) and " " in text and "<code>" not in text:
                found.append(f"literal {text!r}")
    plain = JINJA.sub(" ", source)
    for name in READ_ATTRIBUTES:
        for value in re.findall(rf'\s{name}="([^"]*)"', plain):
            found += [f"{name}={w!r}" for w in english_words(value)]
    plain = re.sub(r"<(script|style)\b.*?</\1>", " ", plain, flags=re.S)
    text = re.sub(r"<[^>]*>", " ", plain)
    found += [f"text {w!r}" for w in english_words(html.unescape(text))]
    return found


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_no_english_outside_gettext_in_templates(template: str) -> None:
    found = untranslated_in((TEMPLATES / template).read_text(encoding="utf-8"))
    assert not found, f"{template}: wrap in _() or {{% trans %}}: {found[:20]}"


def test_the_template_check_finds_english() -> None:
    """The check above can fail: plain text, an attribute and a literal are each caught."""
    assert untranslated_in("<p>Hello there</p>")
    assert untranslated_in('<a aria-label="Remove filter">x</a>')
    assert untranslated_in("{{ value(v, 'not recorded') }}")
    assert not untranslated_in("<p>{{ _('Hello there') }} <code>{{ x }}</code> BibTeX</p>")
    assert not untranslated_in("{% trans n=1 %}One thing{% pluralize %}{{ n }} things{% endtrans %}")


# -- the pages, rendered ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    """The app over a copy of the bundled knowledge base (its vocabularies carry fr and zh-Hant labels)."""
    from indexer.build import ensure_index

    root = tmp_path_factory.mktemp("i18n-kb")
    shutil.copytree(PROJECT / "kb", root / "kb")
    shutil.copy(PROJECT / "references.bib", root / "references.bib")
    settings = Settings.for_root(root, root / "index")
    ensure_index(settings)
    return create_app({"INDEX_DIR": str(settings.index_dir), "TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def first_id(client: FlaskClient, kind: str) -> str:
    hits = client.get(f"/api/search?type={kind}&page_size=1").get_json()["hits"]
    return str(hits[0]["id"])


def pages(client: FlaskClient) -> Iterator[str]:
    yield from ("/", "/?q=neuropathic+pain", "/?q=shingles&level=A", "/evidence", "/map", "/about/levels")
    yield from ("/questions/np-hf-rtms-m1", "/questions/np-hf-rtms-m1/summary", "/records/no-such-record")
    for kind in ("recommendation", "verdict", "study", "reference", "scale", "knowledge"):
        yield "/records/" + first_id(client, kind)


# Text the library composes in English from the data (search snippets, grade labels as the
# scale records them, the dose plot's list of arms it could not plot): shown as it is.
LIBRARY_TEXT = re.compile(
    r'<p class="snippet">.*?</p>|<span class="badge grade[^"]*"[^>]*>.*?</span>'
    r'|<details class="not-plotted">.*?</details>',
    re.S,
)


def visible_text(page: str) -> str:
    page = LIBRARY_TEXT.sub(" ", re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S))
    attributes = " ".join(re.findall(r'\s(?:title|aria-label|placeholder|alt)="([^"]*)"', page))
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page) + " " + attributes).split())


def english_sentences(locale: str) -> list[str]:
    """The catalogue's English strings whose translation differs, cut at their placeholders
    and markup into the pieces a page shows as they are: those of four words or more (shorter
    ones, such as 'grade not read', also occur in text the library composes)."""
    pieces = []
    for m in catalogue(locale):
        if not m.id or isinstance(m.id, tuple) or m.string == m.id:
            continue
        for piece in re.split(r"%\([a-z_]+\)s|<[^>]+>|%%", str(m.id)):
            piece = piece.strip(" .,:;()")
            if len(piece.split()) >= 4:
                pieces.append(piece)
    return pieces


@pytest.mark.parametrize(
    ("lang", "locale", "html_lang"), [("fr", "fr", "fr"), ("zh-Hant", "zh_Hant_HK", "zh-Hant-HK")]
)
def test_every_page_renders_translated(client: FlaskClient, lang: str, locale: str, html_lang: str) -> None:
    english = english_sentences(locale)
    shown_in_english: set[str] = set()
    left: dict[str, list[str]] = {}
    for url in pages(client):
        joined = url + ("&" if "?" in url else "?") + f"lang={lang}"
        page = client.get(joined).get_data(as_text=True)
        assert f'<html lang="{html_lang}">' in page, url
        text = visible_text(page)
        leftovers = [s for s in english if s in text]
        if leftovers:
            left[url] = leftovers
        shown_in_english |= {s for s in english if s in visible_text(client.get(url).get_data(as_text=True))}
    assert not left, f"English left on {lang} pages: {left}"
    assert len(shown_in_english) > 60  # the check has something to find: the English pages show them


def test_english_is_the_default_and_accept_language_chooses(client: FlaskClient) -> None:
    page = client.get("/about/levels").get_data(as_text=True)
    assert '<html lang="en">' in page and "About the levels of evidence" in page
    french = client.get("/about/levels", headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"})
    assert '<html lang="fr">' in french.get_data(as_text=True)
    assert "Accept-Language" in french.headers["Vary"]
    chinese = client.get("/about/levels", headers={"Accept-Language": "zh-HK,zh;q=0.9"})
    assert "關於證據級別" in chinese.get_data(as_text=True)
    taiwan = client.get("/about/levels", headers={"Accept-Language": "zh-TW"})
    assert '<html lang="zh-Hant-HK">' in taiwan.get_data(as_text=True)
    # ?lang= wins over the header, and the same URL in two languages has two ETags
    assert '<html lang="en">' in client.get(
        "/about/levels?lang=en", headers={"Accept-Language": "fr"}
    ).get_data(as_text=True)
    assert french.headers["ETag"] != client.get("/about/levels").headers["ETag"]


def test_the_choice_persists_in_the_links_and_forms(client: FlaskClient) -> None:
    page = html.unescape(client.get("/?q=neuropathic+pain&lang=fr").get_data(as_text=True))
    switch = re.findall(r'<a href="([^"]*)" hreflang="([^"]*)"', page)
    assert {code for _, code in switch} == {"en", "fr", "zh-Hant"}
    assert all(f"lang={code}" in href and "q=neuropathic" in href for href, code in switch)
    links = re.findall(r'href="(/[^"]*)"(?! hreflang)', page)
    page_links = [u for u in links if not u.startswith(("/static/", "/api/", "/search.", "/evidence."))]
    assert len(page_links) > 20
    assert all("lang=fr" in u for u in page_links), [u for u in page_links if "lang=fr" not in u]
    assert page.count('<input type="hidden" name="lang" value="fr">') >= 2  # search and filter forms
    # downloads are not localised: no lang on their links
    assert not [u for u in links if u.startswith("/search.") and "lang=" in u]
    # without an explicit choice, page links stay as they were
    plain = html.unescape(client.get("/?q=neuropathic+pain").get_data(as_text=True))
    assert not [u for u in re.findall(r'href="(/[^"]*)"(?! hreflang)', plain) if "lang=" in u]
    assert 'name="lang"' not in plain


def test_vocabulary_labels_dates_and_numbers_follow_the_language(client: FlaskClient, app: Flask) -> None:
    fr = client.get("/questions/np-hf-rtms-m1?lang=fr").get_data(as_text=True)
    zh = client.get("/questions/np-hf-rtms-m1?lang=zh-Hant").get_data(as_text=True)
    en = client.get("/questions/np-hf-rtms-m1").get_data(as_text=True)
    assert "Douleur neuropathique" in fr and "神經痛" in zh and "Neuropathic pain" in en
    # the printed-from line carries a localised date
    months_fr = "janvier février mars avril mai juin juillet août septembre octobre novembre décembre".split()
    printed = re.search(r'id="printed-from">(.*?)</p>', fr, re.S)
    assert printed and any(m in printed.group(1) for m in months_fr)
    printed_zh = re.search(r'id="printed-from">(.*?)</p>', zh, re.S)
    assert printed_zh and re.search(r"\d{4}年\d{1,2}月\d{1,2}日", printed_zh.group(1))
    with app.test_request_context("/?lang=fr"):
        assert i18n.localized_number(12345) == "12\u202f345"
    with app.test_request_context("/?lang=zh-Hant"):
        assert i18n.localized_number(12345) == "12,345"
    # evidence data stays as published: the record's own statement is not translated
    assert "The 2020 update keeps Level A (definite efficacy)" in zh
