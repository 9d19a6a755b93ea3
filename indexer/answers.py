"""Answer first: when a query names a condition that has clinical questions, the questions'
verdict panels come before the hits (one line per source, each in its own scale).

The search page, the JSON API (`answers` beside `hits`) and the Python API read this one
function; it only uses SearchIndex, so it works on any index generation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .query import Query, Results

if TYPE_CHECKING:
    from .search import SearchIndex

MAX_CARDS = 3
MAX_LINES = 8


def names_a_condition(results: Results) -> bool:
    """The query (or a filter) names a condition: an indication term was read, or filtered on."""
    if any(e.get("vocabulary") == "indications" for e in results.expansions):
        return True
    return bool(results.query.filter_map.get("indication"))


def answers(index: SearchIndex, results: Results) -> list[dict[str, Any]]:
    """Question cards for the query behind `results` (empty unless it names a condition)."""
    if not results.ok or not names_a_condition(results):
        return []
    query = results.query
    filters = {k: v for k, v in query.filter_map.items() if k in ("indication", "target", "protocol", "side")}
    found = index.search(Query.make(query.text, {**filters, "type": ("question",)}, "evidence", 1, MAX_CARDS))
    if not found.ok:
        return []
    return [card(hit.id, hit.title, hit.data, hit.note) for hit in found.hits]


def _effect(effect: dict[str, Any] | None) -> str | None:
    """'SMD -1.52 (95% CI -2.81 to -0.23), 5 studies': a pooled estimate as its source gives it."""
    if not effect:
        return None
    text = f"{effect['measure']} {effect['value']}"
    if effect.get("ci_low") is not None:
        text += f" ({effect.get('ci_level') or 95}% CI {effect['ci_low']} to {effect['ci_high']})"
    if effect.get("studies"):
        text += f", {effect['studies']} studies"
    return text


def card(question_id: str, title: str, data: dict[str, Any], note: str = "") -> dict[str, Any]:
    """One question: its sources' verdicts in one line each (own verdicts first), and its studies."""
    lines = []
    for verdict in (data.get("verdicts") or [])[:MAX_LINES]:
        lines.append(
            {
                "verdict": verdict["id"],
                "source": verdict["source"]["short"],
                "kind": verdict.get("kind_label"),
                "grades": [
                    {"label": g["label"], "scale": g["scale_name"]} for g in verdict.get("grades") or []
                ],
                "effect": _effect(verdict.get("effect")),
                "direction": verdict.get("direction_label"),
                "covers": (verdict.get("covers") or {}).get("relation"),
                "verification": verdict.get("verification"),
            }
        )
    groups = {g["group"]: g["count"] for g in data.get("groups") or []}
    computed = data.get("computed") or {}
    return {
        "question": question_id,
        "title": title,
        "note": note,
        "lines": lines,
        "more_verdicts": max(0, len(data.get("verdicts") or []) - MAX_LINES),
        "studies": groups,
        "computed": {
            "level": computed.get("level"),
            "ruleset": computed.get("ruleset"),
            "rests_on_lower_bounds": computed.get("rests_on_lower_bounds"),
        }
        if computed
        else None,
    }
