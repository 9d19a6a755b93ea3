"""indexer/fsio.py: atomic writes keep modes, owners and symlinks; leftovers of killed writers go;
KB files that are read-only are refused (tests/test_write_safety.py has the compare-and-swap)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import build

from indexer.cli import cli
from indexer.fsio import atomic_write, clean_stale_temps, write_under_lock
from indexer.settings import Settings


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test that sets it."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("mask", "expected"),
    [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)],
    ids=["umask-022", "umask-077", "umask-002"],
)
def test_a_new_file_gets_the_umask_mode(umask, tmp_path: Path, mask: int, expected: int) -> None:
    os.umask(mask)
    path = tmp_path / "new.txt"
    atomic_write(path, b"new\n")
    assert path.read_bytes() == b"new\n" and mode(path) == expected


def test_an_existing_file_keeps_its_mode(umask, tmp_path: Path) -> None:
    os.umask(0o022)
    path = tmp_path / "existing.txt"
    path.write_text("old\n")
    path.chmod(0o640)
    atomic_write(path, ["new ", b"text\n"])
    assert path.read_text() == "new text\n" and mode(path) == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file to another user")
def test_an_existing_file_keeps_its_owner_and_group(tmp_path: Path) -> None:
    path = tmp_path / "owned.txt"
    path.write_text("old\n")
    os.chown(path, 1234, 5678)
    atomic_write(path, "new\n")
    assert (path.stat().st_uid, path.stat().st_gid) == (1234, 5678)


def test_a_symlink_stays_a_symlink_and_its_target_is_written(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "data.txt"
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(Path("real") / "data.txt")
    atomic_write(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == str(Path("real") / "data.txt")
    assert target.read_text() == "new\n" and mode(target) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "real"]
    assert [p.name for p in (tmp_path / "real").iterdir()] == ["data.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_text("old\n")

    def chunks() -> Iterator[str]:
        yield "half a "
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        atomic_write(path, chunks())
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_clean_stale_temps_removes_only_the_files_temporary_files(tmp_path: Path) -> None:
    names = [
        ".references.bib.abc123.tmp",  # a killed writer's (tempfile.mkstemp name)
        ".references.bib.0f3a9c1e.tmp",  # a killed writer's (fsio name)
        ".references.bib.x.abc.tmp",  # a temporary file of 'references.bib.x'
        ".other.bib.abc123.tmp",
        "references.bib",
        "references.bib.lock",
        ".references.bib.tmp",
    ]
    for name in names:
        (tmp_path / name).write_text("")
    removed = clean_stale_temps(tmp_path, "references.bib")
    assert sorted(p.name for p in removed) == [".references.bib.0f3a9c1e.tmp", ".references.bib.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])


def test_write_under_lock_cleans_beside_a_symlinks_target(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.yaml").write_text("old\n")
    (tmp_path / "real" / ".a.yaml.abc123.tmp").write_text("half")
    (tmp_path / "a.yaml").symlink_to(tmp_path / "real" / "a.yaml")
    write_under_lock(tmp_path / "a.yaml", "new\n")
    assert [p.name for p in (tmp_path / "real").iterdir()] == ["a.yaml"]
    assert (tmp_path / "a.yaml").read_text() == "new\n"


def test_write_under_lock_refuses_a_read_only_file_and_leaves_it(tmp_path: Path) -> None:
    from indexer.errors import WriteError

    path = tmp_path / "key-aliases.yaml"
    path.write_text("old\n")
    path.chmod(0o444)
    with pytest.raises(WriteError, match=r"key-aliases.yaml: is read-only \(mode 444, owner .*chmod u\+w"):
        write_under_lock(path, "new\n")
    assert path.read_text() == "old\n" and mode(path) == 0o444
    assert [p.name for p in tmp_path.iterdir()] == ["key-aliases.yaml"]


@pytest.mark.parametrize("mask", [0o022, 0o077], ids=["umask-022", "umask-077"])
def test_export_output_gets_the_umask_mode(
    umask, runner, settings: Settings, tmp_path: Path, mask: int
) -> None:
    build(settings)
    os.umask(mask)
    out = tmp_path / "out.csv"
    args = ["--output", str(out), "--root", str(settings.root), "--index-dir", str(settings.index_dir)]
    result = runner.invoke(cli, ["export", "", "--format", "csv", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    assert out.read_text("utf-8").startswith("id,") and mode(out) == 0o666 & ~mask
