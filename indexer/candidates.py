"""What every import reader produces: a Candidate (one reference not yet in references.bib) and
its Names.

They live apart from the readers so that a reader in its own module (csljson.py) can build them
while importers.read_candidates, which dispatches to every reader, imports that module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .models import Problem


class Name(NamedTuple):
    """One person (or, `corporate`, one body such as a working group), in plain text."""

    last: str
    first: str = ""
    jr: str = ""
    corporate: bool = False


@dataclass
class Candidate:
    """A reference read from an import file, not yet in references.bib."""

    entry_type: str
    fields: dict[str, str]  # plain Unicode text
    authors: list[Name]
    source: str  # file as shown in messages
    line: int
    given_key: str | None = None
    problems: list[Problem] = field(default_factory=list)
    editors: list[Name] = field(default_factory=list)
    bibtex: dict[str, str] = field(default_factory=dict)  # a BibTeX import's own source text, to write
    raw: str = ""  # a BibTeX import's whole entry as written: written verbatim when it reads back the same

    @property
    def label(self) -> str:
        """How the record is named in messages: its key, else its first author and year."""
        if self.given_key:
            return self.given_key
        who = self.authors[0][0] if self.authors else "?"
        return f"{who} {self.fields.get('year', '?')}"
