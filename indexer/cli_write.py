"""`tmskb add`, `new` and `rekey`: the commands that write to the knowledge base (cli.py adds
them to the `tmskb` group)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .adding import AddReport, add_references, refresh_index
from .cli_common import INDEX_OPTION, ROOT_OPTION, converted, make_settings, tell_left_out
from .keys import ascii_fold
from .models import VERIFICATION_VALUES
from .schema import id_problem
from .settings import Settings
from .skeletons import SKELETONS, skeleton


@click.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(allow_dash=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["bibtex", "ris", "medline", "csljson", "csl-json"]),
    help="Input format (default: from the file name or its first line).",
)
@click.option(
    "--verification",
    type=click.Choice(VERIFICATION_VALUES),
    default="as-cited",
    show_default=True,
    help="How the new references were checked.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be added; write nothing.")
@click.option("--force", is_flag=True, help="Add suspected duplicates anyway.")
@click.option(
    "--skip-bad",
    is_flag=True,
    help="Add the entries that pass the checks and list the others (file:line: reason).",
)
@click.option(
    "--not-duplicate",
    is_flag=True,
    help="Add suspected duplicates and remember that they are different papers.",
)
@ROOT_OPTION
@INDEX_OPTION
def add(
    files: tuple[Path, ...],
    fmt: str | None,
    verification: str,
    dry_run: bool,
    force: bool,
    skip_bad: bool,
    not_duplicate: bool,
    root: Path | None,
    index_dir: Path | None,
) -> None:
    """Add references from BibTeX, RIS or PubMed MEDLINE (.nbib) files; '-' reads stdin.

    Example: tmskb add pubmed-export.nbib --verification abstract --dry-run
    """
    settings = make_settings(root, index_dir)
    inputs = [_read_input(path) for path in files]
    with converted():
        report = add_references(
            settings,
            inputs,
            fmt=fmt,
            verification=verification,
            force=force,
            not_duplicate=not_duplicate,
            dry_run=dry_run,
            skip_bad=skip_bad,
        )
    _report(report, dry_run, skip_bad)
    if dry_run:
        return
    if not report.indexed and report.index_error is None:
        report.index_error = refresh_index(settings)
    keys = ", ".join(key for key, _ in report.added)
    state = "searchable now" if report.indexed else "index refreshed"
    if report.index_error is None:
        click.echo(f"Added {len(report.added)} reference(s): {keys} ({state})")
        if report.skipped:  # the good entries are in; the failed ones still need the researcher
            failed = len({(p.path, p.line) for p in report.skipped})
            raise click.ClickException(f"{failed} entr{'y' if failed == 1 else 'ies'} failed (listed above)")
        return
    click.echo(f"Added {len(report.added)} reference(s): {keys} (not searchable yet)")
    raise click.ClickException(
        f"the index was not updated ({report.index_error}); {keys} "
        f"{'is' if len(report.added) == 1 else 'are'} in {settings.relative(settings.bib_path)} but "
        "not searchable until `tmskb index` runs: fix that, then run `tmskb index` (do not add again)"
    )


def _read_input(path: Path) -> tuple[str, bytes]:
    """The file's bytes (the library decodes them: UTF-8, a byte-order mark, a declared encoding)."""
    if str(path) == "-":
        return "<stdin>", sys.stdin.buffer.read()
    try:
        return str(path), path.read_bytes()
    except FileNotFoundError:
        raise click.ClickException(f"{path}: no such file") from None
    except IsADirectoryError:
        raise click.ClickException(f"{path}: is a directory") from None


SKIP_HINT = " --skip-bad adds the entries without problems."


def _report(report: AddReport, dry_run: bool, skip_bad: bool = False) -> None:
    """What the add found, file by file; exits 1 when nothing can be added."""
    for problem in report.skipped:
        click.echo(f"{problem} [skipped]", err=True)
    for candidate, hits in report.refused:
        for key, reason in hits:
            click.echo(
                f"{candidate.source}:{candidate.line}: {candidate.label}: suspected duplicate of "
                f"{key}: {reason}" + (" [skipped]" if report.added else ""),
                err=True,
            )
    if report.problems:
        for problem in report.problems:
            click.echo(str(problem), err=True)
        click.echo(
            f"Nothing added: {len(report.problems)} problem(s)."
            + ("" if skip_bad or not any(p.record for p in report.problems) else SKIP_HINT),
            err=True,
        )
        sys.exit(1)
    if report.refused and not report.added and not report.skipped:
        click.echo(
            "Nothing added. Use --force to add anyway, or --not-duplicate to record that they are "
            "different papers (--skip-bad adds the others).",
            err=True,
        )
        sys.exit(1)
    _per_file(report, dry_run)
    if not report.added:
        click.echo("Nothing added: no entry passed the checks.", err=True)
        sys.exit(1)
    _key_notes(report)
    if dry_run:
        keys = ", ".join(key for key, _ in report.added)
        click.echo(f"Would add {len(report.added)} reference(s): {keys}")
        click.echo(report.diff, nl=False)


def _per_file(report: AddReport, dry_run: bool) -> None:
    """One line per import file: imported, skipped as duplicates, failed (listed above)."""
    files: dict[str, list[int]] = {}
    for _, candidate in report.added:
        files.setdefault(candidate.source, [0, 0, 0])[0] += 1
    for candidate, _ in report.refused:
        files.setdefault(candidate.source, [0, 0, 0])[1] += 1
    for path, _ in sorted({(p.path, p.line) for p in report.skipped}):
        files.setdefault(path, [0, 0, 0])[2] += 1
    if len(files) == 1 and not (report.refused or report.skipped):
        return  # one file, all of it imported: the closing line says so
    verb = "to import" if dry_run else "imported"
    for name, (imported, duplicates, failed) in files.items():
        click.echo(
            f"{name}: {imported} {verb}, {duplicates} skipped as suspected duplicate(s), "
            f"{failed} failed" + (" (listed above)" if duplicates or failed else ""),
            err=True,
        )


def _key_notes(report: AddReport) -> None:
    """What became of the import files' own keys, and which entries were not written as they were."""
    for old, new in report.renamed:
        click.echo(
            f"{old} -> {new}: the file's key is not in the key pattern (surname, year, word, lower "
            f"case); written as {new}, and {old} is kept as an alias",
            err=True,
        )
    if report.kept:
        click.echo(f"Kept the file's key(s) (they fit the key pattern): {', '.join(report.kept)}", err=True)
    if report.rewritten:
        click.echo(
            "Written in the layout of references.bib, not as the file has them (they lean on @string "
            "macros, a crossref or biblatex names, which the entry alone cannot hold): "
            + ", ".join(report.rewritten),
            err=True,
        )
    if report.alias_error:
        click.echo(f"Warning: the old keys could not be kept as aliases ({report.alias_error})", err=True)


def _known_key(settings: Settings, key: str) -> str:
    """`key` if references.bib has it, else the key an alias (a renamed key) points at; a
    ClickException naming the closest key otherwise."""
    from .bib import parse_bib
    from .curation import read_aliases

    references, _ = parse_bib(settings.bib_path, settings.relative(settings.bib_path))
    if key in references:
        return key
    with converted():
        renamed = read_aliases(settings.kb_dir).get(key)
    if renamed in references:
        click.echo(f"'{key}' is now '{renamed}' (renamed; the old key stays an alias): using {renamed}")
        return str(renamed)
    import difflib

    close = difflib.get_close_matches(key, list(references), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else " (add it first with tmskb add)"
    raise click.ClickException(f"'{key}' is not in references.bib{hint}")


@click.command()
@click.argument("kind", type=click.Choice(sorted(SKELETONS)))
@click.option(
    "--ref", "key", required=True, help="BibTeX key the record is about (study) or from (guideline)."
)
@click.option("--id", "record_id", help="Record id (default: the key for a study).")
@ROOT_OPTION
def new(kind: str, key: str, record_id: str | None, root: Path | None) -> None:
    """Write a record skeleton with every field and a comment on each, to fill in.

    Example: tmskb new study --ref khedr2005jnnp
    """
    settings = make_settings(root)
    key = _known_key(settings, key)
    record_id = record_id or (key if kind == "study" else None)
    if not record_id:
        raise click.ClickException("give --id for a recommendation, e.g. --id lefaucheur2020-np-m1-hf")
    reason = id_problem(kind, record_id)
    if reason is not None:
        suggestion = ascii_fold(record_id) or "an-id"
        raise click.ClickException(
            f"'{record_id}' cannot be a record id: {reason} (give --id {suggestion}"
            + (f", or rename the key first: tmskb rekey {key} {suggestion})" if record_id == key else ")")
        )
    folder = "studies" if kind == "study" else "recommendations"
    path = settings.kb_dir / folder / f"{record_id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x", encoding="utf-8") as handle:  # never overwrites, even in a race
            handle.write(skeleton(kind, record_id, key))
    except FileExistsError:
        raise click.ClickException(f"{settings.relative(path)} already exists") from None
    click.echo(f"Wrote {settings.relative(path)}: fill in every field, then run tmskb check")


@click.command()
@click.argument("old")
@click.argument("new")
@ROOT_OPTION
@INDEX_OPTION
def rekey(old: str, new: str, root: Path | None, index_dir: Path | None) -> None:
    """Rename a BibTeX key everywhere (bibliography and records); the old key stays an alias.

    Example: tmskb rekey khedr2005jnnp khedr2005motor
    """
    from .adding import rekey as rename

    settings = make_settings(root, index_dir)
    try:
        with converted():
            changed = rename(settings, old, new)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"Renamed {old} -> {new} in {len(changed)} file(s): {', '.join(changed)}; '{old}' stays an alias"
    )
    problem = refresh_index(settings)
    if problem is not None:
        raise click.ClickException(
            f"the index was not updated ({problem}): fix that, then run `tmskb index` (do not rekey again)"
        )
    tell_left_out(settings)


COMMANDS = (add, new, rekey)
