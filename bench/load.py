#!/usr/bin/env python3
"""Benchmark: closed-loop load (throughput and tail latency) of `tmskb serve` at N records.

Not a test. Run from the checkout:

    .venv/bin/python bench/load.py                                  # N = 10000, 15 s per level
    .venv/bin/python bench/load.py --duration 5 --levels 1,8 --generator python --keep

The script
  1. writes a synthetic KB of N indexed records with bench/index_build.generate and builds the
     index (ensure_index, timed), then builds a seeded list of --requests varied search
     requests with bench/http_search.make_requests (single words in bands of document frequency,
     two-word queries, phrases, 1-2 facet filters, filter-only, sort=year/relevance, page 2,
     misspellings) against /api/search;
  2. starts `tmskb serve` with its production settings (gunicorn: one worker per core, its
     default thread count unless --threads is given, no debug) on a free 127.0.0.1 port;
     `serve` finds the index current and starts at once;
  3. warms up: every request of the list once, sequentially (any non-200 is reported), then a
     few seconds of concurrent load so every worker thread has opened its searcher. The
     server caches posting lists per query term and generation, so a cycled list measures warm
     caches; --no-prime --requests 6000 warms up with other requests and starts each level
     where the previous one stopped, so the timed requests are (nearly all) first seen;
  4. for each concurrency level runs a fixed-duration closed-loop load: C connections, each
     sending the next request of the (cycled) list as soon as the previous answer is read.
     The generator is `wrk` (Debian package; a Lua script cycles the paths) when it is on PATH,
     else a Python generator in a separate process (threads + keep-alive http.client);
  5. prints per level: requests/s, p50/p95/p99/max latency, errors (connection errors, timeouts
     and non-2xx answers), and the CPU used by the server process and by the generator during
     the level (100% = one core), plus machine information.

Target (N = 10 000): >= 200 requests/s of mixed search traffic with 0 errors.
Only 127.0.0.1 is contacted. Every loop is bounded in time (duration per level) and count.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

warnings.filterwarnings("ignore", category=SyntaxWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SEED = 20240701
TARGET_N = 10_000
TARGET_RPS = 200.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

WRK_LUA = r"""
-- Cycle through the paths of a file, one list position per connection (offset by thread).
local paths = {}
for line in io.lines(os.getenv("LOAD_PATHS")) do paths[#paths + 1] = line end
local counter = 0
local threads = {}

function setup(thread)
  thread:set("offset", tonumber(os.getenv("LOAD_START") or "0") + #threads * 7919)
  table.insert(threads, thread)
end

function init(args)
  counter = offset or 0
end

function request()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1], {["Accept"] = "application/json"})
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\"requests\": %d, \"duration_us\": %d, \"connect\": %d, \"read\": %d, \"write\": %d, " ..
    "\"status\": %d, \"timeout\": %d, \"p50_us\": %d, \"p95_us\": %d, \"p99_us\": %d, \"max_us\": %d, " ..
    "\"mean_us\": %.1f}\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass
class Level:
    concurrency: int
    requests: int
    seconds: float
    errors: dict[str, int]
    p50: float
    p95: float
    p99: float
    pmax: float
    server_cpu: float  # share of one core, over the level
    generator_cpu: float
    generator: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (gunicorn's workers) from /proc."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pct(values: list[float], p: float) -> float:
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# ---------------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------------


def run_wrk(
    port: int, paths_file: Path, lua: Path, concurrency: int, duration: float, start: int
) -> dict[str, float]:
    threads = 1 if concurrency < 8 else 2  # event loops; one core's worth is plenty here
    cmd = [
        "wrk",
        f"-t{min(threads, concurrency)}",
        f"-c{concurrency}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "30s",
        "-s",
        str(lua),
        f"http://{HOST}:{port}",
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env={**os.environ, "LOAD_PATHS": str(paths_file), "LOAD_START": str(start)},
        timeout=duration + 60,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise RuntimeError(f"wrk gave no result (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def worker_main(port: int, paths_file: Path, concurrency: int, duration: float, start: int) -> None:
    """The Python generator (run in its own process): C threads, one keep-alive connection each,
    closed loop for `duration` seconds; prints one JSON line with latencies and errors."""
    paths = paths_file.read_text("utf-8").splitlines()
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[dict[str, int]] = [{} for _ in range(concurrency)]
    start_gate = threading.Barrier(concurrency + 1)
    deadline_box: list[float] = [0.0]

    def loop(i: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        n = start + i * 7919
        start_gate.wait()
        deadline = deadline_box[0]
        mine, errs = latencies[i], errors[i]
        while time.perf_counter() < deadline and len(mine) < 10_000_000:
            n += 1
            path = paths[n % len(paths)]
            t = time.perf_counter()
            try:
                conn.request("GET", path, headers={"Accept": "application/json"})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as exc:
                errs[type(exc).__name__] = errs.get(type(exc).__name__, 0) + 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
                continue
            mine.append(time.perf_counter() - t)
            if not 200 <= resp.status < 300:
                errs[f"status {resp.status}"] = errs.get(f"status {resp.status}", 0) + 1
            if resp.will_close:
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
        conn.close()

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    deadline_box[0] = time.perf_counter() + duration
    started = time.perf_counter()
    start_gate.wait()
    for t in threads:
        t.join(timeout=duration + 45)
    elapsed = time.perf_counter() - started
    xs = [x for lat in latencies for x in lat]
    merged: dict[str, int] = {}
    for errs in errors:
        for k, v in errs.items():
            merged[k] = merged.get(k, 0) + v
    print(
        "RESULT "
        + json.dumps(
            {
                "requests": len(xs),
                "duration_us": elapsed * 1e6,
                "errors": merged,
                "p50_us": pct(xs, 50) * 1e6,
                "p95_us": pct(xs, 95) * 1e6,
                "p99_us": pct(xs, 99) * 1e6,
                "max_us": max(xs, default=0) * 1e6,
            }
        ),
        flush=True,
    )


def run_python(
    port: int, paths_file: Path, concurrency: int, duration: float, start: int
) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--port",
        str(port),
        "--paths",
        str(paths_file),
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--start",
        str(start),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 90)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise RuntimeError(f"generator gave no result (exit {proc.returncode}):\n{proc.stderr[-2000:]}")


def run_level(
    generator: str,
    port: int,
    server_pid: int,
    paths_file: Path,
    lua: Path,
    concurrency: int,
    duration: float,
    start: int = 0,
) -> Level:
    s0, g0, t0 = proc_cpu(server_pid), children_cpu(), time.perf_counter()
    if generator == "wrk":
        r = run_wrk(port, paths_file, lua, concurrency, duration, start)
        errors = {k: int(r[k]) for k in ("connect", "read", "write", "status", "timeout") if r[k]}
    else:
        r = run_python(port, paths_file, concurrency, duration, start)
        errors = dict(r["errors"])  # type: ignore[call-overload]
    wall = time.perf_counter() - t0
    s1, g1 = proc_cpu(server_pid), children_cpu()
    return Level(
        concurrency,
        int(r["requests"]),
        r["duration_us"] / 1e6,
        errors,
        r["p50_us"] / 1e3,
        r["p95_us"] / 1e3,
        r["p99_us"] / 1e3,
        r["max_us"] / 1e3,
        (s1 - s0) / wall,
        (g1 - g0) / wall,
        generator,
    )


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def machine_info() -> list[str]:
    from importlib.metadata import version

    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb_total = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kb_total / 1024 / 1024:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    libs = ", ".join(f"{p} {version(p)}" for p in ("Whoosh-Reloaded", "Flask", "gunicorn", "numpy"))
    wrk = shutil.which("wrk")
    wrk_v = (
        subprocess.run([wrk, "--version"], capture_output=True, text=True)
        .stdout.splitlines()[0]
        .split(" [")[0]
        if wrk
        else "not installed"
    )
    return [
        f"date    : {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"machine : nproc {os.cpu_count()}, CPU {model}, RAM {mem}, {platform.system()} {platform.release()}",
        f"load    : {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15-min load average at start)",
        f"python  : {platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        f"versions: {libs}; {wrk_v}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=TARGET_N, help="indexed records in the synthetic KB")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per concurrency level")
    parser.add_argument("--levels", default="1,4,8,16,32", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=400, help="size of the cycled request list")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of concurrent warm-up load")
    parser.add_argument(
        "--no-prime",
        action="store_true",
        help="do not send every request once before timing (warm up with other requests instead), "
        "so the timed requests meet cold per-query caches; use with a long --requests list",
    )
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--threads", type=int, help="threads per worker (default: serve's own default)")
    parser.add_argument("--out", type=Path, help="working directory (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--seed", type=int, default=SEED)
    # Internal: the Python generator process.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--paths", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.port, args.paths, args.concurrency, args.duration, args.start)
        return

    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    if not levels or min(levels) < 1 or max(levels) > 512:
        parser.error("--levels must be between 1 and 512")
    if not 1 <= args.duration <= 600:
        parser.error("--duration must be between 1 and 600 s")
    if not 1 <= args.requests <= 100_000:
        parser.error("--requests must be between 1 and 100000")
    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
    elif generator == "wrk" and not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install -y wrk), use --generator python")

    from http_search import Server, corpus_of, free_port, make_requests
    from index_build import RECORDS_PER_EVIDENCE, generate

    from indexer import documents, pipeline
    from indexer.build import ensure_index
    from indexer.settings import Settings

    base = args.out.resolve() if args.out else Path(tempfile.mkdtemp(prefix="tmskb-load-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"working directory: {base}", flush=True)
    for line in machine_info():
        print(line, flush=True)
    server: Server | None = None
    try:
        n = args.records
        root = base / f"kb-{n}"
        t = time.perf_counter()
        gen = generate(root, round(n / RECORDS_PER_EVIDENCE), REPO / "kb" / "vocab", REPO / "kb" / "rulesets")
        t_gen = time.perf_counter() - t
        settings = Settings.for_root(root, base / f"index-{n}")
        t = time.perf_counter()
        ensure_index(settings, force=True)
        t_index = time.perf_counter() - t
        kb = pipeline.load(settings)
        if kb.problems:
            raise AssertionError(f"{len(kb.problems)} problems in the generated KB, e.g. {kb.problems[0]}")
        docs = documents.build_documents(kb)
        del kb
        corpus = corpus_of(docs)
        reqs = make_requests(corpus, args.requests, args.seed)
        kinds: dict[str, int] = {}
        for r in reqs:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        paths = [r.ours() for r in reqs]
        paths_file = base / "paths.txt"
        paths_file.write_text("\n".join(paths) + "\n", "utf-8")
        warm_file = paths_file
        if args.no_prime:
            warm_file = base / "warm-paths.txt"
            warm_reqs = make_requests(corpus, 200, args.seed + 1)
            warm_file.write_text("\n".join(r.ours() for r in warm_reqs) + "\n", "utf-8")
        lua = base / "cycle.lua"
        lua.write_text(WRK_LUA, "utf-8")
        print(
            f"KB: {len(docs)} indexed records ({len(gen.studies)} studies, {len(gen.recommendations)} "
            f"recommendations); generated in {t_gen:.1f} s, indexed in {t_index:.1f} s",
            flush=True,
        )
        del docs
        print(
            f"requests: {len(paths)} distinct, cycled; mix: "
            + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])),
            flush=True,
        )

        bindir = Path(sys.executable).parent
        port = free_port()
        cmd = [
            str(bindir / "tmskb"),
            "serve",
            "--root",
            str(root),
            "--index-dir",
            str(settings.index_dir),
            "--host",
            HOST,
            "--port",
            str(port),
        ]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        server = Server("tmskb serve", cmd, port, "/api/search?q=", base / "serve.log")
        server.start()
        assert server.proc is not None
        pid = server.proc.pid
        n_threads = len(os.listdir(f"/proc/{pid}/task"))
        print(
            f"server: {' '.join(cmd[1:2] + cmd[-2:])} pid {pid}, up in {server.started_s:.1f} s, "
            f"{n_threads} OS threads; threads per worker: {args.threads or 'default'}",
            flush=True,
        )

        # Warm-up 1: every request once, sequentially, checking each answer (--no-prime: the
        # warm-up list instead, so the timed requests are not cached by the server).
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        bad: list[str] = []
        seq: list[float] = []
        totals: list[int] = []
        primed = warm_file.read_text("utf-8").splitlines()
        which = "not the timed ones" if args.no_prime else "the timed list, each once"
        for path in primed:
            t = time.perf_counter()
            conn.request("GET", path, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
            seq.append(time.perf_counter() - t)
            if resp.status != 200:
                bad.append(f"{resp.status} {path} {body[:120]!r}")
            else:
                totals.append(int(json.loads(body)["total"]))
        conn.close()
        print(
            f"warm-up: {len(primed)} sequential requests ({which}), p50 {pct(seq, 50) * 1000:.1f} ms, p95 "
            f"{pct(seq, 95) * 1000:.1f} ms, max {max(seq) * 1000:.1f} ms; non-200: {len(bad)}; hits per "
            f"request median {statistics.median(totals) if totals else 0:.0f}, zero-hit "
            f"{sum(1 for x in totals if x == 0)}",
            flush=True,
        )
        for line in bad[:10]:
            print(f"  {line}")
        # Warm-up 2: concurrent load so every worker thread opens its searcher.
        warm = run_level(generator, port, pid, warm_file, lua, max(levels), args.warmup)
        print(
            f"warm-up: {args.warmup:.0f} s at concurrency {max(levels)}: {warm.rps:.0f} req/s, "
            f"{warm.error_count} errors",
            flush=True,
        )

        results: list[Level] = []
        print()
        print(f"closed-loop load, {args.duration:.0f} s per level, generator: {generator}")
        head = (
            f"{'conc':>5}{'req/s':>9}{'requests':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"
            f"{'errors':>8}{'server CPU':>12}{'gen CPU':>9}"
        )
        print(head)
        print("-" * len(head), flush=True)
        for c in levels:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server died (exit {server.proc.returncode}):\n{server.tail()}")
            # --no-prime: each level starts where the previous ones stopped in the list.
            start = sum(lv.requests for lv in results) if args.no_prime else 0
            lv = run_level(generator, port, pid, paths_file, lua, c, args.duration, start)
            results.append(lv)
            print(
                f"{c:>5}{lv.rps:>9.1f}{lv.requests:>10}{lv.p50:>9.1f}{lv.p95:>9.1f}{lv.p99:>9.1f}"
                f"{lv.pmax:>9.1f}{lv.error_count:>8}"
                f"{lv.server_cpu * 100:>11.0f}%{lv.generator_cpu * 100:>8.0f}%"
                + (f"  {lv.errors}" if lv.errors else ""),
                flush=True,
            )
        print("-" * len(head))
        best = max(results, key=lambda lv: lv.rps)
        errors = sum(lv.error_count for lv in results)
        verdict = "PASS" if best.rps >= TARGET_RPS and errors == 0 else "FAIL"
        scope = "" if n == TARGET_N else f" (target is stated for N={TARGET_N})"
        print(
            f"target: >= {TARGET_RPS:.0f} req/s with 0 errors at N={TARGET_N}{scope}: best {best.rps:.1f} "
            f"req/s at concurrency {best.concurrency}, {errors} errors in total -> {verdict}"
        )
        print(
            "(server CPU: share of one core used by the server's processes (master and workers) "
            f"during the level; "
            f"{os.cpu_count()} cores in all. gen CPU: the load generator's.)"
        )
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if server is not None:
            server.stop()
        if args.keep or args.out:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
