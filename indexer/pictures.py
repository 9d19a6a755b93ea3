"""Geometry for the server-rendered pictures: the dose plot of a question and the evidence map.

Plain data only (numbers and strings); templates/_pictures.html turns it into SVG with a title,
a description and a text alternative, so the pictures need no JavaScript. Why not a plotting
library: two small charts whose every mark must be a labelled link for screen readers are a few
dozen lines of template, while matplotlib would add a heavy dependency and start-up cost to every
web worker, and pygal's interactive output expects JavaScript; Jinja's autoescaping also covers
every label we put into the SVG.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

GROUP_SHAPES = {
    "supporting": "triangle",
    "opposing": "square",
    "inconclusive": "diamond",
    "not-reported": "circle",
    "not-counted": "circle",
}
GROUP_WORDS = {
    "supporting": "supports",
    "opposing": "opposes",
    "inconclusive": "inconclusive",
    "not-reported": "result not reported",
    "not-counted": "not counted",
}

# Dose plot frame (SVG user units).
WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 24, 48


def _ticks(high: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `high`."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(int(math.ceil(high / step)) + 1)]


def dose_plot(studies: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sessions (x) against pulses per session (y), one mark per arm; size by patients, shape by result.

    Arms without both numbers are listed as not plotted, with the reason, so the picture never
    hides a study silently.
    """
    points, missing = [], []
    for study in studies:
        for arm in study.get("dose") or []:
            label = study["short"] + (f" ({arm['label']})" if arm.get("label") else "")
            sessions, pulses = arm.get("sessions"), arm.get("pulses_per_session")
            if sessions is None or pulses is None:
                lacking = [
                    f"{name} {arm['state_labels'][key]}"
                    for name, key, value in (
                        ("sessions", "sessions", sessions),
                        ("pulses", "pulses_per_session", pulses),
                    )
                    if value is None
                ]
                missing.append({"id": study["id"], "label": label, "why": "; ".join(lacking)})
                continue
            points.append(
                {
                    "id": study["id"],
                    "label": label,
                    "sessions": sessions,
                    "pulses": pulses,
                    "n": study.get("patients_total"),
                    "group": study["group"],
                    "shape": GROUP_SHAPES.get(study["group"], "circle"),
                    "result_words": GROUP_WORDS.get(study["group"], study["group"]),
                }
            )
    x_ticks = _ticks(max([p["sessions"] for p in points] or [10]))
    y_ticks = _ticks(max([p["pulses"] for p in points] or [1000]))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    largest = max([p["n"] or 0 for p in points] or [1]) or 1
    for p in points:
        p["x"] = round(LEFT + inner_w * p["sessions"] / x_ticks[-1], 1)
        p["y"] = round(TOP + inner_h * (1 - p["pulses"] / y_ticks[-1]), 1)
        p["r"] = round(4 + 10 * math.sqrt((p["n"] or 0) / largest), 1)
    points.sort(key=lambda p: -p["r"])  # large marks first, so small ones stay visible on top
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "top": TOP,
        "bottom": HEIGHT - BOTTOM,
        "right": WIDTH - RIGHT,
        "x_ticks": [{"value": t, "x": round(LEFT + inner_w * t / x_ticks[-1], 1)} for t in x_ticks],
        "y_ticks": [{"value": t, "y": round(TOP + inner_h * (1 - t / y_ticks[-1]), 1)} for t in y_ticks],
        "points": points,
        "missing": missing,
        "description": _plot_description(points, missing),
    }


def _plot_description(points: list[dict[str, Any]], missing: list[dict[str, Any]]) -> str:
    if not points:
        return (
            "No arm has both its number of sessions and its pulses per session recorded "
            f"({len(missing)} not plotted)."
        )
    sessions = sorted(p["sessions"] for p in points)
    pulses = sorted(p["pulses"] for p in points)
    return (
        f"{len(points)} arms plotted: sessions from {sessions[0]} to {sessions[-1]}, pulses per session "
        f"from {pulses[0]} to {pulses[-1]}; {len(missing)} arms not plotted because a value is missing."
    )


def evidence_map(view: dict[str, Any]) -> dict[str, Any]:
    """Grid geometry for conditions (rows) x interventions (columns) of questions.evidence_map_view."""
    cell_w, cell_h, head_w, head_h = 124, 52, 250, 170
    rows = [dict(r, y=head_h + i * cell_h) for i, r in enumerate(view["rows"])]
    columns = [dict(c, x=head_w + j * cell_w) for j, c in enumerate(view["columns"])]
    y_of = {r["id"]: r["y"] for r in rows}
    x_of = {c["id"]: c["x"] for c in columns}
    return {
        "width": head_w + cell_w * len(columns) + 150,  # room for the last rotated heading
        "height": head_h + cell_h * len(rows) + 8,
        "cell_w": cell_w,
        "cell_h": cell_h,
        "head_w": head_w,
        "head_h": head_h,
        "rows": rows,
        "columns": columns,
        "cells": [
            dict(cell, x=x_of[cell["column"]], y=y_of[cell["row"]])
            for cell in view["cells"]
            if cell["column"] in x_of and cell["row"] in y_of
        ],
    }
