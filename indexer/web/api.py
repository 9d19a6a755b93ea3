"""The JSON API: one page of results, one record, the evidence table, and its OpenAPI document.

Every answer but the OpenAPI document (whose own version is `info.version`) carries `version`,
the version of the JSON shapes (query.JSON_VERSION), bumped on incompatible changes."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify

from ..answers import answers
from ..documents import plain
from ..evidence import evidence_table
from ..fields import FACETS
from ..query import JSON_VERSION, results_json
from .errors import error_response
from .pages import find_document
from .state import current_query, state

bp = Blueprint("api", __name__, url_prefix="/api")
OPENAPI_BASE = Path(__file__).with_name("openapi-base.json")


@bp.get("/search")
def search() -> Any:
    query = current_query()
    results = state().index.search(query)
    if not results.ok:
        return error_response(400, results.error or "bad query")
    body = results_json(results)
    body["answers"] = answers(state().index, results) if query.page == 1 else []
    body["kb"] = kb_edition()
    return jsonify(body)


@bp.get("/records/<path:doc_id>")
def record(doc_id: str) -> Any:
    return answer(record=find_document(doc_id))


@bp.get("/questions/<path:doc_id>")
def question(doc_id: str) -> Any:
    doc = state().index.document(doc_id)
    if doc is None or doc.get("type") != "question":
        return error_response(404, f"No question with id '{doc_id}'")
    return answer(question=doc)


@bp.get("/evidence")
def evidence() -> Any:
    groups = evidence_table(state().index, current_query())  # a QueryError becomes a 400
    return answer(groups=[plain(g) for g in groups])


@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(openapi_document())


def answer(**body: Any) -> Any:
    """A successful answer: the JSON shape's version, the KB's release, then `body`."""
    return jsonify({"version": JSON_VERSION, "ok": True, "kb": kb_edition(), **body})


def kb_edition() -> dict[str, Any]:
    """Which knowledge base answered: release version and date (kb/release.json) and content hash."""
    return dict(state().index.about().get("kb") or {})


KB_SCHEMA = {
    "type": "object",
    "description": "The knowledge base that answered: its release (tmskb release) and content hash",
    "properties": {
        "version": {"type": "string", "description": "Release version; absent before the first release"},
        "date": {"type": "string", "format": "date", "description": "Release date"},
        "content_hash": {"type": "string", "description": "sha256 of the sources, as in the release package"},
    },
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document: the base file plus one parameter per registry facet, and the `kb`
    object on every answer that carries `version`."""
    spec = copy.deepcopy(_base())
    schemas = spec["components"]["schemas"]
    schemas["KnowledgeBase"] = KB_SCHEMA
    for ops in spec["paths"].values():
        for op in ops.values():
            if op.pop("x-tmskb-facet-parameters", False):
                op["parameters"] += [_facet_parameter(f) for f in FACETS]
            for response in op.get("responses", {}).values():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if "$ref" in schema:
                    schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
                if "version" in schema.get("properties", {}) and schema.get("properties", {}).get("ok") == {
                    "const": True
                }:
                    schema["properties"]["kb"] = {"$ref": "#/components/schemas/KnowledgeBase"}
    return spec


@cache
def _base() -> dict[str, Any]:
    return dict(json.loads(OPENAPI_BASE.read_text("utf-8")))


def _facet_parameter(facet: Any) -> dict[str, Any]:
    items: dict[str, Any] = {"type": "string"}
    if facet.values is not None:
        items["enum"] = list(facet.values)
    where = (
        f" Values: terms of the {facet.vocabulary} vocabulary (ids or any name)." if facet.vocabulary else ""
    )
    return {
        "name": facet.name,
        "in": "query",
        "schema": {"type": "array", "items": items},
        "style": "form",
        "explode": True,
        "description": f"Filter by {facet.title.lower()} (repeat or comma-separate for OR).{where}",
    }
