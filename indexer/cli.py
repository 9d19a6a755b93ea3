"""`tmskb`: check, grade, index and search the knowledge base from a terminal or a script."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click

from . import documents, pipeline
from . import index as idx
from .documents import FACETS
from .search import SORTS, IndexMissing, Query, Results, search
from .settings import Settings

ROOT_OPTION = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="KB root holding references.bib and kb/ (env TMSKB_ROOT).",
)
INDEX_OPTION = click.option(
    "--index-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Index directory (env TMSKB_INDEX_DIR; default instance/index).",
)


def make_settings(root: Path | None, index_dir: Path | None = None) -> Settings:
    """Settings from the environment, then command-line options."""
    settings = Settings.from_env()
    if root is not None:
        settings = Settings.for_root(root, settings.index_dir if index_dir is None else None)
        if index_dir is None and "TMSKB_INDEX_DIR" not in __import__("os").environ:
            settings = replace(settings, index_dir=(root / "instance" / "index").resolve())
    if index_dir is not None:
        settings = replace(settings, index_dir=index_dir.resolve())
    return settings


def report_problems(kb: pipeline.KB) -> None:
    """Print problems compiler-style to stderr, then a summary; exit 1 if there are any."""
    if not kb.problems:
        return
    for problem in kb.problems:
        click.echo(str(problem), err=True)
    files = len({p.path for p in kb.problems})
    count = len(kb.problems)
    click.echo(f"{count} problem{'s' * (count != 1)} in {files} file{'s' * (files != 1)}", err=True)
    sys.exit(1)


@click.group()
@click.version_option(package_name="tms-evidence-kb")
def cli() -> None:
    """TMS Evidence KB: graded rTMS evidence, searchable."""


@cli.command()
@ROOT_OPTION
def check(root: Path | None) -> None:
    """Validate references.bib and every record; exit 1 on problems.

    Example: tmskb check
    """
    kb = pipeline.load(make_settings(root))
    report_problems(kb)
    click.echo(
        f"OK: {len(kb.references)} references, {len(kb.studies)} studies, "
        f"{len(kb.recommendations)} recommendations, {len(kb.knowledge)} knowledge pages, "
        f"{sum(len(t) for t in kb.vocab.terms.values())} vocabulary terms, "
        f"{len(kb.rulesets)} rule set(s)"
    )


@cli.command()
@ROOT_OPTION
@click.option("--ruleset", "ruleset_id", help="Rule set id (default: the one marked default).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def grade(root: Path | None, ruleset_id: str | None, fmt: str) -> None:
    """Published vs computed level for every recommendation.

    Example: tmskb grade --format json
    """
    kb = pipeline.load(make_settings(root), ruleset_id)
    report_problems(kb)
    if kb.ruleset is None:
        known = ", ".join(kb.rulesets) or "none"
        raise click.ClickException(f"no rule set '{ruleset_id or 'default'}' (known: {known})")
    rows = [asdict(c) | {"id": rid} for rid, c in sorted(kb.comparisons().items())]
    if fmt == "json":
        click.echo(
            json.dumps(
                {"ruleset": kb.ruleset.id, "verification": kb.ruleset.verification, "recommendations": rows},
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    click.echo(f"Rule set: {kb.ruleset.label} — {kb.ruleset.verification}")
    width = max([len("recommendation"), *(len(r["id"]) for r in rows)])
    click.echo(f"{'recommendation':<{width}} {'published':<9} {'computed':<8} {'verdict':<8} reason")
    for row in rows:
        click.echo(
            f"{row['id']:<{width}} {row['published'] or '-':<9} {row['computed'] or '-':<8} "
            f"{row['verdict']:<8} {row['reason']}"
        )
    verdicts = [r["verdict"] for r in rows]
    click.echo(
        f"{len(rows)} recommendations: {verdicts.count('agree')} agree, "
        f"{verdicts.count('disagree')} disagree, {verdicts.count('n/a')} not comparable"
    )


def ensure_index(settings: Settings, *, force: bool = False, quiet: bool = False) -> idx.BuildReport | None:
    """Build or refresh the index if its sources changed; None when it was already current."""
    fingerprint = pipeline.fingerprint(settings)
    if not force and idx.is_current(settings.index_dir, fingerprint):
        return None
    kb = pipeline.load(settings)
    report_problems(kb)
    docs = documents.build_documents(kb)
    extra = documents.index_extras(kb)
    if quiet:
        return idx.build_index(docs, settings.index_dir, fingerprint=fingerprint, extra=extra, force=force)
    with click.progressbar(length=len(docs), label="Indexing", file=sys.stderr) as bar:
        return idx.build_index(
            docs, settings.index_dir, fingerprint=fingerprint, extra=extra, force=force, progress=bar.update
        )


@cli.command("index")
@ROOT_OPTION
@INDEX_OPTION
@click.option("--force", is_flag=True, help="Rebuild from scratch even if nothing changed.")
def index_command(root: Path | None, index_dir: Path | None, force: bool) -> None:
    """Build the search index, re-indexing only what changed.

    Example: tmskb index --index-dir /tmp/tmskb-index
    """
    settings = make_settings(root, index_dir)
    started = time.perf_counter()
    report = ensure_index(settings, force=force)
    if report is None:
        click.echo(
            f"Index is up to date ({settings.index_dir}); checked in {time.perf_counter() - started:.3f} s"
        )
        return
    kind = "full build" if report.full else "incremental update"
    click.echo(
        f"{kind} {report.generation}: {report.added} added, {report.updated} updated, "
        f"{report.deleted} deleted, {report.unchanged} unchanged in {report.seconds:.2f} s "
        f"({settings.index_dir})"
    )


def parse_filters(values: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Facet options as given on the command line (repeatable, comma-separated)."""
    return {
        name: tuple(v for value in vals for v in value.split(",") if v)
        for name, vals in values.items()
        if vals
    }


def facet_options(func: Any) -> Any:
    """--level, --indication, ... one repeatable option per facet."""
    for name in reversed(FACETS):
        func = click.option(
            f"--{name}", name, multiple=True, help=f"Filter by {name} (repeat or comma-separate for OR)."
        )(func)
    return func


@cli.command("search")
@click.argument("text", required=False, default="")
@facet_options
@click.option("--sort", type=click.Choice(SORTS), default="evidence", show_default=True)
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--page-size", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@ROOT_OPTION
@INDEX_OPTION
def search_command(
    text: str,
    sort: str,
    page: int,
    page_size: int,
    fmt: str,
    root: Path | None,
    index_dir: Path | None,
    **facets: tuple[str, ...],
) -> None:
    """Search records: free text, "phrases", field:value, AND/OR/NOT.

    Example: tmskb search "shingles" --level A --format json
    """
    settings = make_settings(root, index_dir)
    query = Query.make(text, parse_filters(facets), sort, page, page_size)
    try:
        results = search(settings.index_dir, query)
    except IndexMissing as exc:
        raise click.ClickException(str(exc)) from None
    if not results.ok:
        raise click.ClickException(f"bad query: {results.error}")
    if fmt == "json":
        click.echo(json.dumps(results_json(results), indent=2, ensure_ascii=False))
    else:
        print_table(results)


def results_json(results: Results) -> dict[str, Any]:
    """Results as plain JSON data (the same shape the web API returns)."""
    return {
        "ok": results.ok,
        "query": {
            "text": results.query.text,
            "filters": results.query.filter_map,
            "sort": results.query.sort,
            "page": results.query.page,
            "page_size": results.query.page_size,
        },
        "total": results.total,
        "page_count": results.page_count,
        "generation": results.generation,
        "understood": results.understood,
        "expansions": list(results.expansions),
        "suggestion": results.suggestion,
        "facets": {name: [asdict(v) for v in values] for name, values in results.facets.items()},
        "hits": [
            {
                "id": h.id,
                "type": h.type,
                "title": h.title,
                "summary": h.summary,
                "rank_reason": h.rank_reason,
                "score": h.score,
                "highlights": [[asdict(s) for s in frag] for frag in h.highlights],
                "level": h.fields.get("level") or None,
                "class": h.fields.get("class") or None,
                "year": h.fields.get("year") or None,
                "verification": h.fields.get("verification"),
            }
            for h in results.hits
        ],
    }


def print_table(results: Results) -> None:
    """Hits as a readable list with facet counts (human output)."""
    for expansion in results.expansions:
        click.echo(f"  read '{expansion['text']}' as {expansion['vocabulary']}: {expansion['label']}")
    if results.suggestion:
        click.echo(f"  did you mean: {results.suggestion}")
    click.echo(f"{results.total} result(s), page {results.query.page} of {results.page_count}")
    for hit in results.hits:
        click.echo(f"- [{hit.type}] {hit.id}: {hit.title}")
        click.echo(f"    {hit.rank_reason}")
    for name, values in results.facets.items():
        if values:
            click.echo(f"{name}: " + ", ".join(f"{v.label} ({v.count})" for v in values))


@cli.command()
@ROOT_OPTION
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def stats(root: Path | None, fmt: str) -> None:
    """Count references, recommendations and studies by status, guideline, level and class.

    Example: tmskb stats --format json
    """
    kb = pipeline.load(make_settings(root))
    report_problems(kb)
    data = pipeline.statistics(kb)
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for section, table in data.items():
        click.echo(f"{section}:")
        for key, value in table.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} {v}" for k, v in value.items())
                click.echo(f"  {key}: {inner}")
            else:
                click.echo(f"  {key}: {value}")


@cli.command()
@ROOT_OPTION
@INDEX_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes (default: one per core).")
@click.option(
    "--threads", type=click.IntRange(1, 64), default=4, show_default=True, help="Threads per worker."
)
def serve(
    root: Path | None, index_dir: Path | None, host: str, port: int, workers: int | None, threads: int
) -> None:
    """Build or refresh the index if needed, then serve the web app with gunicorn.

    Example: tmskb serve --port 8000 --workers 2
    """
    from app import create_app

    from .serving import default_workers
    from .serving import serve as run

    settings = make_settings(root, index_dir)
    report = ensure_index(settings)
    if report is not None:
        click.echo(f"Indexed {report.changed} change(s) into {report.generation}", err=True)
    workers = workers or default_workers()
    click.echo(
        f"Serving TMS Evidence KB on http://{host}:{port}/ with {workers} worker(s) x {threads} "
        f"thread(s) (index {settings.index_dir})",
        err=True,
    )
    run(create_app({"INDEX_DIR": str(settings.index_dir)}), host, port, workers, threads)


@cli.command("export")
@click.argument("text", required=False, default="")
@facet_options
@click.option("--sort", type=click.Choice(SORTS), default="evidence", show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(
        ["csv", "tsv", "json", "jsonl", "markdown", "latex", "xlsx", "bibtex", "ris", "csljson"]
    ),
    required=True,
    help="Output format (docs/export.md); bibtex, ris and csljson export the cited references.",
)
@click.option(
    "--table",
    type=click.Choice(["records", "evidence"]),
    default="records",
    show_default=True,
    help="records: one row per hit; evidence: the evidence table's recommendation rows.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE atomically instead of stdout.",
)
@ROOT_OPTION
@INDEX_OPTION
def export_command(
    text: str,
    sort: str,
    fmt: str,
    table: str,
    output: Path | None,
    root: Path | None,
    index_dir: Path | None,
    **facets: tuple[str, ...],
) -> None:
    """Export every hit of a search (or the evidence table) as a file; stdout gets only data.

    Example: tmskb export "neuropathic pain" --level A --format csv --output np.csv
    """
    from .api import open_kb
    from .export import ExportError, write_atomic

    kb = open_kb(root, index_dir)
    filters = parse_filters(facets)
    try:
        chunks = kb.export_bytes(fmt, text, table=table, sort=sort, **filters)
    except (ExportError, IndexMissing) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        if output is not None:
            write_atomic(output, chunks)
            return
        for chunk in chunks:
            click.echo(chunk, nl=False)  # bytes go to the binary stdout, unchanged
    except (ExportError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


# The commands that write to the KB live in their own module; importing it registers them.
from . import cli_write  # noqa: E402, F401
