"""What every `tmskb` command shares: the KB options, settings, and turning library errors
into messages and exit codes (the library raises; the CLI converts)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from . import index as idx
from .build import ensure_index
from .errors import KBError, ProblemsFound
from .fields import FACETS
from .settings import Settings, resolve_settings

ROOT_OPTION = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="KB root holding references.bib and kb/ (env TMSKB_ROOT).",
)
INDEX_OPTION = click.option(
    "--index-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Index directory (env TMSKB_INDEX_DIR; default <root>/instance/index).",
)


def make_settings(root: Path | None, index_dir: Path | None = None) -> Settings:
    """Options, then TMSKB_* variables, then defaults (indexer.settings.resolve_settings)."""
    return resolve_settings(root, index_dir)


def report_problems(problems: list[Any]) -> None:
    """Print problems compiler-style to stderr, then a summary; exit 1."""
    for problem in problems:
        click.echo(str(problem), err=True)
    click.echo(str(ProblemsFound(problems)), err=True)
    sys.exit(1)


@contextmanager
def converted() -> Iterator[None]:
    """Library errors as CLI messages: problems listed (exit 1), other KBErrors as 'Error: ...'."""
    try:
        yield
    except ProblemsFound as exc:
        report_problems(exc.problems)
    except KBError as exc:
        raise click.ClickException(str(exc)) from None


def build(
    settings: Settings, *, force: bool = False, quiet: bool = False, strict: bool = False
) -> idx.BuildReport | None:
    """ensure_index with a progress bar on stderr (unless quiet), errors converted; records left
    out of the index (leftout.partition) are named on stderr."""
    report = _build(settings, force=force, quiet=quiet, strict=strict)
    tell_left_out(settings)
    return report


def tell_left_out(settings: Settings) -> None:
    """Name on stderr the records the live index leaves out because they have problems."""
    items = idx.left_out(settings.index_dir)  # what the web notice reads
    if not items:
        return
    for item in items:
        click.echo(f"left out: {item['first']}", err=True)
    click.echo(
        f"{len(items)} record(s) left out of the index because they have problems: "
        "run tmskb check to list them all (tmskb index --strict refuses to build)",
        err=True,
    )


def _build(settings: Settings, *, force: bool, quiet: bool, strict: bool) -> idx.BuildReport | None:
    with converted():
        if quiet:
            return ensure_index(settings, force=force, strict=strict)
        bar: Any = None

        def start(total: int) -> None:
            nonlocal bar
            bar = click.progressbar(length=total, label="Indexing", file=sys.stderr)
            bar.__enter__()

        def step(n: int) -> None:
            if bar is not None:
                bar.update(n)

        try:
            return ensure_index(settings, force=force, strict=strict, progress=step, on_total=start)
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)


class FacetCommand(click.Command):
    """A command with one repeatable --<facet> option per facet of the field registry.

    The options are made when the command runs, so a facet registered later (fields.FACETS)
    appears in `--help` and is accepted without touching the CLI.
    """

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        names = {p.name for p in params}
        facets = [
            click.Option(
                [f"--{facet.name}"],
                multiple=True,
                help=f"Filter by {facet.title.lower()} (repeat or comma-separate for OR).",
            )
            for facet in FACETS
            if facet.name not in names
        ]
        return params[:-1] + facets + params[-1:]  # keep --help last


def facet_values(options: dict[str, Any]) -> dict[str, list[str]]:
    """The facet options a FacetCommand received, as search parameters."""
    return {name: list(options.get(name) or ()) for name in FACETS.names if options.get(name)}


def echo_safely(write: Callable[[], None]) -> None:
    """Run a writer of stdout; a closed pipe (`| head`) ends quietly like other Unix tools."""
    try:
        write()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)  # 128 + SIGPIPE, as a tool killed by the closed pipe would report
