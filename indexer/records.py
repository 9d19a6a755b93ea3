"""Parse evidence records (kb/**/*.yaml except vocab/ and rulesets/) into typed records."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import schema, yamlio
from .models import (
    Arm,
    Effect,
    Grade,
    Intervention,
    Knowledge,
    Problem,
    Question,
    Recommendation,
    Record,
    Scale,
    ScaleValue,
    Section,
    Source,
    StatedClass,
    Study,
    StudyLink,
    Verdict,
)

RECORD_TYPES = ("study", "recommendation", "knowledge", "question", "verdict", "scale")
NOT_RECORDS = ("vocab", "rulesets", "curation")


def record_files(kb_dir: Path) -> Iterator[Path]:
    """Every record file under kb_dir, sorted, skipping vocabularies and rule sets.

    What `sorted(kb_dir.rglob("*.yaml"))` lists, in that order, at a third of its cost (an
    edit at 100k records lists every file)."""
    return as_paths(record_paths(kb_dir))


def record_paths(kb_dir: Path) -> list[str]:
    """The text of each path record_files lists, in its order, with no Path made: a no-op or
    an edit at 100k records only stats the files, and 50k Path objects (made and hashed as
    dict keys) cost more than the stats. Directories are walked with os.scandir, without
    following links to directories, each one's entries sorted by name: the order of sorting
    the paths by their parts, as Path compares them."""
    found: list[str] = []
    _walk(str(kb_dir), found, NOT_RECORDS)
    return found


def as_paths(texts: Iterable[str]) -> Iterator[Path]:
    """A Path for each of record_paths' texts, its folder parsed once."""
    folders: dict[str, Path] = {}
    for text in texts:
        head, _, name = text.rpartition(os.sep)
        if not head:  # a file of "." or of "/"
            yield Path(text)
            continue
        folder = folders.get(head)
        if folder is None:
            folder = folders[head] = Path(head)
        yield _child(folder, name)


def _child(folder: Path, name: str) -> Path:
    """folder / name, for a name read from the directory (no separator in it). pathlib's own
    glob uses `_make_child_relpath` for this, skipping the parse of the name: a third of the
    cost of listing 50k files."""
    make = getattr(folder, "_make_child_relpath", None)
    if make is None:
        return folder / name
    child: Path = make(name)
    with contextlib.suppress(AttributeError):  # pathlib's cache of str(path): every file is str'd
        child._str = _joined(str(folder), name)  # type: ignore[attr-defined]
    return child


def _joined(folder: str, name: str) -> str:
    """str(Path(folder) / name), as pathlib writes it."""
    if folder == ".":
        return name
    return folder + name if folder.endswith(os.sep) else f"{folder}{os.sep}{name}"


_IGNORED_ERRNOS = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)  # as pathlib's glob


def _walk(directory: str, found: list[str], skipped: tuple[str, ...] = ()) -> None:
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=_name)
    except OSError as exc:
        if exc.errno in _IGNORED_ERRNOS:
            return
        raise
    for entry in entries:
        name = entry.name
        if name in skipped:
            continue
        path = _joined(directory, name)
        if name.endswith(".yaml"):  # as rglob, a folder named *.yaml too (reading it fails)
            found.append(path)
        try:
            into = entry.is_dir() and not entry.is_symlink()
        except OSError as exc:
            if exc.errno not in _IGNORED_ERRNOS:
                raise
            into = False
        if into:
            _walk(path, found)


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


@dataclass
class ParsedRecords:
    """Every record file under a KB directory, read.

    `drafts` are records with schema problems, built from a stand-in whose invalid values were
    replaced (schema.stand_in): never indexed or graded, only checked, so that one run of
    `tmskb check` reports all of a record's problems. `repaired` names the replaced paths.
    """

    records: list[Record]
    problems: list[Problem]
    unreadable: set[str]
    drafts: list[Record] = field(default_factory=list)
    repaired: dict[str, frozenset[str]] = field(default_factory=dict)


FileResult = tuple[Record | None, list[Problem], frozenset[str] | None]  # read_record_file's result


def read_records(kb_dir: Path, shown_root: Path) -> ParsedRecords:
    """Read every record file; paths shown relative to shown_root."""
    return collect((p, read_record_file(p, shown_path(p, shown_root))) for p in record_files(kb_dir))


def collect(results: Iterable[tuple[Path, FileResult]]) -> ParsedRecords:
    """The records, drafts and problems of files read one by one (read_record_file), in order."""
    parsed = ParsedRecords([], [], set())
    for path, (record, found, repaired) in results:
        parsed.problems += found
        if record is None:
            parsed.unreadable.add(path.stem)
        elif repaired is not None:
            parsed.unreadable.add(path.stem)
            parsed.drafts.append(record)
            parsed.repaired[record.path] = repaired
        else:
            parsed.records.append(record)
    return parsed


def parse_records(kb_dir: Path, shown_root: Path) -> tuple[list[Record], list[Problem], set[str]]:
    """Records under kb_dir, every problem found, and the names of files that could not be read
    (so links to them are not reported a second time); paths shown relative to shown_root."""
    parsed = read_records(kb_dir, shown_root)
    return parsed.records, parsed.problems, parsed.unreadable


def shown_path(path: Path, root: Path) -> str:
    """How problems and records name a file: relative to root when it is under it."""
    return shown_paths([path], root)[0]


def shown_paths(paths: Iterable[Path | str], root: Path) -> list[str]:
    """shown_path of each (a build names every record file: the prefix is worked out once)."""
    prefix = os.path.join(root, "")
    cut = len(prefix)
    out = []
    for path in paths:
        text = str(path)
        if text.startswith(prefix):  # what relative_to gives, without its cost per file
            out.append(text[cut:])
            continue
        try:
            out.append(str(Path(path).relative_to(root)))
        except ValueError:
            out.append(text)
    return out


def parse_record_file(path: Path, shown: str) -> tuple[Record | None, list[Problem]]:
    """One record, or None with the problems that prevent reading it."""
    record, problems, repaired = read_record_file(path, shown)
    return (None if repaired is not None else record), problems


def read_record_file(path: Path, shown: str) -> tuple[Record | None, list[Problem], frozenset[str] | None]:
    """One record (a draft when the third item, its repaired paths, is not None) and its problems."""
    return read_record_bytes(path.read_bytes(), path.stem, shown)


def read_record_bytes(data: bytes, stem: str, shown: str) -> FileResult:
    """read_record_file of bytes already read (file `stem`.yaml, shown as `shown`)."""
    try:
        # As read_text would: universal newlines.
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        located = yamlio.load(text)
    except yamlio.YamlError as exc:
        return None, [Problem(shown, exc.line, stem, "", exc.reason, "fix the YAML syntax")], None
    except UnicodeDecodeError:
        return None, [Problem(shown, 1, stem, "", "not UTF-8", "save the file as UTF-8")], None
    return read_located(located, stem, shown)


def parse_located(located: yamlio.Located, stem: str, shown: str) -> tuple[Record | None, list[Problem]]:
    """Check a loaded document against its type's schema and build the record (None if invalid)."""
    record, problems, repaired = read_located(located, stem, shown)
    return (None if repaired is not None else record), problems


def read_located(
    located: yamlio.Located, stem: str, shown: str
) -> tuple[Record | None, list[Problem], frozenset[str] | None]:
    """Check a loaded document against its type's schema and build the record.

    A document with schema problems is built from its stand-in (a draft, with the repaired
    paths as third item) when one validates, else not at all.
    """
    data = located.data
    if not isinstance(data, dict):
        return (
            None,
            [
                Problem(
                    shown,
                    1,
                    stem,
                    "",
                    "a record must be a YAML mapping of fields",
                    "start with 'id:' and 'type:'",
                )
            ],
            None,
        )
    kind = data.get("type")
    if kind not in RECORD_TYPES:
        reason = "missing required field" if kind is None else f"'{kind}' is not a record type"
        return (
            None,
            [
                Problem(
                    shown,
                    located.line("type"),
                    stem,
                    "type",
                    reason,
                    f"expected one of {', '.join(RECORD_TYPES)}",
                )
            ],
            None,
        )
    record_id = str(data.get("id") or stem)
    problems = schema.validate(located, str(kind), shown, record_id)
    repaired: frozenset[str] | None = None
    if problems:
        stand = schema.stand_in(data, str(kind))
        if stand is None:
            return None, problems, None
        data, repaired = stand
        data["id"] = record_id  # problems name the record as the file does
    if data["id"] != stem and "id" not in (repaired or ()):
        problems.append(
            Problem(
                shown,
                located.line("id"),
                record_id,
                "id",
                f"id '{data['id']}' does not match the file name '{stem}.yaml'",
                f"rename the file to {data['id']}.yaml or change the id",
            )
        )
    build = _study if kind == "study" else _BUILDERS[str(kind)]
    return build(data, located.lines, shown), problems, repaired


def ids(value: Any) -> tuple[str, ...]:
    """A vocabulary field's value as a tuple of ids (records may write one id or a list)."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _source(data: dict[str, Any]) -> Source:
    return Source(location=data["location"], reference=data.get("reference"), url=data.get("url"))


def _arm(data: dict[str, Any]) -> Arm:
    freq = data.get("frequency_hz")
    return Arm(
        target=ids(data["target"]),
        side=ids(data["side"]),
        protocol=ids(data["protocol"]),
        frequency_hz=float(freq) if freq is not None else None,
        intensity=data.get("intensity"),
        pulses_per_session=data.get("pulses_per_session"),
        sessions=data.get("sessions"),
        sessions_per_week=data.get("sessions_per_week"),
        schedule=data.get("schedule"),
        maintenance=data.get("maintenance"),
        coil=ids(data.get("coil")),
        targeting=data.get("targeting"),
        neuronavigation=data.get("neuronavigation"),
        result=data.get("result"),
        label=data.get("label"),
    )


def _study(data: dict[str, Any], lines: dict[str, int], shown: str) -> Study:
    stated = data.get("stated_class")
    return Study(
        id=data["id"],
        path=shown,
        line=lines.get("id", 1),
        reference=data["reference"],
        condition=ids(data["condition"]),
        design=data["design"],
        randomised=data["randomised"],
        control=data["control"],
        sham_type=data["sham_type"],
        blinding=data["blinding"],
        patients_total=data["patients"]["total"],
        patients_active=data["patients"]["active"],
        flaws=tuple(data["flaws"]) if data["flaws"] is not None else None,
        arms=tuple(_arm(a) for a in data["arms"]),
        outcome_measure=data["outcome_measure"],
        result=data["result"],
        summary=data["summary"].strip(),
        stated_class=StatedClass(stated["class"], stated["reference"], stated["location"])
        if stated
        else None,
        source=_source(data["source"]),
        verification=data["verification"],
        notes=data.get("notes"),
        not_reported=tuple(data.get("not_reported") or ()),
        not_applicable=tuple(data.get("not_applicable") or ()),
        lines=dict(lines),
    )


def _recommendation(data: dict[str, Any], lines: dict[str, int], shown: str) -> Recommendation:
    return Recommendation(
        id=data["id"],
        path=shown,
        line=lines.get("id", 1),
        guideline=data["guideline"],
        indication=data["indication"],
        outcome_domain=data["outcome_domain"],
        population=data["population"],
        target=ids(data["target"]),
        side=ids(data["side"]),
        protocol=ids(data["protocol"]),
        coil=ids(data["coil"]),
        level=data["level"],
        level_bound=data.get("level_bound"),
        direction=data["direction"],
        statement=data["statement"].strip(),
        candidate_studies=tuple(data["candidate_studies"]),
        source=_source(data["source"]),
        verification=data["verification"],
        notes=data.get("notes"),
        lines=dict(lines),
        question=data["question"],
        counted_studies=_links(data.get("counted_studies")),
        search_cutoff=_cutoff(data.get("search_cutoff")),
    )


def _cutoff(value: Any) -> str | None:
    return str(value) if value is not None else None


def _links(items: Any) -> tuple[StudyLink, ...]:
    return tuple(StudyLink(i["study"], i["location"], i.get("note")) for i in items or ())


def _question(data: dict[str, Any], lines: dict[str, int], shown: str) -> Question:
    what = data["intervention"]
    return Question(
        id=data["id"],
        path=shown,
        line=lines.get("id", 1),
        title=data["title"].strip(),
        condition=data["condition"],
        intervention=Intervention(
            protocol=ids(what["protocol"]),
            target=ids(what["target"]),
            side=ids(what["side"]),
            coil=ids(what["coil"]),
        ),
        outcome_domain=data["outcome_domain"],
        population=data["population"],
        verification=data["verification"],
        notes=data.get("notes"),
        lines=dict(lines),
        candidate_studies=tuple(data.get("candidate_studies") or ()),
    )


def _verdict(data: dict[str, Any], lines: dict[str, int], shown: str) -> Verdict:
    effect = data["effect"]
    return Verdict(
        id=data["id"],
        path=shown,
        line=lines.get("id", 1),
        question=data["question"],
        source_reference=data["source_reference"],
        kind=data["kind"],
        grades=tuple(Grade(g["scale"], str(g["value"])) for g in data["grades"]),
        direction=data["direction"],
        statement=data["statement"].strip(),
        effect=Effect(**effect) if effect else None,
        search_cutoff=_cutoff(data["search_cutoff"]),
        inclusion=data["inclusion"],
        population=data["population"],
        candidate_studies=tuple(data["candidate_studies"]),
        counted_studies=_links(data["counted_studies"]),
        source=_source(data["source"]),
        verification=data["verification"],
        notes=data.get("notes"),
        lines=dict(lines),
    )


def _scale(data: dict[str, Any], lines: dict[str, int], shown: str) -> Scale:
    return Scale(
        id=data["id"],
        path=shown,
        line=lines.get("id", 1),
        name=data["name"],
        measures=data["measures"],
        values=tuple(ScaleValue(str(v["value"]), v["label"], v["meaning"]) for v in data["values"]),
        source=_source(data["source"]),
        verification=data["verification"],
        notes=data.get("notes"),
        lines=dict(lines),
    )


def _knowledge(data: dict[str, Any], lines: dict[str, int], shown: str) -> Knowledge:
    sections = tuple(
        Section(
            s["heading"],
            s["text"].strip(),
            s["verification"],
            tuple(_source(x) for x in s.get("sources") or ()),
        )
        for s in data["sections"]
    )
    return Knowledge(
        id=data["id"],
        path=shown,
        line=lines.get("id", 1),
        title=data["title"],
        summary=data["summary"].strip(),
        indication=ids(data["indication"]),
        references=tuple(data["references"]),
        sections=sections,
        source=_source(data["source"]),
        verification=data["verification"],
        lines=dict(lines),
    )


_BUILDERS: dict[str, Any] = {
    "study": _study,
    "recommendation": _recommendation,
    "knowledge": _knowledge,
    "question": _question,
    "verdict": _verdict,
    "scale": _scale,
}
