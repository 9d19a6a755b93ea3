"""Downloads of the page's view: /search.<ext> and /evidence.<ext> (docs/export.md)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort

from ..errors import ExportError
from ..export import EXTENSIONS, FORMATS, export_bytes
from .errors import error_response
from .state import current_query, state

bp = Blueprint("exports", __name__)


@bp.get("/search.<ext>")
def search_export(ext: str) -> Any:
    return _download(ext, "records", "search")


@bp.get("/evidence.<ext>")
def evidence_export(ext: str) -> Any:
    return _download(ext, "evidence", "evidence")


def _download(ext: str, table: str, stem: str) -> Any:
    """A streamed download of the page's query (same parameters as the page; page ignored)."""
    fmt = EXTENSIONS.get(ext)
    if fmt is None:
        abort(404, description=f"No export format '{ext}'")
    try:
        chunks = export_bytes(state().index, current_query(), fmt, table)
    except ExportError as exc:
        return error_response(400, str(exc))
    response = Response(chunks, content_type=FORMATS[fmt].mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="tmskb-{stem}.{ext}"'
    return response
