"""Dose, pictures, phone layout and printing in a real browser (Debian Chromium via Playwright)
against `tmskb serve` on the bundled knowledge base. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect
from test_browser import ARTIFACTS, browser, page  # noqa: F401
from test_browser_questions import server  # noqa: F401

pytestmark = pytest.mark.browser
QUESTION = "/questions/np-hf-rtms-m1"


def test_the_question_page_compares_doses_and_plots_them(page: Page, server: str) -> None:  # noqa: F811
    page.goto(server + QUESTION)
    table = page.locator("#comparison")
    expect(table.locator("thead")).to_contain_text("Pulses/session")
    rows = table.locator("tbody tr")
    assert rows.count() >= 30
    # Empty cells say why they are empty.
    expect(table).to_contain_text("not reported in the source")
    expect(table).to_contain_text("not recorded")
    expect(table).to_contain_text("(computed)")  # total pulses are labelled as computed
    plot = page.locator("#dose-plot svg")
    expect(plot).to_have_attribute("role", "img")
    title = plot.locator("title").first.text_content() or ""
    desc = plot.locator("desc").first.text_content() or ""
    assert "Dose of the studies" in title and "arms plotted" in desc
    marks = plot.locator("a")
    assert marks.count() >= 10
    for i in range(marks.count()):
        label = marks.nth(i).get_attribute("aria-label") or ""
        assert re.search(r"\d+ sessions, \d+ pulses per session", label), label
        assert (marks.nth(i).get_attribute("href") or "").startswith("/records/")
    # What cannot be plotted is listed, not hidden.
    expect(page.locator("#dose-plot .not-plotted summary")).to_contain_text("arms not plotted")
    page.locator("#dose-plot").screenshot(path=str(ARTIFACTS / "dose-plot.png"))


def test_the_comparison_sorts_by_a_column_without_javascript(browser: Browser, server: str) -> None:  # noqa: F811
    context = browser.new_context(java_script_enabled=False)
    tab = context.new_page()
    tab.goto(server + QUESTION)
    tab.locator("#comparison thead a", has_text="Sessions").click()
    tab.wait_for_url("**sort=sessions**")
    tab.locator("#comparison thead a", has_text="Sessions").click()  # again: descending
    tab.wait_for_url("**order=desc**")
    expect(tab.locator('#comparison th[aria-sort="descending"]')).to_have_text("Sessions")
    cells = tab.locator('#comparison td[data-label="Sessions"]').all_text_contents()
    numbers = [int(m.group()) for c in cells if (m := re.match(r"\d+", c.strip()))]
    assert numbers and numbers == sorted(numbers, reverse=True)
    context.close()


def test_the_evidence_map_links_every_cell_to_its_question(page: Page, server: str) -> None:  # noqa: F811
    page.goto(server + "/map")
    svg = page.locator("#evidence-map svg")
    expect(svg).to_have_attribute("role", "img")
    assert "conditions" in (svg.locator("desc").text_content() or "")
    links = svg.locator("a")
    hrefs = [links.nth(i).get_attribute("href") or "" for i in range(links.count())]
    assert len(hrefs) >= 27 and all(h.startswith("/questions/") for h in hrefs)
    assert all(links.nth(i).get_attribute("aria-label") for i in range(links.count()))
    # The text alternative lists the same questions.
    text_links = page.locator("#evidence-map .map-text a")
    assert sorted(text_links.nth(i).get_attribute("href") or "" for i in range(text_links.count())) == sorted(
        hrefs
    )
    for href in sorted(set(hrefs)):
        assert page.request.get(server + href).status == 200, href
    svg.screenshot(path=str(ARTIFACTS / "evidence-map.png"))


def test_on_a_phone_the_level_and_the_filters_are_in_the_first_screen(browser: Browser, server: str) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    phone = context.new_page()
    phone.goto(server + "/evidence")
    level = phone.locator("#evidence-table .published-level").first
    box = level.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box  # no sideways scrolling
    assert box["y"] < 844, box  # in the first screen
    expect(level).to_contain_text("Level")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=str(ARTIFACTS / "phone-evidence.png"))

    phone.goto(server + "/?q=neuropathic+pain")
    filters = phone.locator("#filters-toggle > summary")
    first_hit = phone.locator("#results > li.hit").first
    filters_box, hit_box = filters.bounding_box(), first_hit.bounding_box()
    assert filters_box is not None and hit_box is not None
    assert filters_box["y"] < hit_box["y"] and filters_box["y"] < 844, (filters_box, hit_box)
    filters.click()  # folded on a phone, one tap opens it
    expect(phone.locator("#facets-form")).to_be_visible()
    phone.screenshot(path=str(ARTIFACTS / "phone-search.png"))
    context.close()


def test_the_printable_summary_fits_two_a4_pages_without_navigation(page: Page, server: str) -> None:  # noqa: F811
    page.goto(server + QUESTION + "/summary")
    assert page.locator("nav").count() == 0 and page.locator("header.site-header").count() == 0
    expect(page.locator("h1")).to_contain_text("neuropathic pain")
    expect(page.locator("body")).to_contain_text("knowledge base")  # version and date
    expect(page.locator(".summary-verdicts")).to_contain_text("Level A")
    pdf = page.pdf(format="A4")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert 1 <= pages <= 2, pages
    (ARTIFACTS / "summary.pdf").write_bytes(pdf)
    # The full question page prints without the site's navigation too.
    page.goto(server + QUESTION)
    page.emulate_media(media="print")
    expect(page.locator("header.site-header")).to_be_hidden()
    expect(page.locator("#printed-from")).to_be_visible()
