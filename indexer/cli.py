"""`tmskb`: check, grade, index and search the knowledge base from a terminal or a script."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from . import cli_release, cli_write, pipeline
from .answers import answers
from .cli_common import (
    INDEX_OPTION,
    ROOT_OPTION,
    FacetCommand,
    build,
    converted,
    echo_safely,
    facet_values,
    make_settings,
    report_problems,
)
from .export import FORMATS, TABLES
from .fields import SORTS
from .query import MAX_PAGE_SIZE, Results, parse_params, results_json
from .questions import grade_report
from .stats import statistics


def load_checked(root: Path | None, ruleset_id: str | None = None) -> pipeline.KB:
    """The parsed, graded KB; problems are printed and exit 1."""
    kb = pipeline.load(make_settings(root), ruleset_id)
    if kb.problems:
        report_problems(kb.problems)
    return kb


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
    kb = load_checked(root)
    click.echo(
        f"OK: {len(kb.references)} references, {len(kb.studies)} studies, "
        f"{len(kb.recommendations)} recommendations, {len(kb.questions)} questions, "
        f"{len(kb.verdicts)} verdicts, {len(kb.scales)} scales, {len(kb.knowledge)} knowledge pages, "
        f"{sum(len(t) for t in kb.vocab.terms.values())} vocabulary terms, "
        f"{len(kb.rulesets)} rule set(s)"
    )


@cli.command()
@ROOT_OPTION
@click.option("--ruleset", "ruleset_id", help="Rule set id (default: the one marked default).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def grade(root: Path | None, ruleset_id: str | None, fmt: str) -> None:
    """Every question's verdicts (each source in its own scale), published vs computed levels.

    Example: tmskb grade --format json
    """
    kb = load_checked(root, ruleset_id)
    if kb.ruleset is None:
        known = ", ".join(kb.rulesets) or "none"
        raise click.ClickException(f"no rule set '{ruleset_id or 'default'}' (known: {known})")
    rows = [asdict(c) | {"id": rid} for rid, c in sorted(kb.comparisons().items())]
    report = grade_report(kb)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "ruleset": kb.ruleset.id,
                    "verification": kb.ruleset.verification,
                    **report,
                    "recommendations": rows,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    click.echo(f"Rule set: {kb.ruleset.label} — {kb.ruleset.verification}")
    print_questions(report)
    click.echo("")
    click.echo("Recommendations (published Lefaucheur level vs the level computed from linked studies):")
    width = max([len("recommendation"), *(len(r["id"]) for r in rows)])
    click.echo(f"{'recommendation':<{width}} {'published':<9} {'computed':<8} {'verdict':<8} reason")
    for row in rows:
        click.echo(
            f"{row['id']:<{width}} {row['published'] or '-':<9} {row['computed'] or '-':<8} "
            f"{row['verdict']:<8} {row['reason']}"
        )
    verdicts = [r["verdict"] for r in rows]
    others = sum(
        1 for q in report["questions"] for v in q["verdicts"] if v["type"] == "verdict" and not v["covers"]
    )
    click.echo(
        f"{len(report['questions'])} questions; {len(rows)} recommendations: "
        f"{verdicts.count('agree')} agree, "
        f"{verdicts.count('disagree')} disagree, {verdicts.count('n/a')} not comparable; "
        f"{others} verdicts in other sources' own scales (never converted, so never compared)"
    )


@cli.command("index")
@ROOT_OPTION
@INDEX_OPTION
@click.option("--force", is_flag=True, help="Rebuild from scratch even if nothing changed.")
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse to build when any record has problems (default: leave those records out and say so).",
)
def index_command(root: Path | None, index_dir: Path | None, force: bool, strict: bool) -> None:
    """Build the search index, re-indexing only what changed.

    Records with problems are left out (named on stderr; `tmskb check` lists every problem) and
    the rest is indexed, so a draft never stops a preview. Exit 0 when an index was built.

    Example: tmskb index --index-dir /tmp/tmskb-index
    """
    settings = make_settings(root, index_dir)
    started = time.perf_counter()
    report = build(settings, force=force, strict=strict)
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


def search_params(text: str, sort: str, page: str, page_size: str, facets: dict[str, Any]) -> dict[str, Any]:
    """The command's arguments as the search parameters the web and the API take."""
    return {"q": text, "sort": sort, "page": page, "page_size": page_size, **facet_values(facets)}


@cli.command("search", cls=FacetCommand)
@click.argument("text", required=False, default="")
@click.option("--sort", type=click.Choice(SORTS), default="evidence", show_default=True)
@click.option("--page", default="1", show_default=True, help="Page number (1 or more).")
@click.option("--page-size", default="20", show_default=True, help=f"Hits per page (1-{MAX_PAGE_SIZE}).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@ROOT_OPTION
@INDEX_OPTION
def search_command(
    text: str,
    sort: str,
    page: str,
    page_size: str,
    fmt: str,
    root: Path | None,
    index_dir: Path | None,
    **facets: tuple[str, ...],
) -> None:
    """Search records: free text, "phrases", field:value, AND/OR/NOT.

    Example: tmskb search "shingles" --level A --format json
    """
    settings = make_settings(root, index_dir)
    query = parse_params(search_params(text, sort, page, page_size, facets))
    with converted():
        from .search import SearchIndex  # not imported for the commands that do not search

        index = SearchIndex(settings.index_dir, budget_ms=settings.query_budget_ms)
        results = index.search(query)
    if not results.ok:
        raise click.ClickException(f"bad query: {results.error}")
    if fmt == "json":
        body = {**results_json(results), "answers": answers(index, results) if query.page == 1 else []}
        body["kb"] = dict(index.about().get("kb") or {})  # which KB answered, as the API says
        echo_safely(lambda: click.echo(json.dumps(body, indent=2, ensure_ascii=False)))
    else:
        echo_safely(lambda: print_table(results))


def print_questions(report: dict[str, Any]) -> None:
    """Each question, its sources' verdicts in their own scales, and its computed level."""
    for question in report["questions"]:
        click.echo(f"\n{question['id']}: {question['title']}")
        for v in question["verdicts"]:
            grades = "; ".join(f"{g['label']} [{g['scale']}]" for g in v["grades"]) or "grade not read"
            line = f"  {v['source']} ({v['type']} {v['id']}): {grades}"
            if v.get("computed") is not None or v.get("agreement"):
                line += f"; computed {v.get('computed') or '-'}: {v.get('agreement')}"
            if v["covers"]:
                line += f"  <- broader question: {v['covers']}"
            click.echo(line)
        computed = question["computed"]
        if computed:
            marks = [
                m
                for m, on in (
                    ("rests on lower bounds", computed["rests_on_lower_bounds"]),
                    ("from candidate links only", computed["from_candidates_only"]),
                )
                if on
            ]
            click.echo(
                f"  computed from its studies by {computed['ruleset']}: {computed['level'] or 'no level'}"
                + (f" ({'; '.join(marks)})" if marks else "")
            )


def print_table(results: Results) -> None:
    """Hits as a readable list with facet counts (human output)."""
    for expansion in results.expansions:
        click.echo(f"  read '{expansion['text']}' as {expansion['vocabulary']}: {expansion['label']}")
    if results.suggestion:
        click.echo(f"  did you mean: {results.suggestion}")
    click.echo(f"{results.total} result(s), page {results.query.page} of {results.page_count}")
    for hit in results.hits:
        click.echo(f"- [{hit.type}] {hit.id}: {hit.title}")
        if hit.note:
            click.echo(f"    {hit.note}")
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
    kb = load_checked(root)
    data = statistics(kb)
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
@click.option(
    "--server",
    type=click.Choice(["waitress", "gthread", "gevent"]),
    default="waitress",
    show_default=True,
    help="HTTP server in each worker: waitress buffers whole requests (slow clients cannot stall it); "
    "gthread is gunicorn's threaded worker.",
)
@click.option(
    "--max-requests",
    type=click.IntRange(0),
    help="Recycle a worker after this many requests (plus random jitter); 0: never. "
    "Default: 10,000 (indexer.serving.MAX_REQUESTS).",
)
@click.option(
    "--max-worker-memory",
    type=click.IntRange(0),
    help="Replace a worker whose resident memory passes this many MiB; 0: no ceiling. "
    "Default: 2048 (indexer.serving.MAX_WORKER_MEMORY_MB).",
)
def serve(
    root: Path | None,
    index_dir: Path | None,
    host: str,
    port: int,
    workers: int | None,
    threads: int,
    server: str,
    max_requests: int | None,
    max_worker_memory: int | None,
) -> None:
    """Build or refresh the index if needed, then serve the web app (gunicorn supervising workers).

    Example: tmskb serve --port 8000 --workers 2
    """
    from .serving import default_workers
    from .serving import serve as run
    from .web import create_app

    settings = make_settings(root, index_dir)
    report = build(settings)
    if report is not None:
        click.echo(f"Indexed {report.changed} change(s) into {report.generation}", err=True)
    workers = workers or default_workers()
    click.echo(
        f"Serving TMS Evidence KB on http://{host}:{port}/ with {workers} worker(s) x {threads} "
        f"thread(s), {server} (index {settings.index_dir})",
        err=True,
    )
    limits: dict[str, int] = {}
    if max_requests is not None:
        limits["max_requests"] = max_requests
    if max_worker_memory is not None:
        limits["max_memory_mb"] = max_worker_memory
    run(
        create_app({"INDEX_DIR": str(settings.index_dir)}),
        host,
        port,
        workers,
        threads,
        server=server,
        **limits,
    )


@cli.command("export", cls=FacetCommand)
@click.argument("text", required=False, default="")
@click.option("--sort", type=click.Choice(SORTS), default="evidence", show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    required=True,
    help="Output format (docs/export.md); bibtex, ris and csljson export the cited references.",
)
@click.option(
    "--table",
    type=click.Choice(TABLES),
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
@click.option("--allow-empty", is_flag=True, help="Export a view with no records instead of failing.")
@ROOT_OPTION
@INDEX_OPTION
def export_command(
    text: str,
    sort: str,
    fmt: str,
    table: str,
    output: Path | None,
    allow_empty: bool,
    root: Path | None,
    index_dir: Path | None,
    **facets: tuple[str, ...],
) -> None:
    """Export every hit of a search (or the evidence table) as a file; stdout gets only data.

    Example: tmskb export "neuropathic pain" --level A --format csv --output np.csv
    """
    from .export import export_bytes, write_atomic

    settings = make_settings(root, index_dir)
    query = parse_params(search_params(text, sort, "1", "20", facets))
    from .search import SearchIndex

    index = SearchIndex(settings.index_dir, budget_ms=settings.query_budget_ms)
    with converted():
        chunks = export_bytes(index, query, fmt, table, allow_empty=allow_empty)
        try:
            if output is not None:
                write_atomic(output, chunks)
                return
        except OSError as exc:
            raise click.ClickException(f"{output}: {exc.strerror or exc}") from None
        echo_safely(lambda: _write_chunks(chunks))


def _write_chunks(chunks: Any) -> None:
    for chunk in chunks:
        click.echo(chunk, nl=False)  # bytes go to the binary stdout, unchanged


for _command in (*cli_write.COMMANDS, *cli_release.COMMANDS):
    cli.add_command(_command)
