"""What changed in the knowledge base: each record's level, class, verdict and verification,
compared between two states of the KB (two commits, a commit and a release package, or a release
package and the working tree).

A state is a `Snapshot`: record id -> the record's type, title and *aspects*, each a display
string read from the export rows (export.rows: the same rows `tmskb export` and the release
tables hold, so there is one data path). Computed values keep their rule set and lower-bound
mark in the string; published verdicts are shown in their own scale, never converted.

The git side (states at commits, the per-commit history) is in indexer/githistory.py; this
module holds the data, the comparison and its renderings (Markdown, JSON, Atom).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .models import Verification

HISTORY_FORMAT = 1
TYPES = ("reference", "study", "recommendation", "question", "verdict", "knowledge")
Row = Mapping[str, str]
Snapshot = dict[str, dict[str, str]]


def _text(row: Row, column: str) -> str:
    return str(row.get(column) or "").strip()


def published_level(row: Row) -> str:
    level, bound = _text(row, "published_level"), _text(row, "published_level_bound")
    if level:
        return f"Level {level} (as published)"
    if bound.startswith("below-"):
        return f"below Level {bound.removeprefix('below-')} (as published; exact level not verified)"
    return "no level published"


def computed_level(row: Row) -> str:
    level, status, ruleset = (
        _text(row, c) for c in ("computed_level", "computed_level_status", "level_ruleset")
    )
    if not (level or status):
        return ""
    lower = ", rests on lower bounds" if _text(row, "computed_level_rests_on_lower_bounds") == "True" else ""
    what = f"Level {level}" if level else status.replace("-", " ")
    return f"{what} (computed, rule set {ruleset or 'unknown'}{lower})"


def study_class(row: Row) -> str:
    cls, basis, ruleset = (_text(row, c) for c in ("class", "class_basis", "class_ruleset"))
    if not cls:
        return "no class"
    if basis != "computed":
        return f"Class {cls} ({basis or 'stated'})"
    if _text(row, "class_lower_bound") == "True":
        return f"Class {cls} or better (computed lower bound, rule set {ruleset or 'unknown'})"
    return f"Class {cls} (computed, rule set {ruleset or 'unknown'})"


def verdict(row: Row) -> str:
    return _text(row, "grades") or "no grade read"


def direction(row: Row) -> str:
    return _text(row, "direction").replace("-", " ") or "not read"


def verification(row: Row) -> str:
    value = _text(row, "verification")
    try:
        return Verification(value).label
    except ValueError:
        return value or "unknown"


# Aspect name -> (what kind of change it is, how it is read from a row).
ASPECTS: dict[str, tuple[str, Callable[[Row], str]]] = {
    "published level": ("level", published_level),
    "computed level": ("level", computed_level),
    "class": ("class", study_class),
    "verdict": ("verdict", verdict),
    "direction": ("verdict", direction),
    "verification": ("verification", verification),
}
TRACKED: dict[str, tuple[str, ...]] = {
    "recommendation": ("published level", "verdict", "direction", "computed level", "verification"),
    "study": ("class", "verification"),
    "verdict": ("verdict", "direction", "verification"),
    "question": ("computed level",),
    "reference": ("verification",),
    "knowledge": ("verification",),
}


def cells(row: Mapping[str, Any]) -> dict[str, str]:
    """An export row's values as the text a CSV cell holds (lists joined with '; ')."""
    from .export import cell

    return {name: cell(value) for name, value in row.items()}


def snapshot_rows(rows: Iterable[Mapping[str, Any]]) -> Snapshot:
    """The tracked aspects of every row whose type is tracked."""
    found: Snapshot = {}
    for raw in rows:
        row = cells(raw)
        kind = row.get("type", "")
        if kind in TRACKED:
            state = {"type": kind, "title": row.get("title", "")}
            state.update({name: ASPECTS[name][1](row) for name in TRACKED[kind]})
            found[row["id"]] = state
    return found


def snapshot(index: Any) -> Snapshot:
    """The state of the KB a SearchIndex (or index directory) holds."""
    from .export import rows
    from .query import Query

    return snapshot_rows(rows(index, Query.make("", {"type": list(TYPES)})))


def snapshot_of_package(package: Path, tables: Mapping[str, str]) -> Snapshot:
    """The state recorded in a release package's CSV tables (`tables`: table path -> record type,
    or '' when the table has a `type` column)."""
    found: list[dict[str, str]] = []
    for path, kind in tables.items():
        with (package / path).open(encoding="utf-8", newline="") as handle:
            found += [dict(row, type=kind) if kind else dict(row) for row in csv.DictReader(handle)]
    return snapshot_rows(found)


@dataclass(frozen=True)
class Change:
    """One aspect of one record, before and after ('' for a record that was not there)."""

    id: str
    type: str
    title: str
    aspect: str
    old: str
    new: str

    @property
    def kind(self) -> str:
        """level, class, verdict, verification, or record (added / removed)."""
        return ASPECTS[self.aspect][0] if self.aspect in ASPECTS else "record"


def compare(old: Snapshot, new: Snapshot) -> list[Change]:
    """Every tracked aspect that differs, and records added or removed, by type then id."""
    changes: list[Change] = []
    for rid in sorted(old.keys() | new.keys(), key=lambda i: ((new.get(i) or old[i])["type"], i)):
        before, after = old.get(rid), new.get(rid)
        state = after or before
        assert state is not None
        if before is None or after is None:
            changes.append(
                Change(
                    rid,
                    state["type"],
                    state["title"],
                    "record",
                    "" if before is None else "present",
                    "added" if before is None else "removed",
                )
            )
            continue
        for aspect in TRACKED.get(state["type"], ()):
            if before.get(aspect, "") != after.get(aspect, ""):
                changes.append(
                    Change(rid, state["type"], state["title"], aspect, before.get(aspect, ""), after[aspect])
                )
    return changes


@dataclass(frozen=True)
class Entry:
    """One commit that changed the KB's sources, with what it changed (oldest entry: baseline)."""

    commit: str
    date: str
    subject: str
    changes: tuple[Change, ...] = ()
    baseline: bool = False

    @property
    def day(self) -> str:
        return self.date[:10]


@dataclass(frozen=True)
class History:
    """Entries oldest first; first_seen: record id -> the date of the entry it appeared in;
    skipped: commits whose KB could not be loaded (their changes count in the next entry)."""

    entries: tuple[Entry, ...] = ()
    first_seen: dict[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"format": HISTORY_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> History:
        entries = tuple(
            Entry(
                e["commit"], e["date"], e["subject"], tuple(Change(**c) for c in e["changes"]), e["baseline"]
            )
            for e in data.get("entries", [])
        )
        return cls(entries, dict(data.get("first_seen", {})), tuple(data.get("skipped", ())))

    def for_record(self, record_id: str) -> list[tuple[Entry, list[Change]]]:
        """The entries that changed this record, newest first, with its changes."""
        found = [(e, [c for c in e.changes if c.id == record_id]) for e in reversed(self.entries)]
        return [(e, cs) for e, cs in found if cs]


def read_history(path: Path) -> History | None:
    """The history saved at `path`, or None (no file, or one of another format)."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return (
        History.from_json(data) if isinstance(data, dict) and data.get("format") == HISTORY_FORMAT else None
    )


def write_history(path: Path, history: History) -> None:
    from .fsio import atomic_write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(history.as_json(), ensure_ascii=False, indent=1) + "\n")


@dataclass(frozen=True)
class Status:
    """What a page says about one record: changed on a day because of a reason, or unchanged since."""

    id: str
    changed: bool
    day: str
    reason: str = ""
    commit: str = ""
    changes: tuple[Change, ...] = ()


def status_of(history: History, record_ids: Iterable[str]) -> list[Status]:
    """For each record the history knows: its last change (not counting its addition), or the day
    since which it is unchanged."""
    statuses: list[Status] = []
    for rid in dict.fromkeys(record_ids):
        changed = [(e, [c for c in cs if c.kind != "record"]) for e, cs in history.for_record(rid)]
        changed = [(e, cs) for e, cs in changed if cs]
        if changed:
            entry, found = changed[0]
            statuses.append(Status(rid, True, entry.day, entry.subject, entry.commit, tuple(found)))
        elif rid in history.first_seen:
            statuses.append(Status(rid, False, history.first_seen[rid][:10]))
    return statuses


# -- renderings --------------------------------------------------------------------------------


def _md(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def change_lines(changes: Iterable[Change]) -> list[str]:
    """Markdown list items, one per change."""
    lines = []
    for c in changes:
        if c.kind == "record":
            lines.append(f"- `{c.id}` ({c.type}): {c.new} — {_md(c.title)}")
        else:
            lines.append(f"- `{c.id}` ({c.type}) {c.aspect}: {_md(c.old) or '—'} → {_md(c.new) or '—'}")
    return lines


def changelog_markdown(title: str, changes: list[Change], history: History | None = None) -> str:
    """CHANGES.md: the comparison, then the commits behind it (newest first) when known."""
    out = [f"# {title}", ""]
    levels = sorted({c.id for c in changes if c.kind in ("level", "verdict")})
    out.append(
        f"{len(changes)} change(s) in {len({c.id for c in changes})} record(s); "
        f"level or verdict changed: {', '.join(f'`{i}`' for i in levels) or 'none'}."
    )
    out += ["", *change_lines(changes)] if changes else ["", "Nothing tracked changed."]
    if history is not None:
        out += ["", "## By commit", ""]
        for entry in reversed(history.entries):
            if entry.changes:
                out += [f"### {entry.day} · {entry.commit[:10]} · {_md(entry.subject)[:200]}", ""]
                out += [*change_lines(entry.changes), ""]
    return "\n".join(out).rstrip() + "\n"


def feed_xml(history: History, site_url: str, title: str = "TMS Evidence KB: what changed") -> bytes:
    """An Atom feed (feedgen) with one entry per commit that changed a tracked aspect, newest first."""
    from feedgen.feed import FeedGenerator

    base = site_url.rstrip("/")
    feed = FeedGenerator()
    feed.id(f"{base}/changes.atom")
    feed.title(title)
    feed.link(href=f"{base}/changes", rel="alternate")
    feed.link(href=f"{base}/changes.atom", rel="self")
    feed.author({"name": "TMS Evidence KB contributors"})
    entries = [e for e in history.entries if e.changes]
    feed.updated(entries[-1].date if entries else "1970-01-01T00:00:00+00:00")
    for entry in entries:  # feedgen puts the last added first
        item = feed.add_entry()
        item.id(f"{base}/changes#c-{entry.commit}")
        ids = sorted({c.id for c in entry.changes})
        item.title(f"{entry.day}: {', '.join(ids[:5])}{' and more' if len(ids) > 5 else ''} changed")
        item.link(href=f"{base}/changes#c-{entry.commit}")
        item.updated(entry.date)
        item.summary(entry.subject[:500])
        item.content("\n".join(change_lines(entry.changes)), type="text")
    data: bytes = feed.atom_str(pretty=True)
    return data
