"""Fixtures: copies of the test KBs in tmp_path, their settings, a built index and a CLI runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer import index as idx
from indexer import pipeline
from indexer.settings import Settings

DATA = Path(__file__).parent / "data"
PROJECT = Path(__file__).parent.parent


def build(settings: Settings, force: bool = False) -> idx.BuildReport | None:
    """Build or refresh an index the way `tmskb index` does, without the progress bar."""
    from indexer.build import ensure_index

    return ensure_index(settings, force=force)


@pytest.fixture
def kb_root(tmp_path: Path) -> Path:
    """A writable copy of tests/data/kb."""
    root = tmp_path / "kb-root"
    shutil.copytree(DATA / "kb", root)
    return root


@pytest.fixture
def settings(kb_root: Path, tmp_path: Path) -> Settings:
    return Settings.for_root(kb_root, tmp_path / "index")


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of tests/data/kb, built once per session (tests must not change it)."""
    root = tmp_path_factory.mktemp("session-kb")
    shutil.copytree(DATA / "kb", root, dirs_exist_ok=True)
    settings = Settings.for_root(root, root / "index")
    kb = pipeline.load(settings)
    assert kb.problems == []
    from indexer.build import ensure_index

    ensure_index(settings)
    return settings.index_dir


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
