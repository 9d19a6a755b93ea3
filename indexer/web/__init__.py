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
    (tests pass INDEX_DIR)."""
    app = Flask(
        "tmskb",
        instance_relative_config=True,
        template_folder=str(PACKAGE_ROOT / "templates"),
        static_folder=str(PACKAGE_ROOT / "static"),
    )
    app.config.from_mapping(INDEX_DIR=str(resolve_settings().index_dir), MAX_CONTENT_LENGTH=64 * 1024)
    if config:
        app.config.from_mapping(config)
    app.extensions["tmskb"] = WebState(Path(app.config["INDEX_DIR"]))

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
        return response

    return app
