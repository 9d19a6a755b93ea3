#!/usr/bin/env python3
"""Benchmark: do slow and idle clients stall `tmskb serve`? (issue 17, item 1)

Not a test (tests/test_slow_clients.py is). Run from the checkout:

    .venv/bin/python bench/slow_clients.py                        # every installed server
    .venv/bin/python bench/slow_clients.py --server waitress --slow 0,8,50,200
    .venv/bin/python bench/slow_clients.py --server gthread --throughput 0

For each server stack (indexer.serving.SERVERS: waitress, the default; gthread, gunicorn's
threaded worker as before; gevent, gunicorn's gevent worker, if gevent is installed) it

  1. starts the server the way `tmskb serve` does: indexer.serving.serve(create_app(...)) in a
     subprocess on a free 127.0.0.1 port, over an index of the bundled KB (built into a temporary
     directory unless --index-dir is given), --workers processes x --threads threads;
  2. for each K of --slow: opens K slow connections, each of which sends a request line and
     then one more header line every --interval seconds and never ends its headers, plus
     K * --idle-ratio idle connections that connect and send nothing; once they are in, it sends
     --requests normal requests (GET --path, each on a new connection, --parallel at a time, at
     most --timeout seconds each) and prints their success rate (HTTP 200 in time) and
     p50/p95/max latency over all of them (a failed request counts the time it took to fail);
     then it closes the slow connections;
  3. with no slow clients, measures throughput: --throughput requests at --concurrency
     (keep-alive connections, one thread each, in this process), requests/s and p50/p95;
  4. stops the server with SIGTERM and reports how long the graceful stop took.

`--app minimal` (or `auto` when `from app import create_app` fails) serves a small WSGI app
that does ~1 ms of CPU work per request instead of the real one; the report says which.

Only 127.0.0.1 is contacted. Everything is bounded: connections per phase, requests, each
request's time (--timeout) and each phase's (no request starts after --phase-limit seconds;
those not sent count as failed). With the defaults a run of all three servers takes about
2 minutes, most of it gthread's stalled phases.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import itertools
import math
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
NUMBERS = itertools.count()  # {i} in --path: unique over the whole run, so no answer is cached

CHILD = r"""
import sys, time
from indexer.serving import serve
app_kind, index_dir, port, workers, threads, server = sys.argv[1:7]
if app_kind == "real":
    from app import create_app
    application = create_app({"INDEX_DIR": index_dir})
else:
    def application(environ, start_response):
        total = 0
        for i in range(20000):  # ~1 ms of CPU-bound Python, like a small search
            total += i * i
        body = ("<html><body>%d %s</body></html>" % (total, environ.get("QUERY_STRING", ""))).encode()
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
        return [body]
serve(application, "127.0.0.1", int(port), int(workers), int(threads), server=server)
"""


# ---------------------------------------------------------------------------------------------
# Machine, limits, helpers
# ---------------------------------------------------------------------------------------------


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for name in ("gunicorn", "waitress", "gevent"):
        try:
            from importlib.metadata import version

            versions.append(f"{name} {version(name)}")
        except Exception:
            versions.append(f"{name} -")
    return (
        f"date {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; nproc {os.cpu_count()}; "
        f"CPU {model}; Python {platform.python_version()} ({platform.system()} {platform.release()}); "
        + ", ".join(versions)
    )


def raise_nofile(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}" if seconds >= 0.1 else f"{seconds * 1000:.1f}"


# ---------------------------------------------------------------------------------------------
# The server under test
# ---------------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


def app_kind(requested: str) -> str:
    if requested != "auto":
        return requested
    probe = subprocess.run(
        [sys.executable, "-c", "from app import create_app"],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        print(f"note: `from app import create_app` fails, serving the minimal app: {probe.stderr[-300:]}")
        return "minimal"
    return "real"


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMSKB_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}


def get(port: int, path: str, timeout: float) -> tuple[bool, float, str]:
    """One request on a new connection: (HTTP 200 in time, seconds, error or '')."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        ok = resp.status == 200
        return ok, time.perf_counter() - start, "" if ok else f"HTTP {resp.status}"
    except (OSError, http.client.HTTPException) as exc:
        return False, time.perf_counter() - start, type(exc).__name__
    finally:
        conn.close()


@contextmanager
def running(
    name: str, kind: str, index_dir: Path, workers: int, threads: int, logdir: Path
) -> Iterator[Server]:
    port = free_port()
    log = logdir / f"{name}.log"
    cmd = [sys.executable, "-c", CHILD, kind, str(index_dir), str(port), str(workers), str(threads), name]
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=out, stderr=subprocess.STDOUT)
    server = Server(name, port, process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}):\n{log.read_text()[-2000:]}")
            if get(port, "/", 2)[0]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        stop(server)


def stop(server: Server) -> float | None:
    """SIGTERM, then SIGKILL after 15 s; the seconds the graceful stop took (None if killed)."""
    if server.process.poll() is not None:
        return 0.0
    start = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=15)
        return time.monotonic() - start
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=15)
        return None


# ---------------------------------------------------------------------------------------------
# Slow and idle clients
# ---------------------------------------------------------------------------------------------


class SlowClients:
    """`slow` connections trickling header lines every `interval` s, and `idle` silent ones."""

    def __init__(self, port: int, slow: int, idle: int, interval: float) -> None:
        self.port, self.interval = port, interval
        self.slow: list[socket.socket] = []
        self.idle: list[socket.socket] = []
        self.refused = 0
        self.dropped = 0
        self.stop = threading.Event()
        for i in range(slow + idle):
            try:
                sock = socket.create_connection((HOST, port), timeout=2)
            except OSError:
                self.refused += 1
                continue
            if i < slow:
                try:
                    sock.sendall(f"GET /?slow={i} HTTP/1.1\r\nHost: {HOST}\r\n".encode())
                except OSError:
                    self.dropped += 1
                self.slow.append(sock)
            else:
                self.idle.append(sock)
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        line = 0
        alive = list(self.slow)
        while alive and not self.stop.wait(self.interval):
            line += 1
            for sock in list(alive):
                try:
                    sock.sendall(f"X-Slow-{line}: {'x' * 10}\r\n".encode())
                except OSError:
                    alive.remove(sock)
                    self.dropped += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for sock in self.slow + self.idle:
            try:
                sock.close()
            except OSError:
                pass


@dataclass
class Phase:
    slow: int
    idle: int
    refused: int
    ok: int
    total: int
    latencies: list[float]
    errors: dict[str, int]
    seconds: float


def numbered(path: str) -> str:
    return path.replace("{i}", str(next(NUMBERS))) if "{i}" in path else path


def normal_requests(
    port: int, path: str, count: int, parallel: int, timeout: float, limit: float
) -> tuple[int, list[float], dict[str, int]]:
    """`count` requests, `parallel` at a time; none is started after `limit` seconds."""
    results: list[tuple[bool, float, str]] = []
    lock = threading.Lock()
    next_index = iter(range(count))
    deadline = time.monotonic() + limit

    def work() -> None:
        while time.monotonic() < deadline:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            outcome = get(port, numbered(path), timeout)
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=count * timeout + 30)
    errors: dict[str, int] = {}
    if len(results) < count:
        errors["not sent (phase time limit)"] = count - len(results)
    for ok, _, err in results:
        if not ok:
            errors[err] = errors.get(err, 0) + 1
    return sum(ok for ok, _, _ in results), [s for _, s, _ in results], errors


def slow_phase(server: Server, k: int, args: argparse.Namespace) -> Phase:
    idle = round(k * args.idle_ratio)
    clients = SlowClients(server.port, k, idle, args.interval)
    try:
        time.sleep(args.settle)  # let the server accept them and start reading
        start = time.monotonic()
        ok, latencies, errors = normal_requests(
            server.port, args.path, args.requests, args.parallel, args.timeout, args.phase_limit
        )
        seconds = time.monotonic() - start
    finally:
        clients.close()
    time.sleep(1.0)  # let the server see the closes before the next phase
    return Phase(k, idle, clients.refused, ok, args.requests, latencies, errors, seconds)


# ---------------------------------------------------------------------------------------------
# Throughput (no slow clients)
# ---------------------------------------------------------------------------------------------


def throughput(
    port: int, path: str, total: int, concurrency: int, timeout: float
) -> tuple[float, list[float], int]:
    """`total` requests over `concurrency` keep-alive connections: (requests/s, latencies, errors)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(total))

    def work() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        mine: list[float] = []
        failed = 0
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                start = time.perf_counter()
                try:
                    conn.request("GET", numbered(path))
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status != 200:
                        failed += 1
                    if resp.will_close:
                        conn.close()
                        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
                except (OSError, http.client.HTTPException):
                    failed += 1
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
                mine.append(time.perf_counter() - start)
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)
                errors[0] += failed

    threads = [threading.Thread(target=work, daemon=True) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=total * timeout + 30)
    elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies, errors[0]


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def available_servers() -> list[str]:
    from indexer.serving import SERVERS

    return [s for s in SERVERS if s != "gevent" or importlib.util.find_spec("gevent") is not None]


def build_index(index_dir: Path) -> None:
    tmskb = Path(sys.executable).with_name("tmskb")
    cmd = [str(tmskb), "index", "--root", str(REPO), "--index-dir", str(index_dir)]
    subprocess.run(cmd, cwd=REPO, env=child_env(), check=True, capture_output=True, timeout=300)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from indexer.serving import SERVERS, default_workers

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--server", action="append", choices=SERVERS, help="repeatable; default: all installed"
    )
    parser.add_argument("--slow", default="0,8,50,200", help="slow connection counts K (comma-separated)")
    parser.add_argument("--idle-ratio", type=float, default=0.25, help="idle connections per slow one")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between a slow client's lines")
    parser.add_argument(
        "--settle", type=float, default=1.5, help="seconds between opening them and measuring"
    )
    parser.add_argument("--requests", type=int, default=50, help="normal requests per K")
    parser.add_argument("--parallel", type=int, default=4, help="normal requests in flight at once")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds a normal request may take")
    parser.add_argument("--phase-limit", type=float, default=20.0, help="no request starts later in a phase")
    parser.add_argument("--path", default="/api/search?q=pain", help="{i} in it: the request's number")
    parser.add_argument(
        "--throughput", type=int, default=2000, help="requests of the throughput run (0: skip)"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--app", choices=["auto", "real", "minimal"], default="auto")
    parser.add_argument("--index-dir", type=Path, help="an index of the bundled KB (default: build one)")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.slow.split(",") if k.strip()]
    if any(k < 0 or k > 5000 for k in ks) or not 1 <= args.requests <= 10_000 or args.throughput > 100_000:
        parser.error("K must be 0..5000, --requests 1..10000, --throughput at most 100000")
    servers = args.server or available_servers()
    for name in servers:
        if name == "gevent" and importlib.util.find_spec("gevent") is None:
            parser.error("--server gevent needs gevent: .venv/bin/pip install gevent")
    limit = raise_nofile(2 * max(ks, default=0) + 256)

    print(machine())
    kind = app_kind(args.app)
    print(
        f"app {kind}; path {args.path}; {args.workers} worker(s) x {args.threads} thread(s); "
        f"slow clients send a header line every {args.interval:g} s; +{args.idle_ratio:g} idle per slow; "
        f"{args.requests} normal requests per K, {args.parallel} in flight, {args.timeout:g} s timeout; "
        f"RLIMIT_NOFILE {limit}"
    )
    work = Path(tempfile.mkdtemp(prefix="slowbench-"))
    try:
        index_dir = args.index_dir
        if index_dir is None and kind == "real":
            index_dir = work / "index"
            started = time.monotonic()
            build_index(index_dir)
            print(f"index of the bundled KB built in {time.monotonic() - started:.1f} s")
        rows: list[str] = []
        for name in servers:
            rows.extend(run_server(name, kind, index_dir or work, args, ks, work))
        print()
        print("| server | K slow + idle | success | p50 ms | p95 ms | max ms | errors |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for row in rows:
            print(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run_server(
    name: str, kind: str, index_dir: Path, args: argparse.Namespace, ks: list[int], work: Path
) -> list[str]:
    rows: list[str] = []
    print(f"\n== {name}")
    with running(name, kind, index_dir, args.workers, args.threads, work) as server:
        for _ in range(20):  # warm up: every worker opens the index
            get(server.port, numbered(args.path), 5)
        for k in ks:
            phase = slow_phase(server, k, args)
            lat = phase.latencies
            errs = ", ".join(f"{e} x{n}" for e, n in sorted(phase.errors.items())) or "-"
            if phase.refused:
                errs += f"; {phase.refused} slow/idle connects refused"
            line = (
                f"| {name} | {phase.slow} + {phase.idle} | {phase.ok}/{phase.total} "
                f"({100 * phase.ok / phase.total:.0f}%) | {fmt_ms(pct(lat, 50) if lat else None)} | "
                f"{fmt_ms(pct(lat, 95) if lat else None)} | {fmt_ms(max(lat) if lat else None)} | {errs} |"
            )
            print(f"  K={k}: {line}  ({phase.seconds:.1f} s)", flush=True)
            rows.append(line)
        if args.throughput:
            rps, lat, errors = throughput(server.port, args.path, args.throughput, args.concurrency, 10)
            line = (
                f"| {name} | throughput: {args.throughput} req, concurrency {args.concurrency}, keep-alive | "
                f"{rps:.0f} req/s | {fmt_ms(pct(lat, 50))} | {fmt_ms(pct(lat, 95))} | {fmt_ms(max(lat))} | "
                f"{errors} errors |"
            )
            print(f"  {line}", flush=True)
            rows.append(line)
        seconds = stop(server)
        print(
            f"  SIGTERM: {'killed after 15 s' if seconds is None else f'stopped in {seconds:.1f} s'}, "
            f"exit code {server.process.returncode}"
        )
    log = server.log.read_text(errors="replace")
    bad = [line for line in log.splitlines() if "Traceback" in line or "ERROR" in line or "CRITICAL" in line]
    if bad:
        print(f"  server log has {len(bad)} error line(s), e.g. {bad[:3]}")
    return rows


if __name__ == "__main__":
    sys.exit(main())
