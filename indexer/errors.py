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


class WriteError(KBError):
    """A file was not written (it could not be, or it was left alone on purpose).

    `path` is the file, `reason` what was found, `hint` what to do; the message says all three.
    """

    def __init__(self, path: object, reason: str, hint: str) -> None:
        self.path, self.reason, self.hint = str(path), reason, hint
        super().__init__(f"{path}: {reason}. {hint}")


class FileChanged(WriteError):
    """Another program changed the file between our read and our write; read it again and retry.

    `committed` is True when our new content was in place for a moment and was then replaced or
    overwritten by the other program: the caller must check whether its change survived.
    """

    def __init__(self, path: object, reason: str, *, committed: bool = False) -> None:
        self.committed = committed
        super().__init__(path, reason, "It was left as the other program saved it; run the command again")


class QueryTooExpensive(QueryError):
    """A query that would cost more than one request may: too many filter values, wildcards that
    match too many words, or more time than the query budget. The message names the limit and how
    to narrow the query; like every QueryError, the fronts answer it with a 400."""
