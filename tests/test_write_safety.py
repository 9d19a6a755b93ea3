"""Writes to references.bib by `tmskb add` and `tmskb rekey` against other writers and failures.

Issue 17, items 2, 7 and 8. Real processes and real kernel failures, no mocks of our code:

- the editors are two threads of a separate process: one saves references.bib in place
  (truncate, then write in chunks, as vim with backupcopy=yes or `cat > file` do), the other
  atomically (write its own temporary file, rename it over). Like real editors they reload
  when the file changed on disk since they read it, and they never take our lock;
- a full disk is a tmpfs of a few pages in a private mount namespace (`unshare --mount`, needs
  CAP_SYS_ADMIN); without one, RLIMIT_FSIZE (the kernel then fails write() with EFBIG);
- a read-only directory is chmod 0555. As root, the command runs with CAP_CHOWN,
  CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER dropped from its bounding set (prctl),
  so root obeys permission bits like any user and cannot give files away.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DATA, build

from indexer import index as idx
from indexer import pipeline
from indexer.cli import cli
from indexer.search import Query, search
from indexer.settings import Settings

TMSKB = str(Path(sys.executable).with_name("tmskb"))
PAPER = DATA / "import" / "paper.ris"  # garcia2023theta
ADDS = 50
MARK = b"% editor save "
# Root without the capabilities that let it ignore permission bits or give files away.
DROPPED_CAPS = (0, 1, 2, 3)  # CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
PR_CAPBSET_DROP = 24

EDITOR = r"""
import json, os, random, re, sys, threading, time

path, stop, rest_path = sys.argv[1:4]
rest = open(rest_path, "rb").read()
MARK = b"% editor save "
ENTRY = rb"\n@article\{race2021n\d{3},\n(?:  \w+ += \{[^\n]*\},?\n)+\}\n"
lock = threading.Lock()  # the two editors' own lock (ours is not taken: editors cannot)
state = {"last": 0, "saves": {"in-place": 0, "atomic": 0}, "reloads": 0, "transient": 0,
         "reverted": [], "truncated": [], "keys_twice": []}


def identity(st):
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def look(data):
    # (marker, whole): whole is False if the file is not marker + the original + complete entries
    head, _, body = data.partition(b"\n")
    marker = int(head[len(MARK):]) if head.startswith(MARK) and head[len(MARK):].isdigit() else -1
    whole = body.startswith(rest) and re.fullmatch(b"(?:" + ENTRY + b")*", body[len(rest):]) is not None
    keys = re.findall(rb"@article\{(race2021n\d{3}),", body)
    if len(keys) != len(set(keys)):
        state["keys_twice"].append(sorted({k.decode() for k in keys if keys.count(k) > 1}))
    return marker, whole


def read():
    st = os.stat(path)
    with open(path, "rb") as handle:
        data = handle.read()
    marker, whole = look(data)
    if not whole:
        state["truncated"].append(data[-300:].decode("utf-8", "replace"))
    if marker < state["last"]:
        # Missing: confirm after 0.2 s (an add puts back a save it caught within 0.05 s).
        time.sleep(0.2)
        again, _ = look(open(path, "rb").read())
        if again < state["last"]:
            state["reverted"].append([state["last"], marker])
            state["last"] = again
        else:
            state["transient"] += 1
        return None
    return st, data


def save_in_place(st, new):
    fd = os.open(path, os.O_WRONLY)
    try:
        if identity(os.fstat(fd)) != identity(st):
            return False
        os.ftruncate(fd, 0)
        for i in range(0, len(new), 512):
            os.pwrite(fd, new[i:i + 512], i)
            time.sleep(0.0002)
        return True
    finally:
        os.close(fd)


def save_atomically(st, new):
    tmp = path + ".editor-save"
    with open(tmp, "wb") as handle:
        handle.write(new)
    if identity(os.stat(path)) != identity(st):
        os.unlink(tmp)
        return False
    os.rename(tmp, path)
    return True


def editor(style, save, seed):
    rng = random.Random(seed)
    while not os.path.exists(stop):
        with lock:
            got = read()
            if got is not None:
                st, data = got
                new = MARK + b"%06d" % (state["last"] + 1) + b"\n" + data.partition(b"\n")[2]
                time.sleep(rng.uniform(0, 0.03))  # typing: an add may land meanwhile
                if save(st, new):
                    state["last"] += 1
                    state["saves"][style] += 1
                else:
                    state["reloads"] += 1  # "file changed on disk": read it again
        time.sleep(rng.uniform(0, 0.01))


threads = [threading.Thread(target=editor, args=("in-place", save_in_place, 1)),
           threading.Thread(target=editor, args=("atomic", save_atomically, 2))]
for t in threads:
    t.start()
for t in threads:
    t.join()
with lock:
    marker, _ = look(open(path, "rb").read())
    if marker != state["last"]:
        state["reverted"].append([state["last"], marker])
print(json.dumps(state))
"""


def add(runner, settings: Settings, *args: str):
    return runner.invoke(
        cli, ["add", *args, "--root", str(settings.root), "--index-dir", str(settings.index_dir)]
    )


def _reference(key: str, i: int) -> str:
    words = ["theta", "burst", "coil", "sham", "motor", "cortex", "pain", "relief", "trial", "dose"]
    title = " ".join(words[(i * 7 + j * 3) % 10] + str(i) for j in range(4))
    return (
        f"@article{{{key},\n  author = {{Racer{i:03d}, Rita}},\n  title = {{Editor race {title}}},\n"
        f"  journal = {{Race Journal}},\n  year = {{2021}}\n}}\n"
    )


def test_an_editor_saving_in_place_and_atomically_during_adds_loses_nothing(
    runner, settings: Settings, tmp_path: Path
) -> None:
    """Two editors save references.bib (in place, atomically) while `tmskb add` runs 50 times.

    Truncated: some state of the file an editor read, or the final file, is not the marker line,
    the original entries byte for byte, then whole entries written by adds.
    Reverted: an editor save that the file no longer holds when an editor next reads it, still
    0.2 s later (the newest save's marker is gone and an older one is back).
    Afterwards every add that succeeded has its entry in the file exactly once, every add that
    failed said so in one line and left no entry, and the file ends with the last save's marker.
    """
    bib = settings.bib_path
    rest = bib.read_bytes().partition(b"\n")[2]
    bib.write_bytes(MARK + b"000000\n" + rest)
    (tmp_path / "rest.bib").write_bytes(rest)
    (tmp_path / "editor.py").write_text(EDITOR)
    stop = tmp_path / "stop"
    build(settings)
    editor = subprocess.Popen(
        [sys.executable, str(tmp_path / "editor.py"), str(bib), str(stop), str(tmp_path / "rest.bib")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    results = {}
    started = time.monotonic()
    try:
        time.sleep(0.2)
        for i in range(ADDS):
            key = f"race2021n{i:03d}"
            (tmp_path / f"{key}.bib").write_text(_reference(key, i))
            results[key] = add(runner, settings, str(tmp_path / f"{key}.bib"))
    finally:
        stop.touch()
        out, err = editor.communicate(timeout=60)
    elapsed = time.monotonic() - started
    assert editor.returncode == 0, err
    state = json.loads(out)
    final = bib.read_bytes()
    failed = {k: r.output for k, r in results.items() if r.exit_code != 0}
    print(f"\n{len(results)} adds ({len(failed)} refused) in {elapsed:.1f} s; editor: {state}; {failed}")
    assert state["truncated"] == [] and state["reverted"] == [] and state["keys_twice"] == []
    assert sum(state["saves"].values()) >= ADDS and min(state["saves"].values()) >= 10
    assert final.startswith(MARK + b"%06d\n" % state["last"] + rest)
    for key, result in results.items():
        if result.exit_code == 0:
            assert final.count(f"@article{{{key},".encode()) == 1, (key, result.output)
        else:
            lines = result.output.strip().splitlines()
            assert len(lines) == 1 and "another program kept changing it" in lines[0], result.output
            assert f"@article{{{key},".encode() not in final or "check whether" in lines[0]
    assert len(failed) <= ADDS // 10, failed
    assert "Traceback" not in "".join(r.output for r in results.values())


# --- the compare-and-swap itself (indexer.fsio) ---------------------------------------------


def test_a_file_changed_since_it_was_read_is_not_replaced(tmp_path: Path) -> None:
    from indexer.errors import FileChanged
    from indexer.fsio import read_snapshot, replace_if_unchanged

    path = tmp_path / "references.bib"
    path.write_bytes(b"@misc{a,\n  title = {A}\n}\n")
    snapshot = read_snapshot(path)
    path.write_bytes(b"@misc{b,\n  title = {B}\n}\n")  # same size, in place: an editor's save
    with pytest.raises(FileChanged, match="changed since it was read"):
        replace_if_unchanged(snapshot, snapshot.data + b"\n@misc{c,\n  title = {C}\n}\n")
    assert path.read_bytes() == b"@misc{b,\n  title = {B}\n}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["references.bib"]


@pytest.mark.parametrize("exchange", [True, False], ids=["rename-exchange", "plain-rename"])
def test_a_save_into_the_old_file_during_the_swap_is_put_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    """An editor that opened the file before the swap and writes it just after: its bytes win,
    with renameat2(RENAME_EXCHANGE) and on a system without it (plain rename, then a rewrite)."""
    import threading

    from indexer import fsio
    from indexer.errors import FileChanged
    from indexer.fsio import read_snapshot, replace_if_unchanged

    if not exchange:
        monkeypatch.setattr(fsio, "_renameat2", None)

    path = tmp_path / "references.bib"
    path.write_bytes(b"old\n")
    snapshot = read_snapshot(path)
    editor = os.open(path, os.O_WRONLY)  # opened now, written after our swap

    def save() -> None:
        os.ftruncate(editor, 0)
        os.pwrite(editor, b"editor\n", 0)

    writer = threading.Timer(0.02, save)
    writer.start()
    try:
        with pytest.raises(FileChanged, match="saved by another program"):
            replace_if_unchanged(snapshot, b"old\nours\n")
    finally:
        writer.join()
        os.close(editor)
    assert path.read_bytes() == b"editor\n" and [p.name for p in tmp_path.iterdir()] == ["references.bib"]


# --- item 7: file identity ------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TMSKB_")}


def _tmskb(*args: str | Path, preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TMSKB, *map(str, args)], capture_output=True, text=True, env=_env(), preexec_fn=preexec, timeout=120
    )


def _one_error_line(stderr: str) -> str:
    """The CLI's whole stderr must be one `Error: ...` line, never a traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def test_knowledge_bases_sharing_a_symlinked_bibliography_share_its_file_and_lock(
    kb_root: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (kb_root / "references.bib").rename(shared / "references.bib")
    roots = [kb_root, tmp_path / "second"]
    shutil.copytree(kb_root, roots[1], symlinks=True)
    for root in roots:
        (root / "references.bib").symlink_to(Path("..") / "shared" / "references.bib")
    procs = []
    for i in range(8):
        key = f"link2021n{i}"
        (tmp_path / f"{key}.bib").write_text(_reference(key, i).replace("race", "link"))
        root = roots[i % 2]
        args = [
            TMSKB,
            "add",
            str(tmp_path / f"{key}.bib"),
            "--root",
            str(root),
            "--index-dir",
            str(root / "ix"),
        ]
        procs.append(subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, outputs
    text = (shared / "references.bib").read_text()
    assert all(text.count(f"@article{{link2021n{i},") == 1 for i in range(8))
    for root in roots:
        assert (root / "references.bib").is_symlink()
        assert not (root / "references.bib.lock").exists()  # the lock is the shared file's
    assert sorted(p.name for p in shared.iterdir()) == ["references.bib", "references.bib.lock"]
    rekeyed = _tmskb(
        "rekey", "alpha2010test", "alpha2010link", "--root", roots[1], "--index-dir", tmp_path / "i"
    )
    assert rekeyed.returncode == 0, rekeyed.stderr
    assert (roots[1] / "references.bib").is_symlink() and "@article{alpha2010link," in (
        shared / "references.bib"
    ).read_text()


@pytest.mark.parametrize("command", ["add", "rekey"])
def test_a_read_only_bibliography_is_refused_not_replaced(runner, settings: Settings, command: str) -> None:
    bib = settings.bib_path
    bib.chmod(0o444)
    before, inode = bib.read_bytes(), bib.stat().st_ino
    args = [str(PAPER)] if command == "add" else ["alpha2010test", "alpha2010ro"]
    result = runner.invoke(
        cli, [command, *args, "--root", str(settings.root), "--index-dir", str(settings.index_dir)]
    )
    assert result.exit_code == 1
    line = _one_error_line(result.stderr)
    assert "references.bib: is read-only (mode 444, owner " in line and "chmod u+w" in line
    assert bib.read_bytes() == before and bib.stat().st_ino == inode and bib.stat().st_mode & 0o777 == 0o444
    assert not list(settings.root.glob(".references.bib.*"))


def _drop_root_powers() -> None:
    """preexec_fn: this root process and its children obey permission bits and keep file owners."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in DROPPED_CAPS:
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            os._exit(97)


def _as_plain_user() -> Callable[[], None] | None:
    """What makes a command run with a plain user's powers: None when we are not root."""
    if os.geteuid() != 0:
        return None
    if subprocess.run(["true"], preexec_fn=_drop_root_powers).returncode != 0:
        pytest.skip("root here cannot drop capabilities (no CAP_SETPCAP), so permission bits do not apply")
    return _drop_root_powers


def test_a_bibliography_whose_owner_cannot_be_kept_is_refused(settings: Settings) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can make a file that belongs to another user")
    bib = settings.bib_path
    os.chown(bib, 1234, 1234)
    bib.chmod(0o666)  # writable by anyone: only the owner would change
    before = bib.read_bytes()
    result = _tmskb(
        "add", PAPER, "--root", settings.root, "--index-dir", settings.index_dir, preexec=_as_plain_user()
    )
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "belongs to uid 1234" in line and "could not keep that owner" in line, line
    assert bib.read_bytes() == before and (bib.stat().st_uid, bib.stat().st_gid) == (1234, 1234)
    # With the power to keep the owner (root), the add goes through and the owner stays.
    done = _tmskb("add", PAPER, "--root", settings.root, "--index-dir", settings.index_dir)
    assert done.returncode == 0, done.stderr
    assert (bib.stat().st_uid, bib.stat().st_gid, bib.stat().st_mode & 0o777) == (1234, 1234, 0o666)


# --- item 8: failures are messages ----------------------------------------------------------


def _tmpfs_works(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        done = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "mount",
                "-t",
                "tmpfs",
                "-o",
                "size=4k",
                "tmpfs",
                str(probe),
            ],
            capture_output=True,
            timeout=30,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _on_full_tmpfs(mount: Path, args: list[str | Path], out: Path) -> subprocess.CompletedProcess:
    """Run `tmskb args` with a full tmpfs over `mount` (holding a copy of its files); its
    files afterwards are copied to `out`. The mount exists only in the command's namespace."""
    source = out.with_name(out.name + "-source")
    shutil.copytree(mount, source, symlinks=True)
    out.mkdir()
    script = (
        'mount -t tmpfs -o size=512k tmpfs "$MNT" && cp -a "$SRC/." "$MNT/" || exit 90\n'
        'cat /dev/zero > "$MNT/.filler" 2>/dev/null\n'
        '"$@"; rc=$?\n'
        'rm -f "$MNT/.filler"; cp -a "$MNT/." "$OUT/"; exit $rc\n'
    )
    env = {**_env(), "MNT": str(mount), "SRC": str(source), "OUT": str(out)}
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", TMSKB, *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 90, done.stderr
    return done


def test_a_full_disk_leaves_the_bibliography_as_it_was(settings: Settings, tmp_path: Path) -> None:
    before = settings.bib_path.read_bytes()
    args: list[str | Path] = ["add", PAPER, "--root", settings.root, "--index-dir", settings.index_dir]
    if _tmpfs_works(tmp_path):
        result = _on_full_tmpfs(settings.root, args, tmp_path / "after")
        after, reason = (
            tmp_path / "after",
            "No space left on device. Nothing was changed; free some disk space",
        )
    else:  # no mount namespace: a file size limit makes the kernel refuse the write (EFBIG)
        limit = len(before)
        result = _tmskb(*args, preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
        after, reason = settings.root, "File too large. Nothing was changed; the file size limit"
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "references.bib: cannot write it: " + reason in line, line
    assert (after / "references.bib").read_bytes() == before
    assert not [p.name for p in after.iterdir() if p.name.startswith(".references.bib.")]


@pytest.mark.parametrize("lock_exists", [False, True], ids=["first-write", "lock-file-exists"])
def test_a_read_only_directory_is_a_message(settings: Settings, lock_exists: bool) -> None:
    plain_user = _as_plain_user()
    if lock_exists:
        (settings.root / "references.bib.lock").touch()
    before = settings.bib_path.read_bytes()
    settings.root.chmod(0o555)
    try:
        result = _tmskb(
            "add", PAPER, "--root", settings.root, "--index-dir", settings.index_dir, preexec=plain_user
        )
    finally:
        settings.root.chmod(0o755)
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    what = (
        "references.bib: cannot write it" if lock_exists else "references.bib.lock: cannot create or lock it"
    )
    assert f"{what}: Permission denied. Nothing was changed; check the permissions of {settings.root}" in line
    assert settings.bib_path.read_bytes() == before


@pytest.mark.parametrize("failure", ["disk-full", "read-only"])
def test_an_add_whose_index_cannot_be_updated_says_so_and_the_next_index_catches_up(
    settings: Settings, tmp_path: Path, failure: str
) -> None:
    build(settings)
    args: list[str | Path] = ["add", PAPER, "--root", settings.root, "--index-dir", settings.index_dir]
    if failure == "disk-full":
        if not _tmpfs_works(tmp_path):
            pytest.skip("needs a tmpfs in a private mount namespace (unshare --mount, CAP_SYS_ADMIN)")
        result = _on_full_tmpfs(settings.index_dir, args, tmp_path / "index-after")
        reason = "No space left on device"
    else:
        plain_user = _as_plain_user()
        settings.index_dir.chmod(0o555)
        try:
            result = _tmskb(*args, preexec=plain_user)
        finally:
            settings.index_dir.chmod(0o755)
        reason = "Permission denied"
    assert result.returncode == 1
    assert result.stdout == "Added 1 reference(s): garcia2023theta (not searchable yet)\n"
    line = _one_error_line(result.stderr)
    assert line.startswith("Error: the index was not updated (") and reason in line, line
    assert "garcia2023theta is in references.bib but not searchable until `tmskb index` runs" in line
    assert settings.bib_path.read_text().count("@article{garcia2023theta,") == 1
    assert not idx.is_current(settings.index_dir, pipeline.fingerprint(settings))
    again = _tmskb(*args)
    assert again.returncode == 1 and "suspected duplicate of garcia2023theta" in again.stderr
    indexed = _tmskb("index", "--root", settings.root, "--index-dir", settings.index_dir)
    assert indexed.returncode == 0, indexed.stderr
    hits = search(settings.index_dir, Query.make("theta burst central")).hits
    assert [h.type for h in hits] == ["reference"] and "garcia2023theta" in hits[0].id


def test_a_rekey_on_a_full_disk_changes_no_file(settings: Settings, tmp_path: Path) -> None:
    files = sorted(p for p in settings.root.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    args: list[str | Path] = [
        "rekey",
        "alpha2010test",
        "alpha2010full",
        "--root",
        settings.root,
        "--index-dir",
        settings.index_dir,
    ]
    if _tmpfs_works(tmp_path):
        result = _on_full_tmpfs(settings.root, args, tmp_path / "after")
        after = tmp_path / "after"
    else:
        limit = len(before[settings.bib_path])
        result = _tmskb(*args, preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
        after = settings.root
    assert result.returncode == 1
    assert "cannot write it" in _one_error_line(result.stderr)
    for path, data in before.items():
        assert (after / path.relative_to(settings.root)).read_bytes() == data, path
    assert not [p for p in after.rglob(".*.tmp")]
