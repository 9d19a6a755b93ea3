"""Reliability: index swaps under HTTP load, and `tmskb index` killed at random points.

Both tests run real processes (`tmskb serve` under gunicorn, `tmskb index`) on copies of the
test KB and only talk to 127.0.0.1. Every loop is bounded in count and in time.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import DATA

from indexer import index as idx
from indexer import pipeline
from indexer.search import Query, search
from indexer.settings import Settings

TMSKB = Path(sys.executable).with_name("tmskb")
MARKER = "zyxreliabilitymarker"  # a word no record holds until the test writes it
EDITED = "kb/studies/alpha2010test.yaml"
ORIGINAL_SUMMARY = "relieved postherpetic pain more than sham."


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMSKB_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _set_marker(root: Path, on: bool) -> None:
    """Content state B (on) has the marker word in one study's summary; state A does not."""
    path = root / EDITED
    text = path.read_text("utf-8")
    plain = text.replace(f" {MARKER}", "")
    path.write_text(plain.replace(ORIGINAL_SUMMARY, f"{ORIGINAL_SUMMARY[:-1]} {MARKER}.") if on else plain)


def _index(root: Path, index_dir: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [str(TMSKB), "index", "--root", str(root), "--index-dir", str(index_dir), *extra]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _live(index_dir: Path) -> tuple[str, str]:
    """(generation name, fingerprint) of the live generation."""
    generation = idx.current_dir(index_dir)
    assert generation is not None, f"no live generation in {index_dir}: {sorted(os.listdir(index_dir))}"
    manifest = idx.read_manifest(generation)
    return generation.name, manifest["fingerprint"]


# ---------------------------------------------------------------------------------------------
# a. Index swaps while the server answers searches
# ---------------------------------------------------------------------------------------------


@dataclass
class Load:
    """What the background client saw."""

    answers: list[tuple[str, int, str, dict]] = field(default_factory=list)  # (q, status, generation, json)
    failures: list[str] = field(default_factory=list)


QUERIES = ("", MARKER, "pain", "stimulation", '"motor cortex"')


def _hammer(port: int, stop: threading.Event, load: Load, max_requests: int, max_seconds: float) -> None:
    """Search in a closed loop over one keep-alive connection until told to stop (bounded)."""
    deadline = time.monotonic() + max_seconds
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        for i in range(max_requests):
            if stop.is_set() or time.monotonic() > deadline:
                break
            q = QUERIES[i % len(QUERIES)]
            path = "/api/search?" + urlencode({"q": q})
            try:
                conn.request("GET", path, headers={"Accept": "application/json"})
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                load.failures.append(f"{q!r}: {type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                continue
            if resp.status != 200:
                load.failures.append(f"{q!r}: HTTP {resp.status} {body[:200]!r}")
                continue
            data = json.loads(body)
            load.answers.append((q, resp.status, data["generation"], data))
            if resp.will_close:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    finally:
        conn.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    """`tmskb serve` (gunicorn, defaults) over a copy of the test KB: (root, index dir, port)."""
    root = tmp_path / "kb"
    shutil.copytree(DATA / "kb", root)
    index_dir = tmp_path / "index"
    port = _free_port()
    cmd = [str(TMSKB), "serve", "--root", str(root), "--index-dir", str(index_dir), "--port", str(port)]
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env())
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited: {log_path.read_text()}")
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    conn.request("GET", "/api/search?q=")
                    if conn.getresponse().status == 200:
                        conn.close()
                        break
                    conn.close()
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {log_path.read_text()}")
                time.sleep(0.1)
            yield root, index_dir, port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        server_log = log_path.read_text()
    assert "Traceback" not in server_log, server_log


def test_index_swaps_under_load_answer_from_whole_generations(served: tuple[Path, Path, int]) -> None:
    root, index_dir, port = served
    # Which content state every generation holds: A (no marker) or B (marker in one study).
    state_of: dict[str, str] = {_live(index_dir)[0]: "A"}
    stop = threading.Event()
    load = Load()
    client = threading.Thread(target=_hammer, args=(port, stop, load, 50_000, 45.0), daemon=True)
    client.start()
    swaps = 0
    try:
        time.sleep(0.3)
        state = "A"
        steps = ["force", "edit", "force", "edit", "force", "edit"]
        for step in steps:
            before = _live(index_dir)[0]
            if step == "edit":
                state = "B" if state == "A" else "A"
                _set_marker(root, state == "B")
                _index(root, index_dir)
            else:
                _index(root, index_dir, "--force")
            after = _live(index_dir)[0]
            assert after != before, f"step {step} did not swap in a new generation"
            state_of[after] = state
            swaps += 1
            time.sleep(0.3)  # let the client see the new generation
    finally:
        stop.set()
        client.join(timeout=30)
    assert not client.is_alive()
    assert swaps >= 5

    print(f"swaps {swaps}, answers {len(load.answers)}, generations seen {sorted(state_of)}")
    assert load.failures == [], f"{len(load.failures)} failed requests, e.g. {load.failures[:5]}"
    assert len(load.answers) >= 50, f"the client got only {len(load.answers)} answers"
    seen = {gen for _, _, gen, _ in load.answers}
    assert seen <= set(state_of), f"answers from unknown generations: {seen - set(state_of)}"
    assert len(seen) >= 3, f"the client saw only generations {seen}; swaps were not observed"

    # Totals every (query, state) must give, taken from the answers of the first generation
    # of each state; then every answer must agree with its generation's state.
    expected: dict[tuple[str, str], int] = {}
    for q, _, gen, data in load.answers:
        expected.setdefault((q, state_of[gen]), data["total"])
    for q, _, gen, data in load.answers:
        total = data["total"]
        assert total == expected[(q, state_of[gen])], (q, gen, state_of[gen], total, expected)
        types = sum(v["count"] for v in data["facets"]["type"])
        assert types == total, f"{q!r} in {gen}: type facet counts sum to {types}, total {total}"
        assert len(data["hits"]) == min(total, 20)
    if (MARKER, "A") in expected:
        assert expected[(MARKER, "A")] == 0
    if (MARKER, "B") in expected:
        assert expected[(MARKER, "B")] == 1
    # The empty query counts every record; marker edits change no record count.
    assert len({v for (q, _), v in expected.items() if q == ""}) == 1


# ---------------------------------------------------------------------------------------------
# b. `tmskb index --force` killed with SIGKILL at random points
# ---------------------------------------------------------------------------------------------

EXTRA_STUDIES = 400


def _grow(root: Path, count: int) -> None:
    """Add `count` studies (and their references) so a full build takes a moment."""
    template = (root / "kb" / "studies" / "alpha2010test.yaml").read_text("utf-8")
    entries = []
    for i in range(count):
        key = f"extra{i:05d}test"
        text = template.replace("alpha2010test", key).replace(
            "relieved postherpetic pain", f"relieved postherpetic pain in cohort {i}"
        )
        (root / "kb" / "studies" / f"{key}.yaml").write_text(text, "utf-8")
        entries.append(
            f"@article{{{key},\n  author = {{Extra, Eve}},\n  title = {{Extra motor cortex study {i}}},\n"
            f"  journal = {{Test Pain}},\n  year = {{{2000 + i % 25}}},\n  verification = {{abstract}}\n}}\n"
        )
    with open(root / "references.bib", "a", encoding="utf-8") as bib:
        bib.write("\n" + "\n".join(entries))


def _reader(index_dir: Path, stop: threading.Event, failures: list[str], seen: set[str]) -> None:
    """In-process searches against the live generation until told to stop (bounded)."""
    deadline = time.monotonic() + 55
    for i in range(200_000):
        if stop.is_set() or time.monotonic() > deadline:
            return
        q = ("pain", MARKER, "")[i % 3]
        try:
            results = search(index_dir, Query.make(q))
        except Exception as exc:  # noqa: BLE001 - any failure of a reader is what we look for
            failures.append(f"{q!r}: {type(exc).__name__}: {exc}")
            continue
        if not results.ok:
            failures.append(f"{q!r}: {results.error}")
        elif q == "" and results.total < EXTRA_STUDIES:
            failures.append(f"empty query in {results.generation}: only {results.total} records")
        else:
            seen.add(results.generation)
        time.sleep(0.005)


def test_killed_index_build_leaves_the_live_index_usable(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    shutil.copytree(DATA / "kb", root)
    _grow(root, EXTRA_STUDIES)
    index_dir = tmp_path / "index"
    settings = Settings.for_root(root, index_dir)
    t = time.monotonic()
    _index(root, index_dir, "--force")
    full = time.monotonic() - t  # a whole `tmskb index --force`, interpreter start-up included

    rng = random.Random(20240814)
    stop = threading.Event()
    failures: list[str] = []
    seen: set[str] = set()
    reader = threading.Thread(target=_reader, args=(index_dir, stop, failures, seen), daemon=True)
    reader.start()
    marker_on = False
    # Kill points: fixed shares of a whole run (start-up, parse and validate, write, publish),
    # jittered, plus kills shortly after the temporary generation appears (mid-write).
    plans = [
        ("time", 0.15),
        ("tmp", 0.0),
        ("time", 0.5),
        ("tmp", 0.05),
        ("time", 0.75),
        ("tmp", 0.15),
        ("time", 1.05),
    ]
    outcomes = []
    try:
        for how, value in plans:
            old_gen, old_fp = _live(index_dir)
            marker_on = not marker_on
            _set_marker(root, marker_on)  # new content, so the next index must differ
            new_fp = pipeline.fingerprint(settings)
            cmd = [str(TMSKB), "index", "--force", "--root", str(root), "--index-dir", str(index_dir)]
            proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started = time.monotonic()
            try:
                if how == "time":
                    time.sleep(full * value * rng.uniform(0.85, 1.15))
                else:
                    while time.monotonic() - started < 30 and proc.poll() is None:
                        if any(index_dir.glob("gen-*.tmp-*")):
                            break
                        time.sleep(0.002)
                    time.sleep(value * rng.uniform(0.5, 1.5))
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
            delay = time.monotonic() - started
            leftovers = sorted(p.name for p in index_dir.glob("*.tmp-*"))

            # The live generation still opens and answers (the old one unless the swap happened).
            gen, fp = _live(index_dir)
            assert fp in (old_fp, new_fp), f"live generation {gen} holds neither the old nor the new content"
            outcomes.append((how, round(delay, 2), "swapped" if gen != old_gen else "old", leftovers))
            results = search(index_dir, Query.make(MARKER))
            assert results.ok, results.error
            assert results.generation == gen
            marker_live = marker_on if fp == new_fp else not marker_on
            assert results.total == (1 if marker_live else 0)

            # The next build finishes on its own (no stuck lock), cleans up and serves the new content.
            _index(root, index_dir, timeout=60)
            gen2, fp2 = _live(index_dir)
            assert fp2 == new_fp
            assert list(index_dir.glob("*.tmp-*")) == [], sorted(os.listdir(index_dir))
            generations = sorted(p.name for p in index_dir.glob("gen-*"))
            assert len(generations) <= 2 and gen2 in generations, generations
            results = search(index_dir, Query.make(MARKER))
            assert results.ok and results.generation == gen2
            assert results.total == (1 if marker_on else 0)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert not reader.is_alive()
    print(f"full build {full:.2f} s; kills (trigger, delay s, live generation, leftovers): {outcomes}")
    assert failures == [], f"{len(failures)} reader failures, e.g. {failures[:5]} (kills: {outcomes})"
    assert len(seen) >= 2, seen
    # At least one kill must have landed while a temporary generation existed, else the test
    # did not exercise the interesting window.
    assert any(leftovers for _, _, _, leftovers in outcomes), outcomes


# ---------------------------------------------------------------------------------------------
# c. The same with Whoosh's multi-process writer (used from MULTIPROCESS_THRESHOLD documents)
# ---------------------------------------------------------------------------------------------

# `tmskb index` with the multi-process threshold lowered, so a small KB takes that code path.
LOW_THRESHOLD_INDEX = (
    "import sys; from indexer import index; index.MULTIPROCESS_THRESHOLD = 200; "
    "from indexer.cli import cli; sys.exit(cli(['index', '--force', '--root', sys.argv[1], "
    "'--index-dir', sys.argv[2]]))"
)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the multi-process writer needs 2 cores")
def test_killed_multiprocess_build_does_not_block_the_next_build(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    shutil.copytree(DATA / "kb", root)
    _grow(root, 150)
    index_dir = tmp_path / "index"
    cmd = [sys.executable, "-c", LOW_THRESHOLD_INDEX, str(root), str(index_dir)]
    subprocess.run(cmd, env=_env(), capture_output=True, timeout=60, check=True)
    old_gen, _ = _live(index_dir)
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            workers.update(_children(proc.pid))
            if workers and any(index_dir.glob("gen-*.tmp-*")):
                break
            time.sleep(0.002)
        assert workers, "the build finished or never forked writer processes"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        time.sleep(0.5)
        # The live index is untouched and readable.
        assert _live(index_dir)[0] == old_gen
        assert search(index_dir, Query.make("pain")).ok
        # The next build must not wait for the orphaned writer processes.
        try:
            subprocess.run(cmd, env=_env(), capture_output=True, timeout=15, check=True)
        except subprocess.TimeoutExpired:
            orphans = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
            pytest.fail(f"the next build was still waiting for the lock after 15 s; orphans {orphans}")
        assert _live(index_dir)[0] != old_gen
        assert list(index_dir.glob("*.tmp-*")) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for pid in workers:  # our own grandchildren, orphaned by the SIGKILL
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
