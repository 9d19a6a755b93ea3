"""The interface languages in a real browser: Debian's Chromium, headless, through Playwright.

Each page (home, search results, a question, a record, the levels page) is loaded in English,
French and Traditional Chinese (Hong Kong); the language comes from the browser's
Accept-Language (its locale) or from the switch in the header, and must survive following a
link. One full-page screenshot per language goes to test-artifacts/ for a person to look at.
The Chinese pages need a CJK font: the test checks that one is installed and that Chromium
draws the characters with it (not as empty boxes).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PROJECT
from playwright.sync_api import Browser, Page, expect, sync_playwright
from werkzeug.serving import make_server

from indexer.settings import Settings
from indexer.web import create_app

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = PROJECT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
# lang code, <html lang>, browser locale (Accept-Language), a translated string on every page
LANGUAGES = [
    ("en", "en", "en-GB", "About the levels"),
    ("fr", "fr", "fr-FR", "À propos des niveaux"),
    ("zh-Hant", "zh-Hant-HK", "zh-HK", "關於證據級別"),
]
PAGES = {
    "home": (
        "/",
        {"en": "Search guidelines", "fr": "Rechercher dans les recommandations", "zh-Hant": "搜尋指引"},
    ),
    "search": (
        "/?q=neuropathic+pain",
        {
            "en": "Answers: what the sources conclude",
            "fr": "Réponses\u00a0: ce que concluent",
            "zh-Hant": "答案：各來源的結論",
        },
    ),
    "question": (
        "/questions/np-hf-rtms-m1",
        {"en": "What each source concludes", "fr": "Ce que conclut chaque source", "zh-Hant": "各來源的結論"},
    ),
    "record": (
        "/records/lefaucheur2014-np-m1-hf",
        {"en": "Published level", "fr": "Niveau publié", "zh-Hant": "已公布級別"},
    ),
    "levels": (
        "/about/levels",
        {
            "en": "About the levels of evidence",
            "fr": "À propos des niveaux de preuve",
            "zh-Hant": "關於證據級別",
        },
    ),
}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app over a copy of the bundled knowledge base, served from a thread."""
    from indexer.build import ensure_index

    root = tmp_path_factory.mktemp("i18n-browser-kb")
    shutil.copytree(PROJECT / "kb", root / "kb")
    shutil.copy(PROJECT / "references.bib", root / "references.bib")
    settings = Settings.for_root(root, root / "index")
    ensure_index(settings)
    server = make_server("127.0.0.1", 0, create_app({"INDEX_DIR": str(settings.index_dir)}), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Debian chromium is required (make test installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_a_cjk_font_is_installed() -> None:
    fonts = subprocess.run(["fc-list", ":lang=zh-hk", "family"], capture_output=True, text=True, check=False)
    assert fonts.stdout.strip(), "no Hong Kong Chinese font: apt-get install fonts-noto-cjk (make setup-test)"


@pytest.mark.parametrize(("lang", "html_lang", "locale", "nav"), LANGUAGES)
def test_every_page_in_each_language(
    browser: Browser, base_url: str, lang: str, html_lang: str, locale: str, nav: str
) -> None:
    """The browser's locale chooses the language; each page says so and shows its translation."""
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        for name, (path, expected) in PAGES.items():
            page.goto(base_url + path)
            expect(page.locator("html")).to_have_attribute("lang", html_lang)
            expect(page.locator("nav[aria-label] a[href*='/about/levels']").first).to_have_text(nav)
            assert expected[lang] in page.locator("main").inner_text(), (name, lang)
            if name == "question":
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"i18n-question-{lang}.png"), full_page=False)
    finally:
        context.close()


def test_the_switch_persists_while_browsing(browser: Browser, base_url: str) -> None:
    """Chosen with the switch, a language stays through links and forms, whatever the browser says."""
    context = browser.new_context(locale="en-GB")
    page = context.new_page()
    try:
        page.goto(base_url + "/?q=neuropathic+pain")
        page.locator(".language-switch a[hreflang='fr']").click()
        expect(page.locator("html")).to_have_attribute("lang", "fr")
        assert "lang=fr" in page.url and "q=neuropathic" in page.url
        page.locator(".answer-card h3 a").first.click()  # a question page
        expect(page.locator("html")).to_have_attribute("lang", "fr")
        expect(page.locator("#verdicts-heading")).to_have_text("Ce que conclut chaque source")
        page.locator("nav[aria-label] a[href*='/about/levels']").first.click()
        expect(page.locator("h1")).to_have_text("À propos des niveaux de preuve")
        page.locator("nav[aria-label] a[href^='/?'], nav[aria-label] a[href='/']").first.click()
        page.fill("#q", "zona")
        page.locator("#search-form button[type=submit]").click()
        expect(page.locator("html")).to_have_attribute("lang", "fr")
        assert "lang=fr" in page.url
        page.locator(".language-switch a[hreflang='zh-Hant']").click()
        expect(page.locator("html")).to_have_attribute("lang", "zh-Hant-HK")
        expect(page.locator("#result-count")).to_contain_text("項結果")
        page.locator(".language-switch a[hreflang='en']").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
    finally:
        context.close()


def test_chinese_characters_are_drawn_with_a_font(browser: Browser, base_url: str) -> None:
    """Without a CJK font Chromium draws every character as the same empty box: two different
    characters drawn in the page's font must give different pixels, and a real glyph is as
    wide as a Latin capital or wider."""
    context = browser.new_context(locale="zh-HK")
    page: Page = context.new_page()
    try:
        page.goto(base_url + "/about/levels")
        expect(page.locator("h1")).to_have_text("關於證據級別")
        result = page.evaluate(
            """() => {
              const font = getComputedStyle(document.querySelector('h1')).font;
              const draw = (text) => {
                const canvas = document.createElement('canvas');
                canvas.width = 64; canvas.height = 64;
                const ctx = canvas.getContext('2d');
                ctx.font = font.replace(/\\d+(\\.\\d+)?px/, '40px');
                ctx.fillText(text, 4, 48);
                return Array.from(ctx.getImageData(0, 0, 64, 64).data).join(',');
              };
              const ctx = document.createElement('canvas').getContext('2d');
              ctx.font = font;
              return {differ: draw('證') !== draw('據'), inked: draw('證') !== draw(' '),
                      width: ctx.measureText('證').width, latin: ctx.measureText('M').width};
            }"""
        )
        assert result["inked"] and result["differ"], "CJK characters are drawn as boxes: no CJK font"
        assert result["width"] >= result["latin"] * 0.9
    finally:
        context.close()
