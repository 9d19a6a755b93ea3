"""Clinical questions in a real browser (Debian Chromium via Playwright) against `tmskb serve` on
the bundled knowledge base: a narrower condition reaches the neuropathic-pain verdicts, and the
question page shows every source's verdict in its own scale. Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PROJECT
from playwright.sync_api import Page, expect
from test_browser import ARTIFACTS, _free_port, _wait_until_up, browser, page  # noqa: F401

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`tmskb serve` over the bundled KB, with its index in a temporary directory."""
    index = tmp_path_factory.mktemp("bundled-browser") / "index"
    port = _free_port()
    tmskb = Path(sys.executable).with_name("tmskb")
    cmd = [str(tmskb), "serve", "--root", str(PROJECT), "--index-dir", str(index), "--port", str(port)]
    log_path = index.parent / "server.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, log_path)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.mark.parametrize("text", ["shingles", "生蛇", "sciatica", "CPSP", "phantom limb pain"])
def test_a_narrower_condition_reaches_the_neuropathic_pain_verdicts(
    page: Page,  # noqa: F811 - the fixture from test_browser
    server: str,
    text: str,
) -> None:
    page.goto(server + "/")
    page.get_by_label("Search guidelines, studies and references").fill(text)
    page.keyboard.press("Enter")
    page.wait_for_url("**q=**")  # read the results page, not the home page it replaces
    expect(page.locator("#understood")).to_be_visible()
    # The page opens with the answers: the neuropathic-pain question that covers the condition,
    # its Level A verdicts in their own scale, and what it covers said plainly.
    card = page.locator('#answers .answer-card[data-question="np-hf-rtms-m1"]')
    expect(card).to_be_visible()
    expect(card.locator(".covers-note")).to_contain_text("Covers neuropathic pain in general")
    for source in ("Lefaucheur et al. 2014", "Lefaucheur et al. 2020"):
        line = card.locator("li", has_text=source)
        expect(line.locator(".badge.grade")).to_contain_text(["Level A"])
    answers_box, results_box = (
        page.locator("#answers").bounding_box(),
        page.locator("#results").bounding_box(),
    )
    assert answers_box and results_box and answers_box["y"] < results_box["y"]


def test_the_question_page_shows_every_source_in_its_own_scale(page: Page, server: str) -> None:  # noqa: F811
    page.goto(server + "/questions/np-hf-rtms-m1")
    expect(page.locator("h1")).to_contain_text("neuropathic pain")
    rows = page.locator("#verdict-panel tbody tr.verdict")
    assert rows.count() >= 4
    expected = {
        "verdict-lefaucheur2014-np-m1-hf": ("Lefaucheur et al. 2014", "Level A", "2014-03"),
        "verdict-lefaucheur2020-np-m1-hf": ("Lefaucheur et al. 2020", "Level A", "2018-12"),
        "verdict-oconnell2018-chronic-pain-rtms": ("2018", "Low", "2017-10"),
        "verdict-soliman2025-np-rtms": ("Soliman et al. 2025", "Weak recommendation", "2024-02-12"),
    }
    for row_id, (source, grade, cutoff) in expected.items():
        row = page.locator(f"#{row_id}")
        expect(row.locator("th")).to_contain_text(source)
        expect(row.locator(".badge.grade")).to_contain_text([grade])
        expect(row).to_contain_text(cutoff)
        expect(row.locator(".badge.verification")).to_be_visible()
    # Scales are named and never converted: the Cochrane row shows a GRADE certainty, not a level.
    cochrane = page.locator("#verdict-oconnell2018-chronic-pain-rtms")
    expect(cochrane).to_contain_text("GRADE quality (certainty) of evidence")
    expect(cochrane.locator(".badge.level")).to_have_count(0)
    expect(cochrane.locator(".covers-note")).to_contain_text("covers pain in general")
    # Studies by direction; later studies flagged against the 2014 guideline's cut-off.
    expect(page.locator("#q-supporting")).to_be_visible()
    expect(page.locator("#q-opposing")).to_be_visible()
    flagged = page.locator("#q-supporting tr", has_text="Attal et al. 2016")
    expect(flagged.locator(".after-cutoff")).to_contain_text("Lefaucheur et al. 2014")
    expect(page.locator("#q-opposing")).not_to_contain_text("Hosomi et al. 2013")  # positive
    negative = page.locator("#q-opposing tr", has_text="Hosomi et al. 2020")  # the 144-patient trial
    expect(negative.locator(".after-cutoff")).to_contain_text("Lefaucheur et al. 2020")
    expect(page.locator("#computed")).to_contain_text("lefaucheur2014-as-cited")
    expect(page.locator("#computed")).to_contain_text("lower-bound")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "question-np-hf-rtms-m1.png"), full_page=True)
