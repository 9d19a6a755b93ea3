"""The Flask front end: an app factory with three blueprints over the search library.

    pages    /, /records/<id>, /evidence, /about/levels     HTML
    api      /api/search, /api/records/<id>, /api/evidence, /api/openapi.json
    exports  /search.<ext>, /evidence.<ext>                 downloads (docs/export.md)

Every view reads its parameters with indexer.query.parse_params and its data from one
SearchIndex kept in `app.extensions["tmskb"]`; errors of every view go through
`errors.error_response`, which answers HTML to a browser and JSON to the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Response

from ..settings import PACKAGE_ROOT, resolve_settings
from . import errors
from .state import WebState

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """App factory: defaults, then TMSKB_* environment (indexer.settings), then `config`
    (tests pass INDEX_DIR, and QUERY_BUDGET_MS for a small query time budget)."""
    app = Flask(
        "tmskb",
        instance_relative_config=True,
        template_folder=str(PACKAGE_ROOT / "templates"),
        static_folder=str(PACKAGE_ROOT / "static"),
    )
    settings = resolve_settings()
    app.config.from_mapping(
        INDEX_DIR=str(settings.index_dir),
        QUERY_BUDGET_MS=settings.query_budget_ms,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    if config:
        app.config.from_mapping(config)
    app.extensions["tmskb"] = WebState(Path(app.config["INDEX_DIR"]), int(app.config["QUERY_BUDGET_MS"]))

    from . import api, exports, pages

    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(exports.bp)
    errors.register(app)
    pages.register_template_helpers(app)

    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if response.location:
            response.location = relative_location(response.location)
        return response

    return app


def relative_location(location: str) -> str:
    """A redirect target without scheme and host, so a forged Host header never ends up in it.

    Werkzeug's own redirects (`/records//x` -> `/records/x`, merge_slashes) are built as
    absolute URLs from the request's Host header, and Flask returns them without calling the
    error handlers; every redirect of this app stays on its own site, so none needs a host.
    (Werkzeug >= 2.1 no longer makes relative Locations absolute: autocorrect_location_header
    is False.) Leading slashes are collapsed: '//evil.example/x' would be another site."""
    parts = urlsplit(location)
    if not (parts.scheme or parts.netloc or location.startswith(("//", "/\\"))):
        return location
    path = "/" + parts.path.lstrip("/\\")
    return urlunsplit(("", "", path, parts.query, parts.fragment))
