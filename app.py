"""Flask front end: search page, record pages and a JSON API over indexer.search (no query logic here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, abort, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from indexer.documents import FACETS
from indexer.search import IndexMissing, Query, get_document, search
from indexer.settings import Settings


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """App factory: defaults, then TMSKB_* environment, then `config` (tests pass INDEX_DIR)."""
    app = Flask(__name__, instance_relative_config=True)
    settings = Settings.from_env()
    app.config.from_mapping(INDEX_DIR=str(settings.index_dir), MAX_CONTENT_LENGTH=64 * 1024)
    if config:
        app.config.from_mapping(config)

    def index_dir() -> Path:
        return Path(app.config["INDEX_DIR"])

    def query_from_args() -> Query:
        args = request.args
        filters = {name: args.getlist(name) for name in FACETS if args.getlist(name)}
        page = args.get("page", "1")
        return Query.make(
            args.get("q", ""), filters, args.get("sort", "evidence"), int(page) if page.isdigit() else 0
        )

    @app.get("/")
    def home() -> Any:
        results = search(index_dir(), query_from_args())
        status = 200 if results.ok else 400
        return render_template("search.html", results=results, facets=FACETS), status

    @app.get("/api/search")
    def api_search() -> Any:
        from indexer.cli import results_json

        results = search(index_dir(), query_from_args())
        if not results.ok:
            return jsonify({"ok": False, "error": results.error}), 400
        return jsonify(results_json(results))

    @app.get("/records/<doc_id>")
    def record(doc_id: str) -> Any:
        stored = get_document(index_dir(), doc_id)
        if stored is None:
            abort(404, description=f"No record with id '{doc_id}'")
        return render_template("record.html", doc=stored)

    @app.get("/api/records/<doc_id>")
    def api_record(doc_id: str) -> Any:
        stored = get_document(index_dir(), doc_id)
        if stored is None:
            return jsonify({"ok": False, "error": f"No record with id '{doc_id}'"}), 404
        return jsonify({"ok": True, "record": stored})

    @app.errorhandler(IndexMissing)
    def no_index(exc: IndexMissing) -> Any:
        return _error(503, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return _error(exc.code or 500, exc.description or exc.name)

    @app.after_request
    def security_headers(response: Any) -> Any:
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return app


def _error(status: int, message: str) -> Any:
    if request.path.startswith("/api/"):
        return jsonify({"ok": False, "error": message}), status
    return render_template("error.html", status=status, message=message), status
