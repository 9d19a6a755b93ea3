"""The "What changed" page, its Atom feed, and what a question page says about each verdict's
history: read from the history `tmskb changes` saves beside the index (githistory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, render_template, request

from ..changes import History, Status, feed_xml, read_history, status_of
from ..errors import IndexMissing
from ..githistory import HISTORY_FILE
from .state import state

bp = Blueprint("history", __name__)
_CACHE: dict[Path, tuple[tuple[int, int], History | None]] = {}


def current_history() -> History | None:
    """The saved history of the served index (re-read when the file changes), or None."""
    path = state().index.index_dir / HISTORY_FILE
    try:
        stat = path.stat()
    except OSError:
        return None
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _CACHE.get(path)
    if cached is None or cached[0] != stamp:
        cached = _CACHE[path] = (stamp, read_history(path))
    return cached[1]


def statuses(record_ids: list[str]) -> dict[str, Status]:
    """For a page: each record's last tracked change, or the day since which it is unchanged."""
    history = current_history()
    if history is None:
        return {}
    return {s.id: s for s in status_of(history, record_ids)}


@bp.get("/changes")
def changes_page() -> str:
    history = current_history()
    record = request.args.get("record", "").strip()
    entries: list[Any] = []
    if history is not None:
        for entry in reversed(history.entries):
            found = [c for c in entry.changes if not record or c.id == record]
            if found:
                entries.append((entry, found))
    return render_template("changes.html", history=history, entries=entries, record=record)


@bp.get("/changes.atom")
def changes_feed() -> Response:
    history = current_history()
    if history is None:
        abort(404)
    return Response(feed_xml(history, request.url_root), mimetype="application/atom+xml")


def kb_edition() -> dict[str, Any]:
    """The served KB's release version, date and content hash (for the footer and printouts)."""
    try:
        return dict(state().index.about().get("kb") or {})
    except IndexMissing:  # no index yet (the 503 page): the footer just says nothing
        return {}


def register(app: Any) -> None:
    app.register_blueprint(bp)
    app.add_template_global(statuses, "change_statuses")
    app.add_template_global(kb_edition, "kb_edition")
