"""`tmskb release` and `tmskb changes`: a citable data package, and what changed in the KB's
git history (cli.py adds them to the `tmskb` group)."""

from __future__ import annotations

from pathlib import Path

import click

from .cli_common import INDEX_OPTION, ROOT_OPTION, converted, make_settings


@click.command()
@click.option("--version", "version", help="The release's version, e.g. 0.2.0 (default: kb/release.json's).")
@click.option("--date", "day", help="Its date, YYYY-MM-DD (default: today).")
@click.option(
    "--since",
    help="Changelog against this git revision (commit, tag, HEAD~3) or an earlier release package.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the package into (default: releases/ beside kb/).",
)
@ROOT_OPTION
@INDEX_OPTION
def release(
    version: str | None,
    day: str | None,
    since: str | None,
    out_dir: Path | None,
    root: Path | None,
    index_dir: Path | None,
) -> None:
    """Write a versioned, dated data package (CSV tables and their schema, BibTeX, FHIR, changelog).

    The version and date go into kb/release.json, so the interface, the API and the exports
    show them; commit that file with the release.

    Example: tmskb release --version 0.2.0 --since v0.1.0
    """
    from .release import make_release

    settings = make_settings(root, index_dir)
    with converted():
        report = make_release(
            settings, version, day, out_dir, since, progress=lambda m: click.echo(m, err=True)
        )
    click.echo(f"Released {report.version} of {report.date}: {report.path}")
    click.echo(f"content hash sha256:{report.content_hash}")
    if report.since is None:
        click.echo("No changelog: give --since REVISION (or an earlier package) to compare.")
        return
    records = sorted({c.id for c in report.changes})
    click.echo(f"{len(report.changes)} change(s) in {len(records)} record(s) since {report.since}")
    levels = report.changed_levels
    click.echo(f"Level or verdict changed: {', '.join(levels) if levels else 'none'}")
    for line in _change_lines(report.changes):
        click.echo(line)


def _change_lines(found: list) -> list[str]:
    from .changes import change_lines

    return change_lines(found)


@click.command("changes")
@click.option("--record", "record_id", help="Only this record's changes.")
@ROOT_OPTION
@INDEX_OPTION
def changes_command(record_id: str | None, root: Path | None, index_dir: Path | None) -> None:
    """What changed in each commit of kb/ and references.bib (levels, classes, verdicts,
    verification), computed from git history; saved beside the index for the web's /changes page
    and its Atom feed.

    Example: tmskb changes --record lefaucheur2020-np-m1-hf
    """
    from .githistory import refresh_history

    settings = make_settings(root, index_dir)
    with converted():
        history = refresh_history(
            settings, progress=lambda n, total: click.echo(f"commit {n}/{total}", err=True)
        )
    entries = [e for e in reversed(history.entries) if e.changes]
    shown = 0
    for entry in entries:
        found = [c for c in entry.changes if record_id is None or c.id == record_id]
        if not found:
            continue
        shown += 1
        click.echo(f"{entry.day} {entry.commit[:10]} {entry.subject[:100]}")
        for line in _change_lines(found):
            click.echo(f"  {line}")
    what = f"for {record_id}" if record_id else "in the history"
    click.echo(f"{shown} commit(s) with tracked changes {what}; {len(history.entries)} commit(s) read")


COMMANDS = (release, changes_command)
