"""File-system helpers shared by every writer: atomic replacement, leftover clean-up, locks.

A file is replaced, never rewritten in place: the new bytes go to a temporary file
`.{name}.<random>.tmp` in the target's directory, are fsynced and renamed over the target, and
the directory is fsynced. A reader (or a crash) sees the old file or the new one, never a mix.
A writer killed between creating and renaming its temporary file leaves it behind;
`clean_stale_temps` removes such leftovers, and `write_under_lock` runs it before each write.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

_THREAD_LOCKS: dict[Path, threading.Lock] = {}


def atomic_write(path: str | os.PathLike[str], data: bytes | str | Iterable[str | bytes]) -> None:
    """Replace the content of `path` with `data` (bytes, or chunks; str is written as UTF-8).

    An existing file keeps its permission bits and, where we may set them, its owner and group.
    A new file gets the mode `open()` would give it (0o666 less the umask). A symlink is kept:
    the file it points to is replaced. On any error the temporary file is removed and the error
    re-raised; the target is then untouched.
    """
    target = real_path(path)
    fd, tmp = _create_temp(target)
    try:
        with os.fdopen(fd, "wb") as out:
            chunks = [data] if isinstance(data, bytes | str) else data
            for chunk in chunks:
                out.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
            out.flush()
            os.fsync(out.fileno())
            _keep_mode_and_owner(out.fileno(), target)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def write_under_lock(path: str | os.PathLike[str], data: bytes | str | Iterable[str | bytes]) -> None:
    """`atomic_write`, after removing the leftovers of killed writers of `path`.

    Only call this while holding the lock every writer of `path` takes (see clean_stale_temps).
    """
    target = real_path(path)
    clean_stale_temps(target.parent, target.name)
    atomic_write(target, data)


def clean_stale_temps(directory: str | os.PathLike[str], name: str) -> list[Path]:
    """Remove the temporary files `.{name}.<random>.tmp` in `directory`; return those removed.

    Contract: the caller holds the lock that every writer of `directory/name` holds while it
    writes. Then no writer is between creating and renaming a temporary file, so each one left
    is a killed writer's, however fresh. Without that lock a live writer's file could go.
    """
    pattern = re.compile(rf"\.{re.escape(name)}\.[A-Za-z0-9_]+\.tmp")
    removed = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def real_path(path: str | os.PathLike[str]) -> Path:
    """`path` with symlinks resolved: the file a write must replace to keep the links."""
    return Path(os.path.realpath(path))


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def process_lock(path: Path) -> Iterator[None]:
    """Exclusive lock on `path` across processes and threads; it dies with its process.

    A POSIX record lock (lockf), not flock: Whoosh's multi-process writer forks, and forked
    children inherit flock locks, so a killed build's orphaned workers would hold it forever;
    lockf locks are not inherited. Record locks are per process, hence the thread lock too.
    They are also dropped when the process closes any descriptor of the file, so nothing else
    may open a lock file while it is held (the thread lock also serialises our own opens).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    thread_lock = _THREAD_LOCKS.setdefault(path.resolve(), threading.Lock())
    with thread_lock, open(path, "a+") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)


def _create_temp(target: Path) -> tuple[int, Path]:
    """A new temporary file beside `target`, created with mode 0o666.

    Not tempfile.mkstemp: it creates 0o600 files, which the rename would hand on to a new
    target. With 0o666 the kernel applies the umask (or the directory's default ACL) as for
    any new file, and we never have to read the umask, which only os.umask can, by changing
    it for every thread for a moment.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name beside {target}")


def _keep_mode_and_owner(fd: int, target: Path) -> None:
    """Give the temporary file `fd` the owner, group and permission bits of an existing `target`."""
    try:
        old = os.stat(target)
    except FileNotFoundError:
        return
    new = os.fstat(fd)
    if (new.st_uid, new.st_gid) != (old.st_uid, old.st_gid):
        with contextlib.suppress(PermissionError):  # only root may give a file away
            os.fchown(fd, old.st_uid, old.st_gid)
    os.fchmod(fd, old.st_mode & 0o7777)  # after chown, which clears set-user/group-ID bits
