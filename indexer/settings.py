"""Where the knowledge base and the index live: defaults, then TMSKB_* variables, then options."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def _default_root() -> Path:
    """The current directory if it holds a KB, else the checkout this package lives in."""
    cwd = Path.cwd()
    if (cwd / "references.bib").is_file() and (cwd / "kb").is_dir():
        return cwd
    return PACKAGE_ROOT


@dataclass(frozen=True)
class Settings:
    """Paths of one knowledge base and its index."""

    root: Path
    kb_dir: Path
    bib_path: Path
    index_dir: Path

    @classmethod
    def for_root(cls, root: Path, index_dir: Path | None = None) -> Settings:
        """Settings for a KB laid out as root/references.bib + root/kb/."""
        root = root.resolve()
        return cls(
            root, root / "kb", root / "references.bib", (index_dir or root / "instance" / "index").resolve()
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults overridden by TMSKB_ROOT, TMSKB_KB_DIR, TMSKB_BIB and TMSKB_INDEX_DIR."""
        env = os.environ if environ is None else environ
        settings = cls.for_root(Path(env["TMSKB_ROOT"]) if env.get("TMSKB_ROOT") else _default_root())
        overrides = {
            name: Path(env[var]).resolve()
            for name, var in (
                ("kb_dir", "TMSKB_KB_DIR"),
                ("bib_path", "TMSKB_BIB"),
                ("index_dir", "TMSKB_INDEX_DIR"),
            )
            if env.get(var)
        }
        return replace(settings, **overrides)

    def relative(self, path: Path) -> str:
        """Path as shown in messages: relative to the KB root when inside it."""
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)
