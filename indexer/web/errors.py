"""One error path for every view: HTML for people, JSON for the API.

The JSON shape is always {"ok": false, "error": "..."} (Datasette's error body). A request gets
JSON when its path is under /api/ or when it asks for JSON in its Accept header; otherwise
the error page, so a bad query on a download link shows a page, not a JSON body.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, jsonify, render_template, request
from flask_babel import gettext
from werkzeug.exceptions import HTTPException

from ..errors import IndexMissing, QueryError
from ..query import JSON_VERSION


def wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return (
        best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def error_response(status: int, message: str) -> Any:
    if wants_json():
        return jsonify({"version": JSON_VERSION, "ok": False, "error": message}), status
    return render_template("error.html", status=status, message=message), status


def register(app: Flask) -> None:
    @app.errorhandler(IndexMissing)
    def no_index(exc: IndexMissing) -> Any:
        return error_response(503, str(exc))

    @app.errorhandler(QueryError)
    def bad_query(exc: QueryError) -> Any:
        return error_response(400, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> Any:
        current_app.logger.exception("unhandled error on %s", request.path)
        return error_response(500, gettext("Something went wrong on our side; the error has been logged."))
