"""File-system helpers shared by every writer: atomic replacement, compare-and-swap, locks.

A file is replaced, never rewritten in place: the new bytes go to a temporary file
`.{name}.<random>.tmp` in the target's directory, are fsynced and renamed over the target, and
the directory is fsynced. A reader (or a crash) sees the old file or the new one, never a mix.
A writer killed between creating and renaming its temporary file leaves it behind;
`clean_stale_temps` removes such leftovers, and `write_under_lock` runs it before each write.

Our writers serialise on a lock; programs that do not take it (an editor saving
references.bib, in place or by renaming its own temporary file) are met by `read_snapshot`
and `replace_if_unchanged`: the writer builds its new content from the exact bytes it read and
validated, and the swap happens only if the file still holds them. Where the file system can
(Linux renameat2 RENAME_EXCHANGE) the swap keeps the old file under the temporary name, so a
save that lands during the swap is seen and put back rather than lost; the old file is watched
for GRACE seconds for writes of a program that opened it before the swap.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import pwd
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from .errors import FileChanged, KBError, WriteError

_THREAD_LOCKS: dict[Path, threading.Lock] = {}
GRACE = 0.05
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_HINTS = {
    errno.ENOSPC: "free some disk space, then run it again",
    errno.EDQUOT: "free some space within your disk quota, then run it again",
    errno.EFBIG: "the file size limit (ulimit -f) was reached; raise it, then run it again",
    errno.EROFS: "the file system is mounted read-only",
    errno.EACCES: "check the permissions of {dir} and of the file",
    errno.EPERM: "check the permissions of {dir} and of the file (and lsattr: not immutable)",
}

Identity = tuple[int, int, int, int]  # device, inode, size, mtime_ns


@dataclass(frozen=True)
class Snapshot:
    """The bytes of a file as read, and the identity of the file they were read from."""

    path: Path  # symlinks resolved
    data: bytes
    identity: Identity


def read_snapshot(path: str | os.PathLike[str], *, attempts: int = 5) -> Snapshot:
    """The bytes of `path`, read while nothing wrote to it (raises FileNotFoundError, WriteError).

    The file's identity must be the same before and after the read and still be the one the
    path names; else another program is writing it and we read again, a little later.
    """
    target = real_path(path)
    for attempt in range(attempts):
        with _as_write_error(target, "cannot read it"), open(target, "rb") as handle:
            before = _identity(os.fstat(handle.fileno()))
            data = handle.read()
            after = _identity(os.fstat(handle.fileno()))
            named = _identity(os.stat(target))
        if before == after == named and len(data) == after[2]:
            return Snapshot(target, data, after)
        time.sleep(0.01 * (attempt + 1))
    raise FileChanged(target, f"kept changing while it was read ({attempts} attempts)")


def replace_if_unchanged(snapshot: Snapshot, data: bytes) -> None:
    """Replace the file `snapshot` was read from with `data`, if it still holds exactly those bytes.

    Call under the lock every writer of the file takes. Keeps a symlink's target, the mode, the
    owner and the group. Raises FileChanged when another program changed the file (nothing of
    ours stays unless `committed`), WriteError when it cannot or may not be written.
    """
    target = snapshot.path
    with prepare_under_lock(target, data) as new, _as_write_error(target):
        try:
            old = open(target, "rb")  # the file we read, whatever name it has later
        except FileNotFoundError:
            raise FileChanged(target, "was removed since it was read") from None
        with old:
            if not _holds(old, snapshot):
                raise FileChanged(target, "changed since it was read")
            exchanged = _exchange(new.tmp, target)
            if not exchanged:
                os.replace(new.tmp, target)
            new.committed = True
            for pause in (0, GRACE):  # a program that opened the old file before the swap writes it now
                time.sleep(pause)
                moved = os.stat(new.tmp) if exchanged else None
                elsewhere = moved is not None and (moved.st_dev, moved.st_ino) != snapshot.identity[:2]
                if elsewhere or not _holds(old, snapshot):
                    _put_back(new, old, exchanged)
                    raise FileChanged(target, "was saved by another program while it was being replaced")
        if exchanged:
            os.unlink(new.tmp)
        fsync_directory(target.parent)
        with open(target, "rb") as now:
            if _identity(os.fstat(now.fileno())) != new.identity or now.read() != data:
                raise FileChanged(
                    target, "was saved by another program just after this write", committed=True
                )


def atomic_write(path: str | os.PathLike[str], data: bytes | str | Iterable[str | bytes]) -> None:
    """Replace the content of `path` with `data` (bytes, or chunks; str is written as UTF-8).

    An existing file keeps its permission bits and, where we may set them, its owner and group.
    A new file gets the mode `open()` would give it (0o666 less the umask). A symlink is kept:
    the file it points to is replaced. On any error the temporary file is removed and the error
    re-raised; the target is then untouched.
    """
    with Prepared(real_path(path), data, strict=False) as new:
        new.commit()


def write_under_lock(path: str | os.PathLike[str], data: bytes | str | Iterable[str | bytes]) -> None:
    """`atomic_write` of a knowledge-base file, after removing the leftovers of its killed writers.

    Only call this while holding the lock every writer of `path` takes (see clean_stale_temps).
    Stricter than atomic_write: a read-only file, or one whose owner or group the new file
    could not keep, is refused with a WriteError, as is any failure (disk full...).
    """
    with prepare_under_lock(path, data) as new, _as_write_error(new.target):
        new.commit()


def prepare_under_lock(path: str | os.PathLike[str], data: bytes | str | Iterable[str | bytes]) -> Prepared:
    """The new content of `path` in a temporary file beside it, to commit() (as write_under_lock).

    Writing several files this way first and committing them after makes a full disk fail
    before any of them changes.
    """
    target = real_path(path)
    with _as_write_error(target):
        clean_stale_temps(target.parent, target.name)
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(target)
            if os.statvfs(target.parent).f_flag & os.ST_RDONLY:
                raise WriteError(target, "is on a read-only file system", "Nothing was changed")
            if not st.st_mode & 0o222 or not os.access(target, os.W_OK):
                who = "" if not st.st_mode & 0o222 else f" for {_user(os.geteuid())}"
                raise WriteError(
                    target,
                    f"is read-only{who} (mode {st.st_mode & 0o777:o}, owner {_user(st.st_uid)})",
                    "It was left alone: make it writable (chmod u+w) if it should change, then run it again",
                )
        return Prepared(target, data, strict=True)


class Prepared:
    """New content for `target` in a fsynced temporary file beside it, with the target's mode
    and owner; invisible until commit(). As a context manager it removes the file if uncommitted."""

    def __init__(self, target: Path, data: bytes | str | Iterable[str | bytes], *, strict: bool) -> None:
        self.target, self.committed = target, False
        fd, self.tmp = _create_temp(target)
        try:
            with os.fdopen(fd, "wb") as out:
                chunks = [data] if isinstance(data, bytes | str) else data
                for chunk in chunks:
                    out.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
                out.flush()
                os.fsync(out.fileno())
                _keep_mode_and_owner(out.fileno(), target, strict)
                self.identity = _identity(os.fstat(out.fileno()))
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise

    def commit(self) -> None:
        """Rename the new content over the target and make the rename durable."""
        os.replace(self.tmp, self.target)
        self.committed = True
        fsync_directory(self.target.parent)

    def __enter__(self) -> Prepared:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.committed:
            self.tmp.unlink(missing_ok=True)


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


def write_error(path: str | os.PathLike[str], exc: OSError, what: str = "cannot write it") -> WriteError:
    """An OSError met while writing `path`, as a WriteError saying what to do."""
    where = Path(exc.filename) if isinstance(exc.filename, str) else Path(path)
    hint = _HINTS.get(exc.errno or 0, "").format(dir=where.parent) or "fix that, then run it again"
    reason = exc.strerror or str(exc)
    return WriteError(path, f"{what}: {reason}", f"Nothing was changed; {hint}")


@contextlib.contextmanager
def _as_write_error(path: str | os.PathLike[str], what: str = "cannot write it") -> Iterator[None]:
    """OSErrors raised inside as WriteErrors (FileNotFoundError of a read passes through)."""
    try:
        yield
    except KBError:
        raise
    except FileNotFoundError as exc:
        if what == "cannot read it":
            raise
        raise write_error(path, exc, what) from exc
    except OSError as exc:
        raise write_error(path, exc, what) from exc


def _identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _holds(handle: BinaryIO, snapshot: Snapshot) -> bool:
    """True if the open file `handle` still has the snapshot's identity and bytes."""
    fd = handle.fileno()
    same = _identity(os.fstat(fd)) == snapshot.identity
    return same and os.pread(fd, len(snapshot.data) + 1, 0) == snapshot.data


def _put_back(new: Prepared, old: BinaryIO, exchanged: bool) -> None:
    """Undo our swap after another program saved the file during it: its version stays."""
    if exchanged:
        _exchange(new.tmp, new.target)  # the other program's file back, ours to the temporary name
        if os.stat(new.tmp).st_ino != new.identity[1]:
            _exchange(new.tmp, new.target)  # a save renamed over ours meanwhile is newer: keep it
        os.unlink(new.tmp)
    else:  # ours replaced the file the other program wrote in place: write its bytes back
        fd = old.fileno()
        atomic_write(new.target, os.pread(fd, os.fstat(fd).st_size, 0))
    fsync_directory(new.target.parent)


def _libc_renameat2() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None


_renameat2 = _libc_renameat2()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two names atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


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


def _keep_mode_and_owner(fd: int, target: Path, strict: bool) -> None:
    """Give the temporary file `fd` the owner, group and permission bits of an existing `target`.

    Where we may not (only root may give a file away), `strict` refuses with a WriteError.
    """
    try:
        old = os.stat(target)
    except FileNotFoundError:
        return
    new = os.fstat(fd)
    if (new.st_uid, new.st_gid) != (old.st_uid, old.st_gid):
        try:
            os.fchown(fd, old.st_uid, old.st_gid)
        except PermissionError:
            if strict:
                raise WriteError(
                    target,
                    f"belongs to {_user(old.st_uid)} (group {old.st_gid}), and a new copy written by "
                    f"{_user(os.geteuid())} could not keep that owner",
                    "It was left alone: run the command as its owner",
                ) from None
    os.fchmod(fd, old.st_mode & 0o7777)  # after chown, which clears set-user/group-ID bits


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
