"""Flask front end: pages and JSON API over indexer.search (no query logic of its own)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from indexer.citations import STYLES, format_reference
from indexer.documents import REFERENCE_PREFIX, plain
from indexer.evidence import evidence_table
from indexer.export import EXTENSIONS as EXPORT_EXTENSIONS
from indexer.export import FORMATS as EXPORT_FORMATS
from indexer.export import ExportError, export_bytes
from indexer.models import LEVEL_LABELS, Verification
from indexer.querytext import QUERY_FIELDS, QueryError
from indexer.search import (
    SORTS,
    TYPE_LABELS,
    IndexMissing,
    Query,
    get_document,
    key_aliases,
    rulesets,
    search,
)
from indexer.settings import Settings

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
FACET_TITLES = {
    "type": "Record type",
    "level": "Level",
    "direction": "Direction",
    "indication": "Indication",
    "target": "Target",
    "side": "Side",
    "protocol": "Protocol",
    "class": "Study class",
    "year": "Year",
    "guideline": "Guideline",
    "verification": "Verification",
}
EXPORT_LINKS = (
    ("CSV", "csv"),
    ("TSV", "tsv"),
    ("JSON", "json"),
    ("JSON Lines", "jsonl"),
    ("Markdown", "md"),
    ("LaTeX", "tex"),
    ("BibTeX", "bib"),
    ("RIS", "ris"),
    ("CSL-JSON", "csl.json"),
)
OPENAPI = Path(__file__).with_name("openapi.json")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """App factory: defaults, then TMSKB_* environment, then `config` (tests pass INDEX_DIR)."""
    app = Flask(__name__, instance_relative_config=True)
    settings = Settings.from_env()
    app.config.from_mapping(INDEX_DIR=str(settings.index_dir), MAX_CONTENT_LENGTH=64 * 1024)
    if config:
        app.config.from_mapping(config)

    def index_dir() -> Path:
        return Path(app.config["INDEX_DIR"])

    def current_query() -> Query:
        return Query.from_params(request.args)

    @app.template_filter("http_url")
    def http_url(value: Any) -> str | None:
        """The value if it is an http(s) address, else None: never link javascript: or data: URLs."""
        text = str(value or "")
        return text if text.lower().startswith(("http://", "https://")) else None

    @app.context_processor
    def helpers() -> dict[str, Any]:
        return {
            "facet_titles": FACET_TITLES,
            "sorts": SORTS,
            "type_labels": TYPE_LABELS,
            "level_labels": LEVEL_LABELS,
            "verification_label": _verification_label,
            "url_for_query": _url,
            "reference_prefix": REFERENCE_PREFIX,
            "export_links": EXPORT_LINKS,
            "export_url": _export_url,
        }

    @app.get("/")
    def home() -> Any:
        query = current_query()
        results = search(index_dir(), query)
        return render_template("search.html", results=results, query=query), 200 if results.ok else 400

    @app.get("/records/<path:doc_id>")
    def record(doc_id: str) -> Any:
        doc = _document(doc_id)
        data = doc.get("data") or {}
        context: dict[str, Any] = {"doc": doc, "data": data, "styles": STYLES}
        kind = doc.get("type")
        if kind == "reference":
            context["citations"] = {k: Markup(v) for k, v in format_reference(data).items()}
        key = (data.get("reference") or data.get("guideline") or {}).get("key")
        if key:
            cited = get_document(index_dir(), REFERENCE_PREFIX + key)
            context["cited"] = cited
            if cited:
                context["citations"] = {k: Markup(v) for k, v in format_reference(cited["data"]).items()}
        return render_template(f"record_{kind}.html", **context)

    @app.get("/evidence")
    def evidence() -> Any:
        query = current_query()
        results = search(
            index_dir(),
            Query.make(query.text, {**query.filter_map, "type": ["recommendation"]}, query.sort, 1, 1),
        )
        groups = evidence_table(index_dir(), query) if results.ok else []
        return render_template(
            "evidence.html", groups=groups, results=results, query=query
        ), 200 if results.ok else 400

    @app.get("/about/levels")
    def about_levels() -> Any:
        return render_template(
            "about_levels.html",
            rulesets=rulesets(index_dir()),
            verifications=list(Verification),
            fields=QUERY_FIELDS,
        )

    @app.get("/api/search")
    def api_search() -> Any:
        from indexer.cli import results_json

        results = search(index_dir(), current_query())
        if not results.ok:
            return _json_error(400, results.error or "bad query")
        return jsonify(results_json(results))

    @app.get("/api/records/<path:doc_id>")
    def api_record(doc_id: str) -> Any:
        return jsonify({"ok": True, "record": _document(doc_id)})

    @app.get("/api/evidence")
    def api_evidence() -> Any:
        try:
            groups = evidence_table(index_dir(), current_query())
        except QueryError as exc:
            return _json_error(400, str(exc))
        return jsonify({"ok": True, "groups": [plain(g) for g in groups]})

    @app.get("/search.<ext>")
    def search_export(ext: str) -> Any:
        return _export(ext, "records", "search")

    @app.get("/evidence.<ext>")
    def evidence_export(ext: str) -> Any:
        return _export(ext, "evidence", "evidence")

    def _export(ext: str, table: str, stem: str) -> Any:
        """A streamed download of the page's query (same parameters as the page; page ignored)."""
        fmt = EXPORT_EXTENSIONS.get(ext)
        if fmt is None:
            abort(404, description=f"No export format '{ext}'")
        try:
            chunks = export_bytes(index_dir(), current_query(), fmt, table)
        except ExportError as exc:
            return _json_error(400, str(exc))
        response = Response(chunks, content_type=EXPORT_FORMATS[fmt].mimetype)
        response.headers["Content-Disposition"] = f'attachment; filename="tmskb-{stem}.{ext}"'
        return response

    @app.get("/api/openapi.json")
    def openapi() -> Any:
        return Response(OPENAPI.read_text("utf-8"), mimetype="application/json")

    def _document(doc_id: str) -> dict[str, Any]:
        doc = get_document(index_dir(), doc_id)
        renamed = key_aliases(index_dir()).get(doc_id.removeprefix(REFERENCE_PREFIX))
        if doc is None and doc_id.startswith(REFERENCE_PREFIX) and renamed:
            abort(redirect(url_for(request.endpoint or "record", doc_id=REFERENCE_PREFIX + renamed), 301))
        if doc is None:
            what = "reference with key" if doc_id.startswith(REFERENCE_PREFIX) else "record with id"
            abort(404, description=f"No {what} '{doc_id.removeprefix(REFERENCE_PREFIX)}'")
        return doc

    @app.errorhandler(IndexMissing)
    def no_index(exc: IndexMissing) -> Any:
        return _error(503, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> Any:
        app.logger.exception("unhandled error on %s", request.path)
        return _error(500, "Something went wrong on our side; the error has been logged.")

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response

    return app


def _url(endpoint: str, query: Query, **changes: Any) -> str:
    """A page URL for `query` with `changes` (page=2, sort='year', ...)."""
    params = query.to_params(**changes)
    return url_for(endpoint) + (f"?{urlencode(params)}" if params else "")


def _export_url(endpoint: str, ext: str, query: Query) -> str:
    """The download URL of `query` in the format with extension `ext` (all pages)."""
    params = query.to_params(page=1)
    return url_for(endpoint, ext=ext) + (f"?{urlencode(params)}" if params else "")


def _verification_label(value: str) -> str:
    try:
        return Verification(value).label
    except ValueError:
        return value or "unknown"


def _json_error(status: int, message: str) -> Any:
    return jsonify({"ok": False, "error": message}), status


def _error(status: int, message: str) -> Any:
    if request.path.startswith("/api/"):
        return _json_error(status, message)
    return render_template("error.html", status=status, message=message), status


def json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
