"""The Flask front end: an app factory with three blueprints over the search library.

    pages    /, /records/<id>, /evidence, /about/levels     HTML
    api      /api/search, /api/records/<id>, /api/evidence, /api/openapi.json
    exports  /search.<ext>, /evidence.<ext>                 downloads (docs/export.md)

Pages and API answers carry an ETag and a Last-Modified date and answer conditional GETs with
304 (`conditional`); read-only API answers allow any origin (CORS). The OpenAPI document
(openapi-base.json) states both for clients.

Every view reads its parameters with indexer.query.parse_params and its data from one
SearchIndex kept in `app.extensions["tmskb"]`; errors of every view go through
`errors.error_response`, which answers HTML to a browser and JSON to the API.
"""

from __future__ import annotations

import hashlib
import os
from datetime import date, datetime, time
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Response, request

from ..errors import IndexMissing
from ..settings import PACKAGE_ROOT, resolve_settings
from . import errors, i18n
from .state import WebState, state

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
        # The "records left out: run tmskb check" notice; TMSKB_CURATOR_NOTICES=0 on a public site.
        CURATOR_NOTICES=os.environ.get("TMSKB_CURATOR_NOTICES", "1").strip().lower()
        not in ("0", "no", "false"),
    )
    if config:
        app.config.from_mapping(config)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(PACKAGE_ROOT / "translations"))
    i18n.init_app(app)
    app.extensions["tmskb"] = WebState(Path(app.config["INDEX_DIR"]), int(app.config["QUERY_BUDGET_MS"]))

    from . import api, exports, history, pages

    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(exports.bp)
    errors.register(app)
    pages.register_template_helpers(app)
    history.register(app)

    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if response.location:
            response.location = relative_location(response.location)
        return response

    release = code_token()

    @app.after_request
    def caching_and_cors(response: Response) -> Response:
        if request.method in ("GET", "HEAD") and request.blueprint in ("pages", "api"):
            if request.blueprint in i18n.HTML_BLUEPRINTS:
                response.vary.add("Accept-Language")  # the page's language (indexer.web.i18n)
            if response.status_code == 200:
                response = conditional(response, release)
            if request.blueprint == "api" and response.status_code in (200, 304):
                response.headers["Access-Control-Allow-Origin"] = "*"  # read-only, no credentials
                response.headers["Access-Control-Expose-Headers"] = "ETag"
        return response

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return app.send_static_file("favicon.ico")

    return app


def conditional(response: Response, release: str) -> Response:
    """ETag and Last-Modified for a page or API answer, and a 304 when the client has it.

    What a 200 shows depends only on the index generation, the request's path and query, the
    code (`release`) and, on pages, the date (printable views state it) and language: so those make the
    ETag, and the generation's build time (the start of today, if later, on pages) is the
    Last-Modified date. `no-cache` makes caches ask again, so a new generation shows at once."""
    try:
        about = state().index.about()
    except IndexMissing:
        return response
    page = request.blueprint == "pages"
    today = date.today()
    parts: tuple[str, ...] = (
        release,
        str(about.get("version")),
        str(about.get("generation")),
        request.full_path,
    )
    if page:
        parts += (i18n.language(),)
    tag = hashlib.sha256("\0".join(parts + ((today.isoformat(),) if page else ())).encode()).hexdigest()
    response.set_etag(tag[:32], weak=True)  # weak: the bytes are not hashed (and may be re-encoded)
    if about.get("built"):
        built = datetime.strptime(str(about["built"]), "%Y-%m-%dT%H:%M:%S%z")
        midnight = datetime.combine(today, time()).astimezone()
        response.last_modified = max(built, midnight) if page else built
    if not response.cache_control.no_store:
        response.cache_control.no_cache = True
    response.make_conditional(request)  # in place: 304 and no body when the client has it
    return response


@cache
def code_token() -> str:
    """A digest of the code, templates and static files, read once per process: a release that
    changes what a page shows changes its ETag even when the index does not change."""
    digest = hashlib.sha256()
    for folder in ("indexer", "templates", "static", "translations"):
        for path in sorted((PACKAGE_ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(PACKAGE_ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


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
