"""Downloads of the page's view: /search.<ext>, /evidence.<ext> and a question's comparison table
(/questions/<id>/studies.<ext>); docs/export.md."""

from __future__ import annotations

import itertools
from typing import Any

from flask import Blueprint, Response, abort

from ..errors import ExportError, QueryError
from ..export import EXTENSIONS, FORMATS, export_bytes, export_question
from .errors import error_response
from .state import current_query, state

bp = Blueprint("exports", __name__)


@bp.get("/search.<ext>")
def search_export(ext: str) -> Any:
    return _download(ext, "records", "search")


@bp.get("/evidence.<ext>")
def evidence_export(ext: str) -> Any:
    return _download(ext, "evidence", "evidence")


@bp.get("/questions/<question_id>/studies.<ext>")
def question_table(question_id: str, ext: str) -> Any:
    fmt = EXTENSIONS.get(ext)
    if fmt is None:
        abort(404, description=f"No export format '{ext}'")
    try:
        chunks = export_question(state().index, question_id, fmt)
    except ExportError as exc:
        return error_response(404 if "no question" in str(exc) else 400, str(exc))
    response = Response(chunks, content_type=FORMATS[fmt].mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="tmskb-{question_id}-studies.{ext}"'
    return response


def _download(ext: str, table: str, stem: str) -> Any:
    """A streamed download of the page's query (same parameters as the page; page ignored)."""
    fmt = EXTENSIONS.get(ext)
    if fmt is None:
        abort(404, description=f"No export format '{ext}'")
    try:
        chunks = export_bytes(state().index, current_query(), fmt, table)
        first = next(chunks, b"")  # ordering all hits happens before the first chunk: errors here are 400s
    except (ExportError, QueryError) as exc:
        return error_response(400, str(exc))
    response = Response(itertools.chain([first], chunks), content_type=FORMATS[fmt].mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="tmskb-{stem}.{ext}"'
    return response
