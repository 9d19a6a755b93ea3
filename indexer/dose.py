"""Dose as data: each stimulation parameter with its unit and why it may be empty.

An empty parameter means one of three things, and the difference is information:
- "not-reported": the source was read for it and does not report it (`not_reported`);
- "not-applicable": it does not apply to the study (`not_applicable`);
- "not-recorded": nobody has recorded it (the source may well give it).

Derived values (total pulses, intensity as a number, the sessions bin, navigation, reporting
completeness) are computed here only from recorded parts, and say they are computed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .models import Arm, Study

REPORTED = "reported"
NOT_REPORTED = "not-reported"
NOT_APPLICABLE = "not-applicable"
NOT_RECORDED = "not-recorded"
STATE_LABELS = {
    REPORTED: "reported",
    NOT_REPORTED: "not reported in the source",
    NOT_APPLICABLE: "not applicable",
    NOT_RECORDED: "not recorded",
}

# The parameters a stimulation study must report to be reproducible (after the reporting
# checklists for TMS studies): the share of them a study reports is its completeness.
CORE = ("frequency_hz", "intensity", "pulses_per_session", "sessions", "target", "side", "coil", "targeting")
CORE_LABELS = {
    "frequency_hz": "frequency",
    "intensity": "intensity",
    "pulses_per_session": "pulses per session",
    "sessions": "sessions",
    "target": "target",
    "side": "side",
    "coil": "coil",
    "targeting": "targeting method",
}
NAVIGATED_TARGETING = frozenset({"navigated", "image-guided", "robotic"})
TARGETING_LABELS = {
    "landmark": "scalp landmark",
    "hotspot": "motor hotspot",
    "navigated": "neuronavigation",
    "image-guided": "neuronavigation (image-guided)",
    "robotic": "robotic neuronavigation",
}
SESSION_BINS = ("1", "2-5", "6-10", ">10")
COMPLETENESS_BINS = ("all", "75-99%", "50-74%", "under 50%")

_INTENSITY = re.compile(
    r"(?P<pct>\d+(?:\.\d+)?)\s*%\s*(?:of\s+(?:the\s+)?)?(?P<ref>RMT|AMT|MT|resting motor threshold|"
    r"active motor threshold|motor threshold|MSO|maximum stimulator output)?",
    re.IGNORECASE,
)
_REFERENCES = {
    "rmt": "RMT",
    "resting motor threshold": "RMT",
    "amt": "AMT",
    "active motor threshold": "AMT",
    "mt": "MT",
    "motor threshold": "MT",
    "mso": "MSO",
    "maximum stimulator output": "MSO",
}


@dataclass(frozen=True)
class Completeness:
    """How many of the core parameters a study reports, of those that apply to it."""

    reported: int
    applicable: int
    missing: tuple[str, ...]

    @property
    def share(self) -> float:
        return self.reported / self.applicable if self.applicable else 1.0

    @property
    def bin(self) -> str:
        share = self.share
        if share >= 1:
            return COMPLETENESS_BINS[0]
        if share >= 0.75:
            return COMPLETENESS_BINS[1]
        return COMPLETENESS_BINS[2] if share >= 0.5 else COMPLETENESS_BINS[3]


def _empty(value: object) -> bool:
    return value is None or value == () or value == [] or value == ""


def arm_value(arm: Arm, name: str) -> object:
    """A core parameter of one arm; navigation counts as a targeting method when nothing finer is known."""
    if name == "targeting" and arm.targeting is None and arm.neuronavigation is True:
        return "navigated"
    return getattr(arm, name)


def state(study: Study, arm: Arm, name: str) -> str:
    """reported / not-reported / not-applicable / not-recorded for one parameter of one arm."""
    if not _empty(arm_value(arm, name)):
        return REPORTED
    if name == "targeting" and "neuronavigation" in study.not_reported:
        return NOT_REPORTED
    if name in study.not_applicable:
        return NOT_APPLICABLE
    return NOT_REPORTED if name in study.not_reported else NOT_RECORDED


def completeness(study: Study) -> Completeness:
    """A parameter counts as reported when every arm has it; not-applicable ones are left out."""
    reported, applicable, missing = 0, 0, []
    for name in CORE:
        states = {state(study, arm, name) for arm in study.arms}
        if states == {NOT_APPLICABLE}:
            continue
        applicable += 1
        if states <= {REPORTED, NOT_APPLICABLE}:
            reported += 1
        else:
            missing.append(name)
    return Completeness(reported, applicable, tuple(missing))


def intensity_parts(text: str | None) -> tuple[float | None, str | None]:
    """'90% RMT' -> (90.0, 'RMT'); the reference is None when the source names none."""
    if not text:
        return None, None
    match = _INTENSITY.search(text)
    if not match:
        return None, None
    ref = match.group("ref")
    return float(match.group("pct")), _REFERENCES.get(ref.lower()) if ref else None


def total_pulses(arm: Arm) -> int | None:
    """Pulses per session x sessions, only when both are recorded."""
    if arm.pulses_per_session is None or arm.sessions is None:
        return None
    return arm.pulses_per_session * arm.sessions


def navigated(arm: Arm) -> bool | None:
    """True for image-guided or robotic targeting, False for landmark/hotspot, None when unknown."""
    if arm.targeting is not None:
        return arm.targeting in NAVIGATED_TARGETING
    return arm.neuronavigation


def sessions_bin(sessions: int | None) -> str | None:
    if sessions is None:
        return None
    if sessions <= 1:
        return SESSION_BINS[0]
    if sessions <= 5:
        return SESSION_BINS[1]
    return SESSION_BINS[2] if sessions <= 10 else SESSION_BINS[3]


def arm_dose(study: Study, arm: Arm) -> dict[str, Any]:
    """One arm's dose for tables, exports and pictures: values, units, states and computed parts."""
    percent, reference = intensity_parts(arm.intensity)
    states = {
        name: state(study, arm, name) for name in (*CORE, "sessions_per_week", "schedule", "maintenance")
    }
    return {
        "label": arm.label,
        "frequency_hz": arm.frequency_hz,
        "intensity": arm.intensity,
        "intensity_percent": percent,
        "intensity_reference": reference,
        "pulses_per_session": arm.pulses_per_session,
        "sessions": arm.sessions,
        "sessions_bin": sessions_bin(arm.sessions),
        "sessions_per_week": arm.sessions_per_week,
        "schedule": arm.schedule,
        "maintenance": arm.maintenance,
        "total_pulses": total_pulses(arm),
        "total_pulses_computed": total_pulses(arm) is not None,
        "targeting": arm_value(arm, "targeting"),
        "targeting_label": TARGETING_LABELS.get(str(arm_value(arm, "targeting")), None),
        "navigated": navigated(arm),
        "coil": list(arm.coil),
        "result": arm.result,
        "states": states,
        "state_labels": {name: STATE_LABELS[s] for name, s in states.items()},
    }


def study_dose(study: Study) -> dict[str, Any]:
    """Every arm's dose plus the study's reporting completeness."""
    done = completeness(study)
    return {
        "arms": [arm_dose(study, arm) for arm in study.arms],
        "completeness": {
            "reported": done.reported,
            "applicable": done.applicable,
            "share": round(done.share, 3),
            "bin": done.bin,
            "missing": [CORE_LABELS[m] for m in done.missing],
            "of": [CORE_LABELS[c] for c in CORE],
        },
    }
