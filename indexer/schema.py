"""Validate YAML documents against the shipped JSON Schemas; explain errors in curators' terms."""

from __future__ import annotations

import difflib
import json
import re
from copy import deepcopy
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import fastjsonschema

if TYPE_CHECKING:  # jsonschema explains invalid records only: imported when one is met
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

from .models import Problem
from .yamlio import Located

SCHEMA_NAMES = (
    "study",
    "recommendation",
    "knowledge",
    "question",
    "verdict",
    "scale",
    "vocabulary",
    "ruleset",
)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema shipped as indexer/schemas/<name>.schema.json."""
    text = resources.files("indexer").joinpath(f"schemas/{name}.schema.json").read_text("utf-8")
    return dict(json.loads(text))


@cache
def _validator(name: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(name))


@cache
def _fast(name: str) -> Any:
    """fastjsonschema's compiled validator: ~30x faster on valid records, which are most of them.

    Our schemas use only draft-07 keywords, so they compile as draft-07.
    """
    definition = {**load_schema(name), "$schema": "http://json-schema.org/draft-07/schema#"}
    return fastjsonschema.compile(definition)


def id_problem(schema_name: str, record_id: str) -> str | None:
    """Why `record_id` is not a valid id for a record of this schema (the rule `tmskb check`
    applies), or None; `tmskb new` asks before it writes a file."""
    pattern = load_schema(schema_name).get("properties", {}).get("id", {}).get("pattern")
    if pattern and not re.search(pattern, record_id):
        return "use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"
    return None


def validate(located: Located, schema_name: str, shown: str, record: str) -> list[Problem]:
    """Every schema violation of a document, as Problems pointing at the offending line."""
    try:
        _fast(schema_name)(located.data)
        return []
    except fastjsonschema.JsonSchemaException:
        pass  # jsonschema below reports every error, each with its path
    problems = []
    for error in _validator(schema_name).iter_errors(located.data):
        field, reason, hint = _explain(error)
        problems.append(Problem(shown, located.line(field), record, field, reason, hint))
    return problems


def _path(error: ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path)


def _explain(error: ValidationError) -> tuple[str, str, str]:
    """(field path, reason, hint) for one validation error."""
    path = _path(error)
    kind = error.validator
    if kind in ("oneOf", "anyOf") and error.context:
        deeper = [e for e in error.context if _path(e) != path]
        if deeper:
            from jsonschema.exceptions import best_match

            return _explain(best_match(deeper))
        return path, f"expected {_expected(error)}, got {_show(error.instance)}", ""
    if kind == "required":
        missing = str(error.message).split("'")[1]
        child = f"{path}.{missing}" if path else missing
        return child, "missing required field", f"add '{missing}:'; write null if the source does not say"
    if kind == "additionalProperties":
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = list(schema.get("properties", {}))
        extras = [k for k in error.instance if k not in allowed] if isinstance(error.instance, dict) else []
        name = extras[0] if extras else "?"
        child = f"{path}.{name}" if path else name
        return child, f"unknown field '{name}'", _did_you_mean(name, allowed, "remove it")
    if kind == "enum":
        options = ", ".join("null" if v is None else str(v) for v in list(error.validator_value))  # type: ignore[arg-type]
        return path, f"{_show(error.instance)} is not a valid {_leaf(path)}", f"expected one of {options}"
    if kind == "const":
        return path, f"expected '{error.validator_value}', got {_show(error.instance)}", ""
    if kind == "type":
        return path, f"expected {_types(error.validator_value)}, got {_show(error.instance)}", ""
    if kind in ("minLength", "minItems"):
        return path, "must not be empty", ""
    if kind == "pattern" and str(error.validator_value).startswith("^https?"):
        return (
            path,
            f"{_show(error.instance)} is not an http(s) address",
            "write the full https:// address",
        )
    if kind == "pattern":
        return (
            path,
            f"{_show(error.instance)} is not a valid id",
            "use lowercase letters, digits, '.', '_' and '-'",
        )
    if kind == "minimum":
        return path, f"{_show(error.instance)} is below the minimum {error.validator_value}", ""
    if kind == "uniqueItems":
        return path, "lists the same value twice", "remove the duplicate"
    return path, str(error.message), ""


def _expected(error: ValidationError) -> str:
    kinds = []
    for sub in error.context or ():
        if sub.validator == "type":
            kinds.append(_types(sub.validator_value))
    return " or ".join(dict.fromkeys(kinds)) or "a different value"


def _types(value: Any) -> str:
    names = {
        "string": "text",
        "integer": "a whole number",
        "number": "a number",
        "boolean": "true/false",
        "array": "a list",
        "object": "a mapping",
        "null": "null",
    }
    values = value if isinstance(value, list) else [value]
    return " or ".join(names.get(str(v), str(v)) for v in values)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _leaf(path: str) -> str:
    parts = [p for p in path.split(".") if not p.isdigit()]
    return parts[-1] if parts else "value"


def _did_you_mean(name: str, options: list[str], fallback: str) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else fallback


# Values tried, in order, in place of an invalid one so that the rest of a broken record can
# still be checked (see stand_in). They are never shown: problems at these paths are the
# schema's own.
NEUTRAL_VALUES: tuple[Any, ...] = (None, "", [], {}, 0, 1, False, "x", "https://x.invalid")
STAND_IN_ROUNDS = 12


def stand_in(data: dict[str, Any], schema_name: str) -> tuple[dict[str, Any], frozenset[str]] | None:
    """A copy of a schema-invalid document whose invalid values are replaced by neutral ones.

    `tmskb check` reports a broken record's schema problems and, from this stand-in, its
    cross-file problems (unknown terms, keys, links) in the same run, instead of one wave after
    another. Returns the stand-in and the dotted paths replaced (problems there are the
    schema's), or None when no stand-in validates.
    """
    copy = deepcopy(data)
    tried: dict[tuple[Any, ...], int] = {}
    repaired: set[str] = set()
    validator = _validator(schema_name)
    for _ in range(STAND_IN_ROUNDS):
        errors = list(validator.iter_errors(copy))
        if not errors:
            return copy, frozenset(repaired)
        done: set[tuple[Any, ...]] = set()
        for error in errors:
            if _removed_unknown(copy, error, repaired):
                continue
            for path in _error_paths(error):
                if path in done or not _replace(copy, path, tried):
                    if path not in done:
                        return None
                    continue
                done.add(path)
                repaired.add(".".join(str(p) for p in path))
    return None


def _error_paths(error: ValidationError) -> list[tuple[Any, ...]]:
    """The paths whose values must change for this error to go away."""
    path = tuple(error.absolute_path)
    if error.validator == "required":
        return [(*path, str(error.message).split("'")[1])]
    return [path]


def _removed_unknown(document: dict[str, Any], error: ValidationError, repaired: set[str]) -> bool:
    """Remove the fields an additionalProperties error names; False for other errors."""
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return False
    allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
    parent: Any = document
    for step in error.absolute_path:
        parent = parent[step]
    for name in [k for k in parent if k not in allowed]:
        del parent[name]
        repaired.add(".".join(str(p) for p in (*error.absolute_path, name)))
    return True


def _replace(document: dict[str, Any], path: tuple[Any, ...], tried: dict[tuple[Any, ...], int]) -> bool:
    """Put the next neutral value at `path` (an unknown field is removed); False when none is left."""
    if not path:
        return False
    parent: Any = document
    for step in path[:-1]:
        try:
            parent = parent[step]
        except (KeyError, IndexError, TypeError):
            return False
    attempt = tried.get(path, 0)
    if attempt >= len(NEUTRAL_VALUES) or not isinstance(parent, dict | list):
        return False
    tried[path] = attempt + 1
    if isinstance(parent, list):
        parent[path[-1]] = deepcopy(NEUTRAL_VALUES[attempt])
    else:
        parent[str(path[-1])] = deepcopy(NEUTRAL_VALUES[attempt])
    return True
