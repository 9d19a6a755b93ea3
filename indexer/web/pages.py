"""HTML pages: search, records, the evidence table, about the levels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext

from .. import pictures
from ..answers import answers
from ..errors import IndexMissing
from ..evidence import evidence_table
from ..export import FORMATS
from ..fields import FACETS, REFERENCE_PREFIX, TYPE_LABELS
from ..models import Verification
from ..query import Query, Results
from ..questions import COMPARISON_COLUMNS, sort_comparison
from .i18n import localized_date, translate_label
from .state import current_query, state

bp = Blueprint("pages", __name__)


@bp.get("/")
def home() -> Any:
    query = current_query()
    results = state().index.search(query)
    cards = answers(state().index, results) if query.page == 1 else []
    return render_template("search.html", results=results, query=query, answers=cards), (
        200 if results.ok else 400
    )


@bp.get("/records/<path:doc_id>")
def record(doc_id: str) -> Any:
    doc = find_document(doc_id)
    data = doc.get("data") or {}
    context: dict[str, Any] = {"doc": doc, "data": data}
    kind = doc.get("type")
    if kind == "question":  # questions have their own page
        return redirect(url_for("pages.question", question_id=doc_id), 301)
    if kind == "reference":
        context["citations"] = state().citations(doc)
    key = (data.get("reference") or data.get("guideline") or data.get("source") or {}).get("key")
    if key:
        cited = state().reference(key)
        context["cited"] = cited
        if cited:
            context["citations"] = state().citations(cited)
    return render_template(f"record_{kind}.html", **context)


def _question_doc(question_id: str) -> dict[str, Any]:
    doc = state().index.document(question_id)
    if doc is None or doc.get("type") != "question":
        abort(404, description=gettext("No question with id '%(id)s'", id=question_id))
    return doc


def _edition() -> dict[str, Any]:
    """What every printable view states: the knowledge base version it shows and today's date."""
    about = state().index.about()
    built = localized_date(str(about["built"] or "")[:10]) if about["built"] else ""
    version = about["version"] and gettext(
        "%(version)s (indexed %(date)s)", version=about["version"], date=built
    )
    return {"kb_version": version, "today": localized_date(date.today())}


@bp.get("/questions/<question_id>")
def question(question_id: str) -> Any:
    doc = _question_doc(question_id)
    data = doc.get("data") or {}
    column = request.args.get("sort", "")
    column = column if column in COMPARISON_COLUMNS else ""
    descending = request.args.get("order") == "desc"
    comparison = (
        sort_comparison(data.get("studies", []), column, descending) if column else data.get("studies", [])
    )
    return render_template(
        "question.html",
        doc=doc,
        data=data,
        comparison=comparison,
        sort_column=column,
        sort_descending=descending,
        **_edition(),
    )


@bp.get("/questions/<question_id>/summary")
def question_summary(question_id: str) -> Any:
    doc = _question_doc(question_id)
    return render_template("question_summary.html", doc=doc, data=doc.get("data") or {}, **_edition())


@bp.get("/map")
def evidence_map() -> Any:
    view = state().index.stored_page("evidence_map")
    if view is None:
        abort(503, description=gettext("The evidence map is not in this index yet: run tmskb index"))
    return render_template("map.html", grid=pictures.evidence_map(view))


@bp.get("/evidence")
def evidence() -> Any:
    query = current_query()
    results = state().index.search(query.with_filter("type", ["recommendation"]))
    groups = evidence_table(state().index, query) if results.ok else []
    return render_template("evidence.html", groups=groups, results=results, query=query), (
        200 if results.ok else 400
    )


@bp.get("/about/levels")
def about_levels() -> Any:
    return render_template(
        "about_levels.html",
        rulesets=state().index.rulesets(),
        verifications=list(Verification),
        fields=FACETS.query_fields(),
    )


def find_document(doc_id: str) -> dict[str, Any]:
    """The stored record, a 301 to a renamed reference's new key, or a 404."""
    index = state().index
    doc = index.document(doc_id)
    if doc is None and doc_id.startswith(REFERENCE_PREFIX):
        renamed = index.key_aliases().get(doc_id.removeprefix(REFERENCE_PREFIX))
        if renamed:
            target = url_for(request.endpoint or "pages.record", doc_id=REFERENCE_PREFIX + renamed)
            abort(redirect(target, 301))
    if doc is None:
        shown = doc_id.removeprefix(REFERENCE_PREFIX)
        if doc_id.startswith(REFERENCE_PREFIX):
            abort(404, description=gettext("No reference with key '%(key)s'", key=shown))
        abort(404, description=gettext("No record with id '%(id)s'", id=shown))
    return doc


# -- template helpers ------------------------------------------------------------------------

EXPORT_LINKS = tuple((f.label, f.extension) for f in FORMATS.values() if f.linked)
# Active filter values shown with a "remove" link each; past this, one link per filter. Each
# link repeats the other filters, so a link per value would make a page grow with the square
# of its filter values (issue 17: 600 values made a 5.5 MB page).
MAX_VALUE_CHIPS = 10


def register_template_helpers(app: Flask) -> None:
    @app.template_filter("http_url")
    def http_url(value: Any) -> str | None:
        """The value if it is an http(s) address, else None: never link javascript: or data: URLs."""
        text = str(value or "")
        return text if text.lower().startswith(("http://", "https://")) else None

    @app.context_processor
    def helpers() -> dict[str, Any]:
        return {
            "facet_registry": FACETS,
            "facet_titles": {f.name: translate_label(f.title) for f in FACETS},
            "evidence_facets": [f.name for f in FACETS if f.on_evidence],
            "type_labels": {k: translate_label(v) for k, v in TYPE_LABELS.items()},
            "verification_label": verification_label,
            "url_for_query": url_for_query,
            "filter_chips": filter_chips,
            "reference_prefix": REFERENCE_PREFIX,
            "export_links": EXPORT_LINKS,
            "export_url": export_url,
            "left_out": left_out,
        }


def left_out() -> list[dict[str, Any]]:
    """The records the live index left out because they have problems, for the curators' notice
    (none when CURATOR_NOTICES is off, as on a public site, or without an index)."""
    if not current_app.config.get("CURATOR_NOTICES", True):
        return []
    try:
        return list(state().index.about().get("left_out") or [])
    except IndexMissing:
        return []


def url_for_query(endpoint: str, query: Query, **changes: Any) -> str:
    """A page URL for `query` with `changes` (page=2, sort='year', ...)."""
    params = query.to_params(**changes)
    return _join(url_for(endpoint), params)


def _join(url: str, params: Any) -> str:
    """`url` (which may carry ?lang=) with the query parameters `params` added."""
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(params)


@dataclass(frozen=True)
class Chip:
    """One active filter (or one value of it) with the link that removes it."""

    text: str
    href: str


def filter_chips(endpoint: str, query: Query, results: Results) -> list[Chip]:
    """The page's "remove filter" links: one per value while there are at most
    MAX_VALUE_CHIPS values, else one per filter (its values listed), so their size grows
    linearly with the values (one value at a time can still be unticked in the filter list)."""
    titles = {f.name: translate_label(f.title) for f in FACETS}
    if sum(len(values) for _, values in query.filters) <= MAX_VALUE_CHIPS:
        return [
            Chip(
                f"{titles.get(name, name)}: {translate_label(results.label(name, value))}",
                url_for_query(endpoint, query.toggled(name, value)),
            )
            for name, values in query.filters
            for value in values
        ]
    return [
        Chip(
            f"{titles.get(name, name)}: {', '.join(translate_label(results.label(name, v)) for v in values)}",
            url_for_query(endpoint, query.with_filter(name, ())),
        )
        for name, values in query.filters
    ]


def export_url(endpoint: str, ext: str, query: Query) -> str:
    """The download URL of `query` in the format with extension `ext` (all pages)."""
    params = query.to_params(page=1)
    return _join(url_for(endpoint, ext=ext), params)


def verification_label(value: str) -> str:
    try:
        return translate_label(Verification(value).label)
    except ValueError:
        return value or gettext("unknown")
