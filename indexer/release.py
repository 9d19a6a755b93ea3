"""`tmskb release`: a versioned, dated, citable data package of the knowledge base.

The package is a Frictionless Data package (validated with the `frictionless` library before it
is kept): the export tables as CSV with their schema in datapackage.json, the bibliography as
BibTeX, the whole KB as a FHIR R5 Bundle, and what changed since an earlier state (a git
revision or an earlier package) as CHANGES.md and changes.json. Every resource carries its
sha256 hash; the package carries the KB's content hash (pipeline.fingerprint of the sources,
kb/release.json excluded), so two packages of the same data have the same content hash.

The package is written into a temporary directory beside its target and renamed into place
only when it is complete and valid: a failed release leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date as Date
from pathlib import Path
from typing import Any

from . import changes, githistory
from .build import ensure_index
from .export import columns, export_bytes
from .fsio import atomic_write
from .kbversion import RELEASE_FILE, ReleaseError, check_date, check_version, publish, read_release
from .query import Query
from .search import SearchIndex
from .settings import Settings

PACKAGE_NAME = "tms-evidence-kb"
TABLES = {"records": "data/records.csv", "evidence": "data/evidence.csv"}
# What each table's rows are: the package's record-type lookup for changes.snapshot_of_package.
RECORD_TABLE = TABLES["records"]
ALL_TYPES = list(changes.TYPES) + ["scale"]


@dataclass(frozen=True)
class ReleaseReport:
    """What `tmskb release` wrote."""

    path: Path
    version: str
    date: str
    content_hash: str
    since: str | None
    changes: list[changes.Change]

    @property
    def changed_levels(self) -> list[str]:
        """Records whose level or verdict changed since the earlier state."""
        return sorted({c.id for c in self.changes if c.kind in ("level", "verdict")})


def write_release_file(settings: Settings, version: str, day: str) -> None:
    """kb/release.json with this version and date (atomically)."""
    body = json.dumps({"version": check_version(version), "date": check_date(day)}, indent=1) + "\n"
    atomic_write(settings.kb_dir / RELEASE_FILE, body)


def make_release(
    settings: Settings,
    version: str | None = None,
    day: str | None = None,
    out_dir: Path | None = None,
    since: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReleaseReport:
    """Write the package of the KB as it is now into `out_dir`/tms-evidence-kb-<version>.

    `version` and `day` (default: today) are recorded in kb/release.json first, so the index,
    the interface and every export show them; without `version` the one in kb/release.json is
    used. `since` (a git revision, or the path of an earlier package) gives the changelog.
    Raises ReleaseError (or ProblemsFound: a release is built strictly, nothing left out).
    """
    tell = progress or (lambda _: None)
    current = read_release(settings.kb_dir)
    version = check_version(version or current.get("version") or _missing_version())
    day = check_date(day or Date.today().isoformat())
    if current != {"version": version, "date": day}:
        write_release_file(settings, version, day)
    tell("indexing the knowledge base (strict: a release leaves nothing out)")
    ensure_index(settings, strict=True)
    publish(settings.kb_dir, settings.index_dir)
    index = SearchIndex(settings.index_dir)
    left_out = index.about()["left_out"]
    if left_out:
        raise ReleaseError(
            f"{len(left_out)} record(s) have problems and a release leaves nothing out: "
            "run tmskb check, fix them, then release again"
        )
    content_hash = str(index.generation().manifest.get("fingerprint") or "")
    target = (out_dir or settings.root / "releases") / f"{PACKAGE_NAME}-{version}"
    if target.exists():
        raise ReleaseError(
            f"{target} already exists: a release is never overwritten (choose another version)"
        )
    new = changes.snapshot(index)
    found: list[changes.Change] = []
    if since is not None:
        tell(f"comparing with {since}")
        found = changes.compare(_earlier(settings, since), new)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write_package(work, settings, index, version, day, content_hash, since, found)
        work.chmod(_directory_mode())  # mkdtemp makes it private; a release is for readers
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ReleaseReport(target, version, day, content_hash, since, found)


def _directory_mode() -> int:
    """0o777 less the process's umask: the mode a plain mkdir would give."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def _missing_version() -> str:
    raise ReleaseError("give --version (e.g. --version 0.1.0): kb/release.json has none yet")


def _earlier(settings: Settings, since: str) -> changes.Snapshot:
    """The state to compare with: an earlier package's tables, or the KB at a git revision."""
    package = Path(since)
    if (package / "datapackage.json").is_file():
        return changes.snapshot_of_package(package, {RECORD_TABLE: ""})
    where = githistory.layout(settings)
    commit = githistory.resolve(where, since)
    state = githistory.snapshot_at(where, commit.sha)
    if state is None:
        raise ReleaseError(
            f"the KB at {since} ({commit.sha[:10]}) cannot be read: no kb/ there, "
            "or its bibliography is unreadable"
        )
    return state


def _write_package(
    work: Path,
    settings: Settings,
    index: SearchIndex,
    version: str,
    day: str,
    content_hash: str,
    since: str | None,
    found: list[changes.Change],
) -> None:
    everything = Query.make("", {"type": ALL_TYPES})
    (work / "data").mkdir()
    for table, path in TABLES.items():
        _write(work / path, export_bytes(index, everything, "csv", table))
    shutil.copyfile(settings.bib_path, work / "references.bib")
    _write(work / "tms-evidence-kb.fhir.json", export_bytes(index, everything, "fhir"))
    title = f"TMS Evidence KB {version} ({day})" + (f": changes since {since}" if since else "")
    (work / "CHANGES.md").write_text(
        changes.changelog_markdown(title, found)
        if since
        else f"# {title}\n\nNo earlier state was given (--since).\n",
        "utf-8",
    )
    (work / "changes.json").write_text(
        json.dumps({"since": since, "changes": [c.__dict__ for c in found]}, ensure_ascii=False, indent=1)
        + "\n",
        "utf-8",
    )
    _write_descriptor(work, version, day, content_hash, since, found)


def _write(path: Path, chunks: Iterable[bytes]) -> None:
    with path.open("wb") as handle:
        for chunk in chunks:
            handle.write(chunk)


def _write_descriptor(
    work: Path, version: str, day: str, content_hash: str, since: str | None, found: list[changes.Change]
) -> None:
    """datapackage.json, described and validated with frictionless (ReleaseError if invalid)."""
    try:
        from frictionless import Package, Resource, Schema, validate
    except ImportError:
        needed = "tmskb release needs frictionless: pip install 'tms-evidence-kb[release]'"
        raise ReleaseError(needed) from None

    resources = []
    for table, path in TABLES.items():
        schema = Schema.from_descriptor({"fields": [{"name": c, "type": "string"} for c in columns(table)]})
        resource = Resource(path=path, name=table, schema=schema, basepath=str(work))
        resource.infer(stats=True)
        resources.append(resource)
    for name, path, fmt, media in (
        ("references", "references.bib", "bib", "application/x-bibtex"),
        ("fhir-bundle", "tms-evidence-kb.fhir.json", "json", "application/fhir+json"),
        ("changes", "CHANGES.md", "md", "text/markdown"),
        ("changes-data", "changes.json", "json", "application/json"),
    ):
        resource = Resource(path=path, name=name, format=fmt, mediatype=media, basepath=str(work))
        resource.infer(stats=True)
        resources.append(resource)
    package = Package(
        name=PACKAGE_NAME,
        title="TMS Evidence KB",
        description="Evidence on transcranial magnetic stimulation: questions, verdicts, studies, sources.",
        version=version,
        created=f"{day}T00:00:00Z",
        resources=resources,
        basepath=str(work),
    )
    descriptor: dict[str, Any] = package.to_descriptor()
    for resource in descriptor["resources"]:
        resource.pop("basepath", None)
    descriptor["tmskb"] = {
        "version": version,
        "date": day,
        "content_hash": f"sha256:{content_hash}",
        "since": since,
        "changed_records": sorted({c.id for c in found}),
        "level_or_verdict_changed": sorted({c.id for c in found if c.kind in ("level", "verdict")}),
    }
    written = work / "datapackage.json"
    written.write_text(json.dumps(descriptor, ensure_ascii=False, indent=1) + "\n", "utf-8")
    report = validate(str(written))
    if not report.valid:
        errors = [f"{e[0]}: {e[1]}" for e in report.flatten(["type", "note"])][:5]
        raise ReleaseError(f"the data package does not validate: {'; '.join(errors)}")
