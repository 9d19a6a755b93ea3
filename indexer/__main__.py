"""`python -m indexer` runs the tmskb command group."""

from .cli import cli

cli()
