"""Real-browser tests: Debian's Chromium driven by Playwright against `tmskb serve` (gunicorn).

Screenshots go to test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, PROJECT
from playwright.sync_api import Browser, Page, expect, sync_playwright

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = PROJECT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'

XSS_BIB = f"""
@article{{xss2019ref,
  author       = {{Payload, Pat and {{{XSS}}}}},
  title        = {{Payload title {XSS}}},
  journal      = {{{XSS}}},
  year         = {{2019}},
  note         = {{{XSS}}},
  verification = {{abstract}}
}}
"""

XSS_RECOMMENDATION = f"""id: xss-recommendation
type: recommendation
guideline: xss2019ref
indication: fibromyalgia
outcome_domain: null
population: '{XSS}'
target: dlpfc
side: left
protocol: hf-rtms
coil: []
level: B
direction: efficacy
statement: 'Payload recommendation {XSS}'
question: null
candidate_studies: [xss2019test]
counted_studies: []
source: {{location: '{XSS}', url: null}}
verification: abstract
notes: '{XSS}'
"""

XSS_KNOWLEDGE = f"""id: xss-knowledge
type: knowledge
title: 'Payload page {XSS}'
summary: 'Payload summary {XSS}'
indication: fibromyalgia
references: [xss2019ref]
sections:
  - heading: '{XSS}'
    text: 'Payload text {XSS}'
    verification: as-cited
    sources: [{{location: '{XSS}', reference: xss2019ref, url: 'https://example.org/{XSS}'}}]
source: {{location: '{XSS}', url: null}}
verification: as-cited
"""

XSS_STUDY = f"""id: xss2019test
type: study
reference: xss2019ref
condition: fibromyalgia
design: parallel-rct
randomised: true
control: sham
sham_type: '{XSS}'
blinding: double
patients: {{total: 12, active: 6}}
flaws: []
arms:
  - target: dlpfc
    side: left
    protocol: hf-rtms
    frequency_hz: 10
    intensity: '{XSS}'
    pulses_per_session: null
    sessions: 5
    schedule: null
    coil: []
    neuronavigation: null
    result: positive
    label: '{XSS}'
outcome_measure: '{XSS}'
result: positive
summary: 'Payload study {XSS} fibromyalgia'
stated_class: null
source: {{location: '{XSS}', url: 'https://example.org/{XSS}'}}
verification: abstract
notes: '{XSS}'
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app under `tmskb serve` (gunicorn) on a free port, over a copy of the test KB."""
    root = tmp_path_factory.mktemp("browser-kb")
    shutil.copytree(DATA / "kb", root, dirs_exist_ok=True)
    (root / "kb" / "studies" / "xss2019test.yaml").write_text(XSS_STUDY)
    (root / "kb" / "recommendations" / "xss-recommendation.yaml").write_text(XSS_RECOMMENDATION)
    (root / "kb" / "knowledge").mkdir()
    (root / "kb" / "knowledge" / "xss-knowledge.yaml").write_text(XSS_KNOWLEDGE)
    with open(root / "references.bib", "a") as bib:
        bib.write(XSS_BIB)
    port = _free_port()
    tmskb = Path(sys.executable).with_name("tmskb")
    cmd = [str(tmskb), "serve", "--root", str(root), "--index-dir", str(root / "index"), "--port", str(port)]
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, root / "server.log")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/about/levels", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not start: {log.read_text()}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Debian chromium is required (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []

    def dismiss(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert dialogs == [], f"unexpected dialogs: {dialogs}"
    assert errors == [], f"JavaScript errors: {errors}"


def test_search_shows_hits_and_how_the_query_was_read(page: Page, server: str) -> None:
    page.goto(server + "/")
    page.get_by_label("Search guidelines, studies and references").fill("shingles")
    page.keyboard.press("Enter")
    expect(page.locator("#understood")).to_contain_text("Postherpetic neuralgia")
    # The condition's own study first, then the neuropathic-pain recommendation, labelled as
    # covering shingles (its broader condition).
    study = page.locator("#results .hit").first
    expect(study.locator(".hit-title")).to_contain_text("Alpha")
    expect(study.locator(".rank-reason")).to_contain_text("Class I study")
    broader = page.locator("#results .hit").nth(1)
    expect(broader.locator(".covers-note")).to_contain_text("Covers neuropathic pain in general")


def test_clicking_a_facet_filters_and_is_in_the_url(page: Page, server: str) -> None:
    page.goto(server + "/?q=pain")
    page.get_by_role("checkbox", name="Study (").check()
    page.wait_for_url("**type=study**")
    badges = page.locator("#results .hit .badge.type")
    expect(badges.first).to_have_text("Study")
    assert set(badges.all_inner_texts()) == {"Study"}
    expect(page.get_by_role("checkbox", name="Study (")).to_be_checked()


def test_changing_sort_reorders_by_year(page: Page, server: str) -> None:
    page.goto(server + "/?type=study")
    page.get_by_label("Sort by").select_option("year")
    page.wait_for_url("**sort=year**")
    reasons = page.locator("#results .rank-reason").all_inner_texts()
    years = [r.removeprefix("Ranked here: ")[:4] for r in reasons]
    assert years == sorted(years, reverse=True) and len(years) >= 4


def test_open_a_recommendation_shows_both_levels(page: Page, server: str) -> None:
    page.goto(server + "/?q=level:A")
    page.locator("#results .hit-title a").first.click()
    expect(page.locator("h1")).to_contain_text("Neuropathic pain")
    expect(page.locator("#published-level")).to_contain_text("Level A")
    expect(page.locator("#computed-level")).to_contain_text("lefaucheur2014-as-cited")
    expect(page.locator("#studies tbody tr")).to_have_count(2)
    expect(page.locator("#cite-vancouver")).to_contain_text("Guidewriter A")


def test_copy_bibtex_puts_the_entry_on_the_clipboard(browser: Browser, server: str) -> None:
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(server + "/records/@beta2012test")
    entry = page.locator("#bibtex-entry").inner_text()
    assert entry.startswith("@article{beta2012test,")
    page.get_by_role("button", name="Copy BibTeX").click()
    expect(page.locator("#copy-status")).to_have_text("Copied to clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == entry
    expect(page.locator("a.pubmed-link")).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "test_copy_bibtex.png"), full_page=True)
    context.close()


def test_evidence_table_groups_and_filters(page: Page, server: str) -> None:
    page.goto(server + "/evidence")
    table = page.locator("#evidence-table")
    expect(table.locator("tbody.group")).to_have_count(3)
    expect(table.locator("tbody.group").first.locator("th")).to_have_text("Neuropathic pain")
    page.locator("summary", has_text="Filters").click()
    page.get_by_role("checkbox", name="Level B (").check()
    page.wait_for_url("**level=B**")
    expect(table.locator("tbody.group")).to_have_count(2)


def test_malformed_query_is_400_and_the_page_stays_usable(page: Page, server: str) -> None:
    response = page.goto(server + "/?q=levle:A")
    assert response is not None and response.status == 400
    expect(page.locator("#query-error")).to_contain_text("unknown field 'levle' (did you mean 'level:'?)")
    page.get_by_label("Search guidelines, studies and references").fill("level:A")
    page.keyboard.press("Enter")
    expect(page.locator("#result-count")).to_have_text("1 result")


@pytest.mark.parametrize(
    "path",
    [
        "/?q=payload",
        "/records/xss2019test",
        "/records/xss-recommendation",
        "/records/@xss2019ref",
        "/records/xss-knowledge",
        "/evidence?q=payload",
        "/?q=payload&sort=year",
    ],
)
def test_stored_xss_payload_stays_inert_everywhere(page: Page, server: str, path: str) -> None:
    page.goto(server + path)
    expect(page.locator("main")).to_be_visible()
    assert "onerror" in page.locator("main").inner_text() or "<script>" in page.locator("main").inner_text()
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img[src=x]").count() == 0 and page.locator("main script").count() == 0


def test_stored_xss_payload_stays_inert(page: Page, server: str) -> None:
    page.goto(server + "/?q=payload type:study")
    expect(page.locator("#results .hit")).to_have_count(1)
    expect(page.locator("#results .snippet").first).to_contain_text("<script>")
    page.locator("#results .hit-title a").first.click()
    expect(page.locator("h1")).to_be_visible()
    expect(page.locator(".lead")).to_contain_text('<img src=x onerror="window.__xss = 2">')
    assert page.evaluate("window.__xss") is None


@pytest.mark.parametrize(
    "param",
    [
        "q",
        "sort",
        "page",
        "type",
        "level",
        "direction",
        "indication",
        "target",
        "side",
        "protocol",
        "class",
        "year",
        "guideline",
        "verification",
    ],
)
def test_xss_in_every_query_parameter_stays_inert(page: Page, server: str, param: str) -> None:
    for payload in (XSS, '"><script>window.__xss=4</script>', "javascript:window.__xss=5"):
        for path in ("/", "/evidence"):
            page.goto(f"{server}{path}?{param}={urllib.parse.quote(payload)}")
            expect(page.locator("main")).to_be_visible()
            assert page.evaluate("window.__xss") is None, (param, payload, path)


def test_works_without_javascript(browser: Browser, server: str) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(server + "/?q=pain")
    box = page.get_by_role("checkbox", name="Recommendation (")
    expected = int(box.locator("xpath=..").inner_text().split("(")[-1].rstrip(")"))
    box.check()
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**type=recommendation**")
    expect(page.locator("#results .hit")).to_have_count(expected)
    assert expected >= 2
    context.close()


def test_keyboard_reaches_search_and_results(page: Page, server: str) -> None:
    page.goto(server + "/?q=mood")
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    page.keyboard.press("Enter")
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "q":
            break
    expect(page.locator("#q")).to_be_focused()
