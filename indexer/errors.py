"""Typed errors of the library: problems as data, converted to messages by the fronts.

The CLI turns them into `Error: ...` and an exit code, the web app into a 400/404/503 page or
JSON body, indexer.api lets scripts catch them. Nothing in indexer/ exits the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Problem


class KBError(Exception):
    """Base class of every error the library raises on purpose."""


class ProblemsFound(KBError):
    """The knowledge base has problems (`tmskb check` lists them); nothing was built."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        files = len({p.path for p in self.problems})
        count = len(self.problems)
        super().__init__(f"{count} problem{'s' * (count != 1)} in {files} file{'s' * (files != 1)}")


class IndexMissing(KBError, RuntimeError):
    """There is no usable index at the configured place (or it cannot be read)."""


class QueryError(KBError, ValueError):
    """A query or parameter that cannot be run, with a message for the user."""


class ExportError(KBError, ValueError):
    """The export cannot be made (bad query, unknown format or table); nothing was produced."""
