#!/usr/bin/env python3
"""Benchmark: does a `tmskb serve` worker's memory stay bounded under random filters? (issue 17, item 4)

Not a test (tests/test_bounds.py is). Run from the checkout:

    .venv/bin/python bench/memory.py                       # generated 10k KB, 10,000 requests
    .venv/bin/python bench/memory.py --kb bundled --requests 3000
    .venv/bin/python bench/memory.py --max-requests 0      # worker recycling off: the caches alone

The script
  1. writes a synthetic KB of --records indexed records with bench/index_build.generate and builds
     its index (or, with --kb bundled, indexes this checkout's KB) in a temporary directory;
  2. starts the server the way `tmskb serve` does (indexer.serving.serve(create_app(...)) in a
     subprocess, one gunicorn master, --workers waitress workers x --threads threads) on a free
     127.0.0.1 port, with worker recycling as `tmskb serve` has it unless --max-requests is given;
  3. sends --requests requests from --concurrency keep-alive connections: /api/search (and every
     --html-every-th one the HTML page /) with 1-3 random facets, each with 1-8 random values, most
     of them values the index holds (so answers differ and fill the result cache), some made up
     (years no record has, unknown guidelines), some with a random word as the query, some for
     pages 2-5 or pages of 50 or 100 hits (seeded, so runs are comparable);
  4. prints the RSS of the worker processes (from /proc) after start-up, after each
     --checkpoints count of requests, and the growth after the first 1,000; the status codes;
     how many worker processes served (more than --workers: some were recycled) and the largest
     worker RSS seen (sampled every 0.5 s).

Done when: worker RSS after 10,000 requests is within 100 MiB of its level after the first 1,000.
Only 127.0.0.1 is contacted. Everything is bounded: requests (at most 100,000), each request's time
(--timeout), the whole run (--time-limit; requests not sent by then are reported as not sent).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

warnings.filterwarnings("ignore", category=SyntaxWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slow_clients import HOST, REPO, Server, child_env, free_port, get, machine, stop  # noqa: E402

sys.path.insert(0, str(REPO))

MiB = 1024 * 1024
SEED = 20261201
CHILD = r"""
import inspect, sys
from indexer.serving import serve
from indexer.web import create_app
index_dir, port, workers, threads, max_requests = sys.argv[1:6]
extra = {}
if max_requests != "default":
    if "max_requests" not in inspect.signature(serve).parameters:
        sys.exit("this serve() has no max_requests parameter")
    extra["max_requests"] = int(max_requests)
serve(create_app({"INDEX_DIR": index_dir}), "127.0.0.1", int(port), int(workers), int(threads), **extra)
"""
WORDS = ["pain", "depression", "stimulation", "cortex", "motor", "relief", "sham", "placebo", "tinnitus"]
OPEN_FACETS = {"year", "guideline", "source", "grade"}  # any value is valid (and may find nothing)


def build_kb(kind: str, records: int, base: Path) -> Path:
    """The index directory of a generated KB of `records` records, or of the bundled KB."""
    from indexer.build import ensure_index
    from indexer.settings import Settings

    if kind == "bundled":
        settings = Settings.for_root(REPO, base / "index")
    else:
        from index_build import RECORDS_PER_EVIDENCE, generate

        root = base / "kb"
        generate(root, round(records / RECORDS_PER_EVIDENCE), REPO / "kb" / "vocab", REPO / "kb" / "rulesets")
        settings = Settings.for_root(root, base / "index")
    ensure_index(settings)
    return settings.index_dir


def worker_pids(master: int) -> list[int]:
    """Child processes of the gunicorn master (its workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == master:
            pids.append(int(entry))
    return sorted(pids)


def rss(pid: int) -> int:
    """Resident set size of a process in bytes (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def facet_values(port: int) -> dict[str, list[str]]:
    """Every facet value the index holds, from one /api/search answer."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    conn.request("GET", "/api/search?page_size=1")
    body = json.loads(conn.getresponse().read())
    conn.close()
    return {name: [v["value"] for v in values] for name, values in body["facets"].items() if values}


def make_paths(n: int, known: dict[str, list[str]], html_every: int, seed: int) -> list[str]:
    """n request paths with random filters: mostly values the index holds, some made up (20% in
    the open facets, where they are valid and find nothing; 2% elsewhere, where they are 400s)."""
    rng = random.Random(seed)
    names = sorted(known)
    paths = []
    for i in range(n):
        params: list[tuple[str, str]] = []
        if rng.random() < 0.3:
            params.append(("q", rng.choice(WORDS)))
        for name in rng.sample(names, rng.randint(1, min(3, len(names)))):
            for _ in range(rng.randint(1, 8)):
                if rng.random() >= (0.2 if name in OPEN_FACETS else 0.02):
                    value = rng.choice(known[name])
                elif name == "year":
                    value = str(rng.randint(1000, 2999))
                else:
                    value = f"made-up-{rng.getrandbits(40):x}"
                params.append((name, value))
        if rng.random() < 0.2:
            params.append(("page", str(rng.randint(2, 5))))
        if rng.random() < 0.1:
            params.append(("page_size", str(rng.choice([50, 100]))))
        endpoint = "/" if html_every and i % html_every == 0 else "/api/search"
        paths.append(endpoint + "?" + urlencode(params))
    return paths


class Sampler:
    """Every 0.5 s: the workers' pids (recycled ones included) and the largest RSS seen."""

    def __init__(self, master: int) -> None:
        self.master, self.pids, self.peak = master, set(worker_pids(master)), 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(0.5):
            pids = worker_pids(self.master)
            self.pids.update(pids)
            self.peak = max([self.peak, *(rss(p) for p in pids)])

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)


class Load:
    """Sends paths from `concurrency` keep-alive connections, counting statuses."""

    def __init__(self, port: int, concurrency: int, timeout: float) -> None:
        self.port, self.concurrency, self.timeout = port, concurrency, timeout
        self.statuses: Counter[str] = Counter()
        self.retried = 0  # requests sent again on a new connection (the worker had closed it)
        self.lock = threading.Lock()

    def run(self, paths: list[str], deadline: float) -> int:
        """Send every path (or stop at `deadline`); the number sent."""
        todo = iter(paths)
        sent = [0]

        def worker() -> None:
            conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            while time.monotonic() < deadline:
                with self.lock:
                    path = next(todo, None)
                if path is None:
                    break
                for attempt in (1, 2):  # a kept-alive connection a recycled worker closed: retry once
                    try:
                        conn.request("GET", path)
                        response = conn.getresponse()
                        response.read()
                        status = str(response.status)
                        if response.getheader("Connection", "").lower() == "close":
                            conn.close()
                        break
                    except (OSError, http.client.HTTPException) as exc:
                        status = type(exc).__name__
                        conn.close()
                        conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
                        if attempt == 1 and isinstance(exc, http.client.RemoteDisconnected | ConnectionError):
                            with self.lock:
                                self.retried += 1
                            continue
                        break
                with self.lock:
                    self.statuses[status] += 1
                    sent[0] += 1
            conn.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()) + self.timeout + 1)
        return sent[0]


def start(index_dir: Path, workers: int, threads: int, max_requests: str, log: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-c", CHILD, str(index_dir), str(port), str(workers), str(threads), max_requests]
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=out, stderr=subprocess.STDOUT)
    server = Server("tmskb serve", port, process, log)
    deadline = time.monotonic() + 60
    while not get(port, "/api/search?q=pain", 5)[0]:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}):\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            stop(server)
            raise RuntimeError(f"server did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kb", choices=["generated", "bundled"], default="generated")
    parser.add_argument("--records", type=int, default=10_000, help="records of the generated KB")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--checkpoints", default="1000,2500,5000,7500,10000")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (1: one RSS to follow)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--html-every", type=int, default=10, help="every n-th request is the HTML page")
    parser.add_argument(
        "--max-requests", default="default", help="worker recycling: 'default' (tmskb serve's), 0 = off, or N"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--time-limit", type=float, default=1200.0, help="seconds for all requests")
    parser.add_argument("--index-dir", type=Path, help="an existing index to serve (skips building)")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100_000 or not 1 <= args.concurrency <= 64 or not 1 <= args.workers <= 8:
        parser.error("--requests 1..100000, --concurrency 1..64, --workers 1..8")
    marks = sorted({int(c) for c in args.checkpoints.split(",") if c.strip() and int(c) <= args.requests})
    if args.requests not in marks:
        marks.append(args.requests)

    print(machine())
    work = Path(tempfile.mkdtemp(prefix="tmskb-memory-"))
    server = None
    try:
        started = time.monotonic()
        index_dir = args.index_dir or build_kb(args.kb, args.records, work)
        print(f"KB: {args.index_dir or args.kb}; index ready in {time.monotonic() - started:.1f} s")
        server = start(index_dir, args.workers, args.threads, args.max_requests, work / "serve.log")
        known = facet_values(server.port)
        print(
            f"{args.workers} worker(s) x {args.threads} thread(s), max_requests {args.max_requests}; "
            f"{args.requests} requests from {args.concurrency} connections; facets with values: "
            + ", ".join(f"{k} {len(v)}" for k, v in sorted(known.items()))
        )
        paths = make_paths(args.requests, known, args.html_every, SEED)
        load = Load(server.port, args.concurrency, args.timeout)
        sampler = Sampler(server.process.pid)
        print(f"after start-up: worker RSS {fmt_rss(server.process.pid)}", flush=True)
        deadline = time.monotonic() + args.time_limit
        done, levels = 0, {}
        for mark in marks:
            t = time.monotonic()
            done += load.run(paths[done:mark], deadline)
            total = sum(rss(p) for p in worker_pids(server.process.pid))
            levels[mark] = total
            print(
                f"after {done:>6} requests: worker RSS {fmt_rss(server.process.pid)} "
                f"({time.monotonic() - t:.1f} s)",
                flush=True,
            )
            if done < mark:
                print(f"time limit reached: {args.requests - done} requests not sent")
                break
        first = levels.get(1000) or next(iter(levels.values()))
        last = levels[max(levels)]
        print(f"statuses: {dict(sorted(load.statuses.items()))}; retried on a new connection: {load.retried}")
        sampler.stop()
        recycled = max(0, len(sampler.pids) - args.workers)
        print(
            f"worker processes seen: {len(sampler.pids)} (recycled: {recycled}); "
            f"largest worker RSS seen: {sampler.peak / MiB:.1f} MiB"
        )
        print(
            f"growth after the first 1,000 requests: {(last - first) / MiB:+.1f} MiB "
            f"({'within' if last - first <= 100 * MiB else 'MORE than'} 100 MiB)"
        )
    finally:
        if server is not None:
            stop(server)
            log = server.log.read_text(errors="replace")
            bad = [line for line in log.splitlines() if "Traceback" in line or "CRITICAL" in line]
            if bad:
                print(f"server log has {len(bad)} error line(s), e.g. {bad[:3]}")
        shutil.rmtree(work, ignore_errors=True)
    return 0


def fmt_rss(master: int) -> str:
    pids = worker_pids(master)
    return ", ".join(f"pid {p} {rss(p) / MiB:.1f} MiB" for p in pids) or "no workers"


if __name__ == "__main__":
    sys.exit(main())
