"""The researcher's loop, run as a researcher runs it (issue 15): `tmskb add` an export whose key
is mixed-case, `new` a study for it, `check`, `rekey`, `index`, then `serve` with the draft still
unfinished. Every step is the installed `tmskb` in its own process, on a copy of the test KB."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import DATA

TMSKB = str(Path(sys.executable).with_name("tmskb"))
# As a reference manager exports it (Zotero-style key, LaTeX, a double dash, two-space layout).
EXPORT = (
    "@article{Quesada2018,\n"
    "  author = {Quesada, Carla and Cr{\\'e}ac'h, Christelle},\n"
    "  title = {Robot-guided stimulation of a test cohort},\n"
    "  journal = {Test Journal},\n"
    "  year = {2018},\n"
    "  pages = {10--19}\n"
    "}"
)


def tmskb(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [TMSKB, *args, "--root", str(root)]
    if args[0] not in ("new", "check"):
        command += ["--index-dir", str(root / "index")]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str, str]:
    """Status, final URL (after redirects) and body."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.geturl(), response.read().decode("utf-8")


def test_add_new_check_rekey_index_serve_with_a_mixed_case_key(tmp_path: Path) -> None:
    root = tmp_path / "kb-root"
    shutil.copytree(DATA / "kb", root)
    export = tmp_path / "export.bib"
    export.write_text(EXPORT, encoding="utf-8")

    added = tmskb(root, "add", str(export))
    assert added.returncode == 0, added.stderr
    assert "Quesada2018 -> quesada2018robot" in added.stderr and "kept as an alias" in added.stderr
    bib = (root / "references.bib").read_text("utf-8")
    written = EXPORT.replace("@article{Quesada2018,", "@article{quesada2018robot,")
    assert written + "\n" in bib  # the import's own text, byte for byte, apart from the key line

    new = tmskb(root, "new", "study", "--ref", "Quesada2018")  # the file's key still works
    assert new.returncode == 0, new.stderr
    draft = root / "kb" / "studies" / "quesada2018robot.yaml"
    assert "reference: quesada2018robot" in draft.read_text("utf-8")

    check = tmskb(root, "check")
    assert check.returncode == 1
    problems = [line for line in check.stderr.splitlines() if line.startswith("kb/")]
    assert problems and all(line.startswith("kb/studies/quesada2018robot.yaml:") for line in problems)

    rekey = tmskb(root, "rekey", "quesada2018robot", "quesada2018guided")
    assert rekey.returncode == 0, rekey.stderr
    assert "Renamed quesada2018robot -> quesada2018guided" in rekey.stdout
    assert "reference: quesada2018guided" in draft.read_text("utf-8")

    index = tmskb(root, "index")
    assert index.returncode == 0, index.stderr
    assert "left out: kb/studies/quesada2018robot.yaml:" in index.stderr

    port = _free_port()
    command = [TMSKB, "serve", "--root", str(root), "--index-dir", str(root / "index"), "--port", str(port)]
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                status, _, home = _get(base + "/")
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
        assert status == 200 and 'class="curator-notice"' in home
        assert "kb/studies/quesada2018robot.yaml:" in home  # the draft, named for its curator
        status, final, page = _get(base + "/records/@Quesada2018")  # the import's key resolves
        assert status == 200 and final.endswith("/records/@quesada2018guided")
        assert "Robot-guided stimulation of a test cohort" in page
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
